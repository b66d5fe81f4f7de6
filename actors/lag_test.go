package actors

import (
	"testing"
	"time"

	"github.com/weirhq/weir/cluster/wire"
)

// gauge reads one sample of a gauge family in the node's registry, and whether it exists.
func gauge(t testing.TB, n *Node, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := n.Metrics().Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue next
				}
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// TestGroupLagGrowsWithoutCommits: a group's lag is measured against the high watermark when
// the metrics are read, so it grows while the group commits nothing, falls when it commits, is
// there again after a restart (from the replayed commits, before any new one), and goes away
// with the topic. Node.GroupLag says the same.
func TestGroupLagGrowsWithoutCommits(t *testing.T) {
	dir := t.TempDir()
	start := func() *Node {
		return startTestNode(t, dir, func(c *NodeConfig) {
			c.Coordinator = CoordinatorConfig{InitialDelay: 10 * time.Millisecond}
		})
	}
	n := start()
	defer func() { n.Close() }()
	tc := dialNode(t, n)
	createTopic(t, tc, "lagging", 1)
	labels := map[string]string{"group": "slow", "topic": "lagging", "partition": "0"}

	var j wire.JoinGroupResponse
	tc.call(wire.ApiJoinGroup, &wire.JoinGroupRequest{Group: "slow", Topics: []string{"lagging"}, SessionTimeoutMs: 30000}, &j)
	if j.Err != nil {
		t.Fatal(j.Err)
	}
	commit := func(off int64) {
		t.Helper()
		var cr wire.AdminResponse
		tc.call(wire.ApiCommit, &wire.CommitRequest{Group: "slow", MemberID: j.MemberID, Generation: j.Generation,
			Offsets: []wire.PartitionOffset{{Topic: "lagging", Partition: 0, Offset: off}}}, &cr)
		if cr.Err != nil {
			t.Fatal(cr.Err)
		}
	}
	lagIs := func(want float64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			got, ok := gauge(t, n, "weir_group_lag", labels)
			if ok && got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("weir_group_lag = %v (present %v), want %v", got, ok, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	commit(0)
	lagIs(0)
	produce(t, tc, "lagging", 0, wire.AcksAll, "a", "b", "c")
	lagIs(3) // no commit since: the lag grows
	produce(t, tc, "lagging", 0, wire.AcksAll, "d", "e")
	lagIs(5)
	commit(4)
	lagIs(1)
	if c, ok := gauge(t, n, "weir_group_committed_offset", labels); !ok || c != 4 {
		t.Fatalf("weir_group_committed_offset = %v (present %v), want 4", c, ok)
	}
	groupLag := func(group string, want int64) {
		t.Helper()
		if lag, err := n.GroupLag(group, "lagging"); err != nil || lag != want {
			t.Fatalf("GroupLag(%s) = %d, %v; want %d", group, lag, err, want)
		}
	}
	groupLag("slow", 1)
	groupLag("never-committed", 5)
	if _, err := n.GroupLag("slow", "no-such-topic"); err == nil {
		t.Fatal("GroupLag of a missing topic: no error")
	}

	n.Close()
	n = start()
	tc = dialNode(t, n)
	lagIs(1) // from the commits __offsets replayed
	if c, ok := gauge(t, n, "weir_group_committed_offset", labels); !ok || c != 4 {
		t.Fatalf("after a restart: weir_group_committed_offset = %v (present %v), want 4", c, ok)
	}
	groupLag("slow", 1)

	var dr wire.AdminResponse
	tc.call(wire.ApiDeleteTopic, &wire.DeleteTopicRequest{Name: "lagging"}, &dr)
	if dr.Err != nil {
		t.Fatal(dr.Err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, lag := gauge(t, n, "weir_group_lag", labels)
		_, committed := gauge(t, n, "weir_group_committed_offset", labels)
		if !lag && !committed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("group metrics of a deleted topic still reported (lag %v, committed %v)", lag, committed)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
