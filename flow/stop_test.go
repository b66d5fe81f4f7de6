package flow_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/source/seq"
	"github.com/weirhq/weir/flow"
	"github.com/weirhq/weir/storage"
)

// signalSink is a memSink that says when a Write returned.
type signalSink struct {
	memSink
	once  sync.Once
	wrote chan struct{}
}

func (s *signalSink) Write(ctx context.Context, msgs []connectors.Message) error {
	err := s.memSink.Write(ctx, msgs)
	s.once.Do(func() { close(s.wrote) })
	return err
}

// TestStopCommitsWhatWasWritten: a sink that is not a staging sink is stopped (and its node
// closed) right after a Write returned. What it wrote is committed before it goes: the next
// run does not write it again (no partition/offset twice). (examples/taildir printed lines
// twice when its Ctrl-C came between a Write and the commit that followed it.) The source is
// stopped in the same moments: a position whose commit was on its way is committed before it
// goes, so no value is produced twice (a batch of 100 values was, in about one run of six).
func TestStopCommitsWhatWasWritten(t *testing.T) {
	dir := t.TempDir()
	const count = 3000
	src, _ := seq.New(seq.Config{Count: count, Batch: 100, Prefix: "n"})
	all := &memSink{}
	for round := 0; ; round++ {
		cfg := flow.NodeConfig{DataDir: dir}
		cfg.Log = storage.DefaultConfig()
		cfg.Coordinator.InitialDelay = 20 * time.Millisecond
		n, err := flow.StartNode(cfg)
		if err != nil {
			t.Fatal(err)
		}
		rt := flow.New(n)
		if err := rt.Source("gen", src, "events", flow.Partitions(2)); err != nil {
			t.Fatal(err)
		}
		sink := &signalSink{wrote: make(chan struct{})}
		if err := rt.Sink("mem", sink, flow.FromTopics("events"), flow.FetchBytes(2<<10)); err != nil {
			t.Fatal(err)
		}
		last := round == 8
		select {
		case <-sink.wrote:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: nothing written", round)
		}
		if last {
			deadline := time.Now().Add(30 * time.Second)
			for {
				got := map[string]bool{}
				for _, v := range append(all.values(), sink.values()...) {
					got[v] = true
				}
				if len(got) == count || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		rt.Stop()
		n.Close()
		all.mu.Lock()
		sink.mu.Lock()
		all.msgs = append(all.msgs, sink.msgs...)
		sink.mu.Unlock()
		all.mu.Unlock()
		if last {
			break
		}
	}
	seen, offsets := map[string]int{}, map[string]int{}
	for _, m := range all.msgs {
		seen[string(m.Value)]++
		offsets[fmt.Sprintf("%d/%d", m.Partition, m.Offset)]++
	}
	for o, c := range offsets {
		if c > 1 {
			t.Errorf("partition/offset %s written %d times", o, c)
		}
	}
	for i := range count {
		if v := fmt.Sprintf("n%d", i); seen[v] != 1 {
			t.Errorf("%s written %d times", v, seen[v])
		}
	}
}
