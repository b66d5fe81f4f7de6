package flow_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/source/seq"
	"github.com/weirhq/weir/flow"
)

// sharedStore is the store of several staging sinks (as HDFS is for the members of an HDFS
// sink's group): what is durable, and per partition the offset after it.
type sharedStore struct {
	mu      sync.Mutex
	durable map[string]int
	next    map[int32]int64
}

// member is one group member's staging sink on a sharedStore; like the HDFS sink it reads a
// partition's durable offset once (its load) after each Reset, and its Close rolls, slowly.
type member struct {
	st        *sharedStore
	mu        sync.Mutex
	loaded    map[int32]int64
	staged    []connectors.Message
	closeTook time.Duration
}

func (m *member) Open(context.Context) error { return nil }

func (m *member) Write(_ context.Context, msgs []connectors.Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, msg := range msgs {
		next, ok := m.loaded[msg.Partition]
		if !ok {
			m.st.mu.Lock()
			next = m.st.next[msg.Partition]
			m.st.mu.Unlock()
			m.loaded[msg.Partition] = next
		}
		if msg.Offset < next {
			continue
		}
		m.staged = append(m.staged, msg)
	}
	return nil
}

func (m *member) roll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st.mu.Lock()
	defer m.st.mu.Unlock()
	for _, msg := range m.staged {
		m.st.durable[string(msg.Value)]++
		m.st.next[msg.Partition] = msg.Offset + 1
		m.loaded[msg.Partition] = msg.Offset + 1
	}
	m.staged = nil
}

func (m *member) Close() error {
	time.Sleep(m.closeTook) // closing and renaming files in a slow HDFS
	m.roll()
	return nil
}

func (m *member) Reset() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.staged, m.loaded = nil, map[int32]int64{}
	return nil
}

func (m *member) Durable() ([]connectors.PartitionOffset, error) { return nil, nil }

func (m *member) stagedParts() map[int32]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	ps := map[int32]bool{}
	for _, msg := range m.staged {
		ps[msg.Partition] = true
	}
	return ps
}

// TestReviewLeaveBeforeCloseRoll: a stopping (or restarting) sink runner sends LeaveGroup and
// then calls Close, which rolls (makes staged records durable). The other member is given the
// partitions while Close still runs, reads their durable offset before the roll, and makes
// the same records durable again.
func TestLeaveBeforeCloseRoll(t *testing.T) {
	n := startNode(t, nil)
	rt := flow.New(n)
	defer rt.Stop()
	src, _ := seq.New(seq.Config{Count: 1000, Batch: 100, Prefix: "z"})
	if err := rt.Source("gen", src, "zz", flow.Partitions(2)); err != nil {
		t.Fatal(err)
	}
	st := &sharedStore{durable: map[string]int{}, next: map[int32]int64{}}
	a := &member{st: st, loaded: map[int32]int64{}, closeTook: 6 * time.Second}
	b := &member{st: st, loaded: map[int32]int64{}}
	rtA, rtB := flow.New(n), flow.New(n)
	defer rtB.Stop()
	if err := rtA.Sink("a", a, flow.FromTopics("zz"), flow.Group("g"), flow.FetchBytes(2<<10)); err != nil {
		t.Fatal(err)
	}
	if err := rtB.Sink("b", b, flow.FromTopics("zz"), flow.Group("g"), flow.FetchBytes(2<<10)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "each member staged a partition", func() bool {
		pa, pb := a.stagedParts(), b.stagedParts()
		return len(pa) == 1 && len(pb) == 1
	})
	time.Sleep(time.Second)
	rtA.Stop() // A leaves, then rolls for 6 s
	waitUntil(t, "B wrote both partitions", func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.loaded) == 2 })
	time.Sleep(500 * time.Millisecond)
	b.roll()
	st.mu.Lock()
	defer st.mu.Unlock()
	twice := 0
	for _, c := range st.durable {
		if c > 1 {
			twice++
		}
	}
	if twice > 0 || len(st.durable) != 1000 {
		t.Fatalf("%d of %d records durable twice (want 1000 records, each once)", twice, len(st.durable))
	}
}
