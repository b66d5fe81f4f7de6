package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/client"
)

// offsetsLeader returns the index of the node whose /metrics says it leads __offsets (and so
// runs the group coordinators), or -1 unless exactly one live node says so.
func offsetsLeader(nodes []*clusterNode, http map[*clusterNode]string) (int, string) {
	found, says := -1, []string{}
	for i, cn := range nodes {
		if cn.cmd == nil {
			continue
		}
		resp, err := httpGet("http://" + http[cn] + "/metrics")
		if err != nil {
			says = append(says, fmt.Sprintf("%s: %v", cn.name, err))
			continue
		}
		if strings.Contains(resp, `weir_partition_leader{partition="0",topic="__offsets"} 1`) {
			if found >= 0 {
				return -1, "two nodes lead __offsets"
			}
			found = i
			says = append(says, cn.name+" leads")
		}
	}
	return found, strings.Join(says, "; ")
}

func httpGet(url string) (string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestClusterCoordinatorMoves SIGKILLs, for good, the node that leads __offsets and so runs the
// consumer-group coordinators, while a producer and a consumer group run: another node must
// take __offsets' leadership and the group's coordination, the group must commit again within
// seconds, and it must go on to read every acknowledged record. The leader is found from the
// nodes' weir_partition_leader metric.
func TestClusterCoordinatorMoves(t *testing.T) {
	if testing.Short() {
		t.Skip("starts weir processes")
	}
	bin := buildWeir(t)
	nodes := clusterOf(t, 3, "node")
	metrics := map[*clusterNode]string{}
	for _, cn := range nodes {
		metrics[cn] = freeAddr(t)
		cn.extra = append(cn.extra, "--http", metrics[cn])
	}
	startNodes(t, bin, nodes)
	c, err := client.Dial(clientAddrs(nodes), client.RequestTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const topic, parts = "coord", 3
	createClusterTopic(t, c, topic, parts, 3)
	l := startLoad(t, c, topic)
	cons := startGroupReader(t, clientAddrs(nodes), topic)
	defer cons.finish()
	waitFor(t, "the group reading and committing", 30*time.Second, func() (bool, string) {
		return cons.distinct() > 5000 && !cons.committedAt().IsZero(), fmt.Sprintf("%d read", cons.distinct())
	})
	victim := -1
	waitFor(t, "one node leading __offsets", 20*time.Second, func() (bool, string) {
		var says string
		victim, says = offsetsLeader(nodes, metrics)
		return victim >= 0, says
	})

	nodes[victim].kill()
	killed := time.Now()
	read := cons.distinct()
	t.Logf("killed %s, which led __offsets, with %d records read by the group", nodes[victim].name, read)
	waitFor(t, "another node leading __offsets", 20*time.Second, func() (bool, string) {
		i, says := offsetsLeader(nodes, metrics)
		return i >= 0 && i != victim, says
	})
	waitFor(t, "the group committing again", 30*time.Second, func() (bool, string) {
		return cons.committedAt().After(killed), fmt.Sprintf("last commit %v", cons.committedAt().Format("15:04:05.000"))
	})
	after := cons.committedAt().Sub(killed)
	t.Logf("first commit after the kill: %v later; %d records read by then", after.Round(time.Millisecond), cons.distinct())
	// Gossip notices the death in about a second, and __offsets elects a leader. A node that
	// asked the dead node for the coordinator used to wait out a 10 s timeout (10.4 to 11 s).
	if after > 8*time.Second {
		t.Fatalf("the group's first commit after its coordinator's node died took %v, want at most 8 s", after)
	}
	if cons.distinct() <= read {
		t.Fatalf("the group read nothing after the coordinator's node died (%d records)", read)
	}

	l.finish()
	acked := l.acknowledged()
	waitFor(t, "the group reading every acknowledged record", 60*time.Second, func() (bool, string) {
		if cons.distinct() >= acked {
			return true, ""
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		md, err := c.Metadata(ctx, topic)
		ends := fmt.Sprint(err)
		if err == nil {
			ends = fmt.Sprintf("%+v", md.Topics[0].Partitions)
		}
		return false, fmt.Sprintf("%d of %d; read up to %v; partitions %s; errors %v", cons.distinct(), acked, cons.positions(), ends, cons.errors())
	})
	// By value, not by count: every acknowledged record, whatever else was read.
	l.mu.Lock()
	cons.mu.Lock()
	missing := 0
	for i := range l.acked {
		if !cons.seen[strconv.Itoa(i)] {
			missing++
		}
	}
	cons.mu.Unlock()
	l.mu.Unlock()
	if missing > 0 {
		t.Fatalf("the group never read %d of the %d acknowledged records", missing, acked)
	}
	t.Logf("the group read all %d acknowledged records; its errors: %v", acked, cons.errors())
}
