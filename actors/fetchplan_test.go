package actors

import "testing"

// TestFetchPlan: a leader answers a fetch past its high watermark but inside its log (a new
// leader's high watermark can be below the one its predecessor served, until it commits an
// entry of its own term) by waiting, never as out of range, which would have a consumer reset
// its position and skip (ResetLatest) or re-read (ResetEarliest) records.
func TestFetchPlan(t *testing.T) {
	for _, c := range []struct {
		off, start, hw, end int64
		wait                bool
		want                fetchPlan
	}{
		{off: 5, start: 0, hw: 10, end: 10, want: fetchRead},
		{off: 0, start: 0, hw: 10, end: 10, want: fetchRead},
		{off: 10, start: 0, hw: 10, end: 10, wait: true, want: fetchPark},
		{off: 10, start: 0, hw: 10, end: 10, want: fetchEmpty},
		// A new leader: committed up to 7 as far as it knows, its log ends at 12.
		{off: 9, start: 0, hw: 7, end: 12, wait: true, want: fetchPark},
		{off: 12, start: 0, hw: 7, end: 12, wait: true, want: fetchPark},
		{off: 9, start: 0, hw: 7, end: 12, want: fetchEmpty},
		{off: 13, start: 0, hw: 7, end: 12, wait: true, want: fetchOutOfRange},
		{off: 3, start: 5, hw: 10, end: 10, wait: true, want: fetchOutOfRange},
		{off: 11, start: 0, hw: 10, end: 10, wait: true, want: fetchOutOfRange},
	} {
		if got := fetchPlanFor(c.off, c.start, c.hw, c.end, c.wait); got != c.want {
			t.Errorf("fetch at %d of [%d, %d) with high watermark %d (wait %v): plan %d, want %d", c.off, c.start, c.end, c.hw, c.wait, got, c.want)
		}
	}
}
