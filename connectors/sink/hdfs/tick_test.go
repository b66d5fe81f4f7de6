package hdfs

import (
	"testing"
	"time"

	"github.com/colinmarc/hdfs/v2"
)

// The timer looks for rolls by time often enough that none comes more than a tenth of its time
// late, and not more often than every 10 ms.
func TestTickEvery(t *testing.T) {
	for _, tc := range []struct {
		idle, interval, want time.Duration
	}{
		{0, 0, time.Second}, // IdleTimeout 30 s by default
		{-1, 0, time.Second},
		{300 * time.Millisecond, 0, 30 * time.Millisecond},
		{-1, 2 * time.Second, 200 * time.Millisecond},
		{time.Minute, 5 * time.Second, 500 * time.Millisecond},
		{20 * time.Millisecond, 0, 10 * time.Millisecond},
	} {
		s, err := New(Config{Client: hdfs.ClientOptions{Addresses: []string{"x:1"}}, Path: "/t", IdleTimeout: tc.idle, RollInterval: tc.interval})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.tickEvery(); got != tc.want {
			t.Errorf("IdleTimeout %v, RollInterval %v: every %v, want %v", tc.idle, tc.interval, got, tc.want)
		}
	}
}
