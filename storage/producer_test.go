package storage

import (
	"errors"
	"math"
	"testing"
)

func TestStampProducer(t *testing.T) {
	b, err := EncodeBatch([]Record{{Value: []byte("a"), Timestamp: 1}, {Value: []byte("b"), Timestamp: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if err := StampProducer(b, 42, math.MaxInt32); err != nil {
		t.Fatal(err)
	}
	h, err := ParseBatch(b) // both checksums hold after stamping
	if err != nil {
		t.Fatal(err)
	}
	if h.ProducerID != 42 || h.BaseSequence != math.MaxInt32 || h.LastSequence() != 0 {
		t.Fatalf("stamped header %+v, last sequence %d", h, h.LastSequence())
	}
	b[HeaderSize] ^= 1
	if _, err := ParseBatch(b); !errors.Is(err, ErrBadBatch) {
		t.Fatalf("a damaged body after stamping: %v", err)
	}
	if err := StampProducer(b[:HeaderSize+1], 1, 0); err == nil {
		t.Fatal("stamped a cut batch")
	}
	for _, c := range []struct {
		a, b int32
		want bool
	}{{0, 1, true}, {1, 0, false}, {3, 3, false}, {math.MaxInt32, 0, true}, {0, math.MaxInt32, false}, {5, 5 + 1<<29, true}} {
		if got := SequenceBefore(c.a, c.b); got != c.want {
			t.Errorf("SequenceBefore(%d, %d) = %v", c.a, c.b, got)
		}
	}
	for _, c := range []struct{ seq, n, want int32 }{{0, 0, 0}, {0, 5, 5}, {math.MaxInt32, 1, 0}, {math.MaxInt32 - 1, 3, 1}} {
		if got := AddSequence(c.seq, c.n); got != c.want {
			t.Errorf("AddSequence(%d, %d) = %d, want %d", c.seq, c.n, got, c.want)
		}
	}
}

// TestTailHeaders reads the headers of the newest segments holding at least the bytes asked
// for, in order, and stops when told.
func TestTailHeaders(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SegmentBytes = 4 << 10
	l, err := Open(t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 40 {
		b := NewBatchBuilder()
		b.SetProducer(7, int32(i*3))
		for range 3 {
			if err := b.Add(Record{Value: make([]byte, 300), Timestamp: int64(i)}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := l.Append(b.Build()); err != nil {
			t.Fatal(err)
		}
	}
	if l.Segments() < 5 {
		t.Fatalf("%d segments, want several", l.Segments())
	}
	collect := func(tail int64, stopAfter int) []Header {
		var hs []Header
		if err := l.TailHeaders(tail, func(h Header) bool {
			hs = append(hs, h)
			return len(hs) != stopAfter
		}); err != nil {
			t.Fatal(err)
		}
		return hs
	}
	all := collect(1<<30, -1)
	if len(all) != 40 || all[0].BaseOffset != 0 || all[39].BaseSequence != 117 || all[39].ProducerID != 7 {
		t.Fatalf("%d headers from the whole log, first %+v", len(all), all[0])
	}
	tail := collect(1, -1)
	if len(tail) == 0 || len(tail) >= 40 || tail[len(tail)-1].BaseOffset != 117 {
		t.Fatalf("%d headers from the newest segment", len(tail))
	}
	for i := 1; i < len(tail); i++ {
		if tail[i].BaseOffset != tail[i-1].NextOffset() {
			t.Fatalf("header %d at %d after one ending at %d", i, tail[i].BaseOffset, tail[i-1].NextOffset())
		}
	}
	if got := collect(1<<30, 2); len(got) != 2 {
		t.Fatalf("visit stopped after %d, want 2", len(got))
	}
}
