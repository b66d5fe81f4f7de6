package actors

import (
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// rpFill writes about 6 MiB to partition 0 of topic through the Kafka port (acks=1).
func rpFill(t *testing.T, n *Node, topic string) {
	t.Helper()
	c, err := net.Dial("tcp", n.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 12 {
		if _, err := c.Write(rvFrame(int32(i), rvProduce(topic, 1, map[int32][]byte{0: rvBatch(0, nil, kmsg.Record{Value: make([]byte, 512<<10)})}))); err != nil {
			t.Fatal(err)
		}
		pr := kmsg.NewPtrProduceResponse()
		pr.Version = 7
		if _, err := rvRead(t, c, 10*time.Second, pr); err != nil || pr.Topics[0].Partitions[0].ErrorCode != 0 {
			t.Fatalf("fill: %v %+v", err, pr)
		}
	}
}

// rpBigFetch is a fetch of partition 0 from offset 0 answering up to 4 MiB.
func rpBigFetch(topic string) *kmsg.FetchRequest {
	f := rvLongPoll(topic, 0, 0)
	f.MaxBytes, f.Topics[0].Partitions[0].PartitionMaxBytes = 4<<20, 4<<20
	return f
}

func rpConnsOpen(n *Node) int {
	n.kafka.mu.Lock()
	defer n.kafka.mu.Unlock()
	return len(n.kafka.conns)
}

func rpWaitClosed(t *testing.T, n *Node, within time.Duration) {
	t.Helper()
	for end := time.Now().Add(within); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if rpConnsOpen(n) == 0 {
			return
		}
	}
	t.Fatalf("%d Kafka connections still served %v later", rpConnsOpen(n), within)
}

// TestKafkaClientNotReadingIsClosed: a client that pipelines requests with large answers and
// never reads them has its connection closed once no answer byte was taken for
// kafkaWriteTimeout. Before, the writer blocked on the full socket forever, the reader waited
// for in-flight slots that were never released (its idle timeout never fired), and the
// connection and its goroutines stayed until the node closed.
func TestKafkaClientNotReadingIsClosed(t *testing.T) {
	old := kafkaWriteTimeout
	kafkaWriteTimeout = time.Second
	t.Cleanup(func() { kafkaWriteTimeout = old }) // after the node closed
	n := startKafkaNode(t, "kr", 1)
	rpFill(t, n, "kr")
	c, err := net.DialTCP("tcp", nil, n.kafka.ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadBuffer(4 << 10)
	var out []byte
	for i := range 40 {
		out = append(out, rvFrame(int32(i), rpBigFetch("kr"))...)
	}
	if _, err := c.Write(out); err != nil {
		t.Fatal(err)
	}
	rpWaitClosed(t, n, 5*time.Second)
}

// TestKafkaClientHalfCloseNotReading: a client that sends a few requests with large answers,
// shuts its sending side and reads nothing has its connection closed at once (the reader's EOF
// means the answers are not wanted), not when a write times out.
func TestKafkaClientHalfCloseNotReading(t *testing.T) {
	n := startKafkaNode(t, "kh", 1)
	rpFill(t, n, "kh")
	c, err := net.DialTCP("tcp", nil, n.kafka.ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadBuffer(4 << 10)
	var out []byte
	for i := range 10 {
		out = append(out, rvFrame(int32(i), rpBigFetch("kh"))...)
	}
	if _, err := c.Write(out); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the writer is stuck on the full socket by now
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	rpWaitClosed(t, n, 3*time.Second)
}

// TestKafkaPipelinedFetchesHoldOneAnswer: 15 fetches of 8 MiB pipelined behind a long poll read
// one after the other, each once the one before it was answered, so the connection holds about
// one answer at a time. Before, all 15 read at once and their answers (some 130 MiB here, 15
// times a fetch's MaxBytes in general, none of it counted in MaxInFlightBytes) waited behind the
// long poll.
func TestKafkaPipelinedFetchesHoldOneAnswer(t *testing.T) {
	n := startKafkaNode(t, "km", 2)
	rpFill(t, n, "km")
	c, err := net.Dial("tcp", n.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before := heapNow()
	stop := peakHeap()
	out := rvFrame(0, rvLongPoll("km", 1, 2*time.Second)) // partition 1 stays empty
	for i := range 15 {
		f := rpBigFetch("km")
		f.MaxBytes, f.Topics[0].Partitions[0].PartitionMaxBytes = 8<<20, 8<<20
		out = append(out, rvFrame(int32(i+1), f)...)
	}
	if _, err := c.Write(out); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the long poll waits on
	peak := stop()
	grew := int64(peak) - int64(before)
	t.Logf("heap grew by %d MiB", grew>>20)
	if grew > 48<<20 {
		t.Fatalf("the heap grew by %d MiB while 15 fetches waited behind a long poll, want under 48 MiB", grew>>20)
	}
	for i := range 16 { // the answers, in order
		fr := kmsg.NewPtrFetchResponse()
		fr.Version = 12
		corr, err := rvRead(t, c, 10*time.Second, fr)
		if err != nil || corr != int32(i) {
			t.Fatalf("answer %d: correlation id %d, %v", i, corr, err)
		}
		if recs := len(fr.Topics[0].Partitions[0].RecordBatches); i > 0 && recs < 1<<20 {
			t.Fatalf("answer %d: %d bytes of records", i, recs)
		}
	}
}

// TestKafkaSASLPipelined: requests pipelined behind SASL authentication are read only once it
// is decided: behind a failed one they are never carried out (the connection closes after its
// answer), behind a successful one they are served; one sent ahead of it closes the connection
// unserved.
func TestKafkaSASLPipelined(t *testing.T) {
	n := startKafkaNodeSet(t, "ka", 1, func(cfg *NodeConfig) { cfg.KafkaSecurity.Users = map[string]string{"alice": "secret"} })
	produce := rvFrame(3, rvProduce("ka", 1, map[int32][]byte{0: rvBatch(0, nil, kmsg.Record{Value: []byte("x")})}))
	auth := func(pass string) []byte {
		hs := kmsg.NewPtrSASLHandshakeRequest()
		hs.Version, hs.Mechanism = 1, "PLAIN"
		au := kmsg.NewPtrSASLAuthenticateRequest()
		au.Version, au.SASLAuthBytes = 1, []byte("\x00alice\x00"+pass)
		return append(rvFrame(1, hs), rvFrame(2, au)...)
	}
	for _, c := range []struct {
		name  string
		out   []byte
		reads int   // answers expected before the connection closes
		end   int64 // partition 0's end offset after
	}{
		{"ahead of authentication", append(produce, auth("secret")...), 0, 0},
		{"behind a failed authentication", append(auth("wrong"), produce...), 2, 0},
		{"behind a successful authentication", append(auth("secret"), produce...), 3, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", n.KafkaAddr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write(c.out); err != nil {
				t.Fatal(err)
			}
			resps := []kmsg.Response{kmsg.NewPtrSASLHandshakeResponse(), kmsg.NewPtrSASLAuthenticateResponse(), kmsg.NewPtrProduceResponse()}
			resps[0].SetVersion(1)
			resps[1].SetVersion(1)
			resps[2].SetVersion(7)
			for i := range c.reads {
				if _, err := rvRead(t, conn, 5*time.Second, resps[i]); err != nil {
					t.Fatalf("answer %d: %v", i, err)
				}
			}
			var one [1]byte
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if c.reads < 3 {
				if k, err := conn.Read(one[:]); err == nil {
					t.Fatalf("%d more bytes, want the connection closed", k)
				}
			}
			if got := logEnd(t, n, "ka", 0); got != c.end {
				t.Fatalf("partition end %d, want %d", got, c.end)
			}
		})
	}
}

// TestKafkaPipelinedReadsSeeEarlierProduces: a ListOffsets or a Fetch pipelined behind an
// acks=all produce on the same connection sees its record, as with Kafka, which serves a
// connection's requests one at a time. Before, both were served as soon as read, while the
// produce was being committed: 19 of 20 ListOffsets answered the end before the record.
func TestKafkaPipelinedReadsSeeEarlierProduces(t *testing.T) {
	n := startKafkaNode(t, "ry", 1)
	c, err := net.Dial("tcp", n.KafkaAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 20 {
		lo := kmsg.NewPtrListOffsetsRequest()
		lo.Version = 4
		lt := kmsg.NewListOffsetsRequestTopic()
		lt.Topic = "ry"
		lp := kmsg.NewListOffsetsRequestTopicPartition()
		lp.Partition, lp.Timestamp = 0, -1
		lt.Partitions = append(lt.Partitions, lp)
		lo.Topics = append(lo.Topics, lt)
		fetch := rvLongPoll("ry", 0, 0)
		fetch.Topics[0].Partitions[0].FetchOffset = int64(i)
		out := rvFrame(1, rvProduce("ry", -1, map[int32][]byte{0: rvBatch(0, nil, kmsg.Record{Value: []byte("x")})}))
		out = append(out, rvFrame(2, lo)...)
		out = append(out, rvFrame(3, fetch)...)
		if _, err := c.Write(out); err != nil {
			t.Fatal(err)
		}
		pr := kmsg.NewPtrProduceResponse()
		pr.Version = 7
		lr := kmsg.NewPtrListOffsetsResponse()
		lr.Version = 4
		fr := kmsg.NewPtrFetchResponse()
		fr.Version = 12
		for _, r := range []kmsg.Response{pr, lr, fr} {
			if _, err := rvRead(t, c, 5*time.Second, r); err != nil {
				t.Fatal(err)
			}
		}
		if p := pr.Topics[0].Partitions[0]; p.ErrorCode != 0 || p.BaseOffset != int64(i) {
			t.Fatalf("round %d: produce error %d offset %d", i, p.ErrorCode, p.BaseOffset)
		}
		if got := lr.Topics[0].Partitions[0].Offset; got != int64(i+1) {
			t.Fatalf("round %d: ListOffsets latest %d right after the produce at %d was answered", i, got, i)
		}
		if got := fr.Topics[0].Partitions[0]; len(got.RecordBatches) == 0 || got.HighWatermark != int64(i+1) {
			t.Fatalf("round %d: fetch at %d answered %d bytes, high watermark %d, right after the produce at %d was answered", i, i, len(got.RecordBatches), got.HighWatermark, i)
		}
	}
}
