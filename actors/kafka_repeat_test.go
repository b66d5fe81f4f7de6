package actors

import (
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir/cluster/wire"
)

// TestKafkaRepeatedNamesBounded: requests that name a topic, partition, key or member over and
// over are served once per distinct name, so neither the work nor the answer grows much faster
// than the request. Before (allocated in the node, answer): Metadata v1 of 100,000 empty names
// 107 MB, 900 KB; Metadata v12 naming a topic of 8 partitions 10,000 times 111 MB, 2.4 MB (and
// 80,000 partition status requests); ListOffsets 22 MB (20,000 lookups); OffsetFetch 23 MB,
// 900 KB; OffsetCommit 21 MB (20,000 offsets committed); FindCoordinator 48 MB, 2.3 MB;
// CreateTopics 21 MB, 1.4 MB; LeaveGroup 12 MB (10,000 coordinator calls). After: at most
// 9 MB each, and answers no larger than the requests but for ListOffsets (1.8 times: each
// repeated partition is answered again, from its first lookup) and CreateTopics (4.8
// times: each repeated topic is answered INVALID_REQUEST, with a message).
func TestKafkaRepeatedNamesBounded(t *testing.T) {
	n := startKafkaNode(t, "rn", 8)
	c, err := net.Dial("tcp", n.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	corr := int32(0)
	// serve sends req and reads its answer's frame without decoding it; it returns the bytes
	// this process allocated meanwhile, and the answer's size.
	serve := func(req kmsg.Request) (uint64, int, int) {
		t.Helper()
		corr++
		frame := rvFrame(corr, req)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if _, err := c.Write(frame); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
		var size [4]byte
		if _, err := io.ReadFull(c, size[:]); err != nil {
			t.Fatal(err)
		}
		m := int(binary.BigEndian.Uint32(size[:]))
		if _, err := io.CopyN(io.Discard, c, int64(m)); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc, len(frame), m
	}
	str := func(s string) *string { return &s }

	md := kmsg.NewPtrMetadataRequest()
	md.Version = 1
	for range 100_000 {
		md.Topics = append(md.Topics, kmsg.MetadataRequestTopic{Topic: str("")})
	}
	md12 := kmsg.NewPtrMetadataRequest()
	md12.Version = 12
	for range 10_000 {
		md12.Topics = append(md12.Topics, kmsg.MetadataRequestTopic{Topic: str("rn")})
	}
	lo := kmsg.NewPtrListOffsetsRequest()
	lo.Version = 1
	lot := kmsg.NewListOffsetsRequestTopic()
	lot.Topic = "rn"
	for range 20_000 {
		p := kmsg.NewListOffsetsRequestTopicPartition()
		p.Timestamp = -1
		lot.Partitions = append(lot.Partitions, p)
	}
	lo.Topics = append(lo.Topics, lot)
	of := kmsg.NewPtrOffsetFetchRequest()
	of.Version, of.Group = 7, "g"
	for range 20_000 {
		of.Topics = append(of.Topics, kmsg.OffsetFetchRequestTopic{Topic: "rn", Partitions: []int32{0, 1}})
	}
	oc := kmsg.NewPtrOffsetCommitRequest()
	oc.Version, oc.Group, oc.Generation = 8, "g", -1
	oct := kmsg.NewOffsetCommitRequestTopic()
	oct.Topic = "rn"
	for i := range 20_000 {
		p := kmsg.NewOffsetCommitRequestTopicPartition()
		p.Offset = int64(i)
		oct.Partitions = append(oct.Partitions, p)
	}
	oc.Topics = append(oc.Topics, oct)
	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.Version = 4
	for range 100_000 {
		fc.CoordinatorKeys = append(fc.CoordinatorKeys, "")
	}
	ct := kmsg.NewPtrCreateTopicsRequest()
	ct.Version, ct.ValidateOnly, ct.TimeoutMillis = 5, true, 5000
	for range 5_000 {
		tt := kmsg.NewCreateTopicsRequestTopic()
		tt.Topic, tt.NumPartitions, tt.ReplicationFactor = "new", 1, 1
		ct.Topics = append(ct.Topics, tt)
	}
	lg := kmsg.NewPtrLeaveGroupRequest()
	lg.Version, lg.Group = 3, "g"
	for range 10_000 {
		lg.Members = append(lg.Members, kmsg.LeaveGroupRequestMember{MemberID: "m"})
	}
	for _, c := range []struct {
		name     string
		req      kmsg.Request
		maxAlloc uint64
		maxRatio float64 // answer bytes per request byte
	}{
		{"Metadata v1, 100,000 empty names", md, 16 << 20, 1}, // decoding the request takes 5 MB
		{"Metadata v12, one topic 10,000 times", md12, 8 << 20, 1},
		{"ListOffsets v1, one partition 20,000 times", lo, 16 << 20, 3},
		{"OffsetFetch v7, two partitions 20,000 times", of, 8 << 20, 1},
		{"OffsetCommit v8, one partition 20,000 times", oc, 8 << 20, 1},
		{"FindCoordinator v4, 100,000 empty keys", fc, 8 << 20, 1},
		{"CreateTopics v5 validate only, one topic 5,000 times", ct, 8 << 20, 5},
		{"LeaveGroup v3, one member 10,000 times", lg, 8 << 20, 1},
	} {
		start := time.Now()
		alloc, in, out := serve(c.req)
		t.Logf("%s: request %d bytes, answer %d bytes, %d KiB allocated, %v", c.name, in, out, alloc>>10, time.Since(start).Round(time.Millisecond))
		if alloc > c.maxAlloc {
			t.Errorf("%s: %d KiB allocated, want at most %d", c.name, alloc>>10, c.maxAlloc>>10)
		}
		if float64(out) > c.maxRatio*float64(in) {
			t.Errorf("%s: an answer of %d bytes to a request of %d, want at most %v times", c.name, out, in, c.maxRatio)
		}
	}
	// The commit of one partition named 20,000 times committed its last offset.
	res, e := n.ask(n.internalPID("offsets"), &FetchOffsets{Group: "g"})
	if e != nil {
		t.Fatal(e)
	}
	if fr, ok := res.(*wire.FetchCommitResponse); !ok || len(fr.Offsets) != 1 || fr.Offsets[0].Offset != 19_999 {
		t.Fatalf("committed: %+v, want offset 19999 of rn/0", res)
	}
}

// TestKafkaCommitUnknownPartition: an offset for a partition the topic does not have, or for a
// topic that does not exist, is refused (UNKNOWN_TOPIC_OR_PARTITION, as Kafka answers it) and not
// kept: __offsets kept every such offset for ever, so commits naming many partitions grew it
// without bound. As Kafka does, the request's other partitions are committed: a consumer whose
// commit names a deleted topic keeps committing its other partitions.
func TestKafkaCommitUnknownPartition(t *testing.T) {
	n := startKafkaNode(t, "cu", 2)
	oc := kmsg.NewPtrOffsetCommitRequest()
	oc.Version, oc.Group, oc.Generation = 8, "g", -1
	oct := kmsg.NewOffsetCommitRequestTopic()
	oct.Topic = "cu"
	for _, p := range []int32{1, 2, 1_000_000, -1} {
		ocp := kmsg.NewOffsetCommitRequestTopicPartition()
		ocp.Partition, ocp.Offset = p, 7
		oct.Partitions = append(oct.Partitions, ocp)
	}
	gone := kmsg.NewOffsetCommitRequestTopic()
	gone.Topic = "deleted"
	gp := kmsg.NewOffsetCommitRequestTopicPartition()
	gp.Partition, gp.Offset = 0, 7
	gone.Partitions = append(gone.Partitions, gp)
	oc.Topics = append(oc.Topics, oct, gone)
	resp := n.kafka.offsetCommit(oc)
	for _, rt := range resp.Topics {
		for _, p := range rt.Partitions {
			want := int16(kafkaUnknownTopic)
			if rt.Topic == "cu" && p.Partition == 1 {
				want = 0
			}
			if p.ErrorCode != want {
				t.Errorf("%s/%d: error %d, want %d", rt.Topic, p.Partition, p.ErrorCode, want)
			}
		}
	}
	res, e := n.ask(n.internalPID("offsets"), &FetchOffsets{Group: "g"})
	if e != nil {
		t.Fatal(e)
	}
	fr := res.(*wire.FetchCommitResponse)
	if len(fr.Offsets) != 1 || fr.Offsets[0].Topic != "cu" || fr.Offsets[0].Partition != 1 || fr.Offsets[0].Offset != 7 {
		t.Fatalf("offsets kept: %+v, want cu/1 at 7 alone", fr.Offsets)
	}
}
