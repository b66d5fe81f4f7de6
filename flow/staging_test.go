package flow_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/source/seq"
	"github.com/weirhq/weir/flow"
)

// stagingSink stages what Write gives it; Roll makes the staged records durable. It counts
// Resets and the durable records by value.
type stagingSink struct {
	mu      sync.Mutex
	staged  []connectors.Message
	durable map[string]int
	next    map[connectors.PartitionOffset]int64 // by topic and partition (Offset 0)
	resets  int
	opens   int
	where   map[string][]string
	replay  atomic.Bool // the next Write abandons what is staged
}

func (s *stagingSink) Open(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opens++
	return nil
}
func (s *stagingSink) Close() error { return nil }

func (s *stagingSink) Write(_ context.Context, msgs []connectors.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.replay.CompareAndSwap(true, false) {
		s.staged = nil
		return fmt.Errorf("store failed: %w", connectors.ErrReplay)
	}
	for _, m := range msgs {
		// Durable already (read again after a crash between the roll and the commit): skip.
		if m.Offset < s.next[connectors.PartitionOffset{Topic: m.Topic, Partition: m.Partition}] {
			continue
		}
		s.staged = append(s.staged, m)
	}
	return nil
}

func (s *stagingSink) Reset() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.staged = nil
	s.resets++
	return nil
}

func (s *stagingSink) Durable() ([]connectors.PartitionOffset, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []connectors.PartitionOffset
	for k, off := range s.next {
		out = append(out, connectors.PartitionOffset{Topic: k.Topic, Partition: k.Partition, Offset: off})
	}
	return out, nil
}

// roll makes everything staged durable and returns how many records that was.
func (s *stagingSink) roll() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.durable == nil {
		s.durable, s.next = map[string]int{}, map[connectors.PartitionOffset]int64{}
	}
	n := len(s.staged)
	for _, m := range s.staged {
		s.durable[string(m.Value)]++
		if s.where == nil {
			s.where = map[string][]string{}
		}
		s.where[string(m.Value)] = append(s.where[string(m.Value)], fmt.Sprintf("p%d@%d", m.Partition, m.Offset))
		s.next[connectors.PartitionOffset{Topic: m.Topic, Partition: m.Partition}] = m.Offset + 1
	}
	s.staged = nil
	return n
}

func (s *stagingSink) counts() (staged, durable, resets int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.staged), len(s.durable), s.resets
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s: %s", what)
		}
	}
}

// TestStagingSink: a staging sink's offsets are committed only once it reports them durable (not
// when Write returns), also without a Write (the runner asks every second); after a crash of
// the sink's actor, the runner resets it and reads on from the committed offsets, so each record
// becomes durable exactly once.
func TestStagingSink(t *testing.T) {
	var crashIn atomic.Int64 // the sink's actor panics at this many Writes from now (0: never)
	n := startNode(t, func(kind, point string) {
		if kind == "sink" && point == "write" && crashIn.Load() > 0 && crashIn.Add(-1) == 0 {
			panic("injected sink failure")
		}
	})
	rt := flow.New(n)
	defer rt.Stop()
	src, _ := seq.New(seq.Config{Count: 1000, Batch: 100, Prefix: "s"})
	if err := rt.Source("gen", src, "staged", flow.Partitions(2)); err != nil {
		t.Fatal(err)
	}
	sink := &stagingSink{}
	if err := rt.Sink("stage", sink, flow.FromTopics("staged"), flow.FetchBytes(2<<10)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "1000 records staged", func() bool { st, _, _ := sink.counts(); return st == 1000 })
	time.Sleep(1500 * time.Millisecond) // a durable tick or more
	if lag, err := n.GroupLag("sink:stage", "staged"); err != nil || lag != 1000 {
		t.Fatalf("lag %d (%v) with nothing durable: want 1000, nothing committed", lag, err)
	}
	if r := sink.roll(); r != 1000 {
		t.Fatalf("rolled %d", r)
	}
	waitUntil(t, "the durable offsets committed without a Write", func() bool {
		lag, err := n.GroupLag("sink:stage", "staged")
		return err == nil && lag == 0
	})

	// More records, a crash at the third Write, with two staged: they come again after a
	// Reset.
	_, _, resets := sink.counts()
	crashIn.Store(3)
	src2, _ := seq.New(seq.Config{Count: 1000, Batch: 100, Prefix: "t"})
	if err := rt.Source("gen2", src2, "staged"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the sink crashed and was reset", func() bool { _, _, r := sink.counts(); return r > resets && crashIn.Load() == 0 })
	waitUntil(t, "all 2000 records staged or durable", func() bool {
		st, d, _ := sink.counts()
		if st+d == 2000 {
			return true
		}
		if st+d > 2000 {
			sink.roll() // let the test below report the repeat
			return true
		}
		return false
	})
	sink.roll()
	checkOnce(t, sink, 2000)

	// A Write that abandons what was staged (ErrReplay): the runner reads it again, without
	// restarting the sink.
	sink.mu.Lock()
	opens := sink.opens
	sink.mu.Unlock()
	src3, _ := seq.New(seq.Config{Count: 1000, Batch: 100, Prefix: "u"})
	if err := rt.Source("gen3", src3, "staged"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "records of the third source staged", func() bool { st, _, _ := sink.counts(); return st > 0 })
	sink.replay.Store(true)
	waitUntil(t, "all 3000 records staged or durable after the replay", func() bool {
		st, d, _ := sink.counts()
		return !sink.replay.Load() && st+d >= 3000
	})
	sink.roll()
	checkOnce(t, sink, 3000)
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if sink.opens != opens {
		t.Fatalf("the sink was opened again (%d times, was %d): ErrReplay restarted it", sink.opens, opens)
	}
}

func checkOnce(t *testing.T, sink *stagingSink, want int) {
	t.Helper()
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for v, c := range sink.durable {
		if c != 1 {
			t.Fatalf("record %s durable %d times: %v", v, c, sink.where[v])
		}
	}
	if len(sink.durable) != want {
		t.Fatalf("%d records durable, want %d", len(sink.durable), want)
	}
}

// notifyingSink is a stagingSink that tells the runner when a roll made records durable.
type notifyingSink struct {
	stagingSink
	notify atomic.Pointer[func()]
}

func (s *notifyingSink) NotifyDurable(notify func()) { s.notify.Store(&notify) }

// TestDurableNotifier: records a connectors.DurableNotifier makes durable without a Write are
// committed when it says so, not at the runner's next tick (every second): five rolls in a row
// each committed within 250 ms (by the ticks alone, all five would be about once in a thousand).
func TestDurableNotifier(t *testing.T) {
	n := startNode(t, nil)
	if err := n.CreateTopic("noted", 2); err != nil {
		t.Fatal(err)
	}
	rt := flow.New(n)
	defer rt.Stop()
	sink := &notifyingSink{}
	if err := rt.Sink("notify", sink, flow.FromTopics("noted")); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		src, _ := seq.New(seq.Config{Count: 100, Batch: 100, Prefix: fmt.Sprintf("n%d-", i)})
		if err := rt.Source(fmt.Sprintf("gen%d", i), src, "noted"); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "100 records staged", func() bool { st, _, _ := sink.counts(); return st == 100 })
		notify := sink.notify.Load()
		if notify == nil {
			t.Fatal("the runner did not call NotifyDurable")
		}
		if r := sink.roll(); r != 100 {
			t.Fatalf("rolled %d", r)
		}
		(*notify)()
		start := time.Now()
		waitUntil(t, "the durable offsets committed", func() bool {
			lag, err := n.GroupLag("sink:notify", "noted")
			return err == nil && lag == 0
		})
		if el := time.Since(start); el > 250*time.Millisecond {
			t.Fatalf("round %d: committed %v after the notification", i, el)
		}
	}
	checkOnce(t, &sink.stagingSink, 500)
}
