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
