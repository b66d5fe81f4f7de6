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
	"github.com/weirhq/weir/storage"
)

// replayOnce is a staging sink whose first Write abandons (ErrReplay); it counts Writes.
type replayOnce struct {
	mu     sync.Mutex
	writes int
	first  int64 // offset of the first record of each Write, last seen
	failed atomic.Bool
}

func (s *replayOnce) Open(context.Context) error { return nil }
func (s *replayOnce) Close() error               { return nil }
func (s *replayOnce) Reset() error               { return nil }
func (s *replayOnce) Durable() ([]connectors.PartitionOffset, error) {
	return nil, nil
}
func (s *replayOnce) Write(_ context.Context, msgs []connectors.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	s.first = msgs[0].Offset
	if s.failed.CompareAndSwap(false, true) {
		return fmt.Errorf("store failed: %w", connectors.ErrReplay)
	}
	return nil
}

// TestReviewReplayFromEarliest: with no commit yet (committed -1: "from the earliest offset"),
// replay sets pos to max(-1, reported[k]) = 0, as reported has no entry: on a topic whose log
// no longer starts at 0 (retention), the fetch at 0 is out of range and retried forever.
func TestReplayFromEarliest(t *testing.T) {
	cfg := flow.NodeConfig{DataDir: t.TempDir()}
	cfg.Log = storage.DefaultConfig()
	cfg.Log.Sync = storage.SyncNever
	cfg.Log.SegmentBytes = 4096
	cfg.Log.RetentionBytes = 16 << 10
	cfg.Replica.RetentionEvery = 10 * time.Millisecond
	cfg.Coordinator.InitialDelay = 20 * time.Millisecond
	n, err := flow.StartNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	rt := flow.New(n)
	defer rt.Stop()
	src, _ := seq.New(seq.Config{Count: 5000, Batch: 100, Prefix: "retained-record-with-some-padding-"})
	if err := rt.Source("gen", src, "rr", flow.Partitions(1)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // produced, and the oldest segments deleted
	sink := &replayOnce{}
	if err := rt.Sink("s", sink, flow.FromTopics("rr")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the first Write (replayed)", func() bool { return sink.failed.Load() })
	sink.mu.Lock()
	t.Logf("first Write from offset %d", sink.first)
	sink.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		sink.mu.Lock()
		w := sink.writes
		sink.mu.Unlock()
		if w > 1 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("no Write in 10 s after the replay: the runner fetches from offset 0, below the log start")
}
