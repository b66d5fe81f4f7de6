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
// maxFailureTimes failure times.
func TestSupervisorBoundsFailureTimes(t *testing.T) {
	s := newSupervisor(SupervisorConfig{MaxRestarts: 100, Window: 30 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond},
		slog.New(slog.DiscardHandler), nil)
	rs := actor.NewRestartStatistics()
	most := 0
	for range maxFailureTimes + 100 {
		if _, recent := s.record(rs); recent > 100 {
			t.Fatalf("%d failures in the window, given up on", recent)
		}
		most = max(most, rs.FailureCount())
		time.Sleep(2 * time.Millisecond)
	}
	if most > maxFailureTimes {
		t.Fatalf("%d failure times kept, want at most %d", most, maxFailureTimes)
	}
	if most < maxFailureTimes {
		t.Fatalf("at most %d failure times: the failures did not come without a quiet window", most)
	}
}
