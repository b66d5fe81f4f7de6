package actors

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhq/weir/cluster/wire"
)

// TestLeaderMetricClearedWhenReplicaStops: a leading replica that the supervisor gives up
// on (it failed more often than its restart budget) no longer leads anything on this node, so
// weir_partition_leader must not stay at 1 for it.
func TestLeaderMetricClearedWhenReplicaStops(t *testing.T) {
	var armed atomic.Bool
	n := startTestNode(t, t.TempDir(), func(c *NodeConfig) {
		c.Faults = func(kind, point string) {
			if kind == "partition" && point == "ready" && armed.Load() {
				panic("injected fault at " + point)
			}
		}
	})
	defer n.Close()
	tc := dialNode(t, n)
	createTopic(t, tc, "lm", 1)
	if res := produce(t, tc, "lm", 0, wire.AcksAll, "a"); res.Err != nil {
		t.Fatal(res.Err)
	}
	labels := map[string]string{"topic": "lm", "partition": "0"}
	if v, ok := gauge(t, n, "weir_partition_leader", labels); !ok || v != 1 {
		t.Fatalf("leader gauge %v (present %v) while the single replica leads, want 1", v, ok)
	}
	armed.Store(true)
	var resp wire.ProduceResponse // fails: the replica panics on its next Ready, and at every start
	_ = tc.try(wire.ApiProduce, &wire.ProduceRequest{Topic: "lm", Acks: wire.AcksAll, TimeoutMs: 500,
		Batches: []wire.PartitionBatch{{Batch: batchOf(t, "b")}}}, &resp)
	deadline := time.Now().Add(20 * time.Second)
	for {
		failed := false
		for id := range n.sup.Failed() {
			failed = failed || strings.Contains(id, "lm")
		}
		if failed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the supervisor did not give up on the partition: %v", n.sup.Failed())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if v, ok := gauge(t, n, "weir_partition_leader", labels); ok && v != 0 {
		t.Fatalf("weir_partition_leader{topic=lm,partition=0} = %v after the replica was stopped for good (given up by its supervisor); want 0 or absent", v)
	}
}
