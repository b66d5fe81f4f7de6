package actors

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
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

// applyBatch applies every record of an encoded batch at consecutive offsets from base.
func applyBatch(t *testing.T, s *offsetsState, base int64, b []byte) int64 {
	t.Helper()
	off := base
	if _, err := storage.DecodeBatch(b, func(_ int64, r storage.Record) error {
		if e := s.Apply(off, r); e != nil {
			return e
		}
		off++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return off
}

func commitRecord(t *testing.T, group string, offs ...wire.PartitionOffset) []byte {
	t.Helper()
	b, reply := newOffsetsState(nil, nil).Handle(&CommitOffsets{Group: group, Offsets: offs})
	if reply != nil {
		t.Fatal(reply)
	}
	return b
}

// TestCheckpointInterleaved: a checkpoint's records applied after commits made since it was
// taken do not put back older offsets, both live and when a restarted replica replays them.
func TestCheckpointInterleaved(t *testing.T) {
	s := newOffsetsState(nil, nil)
	next := applyBatch(t, s, 0, commitRecord(t, "g", wire.PartitionOffset{Topic: "t", Partition: 0, Offset: 5}))
	next = applyBatch(t, s, next, commitRecord(t, "h", wire.PartitionOffset{Topic: "t", Partition: 0, Offset: 1}))
	batches, n, err := s.Checkpoint(next)
	if err != nil || n != 2 || len(batches) != 1 {
		t.Fatalf("checkpoint: %d batches, %d records, %v", len(batches), n, err)
	}
	// A commit lands before the checkpoint's batch: g moves on to 9.
	later := commitRecord(t, "g", wire.PartitionOffset{Topic: "t", Partition: 0, Offset: 9})
	cpAt := applyBatch(t, s, next, later)
	applyBatch(t, s, cpAt, batches[0])
	check := func(s *offsetsState, what string) {
		t.Helper()
		if g, h := s.groups["g"][tp{"t", 0}].Offset, s.groups["h"][tp{"t", 0}].Offset; g != 9 || h != 1 {
			t.Fatalf("%s: g at %d, h at %d; want 9 and 1", what, g, h)
		}
	}
	check(s, "live")
	// After the log before the checkpoint was deleted, a restart replays from the later commit.
	r := newOffsetsState(nil, nil)
	applyBatch(t, r, cpAt, batches[0]) // replay as if the checkpoint came first...
	applyBatch(t, r, cpAt+1, later)    // ...or in log order: both give the same state
	check(r, "replayed")
	r = newOffsetsState(nil, nil)
	applyBatch(t, r, next, later)
	applyBatch(t, r, cpAt, batches[0])
	check(r, "replayed in log order")
}

// TestCheckpointLargeMetadata: offsets with large metadata are spread over records and batches
// instead of making one record too large to encode.
func TestCheckpointLargeMetadata(t *testing.T) {
	s := newOffsetsState(nil, nil)
	meta := bytes.Repeat([]byte("m"), 64<<10)
	var offs []wire.PartitionOffset
	for p := range int32(1024) {
		offs = append(offs, wire.PartitionOffset{Topic: "t", Partition: p, Offset: int64(p), Metadata: meta})
	}
	next := int64(0)
	for i := 0; i < len(offs); i += 100 { // commits of 100 offsets (6.4 MB each)
		next = applyBatch(t, s, next, commitRecord(t, "big", offs[i:min(i+100, len(offs))]...))
	}
	batches, n, err := s.Checkpoint(next)
	if err != nil {
		t.Fatal(err)
	}
	r := newOffsetsState(nil, nil)
	off := int64(0)
	for _, b := range batches {
		if len(b) > storage.MaxBatchSize {
			t.Fatalf("a checkpoint batch of %d bytes", len(b))
		}
		off = applyBatch(t, r, off, b)
	}
	if int(off) != n || len(r.groups["big"]) != 1024 || !bytes.Equal(r.groups["big"][tp{"t", 1023}].Metadata, meta) {
		t.Fatalf("%d records, %d offsets rebuilt", off, len(r.groups["big"]))
	}
}

// TestCheckpointConcurrentCommits: commits from many connections at once, checkpoints taken
// among them, a restart: every group's last commit is there. (Without the rule that a
// checkpoint is taken only when nothing is in flight, commits proposed before the checkpoint
// but not in it are deleted with the log before it.)
func TestCheckpointConcurrentCommits(t *testing.T) {
	dir := t.TempDir()
	cfg := func(c *NodeConfig) {
		c.Log.SegmentBytes = 4 << 10
		c.OffsetsCheckpointRecords = 100
		c.Replica.TickInterval = 2 * time.Millisecond
	}
	n := startTestNode(t, dir, cfg)
	createTopic(t, dialNode(t, n), "cp", 1)
	const workers, per, keys = 16, 400, 4
	var wg sync.WaitGroup
	for w := range workers {
		c := dialNode(t, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				var cr wire.AdminResponse
				if err := c.try(wire.ApiCommit, &wire.CommitRequest{Group: fmt.Sprintf("g-%d-%d", w, i%keys),
					Offsets: []wire.PartitionOffset{{Topic: "cp", Partition: 0, Offset: int64(i + 1)}}}, &cr); err != nil || cr.Err != nil {
					t.Errorf("commit: %v %v", err, cr.Err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if start, _ := gauge(t, n, "weir_log_start_offset", map[string]string{"topic": OffsetsTopic}); start == 0 {
		t.Fatal("no checkpoint deleted any of the log")
	}
	n.Close()
	n = startTestNode(t, dir, cfg)
	defer n.Close()
	tc := dialNode(t, n)
	lost := 0
	for w := range workers {
		for k := range keys {
			var fc wire.FetchCommitResponse
			tc.call(wire.ApiFetchCommit, &wire.FetchCommitRequest{Group: fmt.Sprintf("g-%d-%d", w, k)}, &fc)
			if len(fc.Offsets) != 1 || fc.Offsets[0].Offset != int64(per-keys+k+1) {
				lost++
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d groups lost their last commit after the restart", lost, workers*keys)
	}
}

// TestCheckpointLargerThanInFlightLimit: a checkpoint larger than the partition's in-flight
// limit is proposed a part at a time; it completes, the log before it goes, and without new
// commits the log does not grow.
func TestCheckpointLargerThanInFlightLimit(t *testing.T) {
	dir := t.TempDir()
	cfg := func(c *NodeConfig) {
		c.Log.SegmentBytes = 64 << 10
		c.OffsetsCheckpointRecords = 100
		c.Replica.TickInterval = 10 * time.Millisecond
		c.Replica.MaxPendingBytes = 600 << 10 // a little more than one 512 KiB checkpoint batch
	}
	n := startTestNode(t, dir, cfg)
	tc := dialNode(t, n)
	createTopic(t, tc, "cp", 1)
	meta := bytes.Repeat([]byte("m"), 4000)
	for i := range 1200 { // 400 groups, about 1.6 MB of state
		var cr wire.AdminResponse
		tc.call(wire.ApiCommit, &wire.CommitRequest{Group: fmt.Sprintf("g-%d", i%400),
			Offsets: []wire.PartitionOffset{{Topic: "cp", Partition: 0, Offset: int64(i), Metadata: meta}}}, &cr)
		if cr.Err != nil {
			t.Fatal(cr.Err)
		}
	}
	offsets := func() (start, end float64) {
		start, _ = gauge(t, n, "weir_log_start_offset", map[string]string{"topic": OffsetsTopic})
		end, _ = gauge(t, n, "weir_log_end_offset", map[string]string{"topic": OffsetsTopic})
		return
	}
	deadline := time.Now().Add(30 * time.Second) // generous: a loaded machine (CI runs -race)
	for {
		if start, _ := offsets(); start > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the checkpoint never completed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The log settles (a checkpoint's last parts may still be going in), then stays put for
	// many ticks without commits; a checkpoint that kept proposing itself never settles.
	_, end1 := offsets()
	for settled := time.Now(); time.Since(settled) < 300*time.Millisecond; time.Sleep(20 * time.Millisecond) {
		if _, e := offsets(); e != end1 {
			end1, settled = e, time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("__offsets kept growing without commits (end %v)", end1)
		}
	}
	time.Sleep(500 * time.Millisecond) // many ticks, no commits
	if _, end2 := offsets(); end2 != end1 {
		t.Fatalf("__offsets grew from %v to %v without commits", end1, end2)
	}
	n.Close()
	n = startTestNode(t, dir, cfg)
	defer n.Close()
	tc = dialNode(t, n)
	for g := range 400 {
		var fc wire.FetchCommitResponse
		tc.call(wire.ApiFetchCommit, &wire.FetchCommitRequest{Group: fmt.Sprintf("g-%d", g)}, &fc)
		if len(fc.Offsets) != 1 || fc.Offsets[0].Offset != int64(800+g) || !bytes.Equal(fc.Offsets[0].Metadata, meta) {
			t.Fatalf("group g-%d after a restart: %+v", g, fc.Offsets)
		}
	}
}

// TestDeleteTopicOffsets: a deletion removes every group's offsets in the topic but not flow
// sources' positions (partition -1) nor other topics'; a checkpoint taken before the deletion
// and applied after it does not bring them back; commits after it (a topic created again) stand.
func TestDeleteTopicOffsets(t *testing.T) {
	s := newOffsetsState(nil, nil)
	next := applyBatch(t, s, 0, commitRecord(t, "g",
		wire.PartitionOffset{Topic: "t", Partition: 0, Offset: 5},
		wire.PartitionOffset{Topic: "u", Partition: 0, Offset: 7}))
	next = applyBatch(t, s, next, commitRecord(t, SourceGroup("f"), wire.PartitionOffset{Topic: "t", Partition: -1, Metadata: []byte("pos")}))
	cp, _, err := s.Checkpoint(next) // holds t/0 = 5
	if err != nil {
		t.Fatal(err)
	}
	del, reply := s.Handle(&DeleteTopicOffsets{Topic: "t"})
	if reply != nil {
		t.Fatal(reply)
	}
	next = applyBatch(t, s, next, del)
	check := func(what string, wantT bool) {
		t.Helper()
		_, hasT := s.groups["g"][tp{"t", 0}]
		if hasT != wantT || s.groups["g"][tp{"u", 0}].Offset != 7 || string(s.groups[SourceGroup("f")][tp{"t", -1}].Metadata) != "pos" {
			t.Fatalf("%s: g has t/0: %v (want %v), g u/0 %d, source position %q", what, hasT, wantT,
				s.groups["g"][tp{"u", 0}].Offset, s.groups[SourceGroup("f")][tp{"t", -1}].Metadata)
		}
	}
	check("after the deletion", false)
	for _, b := range cp {
		next = applyBatch(t, s, next, b)
	}
	check("after a checkpoint taken before the deletion", false)
	applyBatch(t, s, next, commitRecord(t, "g", wire.PartitionOffset{Topic: "t", Partition: 0, Offset: 1}))
	check("after a commit to the topic created again", true)
	if s.groups["g"][tp{"t", 0}].Offset != 1 {
		t.Fatalf("g t/0 at %d after the new commit, want 1", s.groups["g"][tp{"t", 0}].Offset)
	}
	if _, reply := s.Handle(&DeleteTopicOffsets{}); reply == nil {
		t.Fatal("a deletion without a topic was accepted")
	}
}

// TestDeleteGroupOffsets: a group's deletion removes its offsets and no other group's; a
// checkpoint taken before the deletion and applied after it does not bring them back; commits
// after it (the group used again) stand.
func TestDeleteGroupOffsets(t *testing.T) {
	var forgotten []string
	s := newOffsetsState(nil, nil)
	s.forgetGroup = func(g string) { forgotten = append(forgotten, g) }
	next := applyBatch(t, s, 0, commitRecord(t, "g", wire.PartitionOffset{Topic: "t", Partition: 0, Offset: 5}))
	next = applyBatch(t, s, next, commitRecord(t, "h", wire.PartitionOffset{Topic: "t", Partition: 0, Offset: 7}))
	cp, _, err := s.Checkpoint(next)
	if err != nil {
		t.Fatal(err)
	}
	del, reply := s.Handle(&DeleteGroupOffsets{Group: "g"})
	if reply != nil {
		t.Fatal(reply)
	}
	next = applyBatch(t, s, next, del)
	check := func(what string, wantG bool) {
		t.Helper()
		_, hasG := s.groups["g"]
		if hasG != wantG || s.groups["h"][tp{"t", 0}].Offset != 7 {
			t.Fatalf("%s: g has offsets: %v (want %v), h t/0 at %d (want 7)", what, hasG, wantG, s.groups["h"][tp{"t", 0}].Offset)
		}
	}
	check("after the deletion", false)
	if len(forgotten) != 1 || forgotten[0] != "g" {
		t.Fatalf("groups forgotten: %v, want g", forgotten)
	}
	for _, b := range cp {
		next = applyBatch(t, s, next, b)
	}
	check("after a checkpoint taken before the deletion", false)
	applyBatch(t, s, next, commitRecord(t, "g", wire.PartitionOffset{Topic: "t", Partition: 0, Offset: 1}))
	check("after a commit to the group used again", true)
	if _, reply := s.Handle(&DeleteGroupOffsets{}); reply == nil {
		t.Fatal("a deletion without a group was accepted")
	}
}

// TestDeletedTopicOffsetsGone: a group's offsets in a deleted topic are gone when the topic is
// created again, and stay gone after a restart.
func TestDeletedTopicOffsetsGone(t *testing.T) {
	dir := t.TempDir()
	n := startTestNode(t, dir, nil)
	tc := dialNode(t, n)
	createTopic(t, tc, "d", 2)
	var ar wire.AdminResponse
	var jr wire.JoinGroupResponse
	tc.call(wire.ApiJoinGroup, &wire.JoinGroupRequest{Group: "g", MemberID: "m1", Topics: []string{"d"}, SessionTimeoutMs: 30000}, &jr)
	if jr.Err != nil {
		t.Fatalf("join: %v", jr.Err)
	}
	tc.call(wire.ApiCommit, &wire.CommitRequest{Group: "g", MemberID: "m1", Generation: jr.Generation,
		Offsets: []wire.PartitionOffset{{Topic: "d", Partition: 0, Offset: 3}, {Topic: "d", Partition: 1, Offset: 4}}}, &ar)
	if ar.Err != nil {
		t.Fatalf("commit: %v", ar.Err)
	}
	fetched := func() []wire.PartitionOffset {
		t.Helper()
		var fr wire.FetchCommitResponse
		tc.call(wire.ApiFetchCommit, &wire.FetchCommitRequest{Group: "g", Partitions: []wire.TopicPartitions{{Topic: "d", Partitions: []int32{0, 1}}}}, &fr)
		if fr.Err != nil {
			t.Fatal(fr.Err)
		}
		return fr.Offsets
	}
	if got := fetched(); len(got) != 2 {
		t.Fatalf("committed before the deletion: %v", got)
	}
	tc.call(wire.ApiDeleteTopic, &wire.DeleteTopicRequest{Name: "d"}, &ar)
	if ar.Err != nil {
		t.Fatal(ar.Err)
	}
	createTopic(t, tc, "d", 2)
	deadline := time.Now().Add(5 * time.Second)
	for len(fetched()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("offsets of the deleted topic still there: %v", fetched())
		}
		time.Sleep(10 * time.Millisecond)
	}
	n.Close()
	n = startTestNode(t, dir, nil)
	defer n.Close()
	tc = dialNode(t, n)
	if got := fetched(); len(got) > 0 {
		t.Fatalf("offsets of the deleted topic back after a restart: %v", got)
	}
}

// TestDeleteTopicOffsetsUnderLoad: while __offsets is kept at its in-flight limit by another
// group's commits, the deletion of a deleted topic's offsets still gets in (it is exempt from
// the limit), and the topic created again under the name starts without them (they survived
// before, refused as overloaded; found by review).
func TestDeleteTopicOffsetsUnderLoad(t *testing.T) {
	n := startTestNode(t, t.TempDir(), func(c *NodeConfig) { c.Replica.MaxPendingBytes = 1 })
	defer n.Close()
	tc := dialNode(t, n)
	createTopic(t, tc, "d", 1)
	createTopic(t, tc, "other", 1)
	var ar wire.AdminResponse
	tc.call(wire.ApiCommit, &wire.CommitRequest{Group: "g", Offsets: []wire.PartitionOffset{{Topic: "d", Partition: 0, Offset: 3}}}, &ar)
	if ar.Err != nil {
		t.Fatal(ar.Err)
	}
	// Another group commits to another topic, busily (any in-flight commit fills the limit).
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int64(0); !stop.Load(); i++ {
				n.system.Root.Send(n.childPID("offsets"), &CommitOffsets{Group: "busy", Offsets: []wire.PartitionOffset{{Topic: "other", Partition: 0, Offset: i}}})
				if i%64 == 0 {
					time.Sleep(time.Microsecond)
				}
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	tc.call(wire.ApiDeleteTopic, &wire.DeleteTopicRequest{Name: "d"}, &ar)
	if ar.Err != nil {
		t.Fatal(ar.Err)
	}
	createTopic(t, tc, "d", 1)
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	// The deletion is not waited for: it is applied shortly after, behind the busy group's
	// commits still in the offsets actor's mailbox (generous: a loaded machine, -race).
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var fr wire.FetchCommitResponse
		tc.call(wire.ApiFetchCommit, &wire.FetchCommitRequest{Group: "g", Partitions: []wire.TopicPartitions{{Topic: "d", Partitions: []int32{0}}}}, &fr)
		if len(fr.Offsets) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the deleted topic's offsets are still there for the new topic: %v", fr.Offsets)
		}
	}
}
