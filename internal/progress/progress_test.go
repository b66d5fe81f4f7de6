package progress

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLine(t *testing.T) {
	for _, c := range []struct {
		n, total int64
		rate     float64
		elapsed  time.Duration
		want     string
	}{
		{1_200_000, 3_000_000, 150_000, 8 * time.Second, "W6 weir: 1,200,000 of 3,000,000 records (40%), 150,000 records/s, ETA 12s"},
		{0, 3_000_000, 0, time.Second, "W6 weir: 0 of 3,000,000 records (0%), 0 records/s"},
		{500, 0, 499.6, time.Second, "W6 weir: 500 records, 500 records/s"},
		{3_000_000, 3_000_000, 10, time.Minute, "W6 weir: 3,000,000 of 3,000,000 records (100%), 10 records/s, ETA 0s"},
		{4_000, 3_000, 10, time.Minute, "W6 weir: 4,000 of 3,000 records (133%), 10 records/s, ETA 0s"},
	} {
		if got := Line("W6 weir", c.n, c.total, c.rate, c.elapsed); got != c.want {
			t.Errorf("Line(%d, %d, %v, %v) = %q, want %q", c.n, c.total, c.rate, c.elapsed, got, c.want)
		}
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", -1234567: "-1,234,567", 100000: "100,000"} {
		if got := Thousands(n); got != want {
			t.Errorf("Thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the meter's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The meter prints a line per period with what count returned, skips the periods count could
// not count, and prints nothing after Stop returned.
func TestMeter(t *testing.T) {
	var out syncBuffer
	var mu sync.Mutex
	calls := 0
	m := startEvery(&out, "W1", 100, 10*time.Millisecond, func() (int64, bool) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		return int64(calls * 10), calls%2 == 1
	})
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(out.String(), "\n") < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	m.Stop()
	m.Stop() // a second Stop (a deferred one, say) does nothing
	got := out.String()
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) < 3 {
		t.Fatalf("%d lines in 10 s: %q", len(lines), got)
	}
	for i, want := range []string{"W1: 10 of 100 records (10%)", "W1: 30 of 100 records (30%)", "W1: 50 of 100 records (50%)"} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d = %q, want it to hold %q", i, lines[i], want)
		}
	}
	time.Sleep(30 * time.Millisecond)
	if after := out.String(); after != got {
		t.Errorf("printed after Stop: %q", after[len(got):])
	}
}
