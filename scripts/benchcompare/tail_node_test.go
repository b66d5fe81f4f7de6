//go:build linux

package main

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/weirhq/weir/actors"
	"github.com/weirhq/weir/storage"
)

// TestTailAgainstNode runs the tailing mode's clients against a Weir node in this process
// (its Kafka listener): two groups tail a topic while the producer writes 1,000 records at
// 4,000 records/s; each group reads every record, with a delivered rate and latencies.
func TestTailAgainstNode(t *testing.T) {
	cfg := actors.NodeConfig{DataDir: t.TempDir(), KafkaAddr: "127.0.0.1:0"}
	cfg.Log = storage.DefaultConfig()
	cfg.Log.Sync = storage.SyncNever
	n, err := actors.StartNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const topic, total, rate = "tail", 1000, 4000.0
	if err := createTopic(ctx, n.KafkaAddr(), topic, 3, 1); err != nil {
		t.Fatal(err)
	}
	var tails []*tailer
	for _, g := range []string{"g1", "g2"} {
		tl, err := newTailer(n.KafkaAddr(), topic, g)
		if err != nil {
			t.Fatal(err)
		}
		tails = append(tails, tl)
	}
	cctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, tl := range tails {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tl.run(cctx)
		}()
	}
	defer func() {
		stop()
		wg.Wait()
		closeTailers(tails)
	}()
	for _, tl := range tails {
		select {
		case <-tl.assigned:
		case <-ctx.Done():
			t.Fatalf("%s: not assigned", tl.group)
		}
	}
	start := time.Now()
	p, err := produceAtRate(ctx, n.KafkaAddr(), topic, rate, total, start)
	if err != nil {
		t.Fatal(err)
	}
	if p.sent != total || p.failed != 0 {
		t.Fatalf("sent %d, failed %d, want %d and 0", p.sent, p.failed, total)
	}
	// 1,000 records at 4,000/s take 0.25 s: the rate cannot be beaten.
	if p.seconds < 0.24 {
		t.Fatalf("the producer took %.3f s for %d records at %.0f/s", p.seconds, total, rate)
	}
	if q := p.lat.quantiles(0.5, 1); math.IsNaN(q[0]) || q[0] > q[1] {
		t.Fatalf("produce latencies %v", q)
	}
	for _, tl := range tails {
		for tl.count.Load() < total && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		g := tl.result(start)
		if g.records != total || !(g.rate > 0 && g.rate <= rate*1.05) || math.IsNaN(g.p50) || g.p50 > g.p99 || g.p99 > g.max {
			t.Fatalf("%s: %+v", tl.group, g)
		}
	}
}
