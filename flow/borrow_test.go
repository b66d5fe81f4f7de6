package flow_test

import (
	"context"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/source/seq"
	"github.com/weirhq/weir/flow"
)

// borrowSink is a connectors.Borrower: it copies the values it is given. To tell whether the
// runner reuses its memory, it keeps, per partition, the first value of the last Write (which
// keeps that memory from being freed and allocated again) and counts the Writes whose first
// value lies where the one before lay, and the Writes given the same slice of messages as the
// Write before.
type borrowSink struct {
	mu      sync.Mutex
	values  map[string]int
	next    map[int32]int64
	last    map[int32][]byte
	lastMsg *connectors.Message
	writes  int
	sameBuf int
	sameMsg int
}

func (s *borrowSink) BorrowsMessages()           {}
func (s *borrowSink) Open(context.Context) error { return nil }
func (s *borrowSink) Close() error               { return nil }

func (s *borrowSink) Write(_ context.Context, msgs []connectors.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.values == nil {
		s.values, s.next, s.last = map[string]int{}, map[int32]int64{}, map[int32][]byte{}
	}
	s.writes++
	if unsafe.SliceData(msgs) == s.lastMsg {
		s.sameMsg++
	}
	s.lastMsg = unsafe.SliceData(msgs)
	p := msgs[0].Partition
	if prev := s.last[p]; prev != nil && unsafe.SliceData(prev) == unsafe.SliceData(msgs[0].Value) {
		s.sameBuf++
	}
	s.last[p] = msgs[0].Value
	for _, m := range msgs {
		if m.Offset < s.next[m.Partition] {
			continue
		}
		s.values[string(m.Value)]++
		s.next[m.Partition] = m.Offset + 1
	}
	return nil
}

func (s *borrowSink) result() (values map[string]int, writes, sameBuf, sameMsg int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	values = map[string]int{}
	for v, n := range s.values {
		values[v] = n
	}
	return values, s.writes, s.sameBuf, s.sameMsg
}

// stagingBorrowSink is a borrowSink that is also a StagingSink, whose Writes are durable at once.
type stagingBorrowSink struct{ *borrowSink }

func (s stagingBorrowSink) Reset() error { return nil }
func (s stagingBorrowSink) Durable() ([]connectors.PartitionOffset, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []connectors.PartitionOffset
	for p, off := range s.next {
		out = append(out, connectors.PartitionOffset{Topic: "events", Partition: p, Offset: off})
	}
	return out, nil
}

// TestBorrowerMemoryIsReused: for a connectors.Borrower the runner reads a partition's next fetch
// into the memory of its last and decodes into the same messages, and every record arrives
// intact, once; for a plain Sink or a StagingSink alike.
func TestBorrowerMemoryIsReused(t *testing.T) {
	for _, staging := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "staging"}[staging]
		t.Run(name, func(t *testing.T) {
			n := startNode(t, nil)
			rt := flow.New(n)
			defer rt.Stop()
			const count = 3000
			src, _ := seq.New(seq.Config{Count: count, Batch: 50, Prefix: "n"})
			if err := rt.Source("gen", src, "events", flow.Partitions(2)); err != nil {
				t.Fatal(err)
			}
			// The whole topic first, so that fetches are full and their batches line up.
			waitUntil(t, "the source's records in the topic", func() bool {
				lag, err := n.GroupLag("probe", "events")
				return err == nil && lag == count
			})
			bs := &borrowSink{}
			var sink connectors.Sink = bs
			if staging {
				sink = stagingBorrowSink{bs}
			}
			if err := rt.Sink("borrow", sink, flow.FromTopics("events"), flow.FetchBytes(1024)); err != nil {
				t.Fatal(err)
			}
			var values map[string]int
			var writes, sameBuf, sameMsg int
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				values, writes, sameBuf, sameMsg = bs.result()
				if len(values) == count || time.Now().After(deadline) {
					break
				}
			}
			for i := range count {
				if v := "n" + itoa(i); values[v] != 1 {
					t.Fatalf("%s reached the sink %d times (%d values in all)", v, values[v], len(values))
				}
			}
			// Allow for the first Write of each partition and for a fetch cut short (the end
			// of the topic) now and then.
			t.Logf("%d Writes, %d same buffer, %d same messages", writes, sameBuf, sameMsg)
			if writes < 20 || sameBuf < writes*3/4 || sameMsg < writes*3/4 {
				t.Fatalf("%d Writes: %d read into the memory of the partition's last fetch, %d given the last Write's messages; want most", writes, sameBuf, sameMsg)
			}
		})
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}
