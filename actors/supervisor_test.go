package actors

import (
	"log/slog"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// TestSupervisorCountsFailuresInWindow: a child failing steadily within its budget (here 2
// failures per Window of 200 ms, MaxRestarts 3) is never given up on, however many failures it
// totals; a burst past the budget is. (Before, the failures of a child that never went a whole
// Window without one added up, and it was given up on after MaxRestarts+1 in all.)
func TestSupervisorCountsFailuresInWindow(t *testing.T) {
	s := newSupervisor(SupervisorConfig{MaxRestarts: 3, Window: 200 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond},
		slog.New(slog.DiscardHandler), nil)
	rs := actor.NewRestartStatistics()
	for i := range 12 {
		attempt, recent := s.record(rs)
		if recent > 3 {
			t.Fatalf("failure %d (attempt %d): %d in the window, given up on", i+1, attempt, recent)
		}
		if attempt != i+1 {
			t.Fatalf("failure %d: attempt %d, want the failures since a quiet window", i+1, attempt)
		}
		time.Sleep(110 * time.Millisecond)
	}
	var recent int
	for range 4 {
		_, recent = s.record(rs)
	}
	if recent <= 3 {
		t.Fatalf("a burst of 4 failures: %d in the window, want it past MaxRestarts", recent)
	}
	time.Sleep(250 * time.Millisecond) // a quiet window: the attempts start over
	if attempt, _ := s.record(rs); attempt != 1 {
		t.Fatalf("after a quiet window: attempt %d, want 1", attempt)
	}
}

// TestSupervisorBoundsFailureTimes: a child failing forever within its budget keeps at most
// maxFailureTimes failure times. (Failures 0.5 ms apart with a Window of 200 ms: a quiet window,
// which a loaded machine may make, only starts the count over, so the loop runs until the count
// reached the bound.)
func TestSupervisorBoundsFailureTimes(t *testing.T) {
	s := newSupervisor(SupervisorConfig{MaxRestarts: 900, Window: 200 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond},
		slog.New(slog.DiscardHandler), nil)
	rs := actor.NewRestartStatistics()
	reached := false
	for i := 0; i < 50000 && !reached; i++ {
		if _, recent := s.record(rs); recent > 900 {
			t.Skipf("%d failures within the window: the machine ran them faster than this test assumes", recent)
		}
		n := rs.FailureCount()
		if n > maxFailureTimes {
			t.Fatalf("%d failure times kept, want at most %d", n, maxFailureTimes)
		}
		reached = n == maxFailureTimes
		time.Sleep(500 * time.Microsecond)
	}
	if !reached {
		t.Fatal("the count of failure times never reached the bound")
	}
	// The next failure trims them.
	s.record(rs)
	if n := rs.FailureCount(); n > maxFailureTimes/2 {
		t.Fatalf("%d failure times kept after the bound, want them trimmed to the recent ones", n)
	}
}
