package actors

// Tests from a review of the Kafka listener: each failed on the code before its fix and names
// the bug it guards against.

import (
	"context"
	"encoding/binary"
	"hash/crc32"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir/storage"
)

// rvFrame encodes a request frame (size, header v1 or v2, body).
func rvFrame(corr int32, req kmsg.Request) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(req.Key()))
	b = binary.BigEndian.AppendUint16(b, uint16(req.GetVersion()))
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	b = binary.BigEndian.AppendUint16(b, 0xffff)
	if req.IsFlexible() {
		b = append(b, 0)
	}
	b = req.AppendTo(b)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
}

// rvRead reads one response frame and decodes it into resp (whose version is set).
func rvRead(t *testing.T, c net.Conn, wait time.Duration, resp kmsg.Response) (int32, error) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(wait))
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		return 0, err
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(c, body); err != nil {
		return 0, err
	}
	corr := int32(binary.BigEndian.Uint32(body))
	body = body[4:]
	if resp.IsFlexible() && resp.Key() != int16(kmsg.ApiVersions) {
		body = body[1:]
	}
	if err := resp.ReadFrom(body); err != nil {
		t.Fatalf("response: %v", err)
	}
	return corr, nil
}

// rvBatch encodes records as one v2 record batch, compressed with codec (its records bytes
// given by compress).
func rvBatch(codec int16, compress func([]byte) []byte, recs ...kmsg.Record) []byte {
	rb := kmsg.RecordBatch{Magic: 2, PartitionLeaderEpoch: -1, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, Attributes: codec,
		FirstTimestamp: 1_700_000_000_000, MaxTimestamp: 1_700_000_000_000}
	var raw []byte
	for i, r := range recs {
		r.OffsetDelta = int32(i)
		body := r.AppendTo(nil)
		raw = append(raw, binary.AppendVarint(nil, int64(len(body)-1))...)
		raw = append(raw, body[1:]...)
		rb.NumRecords++
	}
	rb.LastOffsetDelta = rb.NumRecords - 1
	if compress != nil {
		raw = compress(raw)
	}
	rb.Records = raw
	batch := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(batch[8:12], uint32(len(batch)-12))
	binary.BigEndian.PutUint32(batch[17:21], crc32.Checksum(batch[21:], castagnoliTable))
	return batch
}

// rvMustProduce produces recs as one batch to partition 0 of topic over c (request corr) and
// fails t unless the partition is answered without an error.
func rvMustProduce(t *testing.T, c net.Conn, corr int32, topic string, recs ...kmsg.Record) {
	t.Helper()
	if _, err := c.Write(rvFrame(corr, rvProduce(topic, -1, map[int32][]byte{0: rvBatch(0, nil, recs...)}))); err != nil {
		t.Fatal(err)
	}
	presp := kmsg.NewPtrProduceResponse()
	presp.Version = 7
	if _, err := rvRead(t, c, 10*time.Second, presp); err != nil || presp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("produce to %s: %v %+v", topic, err, presp)
	}
}

// rvFetchOne is a fetch (v11, no wait) of partition 0 of topic from offset from, of at most
// maxBytes.
func rvFetchOne(topic string, from int64, maxBytes int32) *kmsg.FetchRequest {
	fr := kmsg.NewPtrFetchRequest()
	fr.Version, fr.MaxBytes, fr.MaxWaitMillis, fr.MinBytes = 11, maxBytes, 0, 1
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = topic
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.FetchOffset, fp.PartitionMaxBytes = from, maxBytes
	ft.Partitions = append(ft.Partitions, fp)
	fr.Topics = append(fr.Topics, ft)
	return fr
}

func rvProduce(topic string, acks int16, parts map[int32][]byte) *kmsg.ProduceRequest {
	pr := kmsg.NewPtrProduceRequest()
	pr.Version, pr.Acks, pr.TimeoutMillis = 7, acks, 5000
	pt := kmsg.NewProduceRequestTopic()
	pt.Topic = topic
	for p, b := range parts {
		pp := kmsg.NewProduceRequestTopicPartition()
		pp.Partition, pp.Records = p, b
		pt.Partitions = append(pt.Partitions, pp)
	}
	pr.Topics = append(pr.Topics, pt)
	return pr
}

// peakHeap samples HeapAlloc every millisecond until stop is called; it returns the peak.
func peakHeap() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapAlloc > peak.Load() {
				peak.Store(m.HeapAlloc)
			}
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return func() uint64 { close(done); wg.Wait(); return peak.Load() }
}

func heapNow() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// Finding: a response written while the next request was already buffered is not flushed when
// that next request is an acks=0 produce (no answer): the loop goes back to reading and the
// earlier response waits in the bufio.Writer until some later request comes.
func TestKafkaAcks0StallsPipelinedResponse(t *testing.T) {
	n := startKafkaNode(t, "r0", 1)
	c, err := net.Dial("tcp", n.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	av := kmsg.NewPtrApiVersionsRequest()
	av.Version = 0
	pr := rvProduce("r0", 0, map[int32][]byte{0: rvBatch(0, nil, kmsg.Record{Value: []byte("x")})})
	// One write: ApiVersions, then an acks=0 produce (as a client pipelines them).
	if _, err := c.Write(append(rvFrame(1, av), rvFrame(2, pr)...)); err != nil {
		t.Fatal(err)
	}
	resp := kmsg.NewPtrApiVersionsResponse()
	if _, err := rvRead(t, c, 3*time.Second, resp); err != nil {
		t.Fatalf("ApiVersions pipelined before an acks=0 produce: no answer within 3 s (%v)", err)
	}
}

// Finding: the xerial snappy path decodes each block with snappy.Decode without checking its
// claimed decoded length first: a 14-byte block that claims 4 GiB makes the node allocate 4 GiB
// (the 100 MiB bound is checked only after the block decoded).
func TestKafkaXerialSnappyClaimedLength(t *testing.T) {
	b := append([]byte{}, xerialMagic...)
	b = append(b, 0, 0, 0, 1, 0, 0, 0, 1) // version, compatible version
	block := binary.AppendUvarint(nil, 0xffffffff)
	block = append(block, 0) // not a valid element: the decode fails after the allocation
	b = binary.BigEndian.AppendUint32(b, uint32(len(block)))
	b = append(b, block...)
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	_, err := decompress(2, b)
	runtime.ReadMemStats(&m1)
	alloc := m1.TotalAlloc - m0.TotalAlloc
	t.Logf("decompress(xerial, %d bytes): err %v; allocated %d MiB", len(b), err, alloc>>20)
	if alloc > maxKafkaFrame {
		t.Errorf("a %d-byte xerial block made the node allocate %d MiB (bound: %d MiB)", len(b), alloc>>20, maxKafkaFrame>>20)
	}
}

// Finding: Produce converts every partition entry of a topic (decompressing each batch up to
// 100 MiB, each Weir batch up to 64 MiB) and keeps them all before it calls Server.produce, so
// the memory one request costs grows with its partition entries, not its size: a request of a
// few KiB holds hundreds of MiB, for a topic that does not even exist. A 100 MiB frame holds
// ~30,000 such entries.
func TestKafkaProduceDecompressionAmplification(t *testing.T) {
	n := startKafkaNode(t, "ra", 1)
	enc, _ := zstd.NewWriter(nil)
	zbatch := rvBatch(4, func(b []byte) []byte { return enc.EncodeAll(b, nil) }, kmsg.Record{Value: make([]byte, 48<<20)})
	const entries = 8
	for _, topic := range []string{"no-such-topic", "ra"} {
		produceHeld(t, n, topic, zbatch, entries)
	}
}

// produceHeld sends a produce of entries copies of zbatch to partition 0 of topic and fails if
// the heap grew by more than 384 MiB meanwhile.
func produceHeld(t *testing.T, n *Node, topic string, zbatch []byte, entries int) {
	t.Helper()
	pr := kmsg.NewPtrProduceRequest()
	pr.Version, pr.Acks, pr.TimeoutMillis = 7, 1, 5000
	pt := kmsg.NewProduceRequestTopic()
	pt.Topic = topic
	for range entries {
		pp := kmsg.NewProduceRequestTopicPartition()
		pp.Partition, pp.Records = 0, zbatch
		pt.Partitions = append(pt.Partitions, pp)
	}
	pr.Topics = append(pr.Topics, pt)
	frame := rvFrame(1, pr)
	c, err := net.Dial("tcp", n.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	base := heapNow()
	stop := peakHeap()
	if _, err := c.Write(frame); err != nil {
		t.Fatal(err)
	}
	resp := kmsg.NewPtrProduceResponse()
	resp.Version = 7
	if _, err := rvRead(t, c, 30*time.Second, resp); err != nil {
		t.Fatal(err)
	}
	peak := stop()
	grew := int64(peak) - int64(base)
	t.Logf("request of %d bytes (%d partition entries): heap grew by %d MiB; partition 0 error %d", len(frame), entries, grew>>20, resp.Topics[0].Partitions[0].ErrorCode)
	if grew > 384<<20 { // 8 entries held 8 × (48 MiB decompressed + 48 MiB re-encoded) before
		t.Errorf("a %d KiB produce request held %d MiB at once", len(frame)>>10, grew>>20)
	}
}

// Finding: Fetch sends every partition entry to its partition with its PartitionMaxBytes and
// keeps all the answers before it applies the request's MaxBytes: a fetch of a few KiB that
// names one partition 200 times, MaxBytes 1, holds 200 reads of 4 MiB at once.
func TestKafkaFetchAmplification(t *testing.T) {
	n := startKafkaNode(t, "rf", 1)
	c, err := net.Dial("tcp", n.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var recs []kmsg.Record
	for range 64 {
		recs = append(recs, kmsg.Record{Value: make([]byte, 64<<10)})
	}
	rvMustProduce(t, c, 1, "rf", recs...)
	fr := kmsg.NewPtrFetchRequest()
	fr.Version, fr.MaxBytes, fr.MaxWaitMillis, fr.MinBytes = 11, 1, 0, 1
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "rf"
	for range 200 {
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.Partition, fp.FetchOffset, fp.PartitionMaxBytes = 0, 0, 4<<20
		ft.Partitions = append(ft.Partitions, fp)
	}
	fr.Topics = append(fr.Topics, ft)
	frame := rvFrame(2, fr)
	base := heapNow()
	stop := peakHeap()
	if _, err := c.Write(frame); err != nil {
		t.Fatal(err)
	}
	resp := kmsg.NewPtrFetchResponse()
	resp.Version = 11
	if _, err := rvRead(t, c, 30*time.Second, resp); err != nil {
		t.Fatal(err)
	}
	peak := stop()
	out := 0
	for _, p := range resp.Topics[0].Partitions {
		out += len(p.RecordBatches)
	}
	grew := int64(peak) - int64(base)
	t.Logf("fetch request of %d bytes, MaxBytes 1: response %d KiB of records; heap grew by %d MiB", len(frame), out>>10, grew>>20)
	if grew > 64<<20 {
		t.Errorf("a %d-byte fetch with MaxBytes 1 held %d MiB at once", len(frame), grew>>20)
	}
}

// Finding: a partition that answers an error in the first round (here OFFSET_OUT_OF_RANGE)
// counts as "no records", so the fetch long-polls the others for MaxWait before the client
// learns of the error; Kafka answers errors at once.
func TestKafkaFetchErrorWaitsMaxWait(t *testing.T) {
	n := startKafkaNode(t, "re", 2)
	c, err := net.Dial("tcp", n.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fr := kmsg.NewPtrFetchRequest()
	fr.Version, fr.MaxBytes, fr.MaxWaitMillis, fr.MinBytes = 11, 1<<20, 3000, 1
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "re"
	for p, off := range []int64{0, 100} {
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.Partition, fp.FetchOffset, fp.PartitionMaxBytes = int32(p), off, 1<<20
		ft.Partitions = append(ft.Partitions, fp)
	}
	fr.Topics = append(fr.Topics, ft)
	start := time.Now()
	if _, err := c.Write(rvFrame(1, fr)); err != nil {
		t.Fatal(err)
	}
	resp := kmsg.NewPtrFetchResponse()
	resp.Version = 11
	if _, err := rvRead(t, c, 10*time.Second, resp); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("partition 1 error %d, answered after %v", resp.Topics[0].Partitions[1].ErrorCode, took)
	if took > time.Second {
		t.Errorf("OFFSET_OUT_OF_RANGE answered after %v (MaxWait), not at once", took)
	}
}

// TestKafkaAdvertisedAddress: a listener on every interface is refused without an advertised
// address (it advertised "::" before, so remote clients dialled themselves); with one,
// Metadata and FindCoordinator name it.
func TestKafkaAdvertisedAddress(t *testing.T) {
	cfg := NodeConfig{DataDir: t.TempDir(), KafkaAddr: "0.0.0.0:0"}
	cfg.Log = storage.DefaultConfig()
	cfg.Log.Sync = storage.SyncNever
	if _, err := StartNode(cfg); err == nil || !strings.Contains(err.Error(), "--kafka-advertise") {
		t.Fatalf("a listener on every interface without an advertised address: %v, want refused", err)
	}
	cfg.KafkaAdvertise = "kafka.example:9092"
	n, err := StartNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	c, err := net.Dial("tcp", n.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mr := kmsg.NewPtrMetadataRequest()
	mr.Version = 9
	if _, err := c.Write(rvFrame(1, mr)); err != nil {
		t.Fatal(err)
	}
	resp := kmsg.NewPtrMetadataResponse()
	resp.Version = 9
	if _, err := rvRead(t, c, 5*time.Second, resp); err != nil {
		t.Fatal(err)
	}
	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.Version, fc.CoordinatorKey = 2, "g"
	if _, err := c.Write(rvFrame(2, fc)); err != nil {
		t.Fatal(err)
	}
	fresp := kmsg.NewPtrFindCoordinatorResponse()
	fresp.Version = 2
	if _, err := rvRead(t, c, 5*time.Second, fresp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Brokers) != 1 || resp.Brokers[0].Host != "kafka.example" || resp.Brokers[0].Port != 9092 {
		t.Errorf("Metadata brokers %+v, want kafka.example:9092", resp.Brokers)
	}
	if fresp.Host != "kafka.example" || fresp.Port != 9092 {
		t.Errorf("FindCoordinator %s:%d, want kafka.example:9092", fresp.Host, fresp.Port)
	}
}

// Finding: the Kafka listener has no connection limit (NodeConfig.Server.MaxConns, which the
// client port enforces, is ignored) and no pre-authentication frame limit or read deadline: an
// unauthenticated connection may announce a 100 MiB frame, which is allocated at once and held
// while the client trickles it (Kafka bounds frames before SASL authentication at 512 KiB).
func TestKafkaUnauthenticatedResources(t *testing.T) {
	n := startKafkaNodeSet(t, "", 0, func(cfg *NodeConfig) {
		cfg.Server.MaxConns = 4
		cfg.KafkaSecurity.Users = map[string]string{"alice": "secret"}
	})
	served := 0
	var open []net.Conn
	for i := range 40 {
		c, err := net.Dial("tcp", n.KafkaAddr())
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		av := kmsg.NewPtrApiVersionsRequest()
		if _, err := c.Write(rvFrame(int32(i), av)); err != nil {
			t.Fatal(err)
		}
		if _, err := rvRead(t, c, 2*time.Second, kmsg.NewPtrApiVersionsResponse()); err == nil {
			served++
		}
	}
	t.Logf("MaxConns 4: %d of 40 concurrent connections served", served)
	if served > 4 {
		t.Errorf("MaxConns 4, yet %d connections open and served", served)
	}
	for _, c := range open {
		c.Close()
	}
	time.Sleep(200 * time.Millisecond) // the node drops them
	base := heapNow()
	for range 3 {
		c, err := net.Dial("tcp", n.KafkaAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write(binary.BigEndian.AppendUint32(nil, maxKafkaFrame)) // never authenticated
	}
	time.Sleep(300 * time.Millisecond)
	grew := int64(heapNow()) - int64(base)
	t.Logf("3 unauthenticated connections announcing 100 MiB frames: heap +%d MiB", grew>>20)
	if grew > 16<<20 {
		t.Errorf("unauthenticated connections made the node hold %d MiB", grew>>20)
	}
}

// Finding: kafkaAssignments keeps an entry per group and member id until that member sends
// LeaveGroup: members that expire, crash or are dropped stay forever (each restart of a client
// joins with a new member id).
func TestKafkaAssignmentsLeak(t *testing.T) {
	n := startKafkaNodeSet(t, "rg", 1, func(cfg *NodeConfig) {
		cfg.Coordinator.InitialDelay = 10 * time.Millisecond
		cfg.Coordinator.MinSessionTimeout = 100 * time.Millisecond
		cfg.Coordinator.TickInterval = 20 * time.Millisecond
	})
	meta := kmsg.ConsumerMemberMetadata{Topics: []string{"rg"}}
	const joins = 10
	for range joins {
		jr := kmsg.NewPtrJoinGroupRequest()
		jr.Version, jr.Group, jr.ProtocolType, jr.SessionTimeoutMillis = 5, "g", "consumer", 100
		jr.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: meta.AppendTo(nil)}}
		if r := n.kafka.joinGroup(jr, "", ""); r.ErrorCode != 0 {
			t.Fatalf("join: %d", r.ErrorCode)
		}
		time.Sleep(300 * time.Millisecond) // the member crashes: its session expires
	}
	n.kafka.assigned.mu.Lock()
	kept := len(n.kafka.assigned.m)
	n.kafka.assigned.mu.Unlock()
	t.Logf("%d members joined and expired: %d assignments kept", joins, kept)
	if kept > 1 {
		t.Errorf("%d assignments kept for members that are gone", kept)
	}
}

// Check (expected to pass): a tombstone (null value) and a null key survive kgo -> Weir -> kgo.
func TestKafkaTombstoneRoundTrip(t *testing.T) {
	n := startKafkaNode(t, "rt", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()), kgo.DefaultProduceTopic("rt"),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"rt": {0: kgo.NewOffset().AtStart()}}), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte("k"), Value: nil}, &kgo.Record{Key: nil, Value: []byte{}}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var got []*kgo.Record
	for len(got) < 2 && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		got = append(got, fs.Records()...)
	}
	if len(got) != 2 || got[0].Value != nil || got[1].Key != nil || got[1].Value == nil {
		t.Errorf("null value / null key / empty value read back as %q %q / %q %q", got[0].Key, got[0].Value, got[1].Key, got[1].Value)
	}
}

// Finding: Weir ignores producer epochs, but kgo (and the Java client, KIP-360) recover from a
// produce error by bumping the epoch locally, keeping the producer id and numbering every
// partition from sequence 0 again. Weir then takes the new epoch's batches for old ones: a
// batch at sequence 0 is answered with an old offset, or DUPLICATE_SEQUENCE_NUMBER, which kgo
// treats as written. Here an UNKNOWN_PRODUCER_ID on one topic (deleted and created again) makes
// kgo bump its epoch, and the next records it produces to another topic are acknowledged and
// never written.
func TestKafkaEpochBumpLosesRecords(t *testing.T) {
	n := startKafkaNode(t, "va", 1)
	if err := n.CreateTopic("vb", 1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	produce := func(topic, v string) {
		t.Helper()
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatalf("produce to %s: %v", topic, err)
		}
	}
	for i := range 10 {
		produce("va", "a"+string(rune('0'+i)))
	}
	produce("vb", "b0")
	if err := n.DeleteTopic("vb"); err != nil {
		t.Fatal(err)
	}
	if err := n.CreateTopic("vb", 1); err != nil {
		t.Fatal(err)
	}
	produce("vb", "b1") // UNKNOWN_PRODUCER_ID (sequence 1 on a new partition): kgo bumps its epoch
	for i := range 5 {
		produce("va", "after"+string(rune('0'+i))) // acknowledged
	}
	lo := kmsg.NewPtrListOffsetsRequest()
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = "va"
	lp := kmsg.NewListOffsetsRequestTopicPartition()
	lp.Partition, lp.Timestamp = 0, -1
	lt.Partitions = append(lt.Partitions, lp)
	lo.Topics = append(lo.Topics, lt)
	res, err := lo.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	end := res.Topics[0].Partitions[0].Offset
	t.Logf("15 records acknowledged to va; its end offset is %d", end)
	if end != 15 {
		t.Errorf("%d of 15 acknowledged records are in topic va", end)
	}
}

// Finding: ListOffsets by timestamp answers Timestamp -1 with the offset found (Java's
// offsetsForTimes builds an OffsetAndTimestamp from them, whose constructor throws "Invalid
// negative timestamp"), and answers the high watermark instead of -1 when no record is at or
// after the timestamp (Kafka: offset -1, timestamp -1, which clients read as "none").
func TestKafkaListOffsetsByTime(t *testing.T) {
	n := startKafkaNode(t, "rlo", 1)
	c, err := net.Dial("tcp", n.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Two records, at 1_700_000_000_000 and 1_700_000_001_000.
	rvMustProduce(t, c, 1, "rlo", kmsg.Record{Value: []byte("a")}, kmsg.Record{Value: []byte("b"), TimestampDelta64: 1000})
	for i, ts := range []int64{1_700_000_000_500, 1_700_000_009_000} {
		lo := kmsg.NewPtrListOffsetsRequest()
		lo.Version = 5
		lt := kmsg.NewListOffsetsRequestTopic()
		lt.Topic = "rlo"
		lp := kmsg.NewListOffsetsRequestTopicPartition()
		lp.Partition, lp.Timestamp = 0, ts
		lt.Partitions = append(lt.Partitions, lp)
		lo.Topics = append(lo.Topics, lt)
		if _, err := c.Write(rvFrame(int32(2+i), lo)); err != nil {
			t.Fatal(err)
		}
		resp := kmsg.NewPtrListOffsetsResponse()
		resp.Version = 5
		if _, err := rvRead(t, c, 5*time.Second, resp); err != nil {
			t.Fatal(err)
		}
		p := resp.Topics[0].Partitions[0]
		t.Logf("ListOffsets at %d: offset %d timestamp %d error %d", ts, p.Offset, p.Timestamp, p.ErrorCode)
		switch i {
		case 0:
			if p.Offset != 1 || p.Timestamp != 1_700_000_001_000 {
				t.Errorf("want offset 1 at timestamp 1700000001000 (Kafka), got offset %d timestamp %d", p.Offset, p.Timestamp)
			}
		case 1:
			if p.Offset != -1 || p.Timestamp != -1 {
				t.Errorf("no record at or after %d: want offset -1 timestamp -1 (Kafka), got offset %d timestamp %d", ts, p.Offset, p.Timestamp)
			}
		}
	}
}

// Finding: an acks=0 produce that fails (here: the topic does not exist) is dropped without a
// trace for the client; Kafka closes the connection so that the producer notices and refreshes
// its metadata.
func TestKafkaAcks0ErrorKeepsConnection(t *testing.T) {
	n := startKafkaNode(t, "rz", 1)
	c, err := net.Dial("tcp", n.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(rvFrame(1, rvProduce("no-such-topic", 0, map[int32][]byte{0: rvBatch(0, nil, kmsg.Record{Value: []byte("x")})}))); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = c.Read(make([]byte, 1))
	t.Logf("after a failed acks=0 produce: read %v", err)
	if err != io.EOF {
		t.Errorf("the connection stayed open after a failed acks=0 produce (Kafka closes it)")
	}
}

// Finding (docs vs code): docs/kafka.md says a cooperative-sticky client that keeps a partition
// after a rebalance has "its commits for the partition refused"; the coordinator checks
// ownership only while a rebalance is in progress, so once it completed, a member's commit for
// a partition now owned by another member is taken (at the current generation). kgo's default
// balancer is cooperative-sticky only, so this is the default kgo group consumer.
func TestKafkaCommitByFormerOwner(t *testing.T) {
	n := startKafkaNode(t, "ro", 4)
	meta := kmsg.ConsumerMemberMetadata{Topics: []string{"ro"}}
	join := func(id string) *kmsg.JoinGroupResponse {
		jr := kmsg.NewPtrJoinGroupRequest()
		jr.Version, jr.Group, jr.MemberID, jr.ProtocolType, jr.SessionTimeoutMillis = 5, "g", id, "consumer", 30000
		jr.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "cooperative-sticky", Metadata: meta.AppendTo(nil)}}
		return n.kafka.joinGroup(jr, "", "")
	}
	a := join("")
	if a.ErrorCode != 0 {
		t.Fatalf("join a: %d", a.ErrorCode)
	}
	bc := make(chan *kmsg.JoinGroupResponse)
	go func() { bc <- join("") }()
	time.Sleep(100 * time.Millisecond)
	a = join(a.MemberID)
	b := <-bc
	if a.ErrorCode != 0 || b.ErrorCode != 0 || a.Generation != b.Generation {
		t.Fatalf("rejoin: %d %d gen %d %d", a.ErrorCode, b.ErrorCode, a.Generation, b.Generation)
	}
	n.kafka.assigned.mu.Lock()
	bParts := n.kafka.assigned.m["g\x00"+b.MemberID].parts
	n.kafka.assigned.mu.Unlock()
	p := bParts[0].Partitions[0]
	oc := kmsg.NewPtrOffsetCommitRequest()
	oc.Version, oc.Group, oc.Generation, oc.MemberID = 7, "g", a.Generation, a.MemberID
	ot := kmsg.NewOffsetCommitRequestTopic()
	ot.Topic = "ro"
	op := kmsg.NewOffsetCommitRequestTopicPartition()
	op.Partition, op.Offset = p, 0
	ot.Partitions = append(ot.Partitions, op)
	oc.Topics = append(oc.Topics, ot)
	code := n.kafka.offsetCommit(oc).Topics[0].Partitions[0].ErrorCode
	t.Logf("member a commits partition %d, owned by b at generation %d: error %d", p, a.Generation, code)
	if code == 0 {
		t.Errorf("a commit for a partition the member does not own was taken")
	}
}

// Check (expected to pass): fetched batches have valid lengths and CRC32C (kafkaToWeir reads
// them back), start at the first record at or after the fetch offset, and carry LastOffsetDelta,
// MaxTimestamp, keys, values and headers.
func TestKafkaFetchBatchesRoundTrip(t *testing.T) {
	n := startKafkaNode(t, "rr", 1)
	c, err := net.Dial("tcp", n.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for b := range 3 {
		var recs []kmsg.Record
		for i := range 4 {
			recs = append(recs, kmsg.Record{Key: []byte{byte(b), byte(i)}, Value: []byte("v"), TimestampDelta64: int64(10*b + i), Headers: []kmsg.Header{{Key: "h", Value: []byte("x")}}})
		}
		rvMustProduce(t, c, int32(b), "rr", recs...)
	}
	if _, err := c.Write(rvFrame(9, rvFetchOne("rr", 5, 1<<20))); err != nil {
		t.Fatal(err)
	}
	resp := kmsg.NewPtrFetchResponse()
	resp.Version = 11
	if _, err := rvRead(t, c, 5*time.Second, resp); err != nil {
		t.Fatal(err)
	}
	rp := resp.Topics[0].Partitions[0]
	t.Logf("HW %d LSO %d LogStart %d", rp.HighWatermark, rp.LastStableOffset, rp.LogStartOffset)
	if _, _, err := kafkaToWeir(rp.RecordBatches); err != nil {
		t.Fatalf("fetched batches do not read back: %v", err)
	}
	data := rp.RecordBatches
	var firsts []int64
	for len(data) > 0 {
		var rb kmsg.RecordBatch
		size := 12 + int(binary.BigEndian.Uint32(data[8:12]))
		if err := rb.ReadFrom(data[:size]); err != nil {
			t.Fatal(err)
		}
		data = data[size:]
		firsts = append(firsts, rb.FirstOffset)
		if int(rb.LastOffsetDelta) != int(rb.NumRecords)-1 || rb.MaxTimestamp != rb.FirstTimestamp+int64(rb.NumRecords)-1 {
			t.Errorf("batch at %d: %d records, LastOffsetDelta %d, timestamps %d..%d", rb.FirstOffset, rb.NumRecords, rb.LastOffsetDelta, rb.FirstTimestamp, rb.MaxTimestamp)
		}
	}
	if len(firsts) != 2 || firsts[0] != 5 || firsts[1] != 8 {
		t.Errorf("batches start at %v, want [5 8]", firsts)
	}
}
