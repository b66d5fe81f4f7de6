package actors

import (
	"math"
	"strings"
	"testing"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

func stampedBatch(t testing.TB, pid int64, seq int32, values ...string) []byte {
	t.Helper()
	b := batchOf(t, values...)
	if err := storage.StampProducer(b, pid, seq); err != nil {
		t.Fatal(err)
	}
	return b
}

func produceRaw(t testing.TB, tc *testConn, topic string, batch []byte) wire.ProduceResult {
	t.Helper()
	var resp wire.ProduceResponse
	tc.call(wire.ApiProduce, &wire.ProduceRequest{Topic: topic, Acks: wire.AcksAll, Batches: []wire.PartitionBatch{{Partition: 0, Batch: batch}}}, &resp)
	if resp.Err != nil {
		t.Fatalf("produce: %v", resp.Err)
	}
	return resp.Results[0]
}

// TestIdempotentProduce sends an idempotent producer's batches again, out of order and after a
// restart: each is written once, and a copy is answered with the offset of the first.
func TestIdempotentProduce(t *testing.T) {
	dir := t.TempDir()
	n := startTestNode(t, dir, func(c *NodeConfig) { c.Log.Sync = storage.SyncAlways })
	tc := dialNode(t, n)
	createTopic(t, tc, "t", 1)
	a := stampedBatch(t, 7, 0, "a0", "a1", "a2")
	b := stampedBatch(t, 7, 3, "b0", "b1")
	expect := func(what string, res wire.ProduceResult, off int64, code wire.Code) {
		t.Helper()
		switch {
		case code == 0 && res.Err != nil:
			t.Fatalf("%s: %v", what, res.Err)
		case code != 0 && (res.Err == nil || res.Err.Code != code):
			t.Fatalf("%s: error %v, want %v", what, res.Err, code)
		case code == 0 && res.BaseOffset != off:
			t.Fatalf("%s: offset %d, want %d", what, res.BaseOffset, off)
		}
	}
	expect("first batch", produceRaw(t, tc, "t", a), 0, 0)
	expect("first batch again", produceRaw(t, tc, "t", a), 0, 0)
	expect("a gap", produceRaw(t, tc, "t", stampedBatch(t, 7, 4, "gap")), 0, wire.CodeOutOfOrderSequence)
	expect("second batch", produceRaw(t, tc, "t", b), 3, 0)
	expect("an older sequence of another size", produceRaw(t, tc, "t", stampedBatch(t, 7, 1, "x")), 0, wire.CodeDuplicateSequence)
	expect("an unknown producer not at 0", produceRaw(t, tc, "t", stampedBatch(t, 8, 1000, "x")), 0, wire.CodeUnknownProducer)
	expect("another producer starting at 0", produceRaw(t, tc, "t", stampedBatch(t, 8, 0, "c0")), 5, 0)
	expect("not idempotent", produceRaw(t, tc, "t", batchOf(t, "d0")), 6, 0)
	expect("not idempotent again", produceRaw(t, tc, "t", batchOf(t, "d0")), 7, 0)
	n.Close()

	n = startTestNode(t, dir, nil)
	defer n.Close()
	tc = dialNode(t, n)
	expect("first batch after a restart", produceRaw(t, tc, "t", a), 0, 0)
	expect("second batch after a restart", produceRaw(t, tc, "t", b), 3, 0)
	expect("third batch after a restart", produceRaw(t, tc, "t", stampedBatch(t, 7, 5, "e0")), 8, 0)
	want := "a0,a1,a2,b0,b1,c0,d0,d0,e0"
	if got := strings.Join(consumeAll(t, tc, "t", 0), ","); got != want {
		t.Fatalf("log holds %s, want %s", got, want)
	}
}

func TestProducerTable(t *testing.T) {
	hdr := func(pid int64, first int32, count uint32) storage.Header {
		return storage.Header{Kind: storage.KindRecords, ProducerID: pid, BaseSequence: first, Count: count}
	}
	var pt producerTable
	pt.applied(hdr(1, math.MaxInt32-1, 2), 100, 1) // ends at MaxInt32: the next starts at 0
	cases := []struct {
		h    storage.Header
		want seqVerdict
	}{
		{hdr(1, 0, 1), seqAppend},
		{hdr(1, math.MaxInt32-1, 2), seqDuplicate},
		{hdr(1, 1, 1), seqGap},
		{hdr(1, math.MaxInt32-5, 1), seqOld},
		{hdr(2, 12345, 1), seqUnknown},
		{hdr(2, 0, 1), seqAppend},
	}
	for _, c := range cases {
		if v, _ := pt.check(c.h); v != c.want {
			t.Errorf("check %+v = %d, want %d", c.h, v, c.want)
		}
	}
	pt.proposed(hdr(1, 0, 4))
	if v, _ := pt.check(hdr(1, 0, 4)); v != seqInFlight {
		t.Errorf("a copy of a proposed batch: %d", v)
	}
	if v, _ := pt.check(hdr(1, 4, 1)); v != seqAppend {
		t.Errorf("the batch after a proposed one: %d", v)
	}
	pt.applied(hdr(1, 0, 4), 102, 2)
	if v, base := pt.check(hdr(1, 0, 4)); v != seqDuplicate || base != 102 {
		t.Errorf("a copy of an applied batch: %d at %d", v, base)
	}
	if s := pt.m[1]; len(s.proposed) != 0 || len(s.recent) != 2 {
		t.Errorf("state %+v", s)
	}
	for i := range producerRecent + 2 {
		pt.applied(hdr(1, int32(4+i), 1), int64(106+i), uint64(3+i))
	}
	if s := pt.m[1]; len(s.recent) != producerRecent {
		t.Errorf("%d recent batches kept, want %d", len(s.recent), producerRecent)
	}
	pt.proposed(hdr(3, 0, 1))
	pt.leaderChanged()
	if _, ok := pt.m[3]; ok {
		t.Error("a producer known only by a proposal outlived the leadership")
	}
	for i := range 2*maxProducers + 1 {
		pt.applied(hdr(int64(10+i), 0, 1), int64(i), uint64(100+i))
	}
	if len(pt.m) < maxProducers || len(pt.m) > 2*maxProducers {
		t.Fatalf("%d producers kept, want %d to %d", len(pt.m), maxProducers, 2*maxProducers)
	}
	if _, ok := pt.m[1]; ok {
		t.Fatal("the producer written longest ago was kept")
	}
	if _, ok := pt.m[int64(10+2*maxProducers)]; !ok {
		t.Fatal("the newest producer was evicted")
	}
}
