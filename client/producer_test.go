package client

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// TestProduceConsumeAcks produces N records from several goroutines with each acks mode and
// reads them back in order.
func TestProduceConsumeAcks(t *testing.T) {
	_, c := setup(t, "", 0)
	const writers, perWriter = 4, 250
	for _, acks := range []wire.Acks{wire.AcksNone, wire.AcksLeader, wire.AcksAll} {
		t.Run(acks.String(), func(t *testing.T) {
			ctx := testCtx(t)
			topic := "acks-" + acks.String()
			if err := c.CreateTopic(ctx, topic, 1, 1); err != nil {
				t.Fatal(err)
			}
			p, err := c.NewProducer(topic, Acks(acks), BatchBytes(4<<10))
			if err != nil {
				t.Fatal(err)
			}
			// Each writer's records must come back in the writer's order.
			var mu sync.Mutex
			offsets := map[string]int64{}
			var failed atomic.Int64
			var wg sync.WaitGroup
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range perWriter {
						v := fmt.Sprintf("w%d-%04d", w, i)
						p.ProduceAsync(ctx, storage.Record{Value: []byte(v), Headers: map[string]string{"w": fmt.Sprint(w)}},
							func(off int64, err error) {
								if err != nil {
									failed.Add(1)
									t.Errorf("record %s: %v", v, err)
								}
								mu.Lock()
								offsets[v] = off
								mu.Unlock()
							})
					}
				}()
			}
			wg.Wait()
			if err := p.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if len(offsets) != writers*perWriter || failed.Load() > 0 {
				t.Fatalf("%d callbacks, %d failed, want %d", len(offsets), failed.Load(), writers*perWriter)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			msgs := consumeN(t, c, topic, 0, Earliest(), writers*perWriter)
			next := make([]int, writers)
			for i, m := range msgs {
				if m.Offset != int64(i) || m.Topic != topic || m.Partition != 0 {
					t.Fatalf("message %d: %s/%d@%d", i, m.Topic, m.Partition, m.Offset)
				}
				var w, n int
				if _, err := fmt.Sscanf(string(m.Value), "w%d-%d", &w, &n); err != nil || n != next[w] || m.Headers["w"] != fmt.Sprint(w) {
					t.Fatalf("message %d = %q (headers %v), want writer %d's record %d", i, m.Value, m.Headers, w, next[w])
				}
				next[w]++
				want := int64(-1)
				if acks != wire.AcksNone {
					want = m.Offset
				}
				if off := offsets[string(m.Value)]; off != want {
					t.Fatalf("record %q acknowledged at offset %d, read at %d", m.Value, off, m.Offset)
				}
				if time.Since(m.Timestamp) > time.Minute || m.Timestamp.After(time.Now()) {
					t.Fatalf("message %d timestamp %v", i, m.Timestamp)
				}
			}
		})
	}
}

// fnv1a32 is the documented partitioning hash, written out from its definition.
func fnv1a32(key []byte) uint32 {
	h := uint32(2166136261)
	for _, b := range key {
		h ^= uint32(b)
		h *= 16777619
	}
	return h
}

func TestKeyHashing(t *testing.T) {
	vectors := []struct {
		key  string
		hash uint32
	}{
		{"", 0x811c9dc5},
		{"a", 0xe40c292c},
		{"foobar", 0xbf9cf968},
		{"user-42", 0},
	}
	for _, v := range vectors {
		std := fnv.New32a()
		std.Write([]byte(v.key))
		if v.hash == 0 {
			v.hash = std.Sum32()
		}
		if got := fnv1a32([]byte(v.key)); got != v.hash || got != std.Sum32() {
			t.Fatalf("FNV-1a(%q) = %#x, want %#x", v.key, got, v.hash)
		}
		for _, n := range []int32{1, 3, 7, 1000} {
			if got, want := wire.PartitionForKey([]byte(v.key), n), int32(v.hash%uint32(n)); got != want {
				t.Errorf("PartitionForKey(%q, %d) = %d, want %d", v.key, n, got, want)
			}
		}
	}

	const parts = 5
	_, c := setup(t, "keyed", parts)
	ctx := testCtx(t)
	p, err := c.NewProducer("keyed", Linger(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	const keys, perKey = 20, 10
	var results []*Result
	for i := range perKey {
		for k := range keys {
			results = append(results, p.Produce(ctx, storage.Record{Key: fmt.Appendf(nil, "key-%d", k), Value: fmt.Appendf(nil, "%d", i)}))
		}
	}
	// Keyless records move to the next partition with each batch. Each Flush ends a batch, so
	// the five groups of ten are at least five batches, in five partitions one after another.
	for i := range 50 {
		results = append(results, p.Produce(ctx, storage.Record{Value: fmt.Appendf(nil, "nokey-%d", i)}))
		if i%10 == 9 {
			if err := p.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if _, err := r.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]int32{}
	keyless := 0
	keylessIn := map[int32]int{}
	for part := int32(0); part < parts; part++ {
		hw, err := c.ListOffsets(ctx, "keyed", part, Latest())
		if err != nil {
			t.Fatal(err)
		}
		next := map[string]int{}
		for _, m := range consumeN(t, c, "keyed", part, Earliest(), int(hw)) {
			if m.Key == nil {
				keyless++
				keylessIn[part]++
				continue
			}
			k := string(m.Key)
			if want := int32(fnv1a32(m.Key) % parts); part != want {
				t.Fatalf("key %q in partition %d, want %d", k, part, want)
			}
			if p, ok := seen[k]; ok && p != part {
				t.Fatalf("key %q in partitions %d and %d", k, p, part)
			}
			seen[k] = part
			if string(m.Value) != fmt.Sprint(next[k]) {
				t.Fatalf("key %q: value %q, want %d (order per key)", k, m.Value, next[k])
			}
			next[k]++
		}
	}
	if len(seen) != keys || keyless != 50 {
		t.Fatalf("%d keys, %d keyless records", len(seen), keyless)
	}
	if len(keylessIn) != parts {
		t.Fatalf("keyless records per partition: %v; want some in each of the %d", keylessIn, parts)
	}
}

// TestStickyPartitioning checks that keyless records fill one partition's batch and then move
// to the next partition: read back in the order produced, their partition changes once per
// batch, to the next partition round robin.
func TestStickyPartitioning(t *testing.T) {
	const parts, n = 3, 30
	_, c := setup(t, "sticky", parts)
	ctx := testCtx(t)
	p, err := c.NewProducer("sticky", Linger(time.Hour), BatchBytes(1000))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var results []*Result
	for i := range n { // 95-97 bytes counted, ~76 encoded: 11 in a batch (80 bytes of header)
		v := make([]byte, 70+i%3)
		copy(v, fmt.Sprintf("%04d", i))
		results = append(results, p.Produce(ctx, storage.Record{Value: v}))
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if _, err := r.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	total := int64(0)
	partOf := make([]int32, n) // record i's partition
	for part := int32(0); part < parts; part++ {
		hw, err := c.ListOffsets(ctx, "sticky", part, Latest())
		if err != nil {
			t.Fatal(err)
		}
		if hw < 5 {
			t.Errorf("partition %d holds %d records: not round robin by batch", part, hw)
		}
		total += hw
		for _, m := range consumeN(t, c, "sticky", part, Earliest(), int(hw)) {
			var i int
			if _, err := fmt.Sscanf(string(m.Value[:4]), "%04d", &i); err != nil || i < 0 || i >= n {
				t.Fatalf("partition %d: unexpected record %q", part, m.Value[:4])
			}
			partOf[i] = part
		}
	}
	if total != n {
		t.Fatalf("%d records in all", total)
	}
	// Three batches (11, 11 and 8 records): two changes, each to the next partition. One
	// change per record would be 29.
	changes := 0
	for i := 1; i < n; i++ {
		if partOf[i] == partOf[i-1] {
			continue
		}
		changes++
		if partOf[i] != (partOf[i-1]+1)%parts {
			t.Errorf("record %d went to partition %d after record %d's %d: not the next partition", i, partOf[i], i-1, partOf[i-1])
		}
	}
	if changes < parts-1 || changes > 4 {
		t.Fatalf("the partition changed %d times over %d records (%v), want about once per batch", changes, n, partOf)
	}
}

func TestProduceErrors(t *testing.T) {
	_, c := setup(t, "small", 1)
	ctx := testCtx(t)

	t.Run("unknown topic", func(t *testing.T) {
		p, err := c.NewProducer("no-such-topic", Retries(2), RetryBackoff(5*time.Millisecond, 20*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		var rs []*Result
		for i := range 5 {
			rs = append(rs, p.Produce(ctx, storage.Record{Key: []byte{byte(i)}, Value: []byte("x")}))
		}
		for i, r := range rs {
			off, err := r.Wait(ctx)
			var ce *Error
			if !errors.Is(err, wire.ErrUnknownTopic) || off != -1 || !errors.As(err, &ce) || ce.Topic != "no-such-topic" || ce.Op != "produce" {
				t.Fatalf("record %d: offset %d, %v", i, off, err)
			}
		}
	})

	t.Run("topic created while retrying", func(t *testing.T) {
		p, err := c.NewProducer("late-topic", Retries(50), RetryBackoff(5*time.Millisecond, 20*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		var rs []*Result
		for i := range 20 {
			rs = append(rs, p.Produce(ctx, storage.Record{Key: fmt.Appendf(nil, "k%d", i), Value: []byte("x")}))
		}
		time.Sleep(50 * time.Millisecond)
		if err := c.CreateTopic(ctx, "late-topic", 2, 1); err != nil {
			t.Fatal(err)
		}
		for i, r := range rs {
			if _, err := r.Wait(ctx); err != nil {
				t.Fatalf("record %d: %v", i, err)
			}
		}
	})

	t.Run("oversized record", func(t *testing.T) {
		p, err := c.NewProducer("small", MaxRecordBytes(1024))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		big := p.Produce(ctx, storage.Record{Value: make([]byte, 2000)})
		ok := p.Produce(ctx, storage.Record{Value: make([]byte, 500)})
		if _, err := big.Wait(ctx); !errors.Is(err, wire.ErrRecordTooLarge) {
			t.Fatalf("2000-byte record with a 1 KiB limit: %v", err)
		}
		if _, err := ok.Wait(ctx); err != nil {
			t.Fatalf("500-byte record: %v", err)
		}
		// The default limit is what one storage batch can hold.
		d, err := c.NewProducer("small")
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if _, err := d.Produce(ctx, storage.Record{Value: make([]byte, storage.MaxBatchSize)}).Wait(ctx); !errors.Is(err, wire.ErrRecordTooLarge) {
			t.Fatalf("64 MiB record: %v", err)
		}
	})

	t.Run("closed", func(t *testing.T) {
		p, err := c.NewProducer("small")
		if err != nil {
			t.Fatal(err)
		}
		r := p.Produce(ctx, storage.Record{Value: []byte("before")})
		p.Close()
		if _, err := r.Wait(ctx); err != nil {
			t.Fatalf("record produced before Close: %v", err)
		}
		if _, err := p.Produce(ctx, storage.Record{Value: []byte("after")}).Wait(ctx); !errors.Is(err, ErrClosed) {
			t.Fatalf("record produced after Close: %v", err)
		}
		if err := p.Flush(ctx); !errors.Is(err, ErrClosed) {
			t.Fatalf("Flush after Close: %v", err)
		}
	})
}

// TestProduceBackpressure fills the buffer of a producer that cannot send (its batches
// linger): Produce blocks until Flush makes room.
func TestProduceBackpressure(t *testing.T) {
	_, c := setup(t, "bp", 1)
	ctx := testCtx(t)
	p, err := c.NewProducer("bp", Linger(time.Hour), MaxBufferedBytes(1000))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	rec := storage.Record{Value: make([]byte, 300)} // 325 bytes counted
	for range 3 {
		p.ProduceAsync(ctx, rec, nil)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := p.Produce(short, rec).Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("fourth record in a full buffer: %v", err)
	}
	produced := make(chan *Result, 1)
	go func() { produced <- p.Produce(ctx, rec) }() // blocks until there is room
	select {
	case <-produced:
		t.Fatal("a record beyond the buffer was accepted")
	case <-time.After(20 * time.Millisecond):
	}
	if err := p.Flush(ctx); err != nil { // sends the three records, which makes room
		t.Fatal(err)
	}
	r := <-produced
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if off, err := r.Wait(ctx); err != nil || off != 3 {
		t.Fatalf("blocked record: offset %d, %v", off, err)
	}
}

// TestProduceConcurrentClose produces from many goroutines while Close runs: every callback is
// called exactly once, with an offset or ErrClosed; the acknowledged records are exactly the
// ones in the log, each at the offset its callback named; a zero timestamp is set to the time of
// producing.
func TestProduceConcurrentClose(t *testing.T) {
	_, c := setup(t, "cc", 1)
	ctx := testCtx(t)
	for round := range 5 {
		p, err := c.NewProducer("cc", Linger(time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		const writers, each = 8, 2000
		calls := make([][]atomic.Int32, writers)
		offsets := make([][]atomic.Int64, writers)
		var closedErrs atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for w := range writers {
			calls[w], offsets[w] = make([]atomic.Int32, each), make([]atomic.Int64, each)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					p.ProduceAsync(ctx, storage.Record{Value: fmt.Appendf(nil, "%d/%d/%d", round, w, i)}, func(off int64, err error) {
						calls[w][i].Add(1)
						offsets[w][i].Store(off)
						if err != nil {
							if !errors.Is(err, ErrClosed) {
								t.Errorf("record %d/%d: %v", w, i, err)
							}
							offsets[w][i].Store(-1)
							closedErrs.Add(1)
						}
					})
				}
			}()
		}
		time.Sleep(time.Duration(round) * 2 * time.Millisecond) // Close at different moments
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		acked := map[string]int64{}
		for w := range writers {
			for i := range each {
				if n := calls[w][i].Load(); n != 1 {
					t.Fatalf("round %d: record %d/%d: callback called %d times", round, w, i, n)
				}
				if off := offsets[w][i].Load(); off >= 0 {
					acked[fmt.Sprintf("%d/%d/%d", round, w, i)] = off
				}
			}
		}
		if int64(len(acked))+closedErrs.Load() != writers*each {
			t.Fatalf("round %d: %d acknowledged + %d closed != %d", round, len(acked), closedErrs.Load(), writers*each)
		}
		// Read the whole partition; this round's records are the ones acknowledged.
		end, err := c.ListOffsets(ctx, "cc", 0, Latest())
		if err != nil {
			t.Fatal(err)
		}
		msgs := consumeN(t, c, "cc", 0, AtOffset(0), int(end))
		found := 0
		for _, m := range msgs {
			var r, w, i int
			if _, err := fmt.Sscanf(string(m.Value), "%d/%d/%d", &r, &w, &i); err != nil || r != round {
				continue
			}
			found++
			if off, ok := acked[string(m.Value)]; !ok || off != m.Offset {
				t.Fatalf("round %d: %q at offset %d, its callback said %d (acknowledged: %v)", round, m.Value, m.Offset, off, ok)
			}
			if m.Timestamp.Before(start.Add(-time.Second)) || m.Timestamp.After(time.Now().Add(time.Second)) {
				t.Fatalf("round %d: %q has timestamp %v, produced from %v", round, m.Value, m.Timestamp, start)
			}
		}
		if found != len(acked) {
			t.Fatalf("round %d: %d records in the log, %d acknowledged", round, found, len(acked))
		}
	}
}

// TestProducerBuildersBounded produces a record larger than BatchBytes after a small one: the
// builder of their batches, grown to hold the large one, is not kept for reuse.
func TestProducerBuildersBounded(t *testing.T) {
	_, c := setup(t, "big", 1)
	ctx := testCtx(t)
	p, err := c.NewProducer("big", BatchBytes(4<<10))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{100, 100 << 10} {
		if _, err := p.Produce(ctx, storage.Record{Value: make([]byte, n)}).Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	p.Close() // the loop has stopped: its fields may be read
	for _, b := range p.builders {
		if b.Size() > 4<<10 {
			t.Fatalf("a builder of %d bytes kept for reuse, BatchBytes 4 KiB", b.Size())
		}
	}
}

// TestBusyProducerNotWokenPerRecord: while the producer's loop has work in flight, records do
// not wake it (it drains them at least once a linger). 20,000 small records produced 5 µs
// apart woke it for nearly every record before. Every record still arrives, in order.
func TestBusyProducerNotWokenPerRecord(t *testing.T) {
	_, c := setup(t, "burst", 1)
	ctx := testCtx(t)
	p, err := c.NewProducer("burst", Linger(20*time.Millisecond), Acks(wire.AcksLeader))
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	var mu sync.Mutex
	var offs []int64
	for i := range n {
		for t0 := time.Now(); time.Since(t0) < 5*time.Microsecond; {
		}
		p.ProduceAsync(ctx, storage.Record{Value: []byte(strconv.Itoa(i))}, func(off int64, err error) {
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			offs = append(offs, off)
			mu.Unlock()
		})
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if len(offs) != n {
		t.Fatalf("%d of %d records acknowledged", len(offs), n)
	}
	for i, off := range offs {
		if off != int64(i) {
			t.Fatalf("record %d acknowledged at offset %d", i, off)
		}
	}
	if p.wakeups > n/100 {
		t.Fatalf("the intake woke the loop %d times for %d records", p.wakeups, n)
	}
	t.Logf("%d wake-ups by the intake for %d records", p.wakeups, n)
}
