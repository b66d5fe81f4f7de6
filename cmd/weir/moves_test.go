package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirhq/weir/client"
)

// TestClusterMovesReplicas moves replicas under load between `weir node` processes: a fourth
// node joins and receives replicas; a node is SIGKILLed for good and, after --dead-after, its
// replicas are re-created on the others from the survivors; a fifth node joins and a node is
// drained (`weir node drain`) until it holds none; a sixth node is SIGKILLed during a move onto
// it, and its replicas go elsewhere. A producer (acks=all, idempotent) and a
// consumer group run throughout. Every acknowledged record must be read back once, in
// per-key order; while the fourth node joins, neither the producer nor the consumer may see an
// error.
func TestClusterMovesReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts weir processes")
	}
	bin := buildWeir(t)
	extra := []string{"--dead-after", "4s"}
	nodes := startCluster(t, bin, 3, extra...)
	c, err := client.Dial(clientAddrs(nodes), client.RequestTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const topic, parts = "moves", 6
	createClusterTopic(t, c, topic, parts, 3)
	l := startLoad(t, c, topic)
	cons := startGroupReader(t, clientAddrs(nodes), topic)
	waitFor(t, "records acknowledged", 20*time.Second, func() (bool, string) {
		n := l.acknowledged()
		return n > 10000, fmt.Sprintf("%d acknowledged", n)
	})
	root := filepath.Dir(nodes[0].dir)
	allGossip := func() []string {
		var g []string
		for _, cn := range nodes {
			g = append(g, cn.gossip)
		}
		return g
	}

	// 1. A fourth node joins: replicas move to it (18 replicas over 4 nodes: 4 or 5 each).
	n4 := newClusterNode(t, root, "n4", allGossip(), extra)
	n4.start(t, bin)
	nodes = append(nodes, n4)
	start := time.Now()
	waitPlaced(t, c, topic, 90*time.Second, func(held map[string]int) bool { return held["n4"] >= 4 })
	t.Logf("%s n4 joined: its replicas caught up and voting after %v", time.Now().Format("15:04:05.000"), time.Since(start).Round(100*time.Millisecond))
	if errs := l.errors(); len(errs) > 0 {
		t.Errorf("the producer saw errors while n4 joined: %v", errs)
	}
	if errs := cons.errors(); len(errs) > 0 {
		t.Errorf("the consumer group saw errors while n4 joined: %v", errs)
	}

	// 2. n2 dies for good: after --dead-after its replicas are re-created on n1, n3 and n4.
	nodes[1].kill()
	start = time.Now()
	waitPlaced(t, c, topic, 90*time.Second, func(held map[string]int) bool { return held["n2"] == 0 })
	t.Logf("%s n2 killed at %s: its replicas re-created elsewhere after %v", time.Now().Format("15:04:05.000"), start.Format("15:04:05.000"), time.Since(start).Round(100*time.Millisecond))

	// 3. A fifth node joins and n1 is drained: n1 ends with no replica.
	n5 := newClusterNode(t, root, "n5", []string{nodes[2].gossip, nodes[3].gossip}, extra)
	n5.start(t, bin)
	out, err := exec.Command(bin, "--server", nodes[0].client, "node", "drain").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "draining") {
		t.Fatalf("weir node drain: %v: %s", err, out)
	}
	start = time.Now()
	waitPlaced(t, c, topic, 90*time.Second, func(held map[string]int) bool { return held["n1"] == 0 && held["n5"] > 0 })
	t.Logf("%s n1 drained (from %s) onto n5 after %v", time.Now().Format("15:04:05.000"), start.Format("15:04:05.000"), time.Since(start).Round(100*time.Millisecond))

	// 4. A sixth node joins and is SIGKILLed while a move onto it is under way (assigned, not
	// yet voting, if the poll catches it): once it is away past --dead-after, its replicas go
	// elsewhere and no partition keeps waiting for it.
	n6 := newClusterNode(t, root, "n6", []string{nodes[2].gossip, nodes[3].gossip}, extra)
	n6.start(t, bin)
	caught := false
	waitFor(t, "a move onto n6", 60*time.Second, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		md, err := c.Metadata(ctx, topic)
		cancel()
		if err != nil || len(md.Topics) != 1 {
			return false, fmt.Sprint(err)
		}
		for _, p := range md.Topics[0].Partitions {
			if slices.Contains(p.Replicas, "n6") {
				caught = caught || !slices.Contains(p.Voters, "n6")
				return true, ""
			}
		}
		return false, "no replica assigned to n6"
	})
	n6.kill()
	start = time.Now()
	waitPlaced(t, c, topic, 90*time.Second, func(held map[string]int) bool { return held["n6"] == 0 })
	t.Logf("%s n6 killed at %s during a move onto it (caught before it voted: %v): replicas placed elsewhere after %v", time.Now().Format("15:04:05.000"), start.Format("15:04:05.000"), caught, time.Since(start).Round(100*time.Millisecond))

	l.finish()
	cons.finish()
	res := l.check(c, topic, parts)
	t.Logf("moves: %v; the group consumer read %d distinct records, errors %v", res, cons.distinct(), cons.errors())
	if res.lost != 0 || res.reordered != 0 || res.dups != 0 || res.failed != 0 {
		t.Fatalf("lost %d acknowledged records, %d reordered, %d duplicated, %d failed (%v)", res.lost, res.reordered, res.dups, res.failed, l.errors())
	}
	// Moves must not stall the producer either. (One run before the review mends of b496eb5
	// went 11 s without an acknowledgement; since, 0.06 to 1.3 s in 6 runs.)
	if res.longest > 5*time.Second {
		t.Fatalf("the producer went %v without an acknowledgement, want at most 5 s", res.longest)
	}
}

// errors returns the first errors the producer's records failed with.
func (l *load) errors() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.errs)
}

// waitFor polls cond until it holds, failing the test after timeout with cond's last words.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last: %s", what, timeout, state)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitPlaced waits until every partition of topic is settled (a leader, its raft group's
// voters exactly its assigned replicas, no learner) and want holds for the count of replicas
// per node.
func waitPlaced(t *testing.T, c *client.Client, topic string, timeout time.Duration, want func(held map[string]int) bool) {
	t.Helper()
	waitFor(t, "placement", timeout, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		md, err := c.Metadata(ctx, topic)
		cancel()
		if err != nil || len(md.Topics) != 1 || md.Topics[0].Err != nil {
			return false, fmt.Sprintf("metadata: %v", err)
		}
		held := map[string]int{}
		settled := true
		var desc []string
		for _, p := range md.Topics[0].Partitions {
			for _, r := range p.Replicas {
				held[r]++
			}
			a, v := slices.Sorted(slices.Values(p.Replicas)), slices.Sorted(slices.Values(p.Voters))
			if p.Leader == "" || !slices.Equal(a, v) || len(p.Learners) > 0 {
				settled = false
			}
			desc = append(desc, fmt.Sprintf("%d: leader %q replicas %v voters %v learners %v", p.Partition, p.Leader, p.Replicas, p.Voters, p.Learners))
		}
		return settled && want(held), strings.Join(desc, "; ")
	})
}

// groupReader reads a topic in a consumer group, committing as it goes, and keeps the errors
// its polls return.
type groupReader struct {
	mu         sync.Mutex
	seen       map[string]bool
	errs       []error
	lastCommit time.Time       // of the last commit that succeeded
	next       map[int32]int64 // partition -> offset after the last record read
	stop       chan struct{}
	done       chan struct{}
}

func startGroupReader(t *testing.T, addrs, topic string) *groupReader {
	c, err := client.Dial(addrs, client.RequestTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// From the earliest offset: the group starts after the producer, and a test reading every
	// acknowledged record must not start at the end.
	g, err := c.NewGroupConsumer("movers", []string{topic}, client.ResetOffset(client.ResetEarliest))
	if err != nil {
		t.Fatal(err)
	}
	r := &groupReader{seen: map[string]bool{}, next: map[int32]int64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		defer c.Close()
		defer g.Close()
		for {
			select {
			case <-r.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			msgs, err := g.Poll(ctx)
			cancel()
			r.mu.Lock()
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				r.errs = append(r.errs, err)
			}
			for _, m := range msgs {
				r.seen[string(m.Value)] = true
				r.next[m.Partition] = max(r.next[m.Partition], m.Offset+1)
			}
			r.mu.Unlock()
			if len(msgs) > 0 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				// A commit refused because the group rebalanced (its coordinator moved with
				// __offsets' leadership, say) is expected, as in Kafka: the records are read again.
				err := g.Commit(ctx)
				r.mu.Lock()
				switch {
				case err == nil:
					r.lastCommit = time.Now()
				case !errors.Is(err, client.ErrRebalanced):
					r.errs = append(r.errs, fmt.Errorf("commit: %w", err))
				}
				r.mu.Unlock()
				cancel()
			}
		}
	}()
	return r
}

func (r *groupReader) finish() { close(r.stop); <-r.done }

func (r *groupReader) errors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.errs)
}

// positions is, per partition, the offset after the last record read.
func (r *groupReader) positions() map[int32]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.next)
}

// committedAt is when the last successful commit returned.
func (r *groupReader) committedAt() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastCommit
}

func (r *groupReader) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}
