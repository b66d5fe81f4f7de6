package group

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// newLoadBalance returns an open LoadBalance of sinks a, b and c, whose Writes are logged to
// the returned callLog.
func newLoadBalance(t *testing.T, sel Selector, backoff bool) (*LoadBalance, *fakeClock, *callLog, []*testSink) {
	t.Helper()
	calls := &callLog{}
	var sinks []*testSink
	var members []Member
	for _, name := range []string{"a", "b", "c"} {
		s := newTestSink(name)
		s.calls = calls
		sinks = append(sinks, s)
		members = append(members, Member{Name: name, Sink: s})
	}
	clock := newFakeClock()
	g, err := NewLoadBalance(LoadBalanceConfig{Members: members, Selector: sel, Backoff: backoff,
		Penalty: time.Second, MaxPenalty: 4 * time.Second, Clock: clock, Rand: rand.New(rand.NewPCG(1, 2))})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Error(err)
		}
		checkProtocol(t, sinks...)
	})
	return g, clock, calls, sinks
}

// TestRoundRobin: batches go to the members in turn; a failed batch goes to the next member,
// and without Backoff the failed member keeps its turns.
func TestRoundRobin(t *testing.T) {
	g, _, calls, sinks := newLoadBalance(t, RoundRobin, false)
	for i := range 9 {
		if err := g.Write(context.Background(), batch(i, 2)); err != nil {
			t.Fatal(err)
		}
	}
	if got := calls.take(); got != "abcabcabc" {
		t.Fatalf("written in the order %q", got)
	}
	for _, s := range sinks {
		if s.count() != 6 {
			t.Errorf("%s holds %d records, want 6", s.name, s.count())
		}
	}

	sinks[1].set(func(s *testSink) { s.writeErr = errDown })
	for i := range 6 {
		if err := g.Write(context.Background(), batch(100+i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	// b's turns: it fails and c takes the batch; b is tried again at its next turn (no Backoff).
	if got := calls.take(); got != "abccabcc" {
		t.Fatalf("with b down, written in the order %q", got)
	}
	if st := stateOf(t, g.State(), "b"); st.Failures != 2 || !st.PenalisedUntil.IsZero() {
		t.Fatalf("b: %+v", st)
	}
}

// TestRandomIsRoughlyEven: the Random selector spreads batches evenly, and a failed batch goes
// to another member.
func TestRandomIsRoughlyEven(t *testing.T) {
	g, _, calls, sinks := newLoadBalance(t, Random, false)
	const n = 3000
	for i := range n {
		if err := g.Write(context.Background(), batch(i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	order := calls.take()
	for _, s := range sinks {
		if c := s.count(); c < n/3*9/10 || c > n/3*11/10 {
			t.Errorf("%s holds %d of %d records: not within 10%% of a third", s.name, c, n)
		}
	}
	// Not round robin in disguise: some member gets two batches in a row.
	if !strings.Contains(order, "aa") && !strings.Contains(order, "bb") && !strings.Contains(order, "cc") {
		t.Errorf("no member got two batches in a row in %d random picks", n)
	}

	sinks[0].set(func(s *testSink) { s.writeErr = errDown })
	before, triedA := sinks[1].count()+sinks[2].count(), sinks[0].writeCalls()
	for i := range 300 {
		if err := g.Write(context.Background(), batch(n+i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if got := sinks[1].count() + sinks[2].count() - before; got != 300 {
		t.Fatalf("b and c stored %d of 300 batches with a down", got)
	}
	if w := sinks[0].writeCalls() - triedA; w < 60 || w > 140 {
		t.Fatalf("a (down, no Backoff) was tried %d times in 300 batches; want about 100", w)
	}
}

// TestBackoffExcludes: with Backoff, a failed member gets no batch until its penalty ends, then
// its turns again.
func TestBackoffExcludes(t *testing.T) {
	for _, sel := range []Selector{RoundRobin, Random} {
		t.Run(sel.String(), func(t *testing.T) {
			g, clock, calls, sinks := newLoadBalance(t, sel, true)
			a := sinks[0]
			a.set(func(s *testSink) { s.writeErr = errDown })
			for i := 0; a.writeCalls() == 0; i++ {
				if i > 100 {
					t.Fatal("a never picked")
				}
				if err := g.Write(context.Background(), batch(i, 1)); err != nil {
					t.Fatal(err)
				}
			}
			a.set(func(s *testSink) { s.writeErr = nil })
			if st := stateOf(t, g.State(), "a"); !st.PenalisedUntil.Equal(clock.Now().Add(time.Second)) {
				t.Fatalf("a: %+v", st)
			}
			calls.take()
			clock.advance(999 * time.Millisecond)
			for i := range 30 {
				if err := g.Write(context.Background(), batch(1000+i, 1)); err != nil {
					t.Fatal(err)
				}
			}
			if got := calls.take(); strings.Contains(got, "a") {
				t.Fatalf("a written during its penalty: %q", got)
			}
			clock.advance(time.Millisecond)
			for i := range 30 {
				if err := g.Write(context.Background(), batch(2000+i, 1)); err != nil {
					t.Fatal(err)
				}
			}
			if c := a.count(); c < 5 {
				t.Fatalf("a stored %d of 30 batches after its penalty", c)
			}
			if st := stateOf(t, g.State(), "a"); st.Failures != 0 {
				t.Fatalf("a after storing: %+v", st)
			}
		})
	}
}

// TestLoadBalanceAllFail: a batch every member fails is an error naming them all; with Backoff
// the next Write waits for the first member back.
func TestLoadBalanceAllFail(t *testing.T) {
	g, clock, calls, sinks := newLoadBalance(t, RoundRobin, true)
	for _, s := range sinks {
		s.set(func(s *testSink) { s.writeErr = errors.New(s.name + " is down") })
	}
	err := g.Write(context.Background(), batch(0, 1))
	if !errors.Is(err, ErrAllFailed) {
		t.Fatalf("Write: %v", err)
	}
	for _, name := range []string{"a", "b", "c"} {
		if !strings.Contains(err.Error(), name+": "+name+" is down") {
			t.Errorf("the error does not name %s: %v", name, err)
		}
	}
	if got := calls.take(); got != "abc" {
		t.Fatalf("tried %q", got)
	}
	sinks[2].set(func(s *testSink) { s.writeErr = nil })
	// The next batch starts at b; all are penalised 1 s: it waits for b (the first of equals in
	// its order), which fails, then c, back at the same instant, stores.
	if err := g.Write(context.Background(), batch(1, 1)); err != nil {
		t.Fatal(err)
	}
	if got := calls.take(); got != "bc" {
		t.Fatalf("tried %q", got)
	}
	if s := clock.slept(); len(s) != 1 || s[0] != time.Second {
		t.Fatalf("slept %v", s)
	}
}
