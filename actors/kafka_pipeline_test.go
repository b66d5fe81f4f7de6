package actors

// Tests of the Kafka listener's pipelining: a connection is read on while earlier requests are
// in progress, within a bound, and its answers go out in request order.

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir/client"
	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/internal/topictest"
	"github.com/weirhq/weir/storage"
)

// startKafkaNodeWith is startKafkaNode with the client port's in-flight bounds, which the Kafka
// listener's connections share.
func startKafkaNodeWith(t *testing.T, topic string, partitions int32, maxInFlight, maxInFlightBytes int) *Node {
	t.Helper()
	return startKafkaNodeSet(t, topic, partitions, func(cfg *NodeConfig) {
		cfg.Server.MaxInFlight, cfg.Server.MaxInFlightBytes = maxInFlight, maxInFlightBytes
	})
}

// rvLongPoll is a fetch of partition p from offset 0 that long-polls for wait when p is empty.
func rvLongPoll(topic string, p int32, wait time.Duration) *kmsg.FetchRequest {
	fetch := kmsg.NewPtrFetchRequest()
	fetch.Version, fetch.ReplicaID, fetch.MaxWaitMillis, fetch.MinBytes, fetch.MaxBytes = 12, -1, int32(wait.Milliseconds()), 1, 1<<20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = topic
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.Partition, fp.PartitionMaxBytes, fp.CurrentLeaderEpoch, fp.LogStartOffset = p, 1<<20, -1, -1
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)
	return fetch
}

// logEnd is a partition's end offset, asked of its replica.
func logEnd(t testing.TB, n *Node, topic string, p int32) int64 {
	t.Helper()
	res := n.kafka.srv.listOffsets(&wire.ListOffsetsRequest{Topic: topic, Partition: p, Spec: wire.OffsetLatest})().(*wire.ListOffsetsResponse)
	if res.Err != nil {
		t.Fatalf("list offsets of %s/%d: %v", topic, p, res.Err)
	}
	return res.Offset
}

// TestKafkaPipelineBound: requests behind a long-polling fetch are read and carried out while
// the fetch waits, up to the connection's bound on requests in flight (MaxInFlight, at most
// kafkaMaxInFlight) and on their bytes (MaxInFlightBytes); past it the connection is not read.
// The answers go out in request order once the fetch answers. (Before pipelining, nothing behind
// the fetch was read until it answered.)
func TestKafkaPipelineBound(t *testing.T) {
	value := func(size int) []byte { return make([]byte, size) }
	produce := func(size int) []byte {
		return rvFrame(0, rvProduce("kb", -1, map[int32][]byte{0: rvBatch(0, nil, kmsg.Record{Value: value(size)})}))
	}
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(b)
		_ = zw.Close()
		return buf.Bytes()
	}
	fetchLen := len(rvFrame(0, rvLongPoll("kb", 1, time.Second))) - 4
	bigLen := len(produce(3000)) - 4 // its frame
	converted, _, err := kafkaToWeir(rvBatch(0, nil, kmsg.Record{Value: value(3000)}))
	if err != nil {
		t.Fatal(err)
	}
	bigHeld := bigLen + len(converted) // its frame and its batch, until answered
	for _, c := range []struct {
		name             string
		maxInFlight      int
		maxInFlightBytes int
		valueSize        int
		gzip             bool
		want             int64 // produces carried out while the fetch waits
	}{
		{"count bound from MaxInFlight", 4, 0, 1, false, 3},
		{"count bound of the listener", 1000, 0, 1, false, kafkaMaxInFlight - 1},
		// The fetch and two produces fit in the bytes; a third does not.
		{"bytes bound", 0, fetchLen + 2*bigHeld + bigLen/2, 3000, false, 2},
		// A request of 1 KiB whose records decompress to 1 MiB: the first one's batch fills
		// the bytes (it counted as its 1 KiB, and 15 were carried out, before).
		{"decompressed bytes bound", 0, 256 << 10, 1 << 20, true, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := startKafkaNodeWith(t, "kb", 2, c.maxInFlight, c.maxInFlightBytes)
			conn, err := net.Dial("tcp", n.KafkaAddr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			const produces = 40
			out := rvFrame(1, rvLongPoll("kb", 1, 4*time.Second)) // partition 1 stays empty
			batch := rvBatch(0, nil, kmsg.Record{Value: value(c.valueSize)})
			if c.gzip {
				batch = rvBatch(1, gz, kmsg.Record{Value: value(c.valueSize)})
			}
			for i := range produces {
				out = append(out, rvFrame(int32(2+i), rvProduce("kb", -1, map[int32][]byte{0: batch}))...)
			}
			start := time.Now()
			go func() { _, _ = conn.Write(out) }() // blocks once the node stops reading
			deadline := time.Now().Add(3 * time.Second)
			for logEnd(t, n, "kb", 0) < c.want && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond) // more would show up by now
			if got := logEnd(t, n, "kb", 0); got != c.want {
				t.Fatalf("%d produces carried out behind a long-polling fetch (after %v), want %d", got, time.Since(start), c.want)
			}
			if _, err := rvRead(t, conn, 6*time.Second, kmsg.NewPtrFetchResponse()); err != nil {
				t.Fatalf("fetch answer: %v", err)
			}
			for i := range produces {
				pr := kmsg.NewPtrProduceResponse()
				pr.Version = 7
				corr, err := rvRead(t, conn, 10*time.Second, pr)
				if err != nil {
					t.Fatalf("produce answer %d: %v", i, err)
				}
				p := pr.Topics[0].Partitions[0]
				if corr != int32(2+i) || p.ErrorCode != 0 || p.BaseOffset != int64(i) {
					t.Fatalf("answer %d: correlation id %d, error %d, offset %d; want id %d, offset %d", i, corr, p.ErrorCode, p.BaseOffset, 2+i, i)
				}
			}
		})
	}
}

// TestKafkaPipelinedIdempotentOrder: an idempotent kgo producer (which keeps up to 5 produce
// requests in flight on a connection to a broker of Kafka 1.0 or newer) with small batches
// writes 2 partitions; every record is in its
// partition once and in the order produced (a batch that reached its partition out of order
// would be refused OUT_OF_ORDER_SEQUENCE and retried, or records would be reordered).
func TestKafkaPipelinedIdempotentOrder(t *testing.T) {
	n := startKafkaNode(t, "ki", 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()), kgo.DefaultProduceTopic("ki"),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchMaxBytes(1<<10), kgo.ProducerLinger(0), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const perPartition = 5000
	errs := make(chan error, 1)
	for i := range perPartition {
		for p := range int32(2) {
			r := &kgo.Record{Partition: p, Value: []byte(fmt.Sprintf("%d-%06d", p, i))}
			cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			})
		}
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		t.Fatalf("produce: %v", err)
	default:
	}
	wc, err := client.Dial(n.ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	msgs, err := topictest.ReadAll(ctx, wc, "ki")
	if err != nil {
		t.Fatal(err)
	}
	next := map[int32]int{}
	for _, m := range msgs {
		if want := fmt.Sprintf("%d-%06d", m.Partition, next[m.Partition]); string(m.Value) != want {
			t.Fatalf("partition %d offset %d: %q, want %q", m.Partition, m.Offset, m.Value, want)
		}
		next[m.Partition]++
	}
	if next[0] != perPartition || next[1] != perPartition {
		t.Fatalf("read %d and %d records, want %d in each partition", next[0], next[1], perPartition)
	}
}

// TestKafkaPipelineCloseNoLeak: a client that closes its connection with produces and a
// long-polling fetch in flight has its connection dropped at once, not after the fetch's
// MaxWait, and every goroutine the connection started ends, also before that MaxWait.
func TestKafkaPipelineCloseNoLeak(t *testing.T) {
	n := startKafkaNode(t, "kc", 2)
	warm, err := net.Dial("tcp", n.KafkaAddr()) // the node's own goroutines started once
	if err != nil {
		t.Fatal(err)
	}
	if _, err := warm.Write(rvFrame(1, rvProduce("kc", -1, map[int32][]byte{0: rvBatch(0, nil, kmsg.Record{Value: []byte("w")})}))); err != nil {
		t.Fatal(err)
	}
	if _, err := rvRead(t, warm, 5*time.Second, kmsg.NewPtrProduceResponse()); err != nil {
		t.Fatal(err)
	}
	warm.Close()
	waitConns := func(within time.Duration) bool {
		for end := time.Now().Add(within); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			n.kafka.mu.Lock()
			open := len(n.kafka.conns)
			n.kafka.mu.Unlock()
			if open == 0 {
				return true
			}
		}
		return false
	}
	if !waitConns(2 * time.Second) {
		t.Fatal("the warm-up connection stayed open")
	}
	time.Sleep(100 * time.Millisecond)
	base := runtime.NumGoroutine()

	c, err := net.Dial("tcp", n.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	out := rvFrame(1, rvLongPoll("kc", 1, 5*time.Second))
	for i := range 5 {
		out = append(out, rvFrame(int32(2+i), rvProduce("kc", -1, map[int32][]byte{0: rvBatch(0, nil, kmsg.Record{Value: []byte(strconv.Itoa(i))})}))...)
	}
	if _, err := c.Write(out); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(time.Second); logEnd(t, n, "kc", 0) < 6 && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	c.Close()
	start := time.Now()
	if !waitConns(time.Second) {
		t.Fatalf("a closed connection with a long-polling fetch in flight still served after %v", time.Since(start))
	}
	// The fetch withdraws its parked poll, which the replica answers at once (else it waited
	// for its MaxWait, 5 s); then nothing is left.
	var now int
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if now = runtime.NumGoroutine(); now <= base {
			return
		}
	}
	buf := make([]byte, 1<<20)
	t.Fatalf("%d goroutines 2 s after the connection closed, %d before it opened\n%s", now, base, buf[:runtime.Stack(buf, true)])
}

// TestKafkaNodeCloseDuringPipeline: a node closes promptly while a Kafka connection has a
// long-polling fetch and produces in flight.
func TestKafkaNodeCloseDuringPipeline(t *testing.T) {
	n := startKafkaNode(t, "kn", 2)
	c, err := net.Dial("tcp", n.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out := rvFrame(1, rvLongPoll("kn", 1, 30*time.Second))
	for i := range 5 {
		out = append(out, rvFrame(int32(2+i), rvProduce("kn", -1, map[int32][]byte{0: rvBatch(0, nil, kmsg.Record{Value: []byte(strconv.Itoa(i))})}))...)
	}
	if _, err := c.Write(out); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(time.Second); logEnd(t, n, "kn", 0) < 5 && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	n.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("closing the node took %v with a Kafka fetch long-polling", d)
	}
}

// TestKafkaPipelinedSequences: 40 idempotent produce requests (one producer, sequences per
// partition), written on one connection before any answer is read, are all taken, each at its
// partition's next offset: they reached their partitions in the order sent.
func TestKafkaPipelinedSequences(t *testing.T) {
	n := startKafkaNode(t, "ks", 2)
	c, err := net.Dial("tcp", n.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ip := kmsg.NewPtrInitProducerIDRequest()
	ip.Version = 4
	if _, err := c.Write(rvFrame(1, ip)); err != nil {
		t.Fatal(err)
	}
	ipr := kmsg.NewPtrInitProducerIDResponse()
	ipr.Version = 4
	if _, err := rvRead(t, c, 5*time.Second, ipr); err != nil || ipr.ErrorCode != 0 {
		t.Fatalf("InitProducerId: %v, error %d", err, ipr.ErrorCode)
	}
	const produces = 40
	var out []byte
	seq := map[int32]int32{}
	for i := range produces {
		p := int32(i % 2)
		batch := rvBatch(0, nil, kmsg.Record{Value: []byte(strconv.Itoa(i))}, kmsg.Record{Value: []byte(strconv.Itoa(i))})
		// The producer's id, epoch and sequence (bytes 43-56 of the batch), then the CRC again.
		binary.BigEndian.PutUint64(batch[43:], uint64(ipr.ProducerID))
		binary.BigEndian.PutUint16(batch[51:], uint16(ipr.ProducerEpoch))
		binary.BigEndian.PutUint32(batch[53:], uint32(seq[p]))
		binary.BigEndian.PutUint32(batch[17:21], crc32.Checksum(batch[21:], castagnoliTable))
		seq[p] += 2
		out = append(out, rvFrame(int32(2+i), rvProduce("ks", -1, map[int32][]byte{p: batch}))...)
	}
	if _, err := c.Write(out); err != nil {
		t.Fatal(err)
	}
	next := map[int32]int64{}
	for i := range produces {
		pr := kmsg.NewPtrProduceResponse()
		pr.Version = 7
		corr, err := rvRead(t, c, 10*time.Second, pr)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		p := pr.Topics[0].Partitions[0]
		if corr != int32(2+i) || p.ErrorCode != 0 || p.BaseOffset != next[p.Partition] {
			t.Fatalf("answer %d: correlation id %d, partition %d error %d offset %d; want id %d, offset %d", i, corr, p.Partition, p.ErrorCode, p.BaseOffset, 2+i, next[p.Partition])
		}
		next[p.Partition] += 2
	}
}

// TestKafkaNodeCloseAfterFetch: a node closes at once right after a Kafka connection with a
// fetch just sent goes away. The fetch's read could reach its replica as the replica stopped,
// which drops it unanswered: Close then waited for the request's 30 s timeout (2 of 4 rounds).
func TestKafkaNodeCloseAfterFetch(t *testing.T) {
	for round := range 4 {
		cfg := NodeConfig{DataDir: t.TempDir(), KafkaAddr: "127.0.0.1:0"}
		cfg.Log = storage.DefaultConfig()
		cfg.Log.Sync = storage.SyncNever
		n, err := StartNode(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.CreateTopic("kf", 2); err != nil {
			n.Close()
			t.Fatal(err)
		}
		c, err := net.Dial("tcp", n.KafkaAddr())
		if err != nil {
			n.Close()
			t.Fatal(err)
		}
		pr := rvProduce("kf", -1, map[int32][]byte{0: rvBatch(0, nil, kmsg.Record{Value: []byte("x")})})
		if _, err := c.Write(append(rvFrame(1, pr), rvFrame(2, rvLongPoll("kf", 1, 4*time.Second))...)); err != nil {
			t.Fatal(err)
		}
		if _, err := rvRead(t, c, 5*time.Second, kmsg.NewPtrProduceResponse()); err != nil {
			t.Fatal(err)
		}
		c.Close()
		start := time.Now()
		n.Close()
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("round %d: closing the node took %v", round, d)
		}
	}
}

// parked is how many fetches a partition holds waiting for records.
func parked(t *testing.T, n *Node, topic string, p int32) int {
	t.Helper()
	pid, err := n.Partition(topic, p)
	if err != nil {
		t.Fatal(err)
	}
	res, err := n.rc.RequestFuture(pid, &GetStatus{}, 5*time.Second).Result()
	if err != nil {
		t.Fatal(err)
	}
	return res.(*Status).Parked
}

// TestKafkaFetchWithdrawsLeftoverPolls: a Kafka fetch of 3 idle partitions long-polls all
// three; when one gets a record the fetch answers, and the polls left in the other two are
// withdrawn at once instead of staying parked until MaxWait (each re-read its log whenever
// records arrived, for a reader that was gone).
func TestKafkaFetchWithdrawsLeftoverPolls(t *testing.T) {
	n := startKafkaNode(t, "kw", 3)
	c, err := net.Dial("tcp", n.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fetch := rvLongPoll("kw", 0, 20*time.Second)
	for p := int32(1); p < 3; p++ {
		fp := fetch.Topics[0].Partitions[0]
		fp.Partition = p
		fetch.Topics[0].Partitions = append(fetch.Topics[0].Partitions, fp)
	}
	if _, err := c.Write(rvFrame(1, fetch)); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(5 * time.Second); parked(t, n, "kw", 0)+parked(t, n, "kw", 1)+parked(t, n, "kw", 2) < 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the fetch did not park in all 3 partitions")
		}
	}
	p, err := net.Dial("tcp", n.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Write(rvFrame(1, rvProduce("kw", -1, map[int32][]byte{1: rvBatch(0, nil, kmsg.Record{Value: []byte("x")})}))); err != nil {
		t.Fatal(err)
	}
	fr := kmsg.NewPtrFetchResponse()
	fr.Version = 12
	if _, err := rvRead(t, c, 5*time.Second, fr); err != nil {
		t.Fatalf("fetch answer: %v", err)
	}
	if got := len(fr.Topics[0].Partitions[1].RecordBatches); got == 0 {
		t.Fatal("the fetch answered without partition 1's record")
	}
	for end := time.Now().Add(time.Second); ; time.Sleep(10 * time.Millisecond) {
		left := parked(t, n, "kw", 0) + parked(t, n, "kw", 2)
		if left == 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("%d polls of the answered fetch still parked 1 s later (MaxWait 20 s)", left)
		}
	}
}

// TestWithdrawFetchCrossesNodes: WithdrawFetch is registered for the wire, so a replica that
// forwarded a long poll to its leader on another node forwards the withdrawal too.
func TestWithdrawFetchCrossesNodes(t *testing.T) {
	in := &WithdrawFetch{Address: "10.0.0.1:7000", ID: "future$12", Forwarded: true}
	env, err := Wrap(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Unwrap(env)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := out.(*WithdrawFetch); !ok || *got != *in {
		t.Fatalf("round trip: %#v, want %#v", out, in)
	}
}
