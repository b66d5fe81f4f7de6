package main

import (
	"context"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/weirhq/weir/client"
	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// TestClusterFailoverTime measures failover, a benchmark behind `make bench-cluster`
// (WEIR_FAILOVER_KILLS=10): three `weir node` processes, a topic of 1 partition with
// replication factor 3, and a producer sending one record every millisecond with acks=all
// (retries after 10 ms, doubling up to 100 ms). Each round SIGKILLs the partition's leader and
// times from the kill to the first acknowledgement after the killed process was reaped (which
// the new leader gave), then restarts the node and waits for the group to have three voters again.
// It reports each time and the median; it fails only if a round sees no acknowledgement at all.
func TestClusterFailoverTime(t *testing.T) {
	kills, _ := strconv.Atoi(os.Getenv("WEIR_FAILOVER_KILLS"))
	if kills <= 0 {
		t.Skip("a benchmark: set WEIR_FAILOVER_KILLS (make bench-cluster)")
	}
	bin := buildWeir(t)
	nodes := startCluster(t, bin, 3)
	c, err := client.Dial(clientAddrs(nodes), client.RequestTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	createClusterTopic(t, c, "failover", 1, 3)
	p, err := c.NewProducer("failover", client.Acks(wire.AcksAll), client.Retries(1000),
		client.RetryBackoff(10*time.Millisecond, 100*time.Millisecond), client.Linger(0))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var lastAck time.Time
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			p.ProduceAsync(context.Background(), storage.Record{Value: []byte("x")}, func(_ int64, err error) {
				if err == nil {
					mu.Lock()
					lastAck = time.Now()
					mu.Unlock()
				}
			})
		}
	}()
	defer func() { close(stop); <-done; _ = p.Close() }()
	byName := map[string]*clusterNode{}
	for _, cn := range nodes {
		byName[cn.name] = cn
	}
	var times []time.Duration
	for round := 0; round < kills; round++ {
		// Wait for a settled group: a leader, three voters, acknowledgements flowing.
		var leader string
		waitFor(t, "a settled partition", 60*time.Second, func() (bool, string) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			md, err := c.Metadata(ctx, "failover")
			cancel()
			if err != nil || len(md.Topics) != 1 || len(md.Topics[0].Partitions) != 1 {
				return false, "no metadata"
			}
			pi := md.Topics[0].Partitions[0]
			mu.Lock()
			fresh := time.Since(lastAck) < 100*time.Millisecond
			mu.Unlock()
			leader = pi.Leader
			return leader != "" && len(pi.Voters) == 3 && fresh, pi.Leader + " " + strconv.Itoa(len(pi.Voters))
		})
		time.Sleep(time.Second)
		victim := byName[leader]
		killed := time.Now()
		victim.kill()
		// Acknowledgements until the process is reaped may still come from the old leader.
		dead := time.Now()
		var took time.Duration
		waitUntil := killed.Add(30 * time.Second)
		for time.Now().Before(waitUntil) {
			mu.Lock()
			at := lastAck
			mu.Unlock()
			if at.After(dead) {
				took = at.Sub(killed)
				break
			}
			time.Sleep(time.Millisecond)
		}
		if took == 0 {
			t.Fatalf("round %d: no acknowledgement within 30 s of killing the leader %s", round, leader)
		}
		times = append(times, took)
		t.Logf("round %d: killed leader %s; first acknowledgement after %v", round, leader, took.Round(time.Millisecond))
		victim.start(t, bin)
	}
	sorted := slices.Clone(times)
	slices.Sort(sorted)
	median := sorted[len(sorted)/2]
	if len(sorted)%2 == 0 {
		median = (sorted[len(sorted)/2-1] + sorted[len(sorted)/2]) / 2
	}
	t.Logf("failover over %d kills: median %v, min %v, max %v", len(times), median.Round(time.Millisecond),
		sorted[0].Round(time.Millisecond), sorted[len(sorted)-1].Round(time.Millisecond))
}
