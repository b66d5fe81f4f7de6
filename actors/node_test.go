package actors

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// testConn is a minimal synchronous wire client for the node's tests (the real client is
// package client, which depends on this one's behaviour, not the other way round).
type testConn struct {
	t    testing.TB
	c    net.Conn
	r    *bufio.Reader
	corr uint32
}

func dialNode(t testing.TB, n *Node) *testConn {
	t.Helper()
	c, err := net.Dial("tcp", n.ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &testConn{t: t, c: c, r: bufio.NewReader(c)}
}

func (tc *testConn) call(api wire.API, req, resp any) {
	tc.t.Helper()
	if err := tc.try(api, req, resp); err != nil {
		tc.t.Fatalf("%s: %v", api, err)
	}
}

func (tc *testConn) try(api wire.API, req, resp any) error {
	body, err := wire.Encode(req)
	if err != nil {
		return err
	}
	tc.corr++
	if _, err := tc.c.Write(wire.AppendFrame(nil, api, tc.corr, body)); err != nil {
		return err
	}
	_ = tc.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	f, _, err := wire.ReadFrame(tc.r, nil, 0)
	if err != nil {
		return err
	}
	if f.Corr != tc.corr || f.API != api {
		return fmt.Errorf("response %s/%d to request %s/%d", f.API, f.Corr, api, tc.corr)
	}
	return wire.Decode(f.API, f.Body, resp)
}

func startTestNode(t testing.TB, dir string, mod func(*NodeConfig)) *Node {
	t.Helper()
	cfg := NodeConfig{DataDir: dir, ClientAddr: "127.0.0.1:0"}
	if os.Getenv("WEIR_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg.Log = storage.DefaultConfig()
	cfg.Log.Sync = storage.SyncNever
	cfg.Supervisor = SupervisorConfig{MaxRestarts: 5, Window: time.Minute, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	n, err := StartNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func createTopic(t testing.TB, tc *testConn, name string, parts int32) {
	t.Helper()
	var resp wire.AdminResponse
	tc.call(wire.ApiCreateTopic, &wire.CreateTopicRequest{Name: name, Partitions: parts, Replicas: 1}, &resp)
	if resp.Err != nil {
		t.Fatalf("create %s: %v", name, resp.Err)
	}
}

func batchOf(t testing.TB, values ...string) []byte {
	t.Helper()
	recs := make([]storage.Record, len(values))
	for i, v := range values {
		recs[i] = storage.Record{Value: []byte(v), Timestamp: 1_700_000_000_000 + int64(i)}
	}
	b, err := storage.EncodeBatch(recs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func produce(t testing.TB, tc *testConn, topic string, p int32, acks wire.Acks, values ...string) wire.ProduceResult {
	t.Helper()
	var resp wire.ProduceResponse
	tc.call(wire.ApiProduce, &wire.ProduceRequest{Topic: topic, Acks: acks, Batches: []wire.PartitionBatch{{Partition: p, Batch: batchOf(t, values...)}}}, &resp)
	if resp.Err != nil {
		t.Fatalf("produce: %v", resp.Err)
	}
	return resp.Results[0]
}

// consumeAll fetches a partition from offset 0 to its high watermark and returns the values.
func consumeAll(t testing.TB, tc *testConn, topic string, p int32) []string {
	t.Helper()
	var out []string
	for off := int64(0); ; {
		var resp wire.FetchResponse
		tc.call(wire.ApiFetch, &wire.FetchRequest{Topic: topic, Partition: p, Offset: off, MaxBytes: 1 << 20}, &resp)
		if resp.Err != nil {
			t.Fatalf("fetch %s/%d at %d: %v", topic, p, off, resp.Err)
		}
		if len(resp.Batches) == 0 {
			if off != resp.HighWatermark {
				t.Fatalf("empty fetch at %d below high watermark %d", off, resp.HighWatermark)
			}
			return out
		}
		for b := resp.Batches; len(b) > 0; {
			h, err := storage.ParseHeader(b)
			if err != nil {
				t.Fatal(err)
			}
			if h.Kind == storage.KindRecords {
				if _, err := storage.DecodeBatch(b[:h.Size()], func(o int64, r storage.Record) error {
					if o >= off {
						out = append(out, string(r.Value))
					}
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			}
			off = max(off, h.NextOffset())
			b = b[h.Size():]
		}
	}
}

func TestNodeProduceFetchAcks(t *testing.T) {
	n := startTestNode(t, t.TempDir(), nil)
	defer n.Close()
	tc := dialNode(t, n)
	createTopic(t, tc, "orders", 3)
	var want []string
	for i, acks := range []wire.Acks{wire.AcksAll, wire.AcksLeader, wire.AcksNone, wire.AcksAll} {
		vals := []string{fmt.Sprintf("v%d-a", i), fmt.Sprintf("v%d-b", i)}
		res := produce(t, tc, "orders", 1, acks, vals...)
		if res.Err != nil {
			t.Fatalf("acks %v: %v", acks, res.Err)
		}
		wantOff := int64(2 * i)
		if acks == wire.AcksNone {
			wantOff = -1
		}
		if res.BaseOffset != wantOff {
			t.Errorf("acks %v: base offset %d, want %d", acks, res.BaseOffset, wantOff)
		}
		want = append(want, vals...)
	}
	if got := consumeAll(t, tc, "orders", 1); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("consumed %v, want %v", got, want)
	}
	if got := consumeAll(t, tc, "orders", 0); len(got) != 0 {
		t.Fatalf("partition 0 holds %v", got)
	}
	var md wire.MetadataResponse
	tc.call(wire.ApiMetadata, &wire.MetadataRequest{}, &md)
	if len(md.Topics) != 1 || len(md.Topics[0].Partitions) != 3 || md.Topics[0].Partitions[1].HighWatermark != 8 || md.Topics[0].Partitions[1].Leader != "node-1" {
		t.Fatalf("metadata %+v", md)
	}
}

func TestNodeRestartKeepsTopicsAndRecords(t *testing.T) {
	dir := t.TempDir()
	n := startTestNode(t, dir, func(c *NodeConfig) { c.Log.Sync = storage.SyncAlways })
	tc := dialNode(t, n)
	createTopic(t, tc, "a", 2)
	createTopic(t, tc, "b", 1)
	produce(t, tc, "a", 0, wire.AcksAll, "x", "y")
	produce(t, tc, "b", 0, wire.AcksAll, "z")
	var del wire.AdminResponse
	tc.call(wire.ApiDeleteTopic, &wire.DeleteTopicRequest{Name: "b"}, &del)
	if del.Err != nil {
		t.Fatal(del.Err)
	}
	createTopic(t, tc, "b", 1) // a new incarnation: empty
	produce(t, tc, "b", 0, wire.AcksAll, "new-b")
	n.Close()

	n = startTestNode(t, dir, nil)
	defer n.Close()
	tc = dialNode(t, n)
	if got := n.TopicNames(); strings.Join(got, ",") != "a,b" {
		t.Fatalf("topics after restart: %v", got)
	}
	if got := consumeAll(t, tc, "a", 0); strings.Join(got, ",") != "x,y" {
		t.Fatalf("a/0 after restart: %v", got)
	}
	if got := consumeAll(t, tc, "b", 0); strings.Join(got, ",") != "new-b" {
		t.Fatalf("recreated topic b holds %v, want only what was written after it was recreated", got)
	}
	if res := produce(t, tc, "a", 0, wire.AcksAll, "w"); res.BaseOffset != 2 {
		t.Fatalf("append after restart at %d, want 2", res.BaseOffset)
	}
}

func TestNodeBadInput(t *testing.T) {
	n := startTestNode(t, t.TempDir(), nil)
	defer n.Close()
	tc := dialNode(t, n)
	createTopic(t, tc, "t", 1)

	cases := []struct {
		name string
		api  wire.API
		req  any
		code wire.Code
	}{
		{"unknown topic", wire.ApiProduce, &wire.ProduceRequest{Topic: "nope", Acks: wire.AcksAll, Batches: []wire.PartitionBatch{{Batch: batchOf(t, "x")}}}, wire.CodeUnknownTopic},
		{"unknown partition", wire.ApiProduce, &wire.ProduceRequest{Topic: "t", Acks: wire.AcksAll, Batches: []wire.PartitionBatch{{Partition: 7, Batch: batchOf(t, "x")}}}, wire.CodeUnknownPartition},
		{"corrupt batch", wire.ApiProduce, &wire.ProduceRequest{Topic: "t", Acks: wire.AcksAll, Batches: []wire.PartitionBatch{{Batch: []byte("not a batch at all")}}}, wire.CodeCorruptBatch},
		{"internal topic", wire.ApiProduce, &wire.ProduceRequest{Topic: MetaTopic, Acks: wire.AcksAll, Batches: []wire.PartitionBatch{{Batch: batchOf(t, "x")}}}, wire.CodeInvalidRequest},
		{"oversized batch", wire.ApiProduce, &wire.ProduceRequest{Topic: "t", Acks: wire.AcksAll, Batches: []wire.PartitionBatch{{Batch: make([]byte, storage.MaxBatchSize+1)}}}, wire.CodeRecordTooLarge},
		{"fetch past end", wire.ApiFetch, &wire.FetchRequest{Topic: "t", Offset: 99}, wire.CodeOffsetOutOfRange},
		{"bad topic name", wire.ApiCreateTopic, &wire.CreateTopicRequest{Name: "a/b", Partitions: 1, Replicas: 1}, wire.CodeInvalidRequest},
		{"zero partitions", wire.ApiCreateTopic, &wire.CreateTopicRequest{Name: "z", Partitions: 0, Replicas: 1}, wire.CodeInvalidRequest},
		{"too many replicas", wire.ApiCreateTopic, &wire.CreateTopicRequest{Name: "z", Partitions: 1, Replicas: 3}, wire.CodeInvalidRequest},
		{"topic exists", wire.ApiCreateTopic, &wire.CreateTopicRequest{Name: "t", Partitions: 1, Replicas: 1}, wire.CodeTopicExists},
		{"delete unknown", wire.ApiDeleteTopic, &wire.DeleteTopicRequest{Name: "nope"}, wire.CodeUnknownTopic},
		{"unknown API", wire.API(200), &wire.AdminResponse{}, wire.CodeUnsupported},
		{"malformed body", wire.ApiProduce, "a string, not a request", wire.CodeMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var resp struct {
				Results []wire.ProduceResult `msgpack:"r"`
				Err     *wire.Error          `msgpack:"e"`
			}
			tc.call(c.api, c.req, &resp)
			err := resp.Err
			if err == nil && len(resp.Results) > 0 {
				err = resp.Results[0].Err
			}
			if err == nil || err.Code != c.code {
				t.Fatalf("got error %v, want code %v", err, c.code)
			}
			if err.Msg == "" && c.code != wire.CodeUnsupported {
				t.Errorf("error %v has no message", err)
			}
		})
	}
	// A frame longer than the limit closes that connection, with an error frame first; the
	// node keeps serving others.
	bad := dialNode(t, n)
	if _, err := bad.c.Write([]byte{0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 1}); err != nil {
		t.Fatal(err)
	}
	f, _, err := wire.ReadFrame(bad.r, nil, 0)
	if err != nil || f.API != wire.ApiError {
		t.Fatalf("oversized frame: %v %v", f.API, err)
	}
	if res := produce(t, tc, "t", 0, wire.AcksAll, "still", "serving"); res.Err != nil || res.BaseOffset != 0 {
		t.Fatalf("after bad input: %+v", res)
	}
}

// TestPartitionPanicRestarts injects panics into a partition actor mid-stream: the supervisor
// restarts it, and every acknowledged record is there exactly once.
func TestPartitionPanicRestarts(t *testing.T) {
	var armed atomic.Int32
	n := startTestNode(t, t.TempDir(), func(c *NodeConfig) {
		c.Log.Sync = storage.SyncAlways
		c.Faults = func(kind, point string) {
			if kind == "partition" && (point == "ready" || point == "produce") && armed.CompareAndSwap(1, 0) {
				panic("injected fault at " + point)
			}
		}
	})
	defer n.Close()
	tc := dialNode(t, n)
	createTopic(t, tc, "p", 1)
	var acked []string
	for i := range 60 {
		if i%12 == 5 { // 5 faults: within the restart budget of startTestNode
			armed.Store(1)
		}
		v := fmt.Sprintf("r%02d", i)
		// Retry like a client does; acks=all answers only committed batches.
		for try := 0; ; try++ {
			var resp wire.ProduceResponse // fresh: msgpack leaves omitted fields as they were
			tc.call(wire.ApiProduce, &wire.ProduceRequest{Topic: "p", Acks: wire.AcksAll, TimeoutMs: 2000, Batches: []wire.PartitionBatch{{Batch: batchOf(t, v)}}}, &resp)
			if resp.Results[0].Err == nil {
				break
			}
			if !resp.Results[0].Err.Code.Retriable() || try > 50 {
				t.Fatalf("record %d: %v", i, resp.Results[0].Err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		acked = append(acked, v)
	}
	got := consumeAll(t, tc, "p", 0)
	// A panic at "ready" may strike after a batch was written but before it was answered; the
	// retry then writes it again. That is the bound on repeats without an idempotent producer:
	// the one batch in flight.
	seen := map[string]int{}
	for _, v := range got {
		seen[v]++
	}
	for _, v := range acked {
		if seen[v] == 0 {
			t.Fatalf("acknowledged record %s lost; got %v", v, got)
		}
	}
	if len(got) > len(acked)+6 {
		t.Fatalf("%d records for %d acknowledged: more repeats than the injected faults explain", len(got), len(acked))
	}
	if restarts := testutilCount(t, n, "weir_actor_restarts_total"); restarts < 1 {
		t.Fatalf("no restarts counted")
	}
}

func TestGroupAssignAndCommit(t *testing.T) {
	n := startTestNode(t, t.TempDir(), func(c *NodeConfig) {
		c.Coordinator = CoordinatorConfig{InitialDelay: 50 * time.Millisecond, RebalanceTimeout: time.Second}
	})
	defer n.Close()
	tc := dialNode(t, n)
	createTopic(t, tc, "g", 4)
	// Two members join concurrently; each gets two partitions.
	var wg sync.WaitGroup
	resps := make([]wire.JoinGroupResponse, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dialNode(t, n)
			if err := c.try(wire.ApiJoinGroup, &wire.JoinGroupRequest{Group: "grp", Topics: []string{"g"}, SessionTimeoutMs: 2000}, &resps[i]); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	owned := map[int32]string{}
	for _, r := range resps {
		if r.Err != nil {
			t.Fatalf("join: %v", r.Err)
		}
		for _, tp := range r.Assigned {
			for _, p := range tp.Partitions {
				if prev, ok := owned[p]; ok {
					t.Fatalf("partition %d owned by %s and %s", p, prev, r.MemberID)
				}
				owned[p] = r.MemberID
			}
		}
	}
	if len(owned) != 4 || resps[0].Generation != resps[1].Generation {
		t.Fatalf("assignment %v, generations %d %d", owned, resps[0].Generation, resps[1].Generation)
	}
	// Commit with the right generation works; a stale one is refused.
	// The member commits a partition it owns (which ones depends on the random member ids).
	m := resps[0]
	mine := m.Assigned[0].Partitions[0]
	var cr wire.AdminResponse
	tc.call(wire.ApiCommit, &wire.CommitRequest{Group: "grp", MemberID: m.MemberID, Generation: m.Generation, Offsets: []wire.PartitionOffset{{Topic: "g", Partition: mine, Offset: 42}}}, &cr)
	if cr.Err != nil {
		t.Fatal(cr.Err)
	}
	tc.call(wire.ApiCommit, &wire.CommitRequest{Group: "grp", MemberID: m.MemberID, Generation: m.Generation - 1, Offsets: []wire.PartitionOffset{{Topic: "g", Partition: mine, Offset: 1}}}, &cr)
	if !errors.Is(cr.Err, wire.ErrStaleGeneration) {
		t.Fatalf("stale commit: %v", cr.Err)
	}
	var fc wire.FetchCommitResponse
	tc.call(wire.ApiFetchCommit, &wire.FetchCommitRequest{Group: "grp"}, &fc)
	if len(fc.Offsets) != 1 || fc.Offsets[0].Offset != 42 {
		t.Fatalf("committed %+v", fc.Offsets)
	}
	// The second member stops heart-beating: after its session it is dropped, and the first
	// member, on rejoining, gets all four partitions.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var hb wire.AdminResponse
		tc.call(wire.ApiHeartbeat, &wire.HeartbeatRequest{Group: "grp", MemberID: m.MemberID, Generation: m.Generation}, &hb)
		if errors.Is(hb.Err, wire.ErrRebalance) {
			break
		}
		if hb.Err != nil || time.Now().After(deadline) {
			t.Fatalf("heartbeat: %v", hb.Err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var j wire.JoinGroupResponse
	tc.call(wire.ApiJoinGroup, &wire.JoinGroupRequest{Group: "grp", MemberID: m.MemberID, Topics: []string{"g"}, SessionTimeoutMs: 2000}, &j)
	if j.Err != nil || len(j.Assigned) != 1 || len(j.Assigned[0].Partitions) != 4 || j.Members != 1 {
		t.Fatalf("rejoin: %+v", j)
	}
}

func TestRangeAssign(t *testing.T) {
	cases := []struct {
		n, m int
		want string
	}{
		{4, 2, "[[0 1] [2 3]]"},
		{5, 2, "[[0 1 2] [3 4]]"},
		{2, 3, "[[0] [1] []]"},
		{0, 1, "[[]]"},
	}
	for _, c := range cases {
		if got := fmt.Sprint(RangeAssign(c.n, c.m)); got != c.want {
			t.Errorf("RangeAssign(%d, %d) = %s, want %s", c.n, c.m, got, c.want)
		}
	}
}

// produceBatches produces n batches of 10 records of about 110 bytes to partition 0 of topic.
func produceBatches(t *testing.T, tc *testConn, topic string, n int) {
	t.Helper()
	for i := range n {
		vals := make([]string, 10)
		for j := range vals {
			vals[j] = fmt.Sprintf("%04d-%02d-%s", i, j, strings.Repeat("x", 100))
		}
		produce(t, tc, topic, 0, wire.AcksAll, vals...)
	}
}

// logStart is the earliest offset of partition 0 of topic.
func logStart(t *testing.T, tc *testConn, topic string) int64 {
	t.Helper()
	var resp wire.ListOffsetsResponse
	tc.call(wire.ApiListOffsets, &wire.ListOffsetsRequest{Topic: topic, Partition: 0, Spec: wire.OffsetEarliest}, &resp)
	return resp.Offset
}

// TestRetentionDeletesOldSegments: with node-level retention, a topic's oldest segments go while
// the partition is larger than RetentionBytes; the log then starts later, reads from there on
// are whole and in order, and __meta keeps all of itself (the topic survives a restart).
func TestRetentionDeletesOldSegments(t *testing.T) {
	dir := t.TempDir()
	retain := func(c *NodeConfig) {
		c.Log.SegmentBytes = 4096
		c.Log.RetentionBytes = 16 << 10
		c.Replica.RetentionEvery = 10 * time.Millisecond
	}
	n := startTestNode(t, dir, retain)
	tc := dialNode(t, n)
	createTopic(t, tc, "r", 1)
	const batches = 100 // about 1.4 KiB each: ~35 segments of 4 KiB
	produceBatches(t, tc, "r", batches)
	var start int64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if start = logStart(t, tc, "r"); start > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("retention deleted nothing in 10 s")
		}
	}
	if start >= batches*10 || start%10 != 0 {
		t.Fatalf("log start %d after retention: want a batch boundary inside the log", start)
	}
	var hw int64
	{
		var resp wire.FetchResponse
		tc.call(wire.ApiFetch, &wire.FetchRequest{Topic: "r", Partition: 0, Offset: start, MaxBytes: 1 << 20}, &resp)
		if resp.Err != nil {
			t.Fatalf("fetch at the new log start %d: %v", start, resp.Err)
		}
		hw = resp.HighWatermark
	}
	if hw != batches*10 {
		t.Fatalf("high watermark %d, want %d", hw, batches*10)
	}
	n.Close()

	// __meta was not shortened: the topic is still there after a restart, and so are the
	// records retention kept.
	n = startTestNode(t, dir, retain)
	defer n.Close()
	tc = dialNode(t, n)
	var md wire.MetadataResponse
	tc.call(wire.ApiMetadata, &wire.MetadataRequest{Topics: []string{"r"}}, &md)
	if len(md.Topics) != 1 || md.Topics[0].Err != nil {
		t.Fatalf("topic r after a restart: %+v", md.Topics)
	}
	var resp wire.FetchResponse
	tc.call(wire.ApiFetch, &wire.FetchRequest{Topic: "r", Partition: 0, Offset: 0, MaxBytes: 1 << 20}, &resp)
	if resp.Err == nil || resp.Err.Code != wire.CodeOffsetOutOfRange {
		t.Fatalf("fetch at 0 after retention: %v, want offset out of range", resp.Err)
	}
}

// TestTopicRetentionOverridesNode: a topic's own retention (wire.TopicConfig) replaces the
// node's: tighter, unlimited, or the node's when unset; and it survives a restart.
func TestTopicRetentionOverridesNode(t *testing.T) {
	dir := t.TempDir()
	retain := func(c *NodeConfig) {
		c.Log.SegmentBytes = 4096
		c.Log.RetentionBytes = 24 << 10
		c.Replica.RetentionEvery = 10 * time.Millisecond
	}
	n := startTestNode(t, dir, retain)
	tc := dialNode(t, n)
	for name, cfg := range map[string]wire.TopicConfig{
		"dflt":  {},
		"tight": {RetentionBytes: 8 << 10},
		"keep":  {RetentionBytes: wire.RetentionUnlimited},
	} {
		var resp wire.AdminResponse
		tc.call(wire.ApiCreateTopic, &wire.CreateTopicRequest{Name: name, Partitions: 1, Replicas: 1, Config: cfg}, &resp)
		if resp.Err != nil {
			t.Fatalf("create %s: %v", name, resp.Err)
		}
		produceBatches(t, tc, name, 100)
	}
	start := func(name string) int64 { return logStart(t, tc, name) }
	deadline := time.Now().Add(10 * time.Second)
	for start("dflt") == 0 || start("tight") <= start("dflt") {
		if time.Now().After(deadline) {
			t.Fatalf("log starts: dflt %d, tight %d: want tight > dflt > 0", start("dflt"), start("tight"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // ten retention runs
	if s := start("keep"); s != 0 {
		t.Fatalf("a topic with unlimited retention starts at %d", s)
	}
	var bad wire.AdminResponse
	tc.call(wire.ApiCreateTopic, &wire.CreateTopicRequest{Name: "bad", Partitions: 1, Replicas: 1, Config: wire.TopicConfig{RetentionMs: -7}}, &bad)
	if bad.Err == nil || bad.Err.Code != wire.CodeInvalidRequest {
		t.Fatalf("create with retention -7 ms: %v", bad.Err)
	}
	n.Close()
	n = startTestNode(t, dir, retain)
	defer n.Close()
	tc = dialNode(t, n)
	var md wire.MetadataResponse
	tc.call(wire.ApiMetadata, &wire.MetadataRequest{Topics: []string{"tight", "keep"}}, &md)
	if len(md.Topics) != 2 || md.Topics[0].Config.RetentionBytes != 8<<10 || md.Topics[1].Config.RetentionBytes != wire.RetentionUnlimited {
		t.Fatalf("topic configs after a restart: %+v", md.Topics)
	}
}

// TestTopicReplicaConfig: a topic's settings over the node's in a partition's config; a tiny
// retention age does not roll a segment per append.
func TestTopicReplicaConfig(t *testing.T) {
	n := &Node{cfg: NodeConfig{Log: storage.DefaultConfig()}}
	n.cfg.Log.RetentionBytes = 1 << 30
	c := n.topicReplicaConfig(TopicMeta{Name: "t", Config: wire.TopicConfig{RetentionMs: 5, RetentionBytes: wire.RetentionUnlimited}}, 0, "/x")
	if c.Log.RetentionAge != 5*time.Millisecond || c.Log.RetentionBytes != 0 || c.RetentionEvery != defaultRetentionEvery || c.Log.SegmentAge != defaultRetentionEvery {
		t.Fatalf("age %v, bytes %d, every %v, segment age %v", c.Log.RetentionAge, c.Log.RetentionBytes, c.RetentionEvery, c.Log.SegmentAge)
	}
	c = n.topicReplicaConfig(TopicMeta{Name: "t"}, 0, "/x")
	if c.Log.RetentionBytes != 1<<30 || c.Log.RetentionAge != 0 || c.Log.SegmentAge != 0 {
		t.Fatalf("node's settings: bytes %d, age %v, segment age %v", c.Log.RetentionBytes, c.Log.RetentionAge, c.Log.SegmentAge)
	}
	// The node's check period and segment age bound the derived segment age; it never grows.
	for _, c := range []struct {
		every, nodeSegAge, retention, want time.Duration
	}{
		{10 * time.Second, 0, 5 * time.Second, 10 * time.Second},
		{time.Second, 20 * time.Second, 10 * time.Second, 10 * time.Second},
		{30 * time.Second, 30 * time.Second, 10 * time.Second, 30 * time.Second},
		{time.Second, 0, time.Hour, time.Hour},
	} {
		n.cfg.Replica.RetentionEvery, n.cfg.Log.SegmentAge = c.every, c.nodeSegAge
		got := n.topicReplicaConfig(TopicMeta{Name: "t", Config: wire.TopicConfig{RetentionMs: c.retention.Milliseconds()}}, 0, "/x").Log.SegmentAge
		if got != c.want {
			t.Errorf("check every %v, node segment age %v, topic retention %v: segment age %v, want %v", c.every, c.nodeSegAge, c.retention, got, c.want)
		}
	}
}
