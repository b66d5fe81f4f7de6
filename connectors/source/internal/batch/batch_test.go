package batch

import (
	"context"
	"testing"
	"time"
)

func TestTake(t *testing.T) {
	ch := make(chan int, 10)
	for i := range 5 {
		ch <- i
	}
	var got []int
	if n := Take(context.Background(), ch, 3, time.Second, func(i int) { got = append(got, i) }); n != 3 || len(got) != 3 || got[2] != 2 {
		t.Fatalf("took %d: %v, want the first 3", n, got)
	}
	start := time.Now()
	if n := Take(context.Background(), ch, 10, 20*time.Millisecond, func(i int) { got = append(got, i) }); n != 2 {
		t.Fatalf("took %d, want the 2 left", n)
	}
	if d := time.Since(start); d < 20*time.Millisecond || d > time.Second {
		t.Fatalf("waited %v for more, want the linger", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if n := Take(ctx, ch, 10, time.Second, func(int) {}); n != 0 {
		t.Fatalf("took %d from an empty channel", n)
	}
}

// TestPending: what was in flight when the source closed is read again, once, and what was
// acknowledged is not.
func TestPending(t *testing.T) {
	var p Pending[int]
	p.Add(1)
	p.Add(2)
	if a := p.Acked(); len(a) != 2 {
		t.Fatalf("acked %v", a)
	}
	p.Add(3)
	p.Closed()
	if r := p.Replay(); len(r) != 1 || r[0] != 3 {
		t.Fatalf("replay %v, want [3]", r)
	}
	if r := p.Replay(); len(r) != 0 {
		t.Fatalf("replayed twice: %v", r)
	}
	p.Closed() // closed again before the replayed batch was acknowledged
	if r := p.Replay(); len(r) != 1 || r[0] != 3 {
		t.Fatalf("replay %v, want [3] again", r)
	}
	if a := p.Acked(); len(a) != 1 {
		t.Fatalf("acked %v", a)
	}
}
