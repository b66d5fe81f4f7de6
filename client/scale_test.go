package client

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// TestTenGroupsAddedWhileProducing adds ten consumer groups, two members each, one after the
// other while a producer runs: adding a group must not pause the producer (rounds of 100
// acknowledged records complete while groups join, and at most two take longer than maxRound: a
// pause at each join would make ten slow rounds, while a busy machine's scheduling makes one or
// two), and every group reads every record.
func TestTenGroupsAddedWhileProducing(t *testing.T) {
	const (
		groups   = 10
		members  = 2
		perRound = 100
		// maxRound bounds one round of produce-and-wait: far above a round's normal few
		// milliseconds, far below the group join and rebalance delays (200 ms, seconds) that a
		// producer would wait for if joining a group paused it.
		maxRound = 150 * time.Millisecond
	)
	_, c := setup(t, "burst", 4)
	ctx := testCtx(t)

	p, err := c.NewProducer("burst", Acks(wire.AcksLeader), Linger(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	var (
		produced atomic.Int64
		rounds   atomic.Int64
		stop     = make(chan struct{})
		slowest  time.Duration
		slow     int // rounds over maxRound
		prodErr  error
		prodDone = make(chan struct{})
	)
	go func() {
		defer close(prodDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			rs := make([]*Result, perRound)
			for j := range rs {
				v := fmt.Sprintf("r%d-%d", i, j)
				rs[j] = p.Produce(ctx, storage.Record{Key: []byte(v), Value: []byte(v)})
			}
			for _, r := range rs {
				if _, err := r.Wait(ctx); err != nil {
					prodErr = err
					return
				}
			}
			took := time.Since(start)
			slowest = max(slowest, took)
			if took > maxRound {
				slow++
			}
			produced.Add(perRound)
			rounds.Add(1)
		}
	}()

	// Each member polls until told to stop, then until its group has every produced record.
	type groupState struct {
		mu   sync.Mutex
		seen map[string]bool
	}
	states := make([]*groupState, groups)
	var wg sync.WaitGroup
	done := make(chan struct{}) // closed when the producer has stopped: members read to the end
	var total atomic.Int64
	errs := make(chan error, groups*members)
	roundsAtJoin := make([]int64, groups)
	for gi := range groups {
		st := &groupState{seen: map[string]bool{}}
		states[gi] = st
		roundsAtJoin[gi] = rounds.Load()
		joined := make(chan struct{}, members)
		for range members {
			g, err := c.NewGroupConsumer(fmt.Sprintf("g%d", gi), []string{"burst"}, groupOpts(ResetOffset(ResetEarliest))...)
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer g.Close()
				first := true
				for {
					pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
					msgs, err := g.Poll(pctx)
					cancel()
					if err != nil && ctx.Err() != nil {
						errs <- err
						return
					}
					if first && err == nil {
						first = false
						joined <- struct{}{}
					}
					st.mu.Lock()
					for _, m := range msgs {
						st.seen[string(m.Value)] = true
					}
					n := len(st.seen)
					st.mu.Unlock()
					_ = g.Commit(ctx) // refused during rebalances: the records come again, seen dedupes
					select {
					case <-done:
						if int64(n) == total.Load() {
							return
						}
					default:
					}
				}
			}()
		}
		for range members {
			select {
			case <-joined:
			case <-ctx.Done():
				t.Fatalf("group %d: members did not join", gi)
			}
		}
	}
	joinRounds := rounds.Load() - roundsAtJoin[0]
	close(stop)
	<-prodDone
	if prodErr != nil {
		t.Fatalf("produce: %v", prodErr)
	}
	p.Close()
	total.Store(produced.Load())
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("member: %v", err)
	}
	t.Logf("%d records in %d rounds, %d rounds while groups joined, slowest round %v, %d over %v", produced.Load(), rounds.Load(), joinRounds, slowest, slow, maxRound)
	if slow > 2 {
		t.Errorf("%d produce rounds took over %v (the slowest %v): joining groups paused the producer", slow, maxRound, slowest)
	}
	if joinRounds < groups {
		t.Errorf("only %d produce rounds completed while %d groups joined", joinRounds, groups)
	}
	for gi, st := range states {
		if int64(len(st.seen)) != produced.Load() {
			t.Errorf("group %d read %d distinct records of %d", gi, len(st.seen), produced.Load())
		}
	}
}

// TestSlowConsumerBoundedMemory produces a burst many times larger than the memory bound while
// a consumer reads slowly: the log absorbs the burst, the heap of the process (node, producer
// and consumer together) stays within the bound, and the consumer then reads every record in
// order.
func TestSlowConsumerBoundedMemory(t *testing.T) {
	const (
		recordSize = 1024
		records    = 128 << 10 // 128 MiB of values
		// heapBound is what the burst may add to the live heap (as marked by each garbage
		// collection) while it runs: the producer's buffer (8 MiB here, counted as encoded
		// bytes, plus each record's bookkeeping), the copies of the batches in flight on their
		// way through the node (frame, decoded request, raft entry), and the fetches in flight.
		// Measured: 26-39 MiB for bursts of 128-384 MiB under the race detector.
		heapBound = 48 << 20
		// retainedBound is what may stay live once the burst is acknowledged: not the burst.
		retainedBound = 8 << 20
	)
	_, c := setup(t, "slow", 1)
	ctx := testCtx(t)

	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	runtime.GC()
	metrics.Read(live)
	base := live[0].Value.Uint64()
	var peak atomic.Uint64
	sampleDone := make(chan struct{})
	stopSampling := make(chan struct{})
	go func() {
		defer close(sampleDone)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
			s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
		}
	}()

	// The slow consumer: small fetches, a pause between polls.
	cons, err := c.NewConsumer("slow", 0, From(Earliest()), MaxWait(50*time.Millisecond), FetchMaxBytes(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	var next int64
	check := func(msgs []Message) {
		for _, m := range msgs {
			if m.Offset != next {
				t.Fatalf("offset %d, want %d", m.Offset, next)
			}
			next++
		}
	}
	slowDone := make(chan struct{})
	stopSlow := make(chan struct{})
	go func() {
		defer close(slowDone)
		for {
			select {
			case <-stopSlow:
				return
			case <-time.After(100 * time.Millisecond):
			}
			msgs, err := cons.Poll(ctx)
			if err != nil {
				t.Errorf("poll: %v", err)
				return
			}
			check(msgs)
		}
	}()

	p, err := c.NewProducer("slow", Acks(wire.AcksLeader), MaxBufferedBytes(8<<20))
	if err != nil {
		t.Fatal(err)
	}
	for i := range records {
		value := make([]byte, recordSize) // the producer keeps the slice until the callback
		value[0], value[1], value[2] = byte(i), byte(i>>8), byte(i>>16)
		p.ProduceAsync(ctx, storage.Record{Value: value}, func(_ int64, err error) {
			if err != nil {
				t.Errorf("produce: %v", err)
			}
		})
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	metrics.Read(live)
	retained := int64(live[0].Value.Uint64()) - int64(base)
	close(stopSlow)
	<-slowDone
	close(stopSampling)
	<-sampleDone
	grown := int64(peak.Load()) - int64(base)
	t.Logf("burst of %d MiB; live heap grew by at most %.1f MiB (bound %d MiB), %.1f MiB after it; slow consumer read %d records during it",
		records*recordSize>>20, float64(grown)/(1<<20), heapBound>>20, float64(retained)/(1<<20), next)
	if grown > heapBound {
		t.Errorf("live heap grew by %.1f MiB during the burst, more than the bound of %d MiB", float64(grown)/(1<<20), heapBound>>20)
	}
	if retained > retainedBound {
		t.Errorf("after the burst, %.1f MiB more are live than before it (bound %d MiB): the heap kept part of the burst",
			float64(retained)/(1<<20), retainedBound>>20)
	}
	if next >= records {
		t.Fatalf("the consumer kept up (%d records): the test did not make a backlog", next)
	}
	// The backlog is in the log: read it all, in order.
	fast, err := c.NewConsumer("slow", 0, From(AtOffset(next)), MaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	for next < records {
		msgs, err := fast.Poll(ctx)
		if err != nil {
			t.Fatalf("poll at %d: %v", next, err)
		}
		check(msgs)
	}
}
