package group

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/internal/syncbuf"
)

// newFailover returns an open Failover of sinks a, b and c with priorities 1, 10 and 5 (so the
// order is b, c, a), penalties of 1 s to 5 s and a fake clock.
func newFailover(t *testing.T) (*Failover, *fakeClock, *testSink, *testSink, *testSink) {
	t.Helper()
	a, b, c := newTestSink("a"), newTestSink("b"), newTestSink("c")
	clock := newFakeClock()
	g, err := NewFailover(FailoverConfig{
		Members:    []Member{{Name: "a", Sink: a, Priority: 1}, {Name: "b", Sink: b, Priority: 10}, {Name: "c", Sink: c, Priority: 5}},
		Penalty:    time.Second,
		MaxPenalty: 5 * time.Second,
		Clock:      clock,
	})
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
		checkProtocol(t, a, b, c)
	})
	return g, clock, a, b, c
}

// TestFailoverPriorityOrder: each batch goes to the member of highest priority that works.
func TestFailoverPriorityOrder(t *testing.T) {
	for _, tc := range []struct {
		name  string
		down  string // members whose Write fails
		want  string // the member that stores
		tries string // members whose Write is called, in order
	}{
		{"all up", "", "b", "b"},
		{"first down", "b", "c", "bc"},
		{"two down", "bc", "a", "bca"},
		{"lowest down", "a", "b", "b"},
		{"middle down", "c", "b", "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, _, a, b, c := newFailover(t)
			sinks := map[string]*testSink{"a": a, "b": b, "c": c}
			calls := &callLog{}
			for name, s := range sinks {
				s.set(func(s *testSink) {
					s.calls = calls
					if strings.Contains(tc.down, name) {
						s.writeErr = errDown
					}
				})
			}
			if err := g.Write(context.Background(), batch(0, 3)); err != nil {
				t.Fatal(err)
			}
			if got := calls.take(); got != tc.tries {
				t.Errorf("Write called on %q, want %q", got, tc.tries)
			}
			for name, s := range sinks {
				want := 0
				if name == tc.want {
					want = 3
				}
				if s.count() != want {
					t.Errorf("%s stored %d records, want %d", name, s.count(), want)
				}
			}
		})
	}
}

// TestFailoverReturnsAfterPenalty: a failed member is left out for its penalty, then tried
// again (opened again first) and, when it stores, forgiven.
func TestFailoverReturnsAfterPenalty(t *testing.T) {
	g, clock, _, b, c := newFailover(t)
	b.set(func(s *testSink) { s.writeErr = errDown })
	if err := g.Write(context.Background(), batch(0, 1)); err != nil {
		t.Fatal(err)
	}
	st := stateOf(t, g.State(), "b")
	if st.Failures != 1 || st.Open || !errors.Is(st.LastError, errDown) || !st.PenalisedUntil.Equal(clock.Now().Add(time.Second)) {
		t.Fatalf("b after a failure: %+v", st)
	}
	b.set(func(s *testSink) { s.writeErr = nil })

	// Penalised: c gets the batches, b is not even asked.
	clock.advance(999 * time.Millisecond)
	if err := g.Write(context.Background(), batch(1, 1)); err != nil {
		t.Fatal(err)
	}
	if b.writeCalls() != 1 || c.count() != 2 {
		t.Fatalf("during b's penalty: b written %d times, c holds %d", b.writeCalls(), c.count())
	}

	// Back: b is opened again and stores.
	clock.advance(time.Millisecond)
	if err := g.Write(context.Background(), batch(2, 1)); err != nil {
		t.Fatal(err)
	}
	if b.count() != 1 || c.count() != 2 {
		t.Fatalf("after b's penalty: b holds %d, c %d", b.count(), c.count())
	}
	st = stateOf(t, g.State(), "b")
	if st.Failures != 0 || !st.PenalisedUntil.IsZero() || !st.Open || st.Batches != 1 || st.Records != 1 {
		t.Fatalf("b after it stored again: %+v", st)
	}
	if b.opens != 2 || b.closes != 1 {
		t.Fatalf("b opened %d and closed %d times, want 2 and 1", b.opens, b.closes)
	}
}

// TestFailoverPenaltyDoublesAndCaps: each failure in a row doubles the penalty, up to MaxPenalty;
// a Write the member stores resets it.
func TestFailoverPenaltyDoublesAndCaps(t *testing.T) {
	g, clock, _, b, _ := newFailover(t)
	b.set(func(s *testSink) { s.writeErr = errDown })
	var got []time.Duration
	for i := range 6 {
		if err := g.Write(context.Background(), batch(i, 1)); err != nil {
			t.Fatal(err)
		}
		st := stateOf(t, g.State(), "b")
		p := st.PenalisedUntil.Sub(clock.Now())
		got = append(got, p)
		clock.advance(p) // b is tried at the next Write
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second, 5 * time.Second}
	if !slices.Equal(got, want) {
		t.Fatalf("penalties %v, want %v", got, want)
	}

	// Stored once: forgiven; its next failure is penalised 1 s again.
	b.set(func(s *testSink) { s.writeErr = nil })
	if err := g.Write(context.Background(), batch(6, 1)); err != nil {
		t.Fatal(err)
	}
	if st := stateOf(t, g.State(), "b"); st.Failures != 0 || !st.PenalisedUntil.IsZero() {
		t.Fatalf("b after it stored: %+v", st)
	}
	b.set(func(s *testSink) { s.writeErr = errDown })
	if err := g.Write(context.Background(), batch(7, 1)); err != nil {
		t.Fatal(err)
	}
	if st := stateOf(t, g.State(), "b"); st.Failures != 1 || st.PenalisedUntil.Sub(clock.Now()) != time.Second {
		t.Fatalf("b after a failure that followed a stored batch: %+v, now %v", st, clock.Now())
	}
}

// TestFailoverAllFail: when every member fails the batch, Write names each with its failure.
func TestFailoverAllFail(t *testing.T) {
	g, clock, a, b, c := newFailover(t)
	errA, errB, errC := errors.New("a is full"), errors.New("b is gone"), errors.New("c refuses")
	a.set(func(s *testSink) { s.writeErr = errA })
	b.set(func(s *testSink) { s.writeErr = errB })
	c.set(func(s *testSink) { s.writeErr = errC })
	err := g.Write(context.Background(), batch(0, 2))
	var ge *Error
	if !errors.As(err, &ge) || !errors.Is(err, ErrAllFailed) {
		t.Fatalf("Write: %v, want an *Error matching ErrAllFailed", err)
	}
	for _, e := range []error{errA, errB, errC} {
		if !errors.Is(err, e) {
			t.Errorf("the error does not match %v: %v", e, err)
		}
		if !strings.Contains(err.Error(), e.Error()) {
			t.Errorf("the error does not say %q: %v", e, err)
		}
	}
	if len(ge.Members) != 3 {
		t.Fatalf("the error names %d members: %+v", len(ge.Members), ge.Members)
	}
	for _, m := range ge.Members {
		if !m.Tried || m.Until.IsZero() {
			t.Errorf("member %s in the error: %+v", m.Member, m)
		}
	}
	if s := clock.slept(); len(s) != 0 {
		t.Fatalf("Write slept %v though it tried every member", s)
	}
	if a.writeCalls() != 1 || b.writeCalls() != 1 || c.writeCalls() != 1 {
		t.Fatalf("writes a %d b %d c %d, want one each", a.writeCalls(), b.writeCalls(), c.writeCalls())
	}
}

// penalise sets a member's penalty as if it had failed with err, failures times in a row.
func penalise(c *core, name string, until time.Time, failures int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.members {
		if m.Name == name {
			m.until, m.failures, m.lastErr = until, failures, err
		}
	}
}

// TestFailoverWaitsForTheFirstBack: when every member not yet tried is penalised, Write waits
// for the one whose penalty ends first, tries it, and waits again if it fails.
func TestFailoverWaitsForTheFirstBack(t *testing.T) {
	g, clock, a, b, c := newFailover(t)
	t0 := clock.Now()
	penalise(g.c, "b", t0.Add(2*time.Second), 2, errDown)
	penalise(g.c, "c", t0.Add(time.Second), 1, errDown)
	penalise(g.c, "a", t0.Add(3*time.Second), 3, errDown)
	c.set(func(s *testSink) { s.writeErr = errDown })
	if err := g.Write(context.Background(), batch(0, 1)); err != nil {
		t.Fatal(err)
	}
	// c (back first, at 1 s) fails; b (back at 2 s) stores; a is not asked.
	if got, want := clock.slept(), []time.Duration{time.Second, time.Second}; !slices.Equal(got, want) {
		t.Fatalf("slept %v, want %v", got, want)
	}
	if c.writeCalls() != 1 || b.count() != 1 || a.writeCalls() != 0 {
		t.Fatalf("c written %d times, b holds %d, a written %d times", c.writeCalls(), b.count(), a.writeCalls())
	}
	if !clock.Now().Equal(t0.Add(2 * time.Second)) {
		t.Fatalf("the clock is at %v, want t0+2s", clock.Now().Sub(t0))
	}
}

// TestFailoverWaitRespectsContext: a Write waiting for a penalised member returns when its
// context ends, naming every member's last failure.
func TestFailoverWaitRespectsContext(t *testing.T) {
	g, clock, _, _, _ := newFailover(t)
	clock.block = true
	now := clock.Now()
	for _, name := range []string{"a", "b", "c"} {
		penalise(g.c, name, now.Add(5*time.Second), 4, errors.New(name+" broke"))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Write(ctx, batch(0, 1)) }()
	select {
	case d := <-clock.sleeping:
		if d != 5*time.Second {
			t.Fatalf("waits %v, want 5s", d)
		}
	case err := <-done:
		t.Fatalf("Write returned %v without waiting", err)
	}
	cancel()
	err := <-done
	var ge *Error
	if !errors.As(err, &ge) || !errors.Is(err, context.Canceled) || errors.Is(err, ErrAllFailed) {
		t.Fatalf("Write: %v, want an *Error matching context.Canceled only", err)
	}
	for _, name := range []string{"a", "b", "c"} {
		if !strings.Contains(err.Error(), name+" broke") {
			t.Errorf("the error does not name %s's failure: %v", name, err)
		}
	}
	for _, m := range ge.Members {
		if m.Tried {
			t.Errorf("%s marked tried", m.Member)
		}
	}
}

// TestRealClockSleepRespectsContext: the default clock's Sleep returns when its context ends.
func TestRealClockSleepRespectsContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := (realClock{}).Sleep(ctx, time.Hour); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sleep: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Sleep returned after %v", d)
	}
	if err := (realClock{}).Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

// TestFailoverOpen: members that fail Open are penalised and left out; Open fails only when
// every member does.
func TestFailoverOpen(t *testing.T) {
	a, b := newTestSink("a"), newTestSink("b")
	b.set(func(s *testSink) { s.openErr = errDown })
	clock := newFakeClock()
	g, err := NewFailover(FailoverConfig{Members: []Member{{Name: "a", Sink: a}, {Name: "b", Sink: b, Priority: 1}}, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Open(context.Background()); err != nil {
		t.Fatalf("Open with one member up: %v", err)
	}
	st := stateOf(t, g.State(), "b")
	if st.Open || st.Failures != 1 || !errors.Is(st.LastError, errDown) || !st.PenalisedUntil.Equal(clock.Now().Add(DefaultPenalty)) {
		t.Fatalf("b after its Open failed: %+v", st)
	}
	if err := g.Write(context.Background(), batch(0, 1)); err != nil {
		t.Fatal(err)
	}
	if a.count() != 1 || b.writeCalls() != 0 {
		t.Fatalf("a holds %d, b written %d times", a.count(), b.writeCalls())
	}
	// Back after its penalty: opened, then written.
	b.set(func(s *testSink) { s.openErr = nil })
	clock.advance(DefaultPenalty)
	if err := g.Write(context.Background(), batch(1, 1)); err != nil {
		t.Fatal(err)
	}
	if b.count() != 1 || b.opens != 2 {
		t.Fatalf("b holds %d records after %d opens, want 1 after 2", b.count(), b.opens)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	checkProtocol(t, a, b)

	// Every member failing Open fails the group's.
	a.set(func(s *testSink) { s.openErr = errors.New("a cannot") })
	b.set(func(s *testSink) { s.openErr = errors.New("b cannot") })
	err = g.Open(context.Background())
	if !errors.Is(err, ErrAllFailed) || !strings.Contains(err.Error(), "a cannot") || !strings.Contains(err.Error(), "b cannot") {
		t.Fatalf("Open with every member down: %v", err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	checkProtocol(t, a, b)
}

// TestFailoverWriteTimeout: a member that hangs is given up after WriteTimeout and the batch
// goes to the next.
func TestFailoverWriteTimeout(t *testing.T) {
	a, b := newTestSink("a"), newTestSink("b")
	a.set(func(s *testSink) { s.hang = true })
	g, err := NewFailover(FailoverConfig{Members: []Member{{Name: "a", Sink: a, Priority: 1}, {Name: "b", Sink: b}},
		WriteTimeout: 20 * time.Millisecond, Clock: newFakeClock()})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Write(context.Background(), batch(0, 1)); err != nil {
		t.Fatal(err)
	}
	if b.count() != 1 {
		t.Fatalf("b holds %d", b.count())
	}
	if st := stateOf(t, g.State(), "a"); !errors.Is(st.LastError, context.DeadlineExceeded) || st.Failures != 1 {
		t.Fatalf("a: %+v", st)
	}
}

// TestClose closes every open member once and joins their errors.
func TestClose(t *testing.T) {
	a, b, c := newTestSink("a"), newTestSink("b"), newTestSink("c")
	errA, errC := errors.New("a close"), errors.New("c close")
	a.set(func(s *testSink) { s.closeErr = errA })
	c.set(func(s *testSink) { s.closeErr = errC; s.writeErr = errDown })
	g, err := NewFailover(FailoverConfig{Members: []Member{{Name: "a", Sink: a}, {Name: "b", Sink: b}, {Name: "c", Sink: c, Priority: 1}}, Clock: newFakeClock()})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := g.Write(context.Background(), batch(0, 1)); err != nil { // c fails, and is closed then
		t.Fatal(err)
	}
	err = g.Close()
	if !errors.Is(err, errA) || errors.Is(err, errC) {
		t.Fatalf("Close: %v, want a's error only (c was closed when it failed)", err)
	}
	for _, s := range []*testSink{a, b, c} {
		if s.closes != 1 {
			t.Errorf("%s closed %d times", s.name, s.closes)
		}
	}
	for _, st := range g.State() {
		if st.Open {
			t.Errorf("%s open after Close", st.Name)
		}
	}
	checkProtocol(t, a, b, c)
}

// stagingSink is a connectors.StagingSink, which no group takes.
type stagingSink struct{ testSink }

func (*stagingSink) Durable() ([]connectors.PartitionOffset, error) { return nil, nil }
func (*stagingSink) Reset() error                                   { return nil }

func TestConfigValidate(t *testing.T) {
	a, b := newTestSink("a"), newTestSink("b")
	st := &stagingSink{}
	for _, tc := range []struct {
		name    string
		members []Member
		mod     func(*FailoverConfig)
		want    string
	}{
		{"ok", []Member{{Name: "a", Sink: a}, {Name: "b", Sink: b}}, nil, ""},
		{"no members", nil, nil, "no members"},
		{"no name", []Member{{Sink: a}}, nil, "no name"},
		{"same name", []Member{{Name: "a", Sink: a}, {Name: "a", Sink: b}}, nil, "two members named"},
		{"no sink", []Member{{Name: "a"}}, nil, "no sink"},
		{"same sink", []Member{{Name: "a", Sink: a}, {Name: "b", Sink: a}}, nil, "same sink"},
		{"staging", []Member{{Name: "a", Sink: a}, {Name: "hdfs", Sink: st}}, nil, "staging sink"},
		{"negative penalty", []Member{{Name: "a", Sink: a}}, func(c *FailoverConfig) { c.Penalty = -1 }, "negative Penalty"},
		{"negative max", []Member{{Name: "a", Sink: a}}, func(c *FailoverConfig) { c.MaxPenalty = -1 }, "negative MaxPenalty"},
		{"penalty above max", []Member{{Name: "a", Sink: a}}, func(c *FailoverConfig) { c.Penalty, c.MaxPenalty = 2*time.Second, time.Second }, "more than MaxPenalty"},
		{"negative timeout", []Member{{Name: "a", Sink: a}}, func(c *FailoverConfig) { c.WriteTimeout = -1 }, "negative WriteTimeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := FailoverConfig{Members: tc.members}
			if tc.mod != nil {
				tc.mod(&cfg)
			}
			_, ferr := NewFailover(cfg)
			_, lerr := NewLoadBalance(LoadBalanceConfig{Members: cfg.Members, Penalty: cfg.Penalty, MaxPenalty: cfg.MaxPenalty, WriteTimeout: cfg.WriteTimeout, Backoff: true})
			for _, err := range []error{ferr, lerr} {
				switch {
				case tc.want == "" && err != nil:
					t.Errorf("error %v", err)
				case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
					t.Errorf("error %v, want one saying %q", err, tc.want)
				}
			}
			if tc.name == "staging" && (!errors.Is(ferr, ErrStagingMember) || !errors.Is(lerr, ErrStagingMember)) {
				t.Errorf("errors %v and %v do not match ErrStagingMember", ferr, lerr)
			}
		})
	}
	if _, err := NewLoadBalance(LoadBalanceConfig{Members: []Member{{Name: "a", Sink: a}}, Selector: 7}); err == nil || !strings.Contains(err.Error(), "unknown selector") {
		t.Errorf("selector 7: %v", err)
	}
}

// TestFailoverLogs: a failover, a wait and a member's return are logged.
func TestFailoverLogs(t *testing.T) {
	var buf syncbuf.Buffer
	a, b := newTestSink("a"), newTestSink("b")
	clock := newFakeClock()
	g, err := NewFailover(FailoverConfig{Members: []Member{{Name: "a", Sink: a, Priority: 1}, {Name: "b", Sink: b}},
		Clock: clock, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	a.set(func(s *testSink) { s.writeErr = errDown })
	if err := g.Write(context.Background(), batch(0, 1)); err != nil {
		t.Fatal(err)
	}
	b.set(func(s *testSink) { s.writeErr = errDown })
	a.set(func(s *testSink) { s.writeErr = nil })
	if err := g.Write(context.Background(), batch(1, 1)); err != nil { // b fails, waits 1 s for a
		t.Fatal(err)
	}
	for _, want := range []string{
		`level=WARN msg="sink group: member failed; penalised" processor=failover member=a failures=1 penalty=1s err="store down"`,
		`level=WARN msg="sink group: every member left is penalised; waiting for the first back" processor=failover member=a wait=1s`,
		`level=INFO msg="sink group: member stores again" processor=failover member=a failures=1`,
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("the log lacks %s:\n%s", want, buf.String())
		}
	}
}

// TestPenaltyOf: doubling, the cap, and no overflow with a huge MaxPenalty.
func TestPenaltyOf(t *testing.T) {
	c := &core{settings: settings{penalty: time.Second, maxPenalty: 30 * time.Second}}
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 5: 16 * time.Second, 6: 30 * time.Second, 1000: 30 * time.Second} {
		if got := c.penaltyOf(n); got != want {
			t.Errorf("failure %d: penalty %v, want %v", n, got, want)
		}
	}
	c.maxPenalty = time.Duration(1<<63 - 1)
	for _, n := range []int{62, 63, 64, 1000} {
		if got := c.penaltyOf(n); got <= 0 || got > c.maxPenalty {
			t.Errorf("failure %d with the largest MaxPenalty: penalty %v", n, got)
		}
	}
}

// TestPriorityFarApart: priorities far apart (-10 and MaxInt) still order the members (the
// order was sorted by their difference, which overflowed and tried the lower first).
func TestPriorityFarApart(t *testing.T) {
	hi, lo := newTestSink("hi"), newTestSink("lo")
	g, err := NewFailover(FailoverConfig{Members: []Member{
		{Name: "lo", Sink: lo, Priority: -10},
		{Name: "hi", Sink: hi, Priority: math.MaxInt},
	}, Clock: newFakeClock()})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := g.Write(context.Background(), batch(0, 1)); err != nil {
		t.Fatal(err)
	}
	if hi.count() != 1 || lo.count() != 0 {
		t.Errorf("the batch went to hi %d times and lo %d times; want hi (priority MaxInt) once", hi.count(), lo.count())
	}
}
