package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

func groupOpts(extra ...GroupOption) []GroupOption {
	return append([]GroupOption{SessionTimeout(2 * time.Second), HeartbeatInterval(100 * time.Millisecond),
		MaxWait(100 * time.Millisecond)}, extra...)
}

// produceKeyed produces n records with values prefix-0..n-1 spread over the partitions.
func produceKeyed(t testing.TB, c *Client, topic, prefix string, n int) {
	t.Helper()
	ctx := testCtx(t)
	p, err := c.NewProducer(topic)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var rs []*Result
	for i := range n {
		v := fmt.Sprintf("%s-%d", prefix, i)
		rs = append(rs, p.Produce(ctx, storage.Record{Key: []byte(v), Value: []byte(v)}))
	}
	for _, r := range rs {
		if _, err := r.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// pollUntil polls g until it has n messages in all, failing on a duplicate.
func pollUntil(t testing.TB, ctx context.Context, g *GroupConsumer, n int, seen map[string]bool) {
	t.Helper()
	for got := 0; got < n; {
		msgs, err := g.Poll(ctx)
		if err != nil {
			t.Fatalf("poll after %d of %d: %v", got, n, err)
		}
		for _, m := range msgs {
			if seen[string(m.Value)] {
				t.Fatalf("%q delivered twice", m.Value)
			}
			seen[string(m.Value)] = true
		}
		got += len(msgs)
	}
}

func TestGroupConsumerCommitAndResume(t *testing.T) {
	_, c := setup(t, "events", 4)
	ctx := testCtx(t)
	produceKeyed(t, c, "events", "a", 200)

	g, err := c.NewGroupConsumer("g1", []string{"events"}, groupOpts(ResetOffset(ResetEarliest))...)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	pollUntil(t, ctx, g, 200, seen)
	if id, gen := g.Member(); id == "" || gen < 1 {
		t.Fatalf("member %q generation %d", id, gen)
	}
	if a := g.Assigned(); len(a) != 1 || len(a[0].Partitions) != 4 {
		t.Fatalf("a lone member is assigned %v", a)
	}
	if err := g.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	offs, err := c.FetchCommitted(ctx, "g1")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range offs {
		if hw, _ := c.ListOffsets(ctx, "events", o.Partition, Latest()); o.Offset != hw || g.Position("events", o.Partition) != hw {
			t.Fatalf("partition %d committed at %d, position %d, high watermark %d", o.Partition, o.Offset, g.Position("events", o.Partition), hw)
		}
		total += o.Offset
	}
	if len(offs) != 4 || total != 200 {
		t.Fatalf("committed %v", offs)
	}
	// Read 50 more, and Close commits them.
	produceKeyed(t, c, "events", "b", 50)
	pollUntil(t, ctx, g, 50, seen)
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Poll(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("poll after Close: %v", err)
	}

	// A new member starts from the committed offsets: only what is produced next.
	g2, err := c.NewGroupConsumer("g1", []string{"events"}, groupOpts(ResetOffset(ResetEarliest))...)
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	if msgs, err := g2.Poll(ctx); err != nil || len(msgs) != 0 {
		t.Fatalf("after commits: %d messages, %v", len(msgs), err)
	}
	produceKeyed(t, c, "events", "c", 20)
	seen2 := map[string]bool{}
	pollUntil(t, ctx, g2, 20, seen2)
	for v := range seen2 {
		if v[0] != 'c' {
			t.Fatalf("re-delivered %q", v)
		}
	}

	// A group with no commits starts at the end with the default policy (latest).
	g3, err := c.NewGroupConsumer("g-latest", []string{"events"}, groupOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer g3.Close()
	if msgs, err := g3.Poll(ctx); err != nil || len(msgs) != 0 {
		t.Fatalf("latest: %d messages, %v", len(msgs), err)
	}
}

// TestGroupRebalance runs two members: the second's join rebalances the group, each partition
// is read by one member, and every record is read.
func TestGroupRebalance(t *testing.T) {
	_, c := setup(t, "shared", 4)
	ctx := testCtx(t)
	produceKeyed(t, c, "shared", "x", 100)

	g1, err := c.NewGroupConsumer("g", []string{"shared"}, groupOpts(ResetOffset(ResetEarliest))...)
	if err != nil {
		t.Fatal(err)
	}
	defer g1.Close()
	seen := map[string]bool{}
	pollUntil(t, ctx, g1, 100, seen)
	if err := g1.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	g2, err := c.NewGroupConsumer("g", []string{"shared"}, groupOpts(ResetOffset(ResetEarliest))...)
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	var mu sync.Mutex
	got := map[string]string{} // value -> member
	var wg sync.WaitGroup
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2)
	for name, g := range map[string]*GroupConsumer{"g1": g1, "g2": g2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for pctx.Err() == nil {
				msgs, err := g.Poll(pctx)
				if err != nil {
					if pctx.Err() == nil {
						errs <- fmt.Errorf("%s: %w", name, err)
					}
					return
				}
				mu.Lock()
				for _, m := range msgs {
					if other, ok := got[string(m.Value)]; ok {
						t.Errorf("%q read by %s and again by %s", m.Value, other, name)
					}
					got[string(m.Value)] = name
				}
				mu.Unlock()
				if err := g.Commit(pctx); err != nil && !errors.Is(err, ErrRebalanced) && pctx.Err() == nil {
					errs <- fmt.Errorf("%s: commit: %w", name, err)
					return
				}
			}
		}()
	}
	// Wait until both members share the partitions.
	deadline := time.Now().Add(15 * time.Second)
	for {
		a1, a2 := g1.Assigned(), g2.Assigned()
		_, gen1 := g1.Member()
		_, gen2 := g2.Member()
		if len(a1) == 1 && len(a2) == 1 && len(a1[0].Partitions) == 2 && len(a2[0].Partitions) == 2 && gen1 == gen2 {
			for _, p := range a1[0].Partitions {
				for _, q := range a2[0].Partitions {
					if p == q {
						t.Fatalf("partition %d assigned to both members", p)
					}
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no rebalance: g1 %v (generation %d), g2 %v (generation %d)", a1, gen1, a2, gen2)
		}
		time.Sleep(20 * time.Millisecond)
	}
	produceKeyed(t, c, "shared", "y", 100)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 100 {
			break
		}
		select {
		case err := <-errs:
			t.Fatal(err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 100 records read by the two members", n)
		}
	}
	cancel()
	wg.Wait()
	members := map[string]int{}
	for v, m := range got {
		if v[0] != 'y' {
			t.Fatalf("%q read again after its commit", v)
		}
		members[m]++
	}
	if len(members) != 2 {
		t.Fatalf("records read by %v", members)
	}
}

func TestGroupErrors(t *testing.T) {
	_, c := setup(t, "", 0)
	ctx := testCtx(t)
	g, err := c.NewGroupConsumer("g", []string{"missing"}, groupOpts(Retries(1), RetryBackoff(5*time.Millisecond, 10*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.Poll(ctx); !errors.Is(err, wire.ErrUnknownTopic) {
		t.Fatalf("join for a missing topic: %v", err)
	}
	if _, err := c.NewGroupConsumer("", []string{"t"}); err == nil {
		t.Fatal("empty group name accepted")
	}
	if _, err := c.NewGroupConsumer("g", nil); err == nil {
		t.Fatal("no topics accepted")
	}
}

// TestNeedRejoinOldGeneration: news of a rebalance about a generation the member has left
// behind neither makes it join again nor cuts a Poll short.
func TestNeedRejoinOldGeneration(t *testing.T) {
	g := &GroupConsumer{rejoin: make(chan struct{}, 1), generation: 3, joined: true}
	g.needRejoin(2)
	if !g.joined || len(g.rejoin) != 0 {
		t.Fatalf("rebalance of generation 2 in generation 3: joined %v, %d signals", g.joined, len(g.rejoin))
	}
	g.needRejoin(3)
	if g.joined || len(g.rejoin) != 1 {
		t.Fatalf("rebalance of the current generation: joined %v, %d signals", g.joined, len(g.rejoin))
	}
	g.needRejoin(3) // already to join again: nothing more to say
	if g.joined || len(g.rejoin) != 1 {
		t.Fatalf("second rebalance news: joined %v, %d signals", g.joined, len(g.rejoin))
	}
}

// TestGroupJoinCutShort abandons the first join (Poll's context ends before the coordinator
// answers): the next Polls join as the same member, so that it owns every partition and no
// member the client cannot name shares them until its session expires.
func TestGroupJoinCutShort(t *testing.T) {
	_, c := setup(t, "cut", 4)
	ctx := testCtx(t)
	g, err := c.NewGroupConsumer("g-cut", []string{"cut"}, SessionTimeout(20*time.Second),
		HeartbeatInterval(100*time.Millisecond), MaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond) // the first join waits 200 ms for company
	_, err = g.Poll(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("poll with a 20 ms context: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := g.Poll(ctx); err != nil {
			t.Fatal(err)
		}
		if a := g.Assigned(); len(a) == 1 && len(a[0].Partitions) == 4 {
			break
		}
		if time.Now().After(deadline) {
			a := g.Assigned()
			_, gen := g.Member()
			t.Fatalf("the member owns %v in generation %d, not all 4 partitions", a, gen)
		}
	}
}

// TestGroupResolvesNewPartitionsTogether: a member given many partitions without committed
// offsets looks their start offsets up at once, not one round trip after another (16
// partitions behind a node that answers each lookup after 300 ms took 4.8 s before).
func TestGroupResolvesNewPartitionsTogether(t *testing.T) {
	const parts, delay = 16, 300 * time.Millisecond
	addr := fakeNode(t, func(f wire.Frame) (any, time.Duration) {
		switch f.API {
		case wire.ApiJoinGroup:
			var req wire.JoinGroupRequest
			_ = wire.Decode(f.API, f.Body, &req)
			ps := make([]int32, parts)
			for i := range ps {
				ps[i] = int32(i)
			}
			return &wire.JoinGroupResponse{MemberID: req.MemberID, Generation: 1, Members: 1,
				Assigned: []wire.TopicPartitions{{Topic: "t", Partitions: ps}}}, 0
		case wire.ApiFetchCommit:
			return &wire.FetchCommitResponse{}, 0
		case wire.ApiListOffsets:
			return &wire.ListOffsetsResponse{Offset: 5}, delay
		case wire.ApiFetch:
			var req wire.FetchRequest
			_ = wire.Decode(f.API, f.Body, &req)
			return &wire.FetchResponse{HighWatermark: 5, StartOffset: 0}, time.Duration(req.MaxWaitMs) * time.Millisecond
		default: // heartbeat, commit, leave
			return &wire.AdminResponse{}, 0
		}
	})
	c := dial(t, addr)
	ctx := testCtx(t)
	g, err := c.NewGroupConsumer("g", []string{"t"}, MaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	start := time.Now()
	if _, err := g.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	for p := range int32(parts) {
		if pos := g.Position("t", p); pos != 5 {
			t.Fatalf("partition %d at %d after the first poll, want 5", p, pos)
		}
	}
	if el > 4*delay {
		t.Fatalf("resolving %d partitions took %v; one lookup takes %v", parts, el, delay)
	}
}
