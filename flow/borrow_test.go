package flow_test

import (
	"context"
	"runtime"
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

// tailSink is a connectors.Borrower that records, for each Write, the address of its first
// value and its number of records, and keeps the first value of the last Write (so that the
// memory it lies in cannot be freed and given to another allocation).
type tailSink struct {
	mu      sync.Mutex
	records int
	firsts  []uintptr
	sizes   []int
	keep    []byte
}

func (s *tailSink) BorrowsMessages()           {}
func (s *tailSink) Open(context.Context) error { return nil }
func (s *tailSink) Close() error               { return nil }

func (s *tailSink) Write(_ context.Context, msgs []connectors.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records += len(msgs)
	s.firsts = append(s.firsts, uintptr(unsafe.Pointer(unsafe.SliceData(msgs[0].Value))))
	s.sizes = append(s.sizes, len(msgs))
	s.keep = msgs[0].Value
	return nil
}

func (s *tailSink) state() (records int, firsts []uintptr, sizes []int, keep []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.records, append([]uintptr(nil), s.firsts...), append([]int(nil), s.sizes...), s.keep
}

// TestBorrowerLetsGoAtTheEnd: a Borrower's partition that has caught up, and reads a record or
// two per fetch, does not keep the memory of its fetches while it caught up (the largest fetch
// it read, 1 MiB by default, for as long as the runner has the partition): its fetches at the
// end are read into memory of their own size.
func TestBorrowerLetsGoAtTheEnd(t *testing.T) {
	n := startNode(t, nil)
	rt := flow.New(n)
	defer rt.Stop()
	const count = 20000
	src, _ := seq.New(seq.Config{Count: count, Batch: 500, Prefix: "n"})
	if err := rt.Source("gen", src, "events", flow.Partitions(1)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the source's records in the topic", func() bool {
		lag, err := n.GroupLag("probe", "events")
		return err == nil && lag == count
	})
	sink := &tailSink{}
	if err := rt.Sink("borrow", sink, flow.FromTopics("events"), flow.FetchBytes(64<<10)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the topic read", func() bool {
		got, _, _, _ := sink.state()
		return got == count
	})
	_, firsts, _, caughtUp := sink.state() // caughtUp holds the last fetch's memory
	last := firsts[len(firsts)-1]

	// Now a record every 20 ms, one fetch each (a fetch at the end waits up to 500 ms).
	const tail = 25
	trickle, _ := seq.New(seq.Config{Count: tail, Batch: 1, Rate: 50, Prefix: "t"})
	if err := rt.Source("trickle", trickle, "events"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the trickle read", func() bool {
		got, _, _, _ := sink.state()
		return got == count+tail
	})
	_, firsts, sizes, _ := sink.state()
	var in []int // the Writes at the end whose values lie where the last fetch's did
	for i := len(firsts) - 1; i >= 0 && sizes[i] < 5; i-- {
		if d := int64(firsts[i]) - int64(last); d > -64 && d < 64 {
			in = append(in, i)
		}
	}
	t.Logf("%d Writes; after catching up, Writes %v were read into its last fetch's memory (%d bytes of values kept)", len(firsts), in, len(caughtUp))
	// The first fetch at the end may be read into it; no more.
	if len(in) > 1 {
		t.Fatalf("%d Writes at the end of the partition were read into the memory of its fetches while it caught up, want 1 at most", len(in))
	}
	runtime.KeepAlive(caughtUp) // no other allocation may lie where it does until here
}
