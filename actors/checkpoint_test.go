package actors

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/cluster/wire"
)

// TestOffsetsCheckpoint: __offsets checkpoints its state and deletes the log before it, so it
// does not grow with commits, and the state rebuilt after a restart is the last commit of
// every group.
func TestOffsetsCheckpoint(t *testing.T) {
	dir := t.TempDir()
	cfg := func(c *NodeConfig) {
		c.Log.SegmentBytes = 4 << 10
		c.OffsetsCheckpointRecords = 100
		c.Replica.TickInterval = 10 * time.Millisecond
	}
	n := startTestNode(t, dir, cfg)
	tc := dialNode(t, n)
	createTopic(t, tc, "cp", 4)
	const groups, commits = 5, 1000
	want := map[string]int64{}
	for i := range commits {
		g := fmt.Sprintf("group-%d", i%groups)
		p := int32(i % 4)
		var cr wire.AdminResponse
		tc.call(wire.ApiCommit, &wire.CommitRequest{Group: g, Offsets: []wire.PartitionOffset{{Topic: "cp", Partition: p, Offset: int64(i)}}}, &cr)
		if cr.Err != nil {
			t.Fatalf("commit %d: %v", i, cr.Err)
		}
		want[fmt.Sprintf("%s/%d", g, p)] = int64(i)
	}
	segments := func() int {
		t.Helper()
		ents, err := os.ReadDir(filepath.Join(dir, "offsets"))
		if err != nil {
			t.Fatal(err)
		}
		k := 0
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".log") {
				k++
			}
		}
		return k
	}
	// The commits wrote 1,000 records (about 60 KiB, a dozen 4 KiB segments or more); the
	// checkpoints keep the log to the last 100-odd records and a checkpoint of 20 offsets.
	var start float64
	deadline := time.Now().Add(10 * time.Second)
	for {
		start, _ = gauge(t, n, "weir_log_start_offset", map[string]string{"topic": OffsetsTopic})
		if start >= commits-200 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	segs := segments()
	t.Logf("__offsets: log start %v after %d commits, %d segments", start, commits, segs)
	if start < commits-200 {
		t.Fatalf("__offsets log start %v after %d commits: not checkpointed", start, commits)
	}
	if segs > 6 {
		t.Fatalf("__offsets keeps %d segments: the log before the checkpoint was not deleted", segs)
	}
	check := func(n *Node) {
		t.Helper()
		tc := dialNode(t, n)
		for gi := range groups {
			g := fmt.Sprintf("group-%d", gi)
			var fc wire.FetchCommitResponse
			tc.call(wire.ApiFetchCommit, &wire.FetchCommitRequest{Group: g}, &fc)
			if fc.Err != nil {
				t.Fatal(fc.Err)
			}
			got := 0
			for _, o := range fc.Offsets {
				k := fmt.Sprintf("%s/%d", g, o.Partition)
				if w, ok := want[k]; !ok || w != o.Offset {
					t.Fatalf("%s: committed %d, want %d", k, o.Offset, w)
				}
				got++
			}
			if got != 4 { // i ≡ gi (mod 5) meets every partition i mod 4
				t.Fatalf("%s: %d offsets after the restart, want 4", g, got)
			}
		}
	}
	check(n)
	n.Close()
	n = startTestNode(t, dir, cfg)
	defer n.Close()
	check(n)
}
