//go:build linux

package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNearestRank(t *testing.T) {
	var l latencies
	for i := 100; i >= 1; i-- { // 1..100 ms, added out of order
		l.add(time.Duration(i) * time.Millisecond)
	}
	l.add(-time.Second) // a clock step: counts as 0
	got := l.quantiles(0.5, 0.99, 1)
	// 101 values 0, 1..100 ms: the 51st is 50 ms, the 100th 99 ms, the last 100 ms.
	if got[0] != 50 || got[1] != 99 || got[2] != 100 {
		t.Fatalf("quantiles %v, want [50 99 100]", got)
	}
	if q := (&latencies{}).quantiles(0.5); !math.IsNaN(q[0]) {
		t.Fatalf("no values: %v, want NaN", q)
	}
	if q := nearestRank([]int32{1500}, []float64{0, 0.5, 1}); q[0] != 1.5 || q[1] != 1.5 || q[2] != 1.5 {
		t.Fatalf("one value: %v", q)
	}
}

func TestScheduledBy(t *testing.T) {
	for _, tc := range []struct {
		elapsed time.Duration
		want    int64
	}{
		{-time.Millisecond, 0},
		{0, 1},                 // the first record at once
		{time.Millisecond, 21}, // 20 a ms at 20,000/s, plus the first
		{time.Second, 1000},    // capped at the total
		{49*time.Millisecond + 999*time.Microsecond, 1000}, // 999.98 due, the 1,000th among them
	} {
		if got := scheduledBy(tc.elapsed, 20_000, 1000); got != tc.want {
			t.Errorf("scheduledBy(%v) = %d, want %d", tc.elapsed, got, tc.want)
		}
	}
}

func TestW3Modes(t *testing.T) {
	for _, tc := range []struct {
		in         string
		sat, tail  bool
		shouldFail bool
	}{
		{"saturated,tailing", true, true, false},
		{"Tailing", false, true, false},
		{"saturated", true, false, false},
		{"", false, false, true},
		{"tail", false, false, true},
	} {
		s, tl, err := w3Modes(tc.in)
		if (err != nil) != tc.shouldFail || s != tc.sat || tl != tc.tail {
			t.Errorf("w3Modes(%q) = %v, %v, %v", tc.in, s, tl, err)
		}
	}
}

// tailRows are two systems' rows: Kafka's with 10 groups delivering 5% less each and p99
// doubled; the other's unchanged.
func tailRows() []tailRow {
	row := func(system string, groups int, rate, p99, cpu float64, per []tailGroup) tailRow {
		return tailRow{workload: "W3", round: 1, system: system, client: clientTail, groups: groups, target: 20000,
			sent: 100000, seconds: 5, rate: rate, prodP50: 2, prodP99: p99, pMax: 3 * p99, perGroup: per,
			usage: usage{cpu: time.Duration(cpu * float64(time.Second)), peakRSS: 100 << 20}, clientCPU: 0.5}
	}
	groups := func(n int, rate, p99 float64) []tailGroup {
		gs := make([]tailGroup, n)
		for i := range gs {
			gs[i] = tailGroup{records: 100000, rate: rate - float64(i), p50: 4, p99: p99 + float64(i), max: 2 * p99}
		}
		return gs
	}
	wb := func(r tailRow) tailRow { r.client = clientWeirConsume; return r }
	return []tailRow{
		row("Kafka", 0, 20000, 10, 1, nil),
		row("Kafka", 1, 19000, 20, 2, groups(1, 20000, 30)),
		row("Kafka", 10, 18000, 40, 8, groups(10, 19004.5, 60)), // mean 19000 per group, worst p99 69
		row("Weir", 0, 20000, 5, 1, nil),
		row("Weir", 1, 20000, 5, 1, groups(1, 20000, 10)),
		{workload: "W3", round: 1, system: "Weir", client: clientTail, groups: 10, err: "group x not assigned"},
		wb(row("Weir", 1, 20000, 5, 2, []tailGroup{{records: 100000, rate: 20000, p50: math.NaN(), p99: math.NaN(), max: math.NaN()}})),
		wb(row("Weir", 10, 19000, 10, 3, []tailGroup{{records: 100000, rate: 18000, p50: math.NaN(), p99: math.NaN(), max: math.NaN()}})),
	}
}

func TestTailCostTable(t *testing.T) {
	got := tailCostTable(tailRows())
	for _, want := range []string{
		"| Kafka | franz-go (one process) | 1 | 0.95 | 2.00 | 2.00 | 1 (the base) | 1 (the base) |",
		"| Kafka | franz-go (one process) | 10 | 0.90 | 4.00 | 8.00 | 0.95 | 2.30 |", // 19000/20000; 69/30
		"| Weir | franz-go (one process) | 10 | — | — | — | — | — |",                 // the failed row counts for nothing
		// weir bench consume's groups: against the system's producer alone and their own 1 group
		"| Weir | weir bench consume | 10 | 0.95 | 2.00 | 3.00 | 0.90 | — |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("cost table lacks %q:\n%s", want, got)
		}
	}
}

func TestTailTable(t *testing.T) {
	got := tailTable(tailRows(), false)
	for _, want := range []string{
		"| Kafka | — (producer alone) | 0 | **20,000** (20,000) | 2.0 / **10.0** / 30.0 | — | — | 1.0 | 100 | 0.5 |",
		"| Kafka | franz-go (one process) | 10 | **18,000** (20,000) | 2.0 / **40.0** / 120 | **19,000** (18,996 to 19,004) | 4.0 / **69.0** / 120 | 8.0 | 100 | 0.5 |",
		"| Weir | franz-go (one process) | 10 | failed: group x not assigned |",
		"| Weir | weir bench consume | 10 | **19,000** (20,000) | 2.0 / **10.0** / 30.0 | **18,000** | — | 3.0 | 100 | 0.5 |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
}

func TestWriteTailPlotAndFigures(t *testing.T) {
	base := filepath.Join(t.TempDir(), "w3")
	if err := writeTailPlot("W3", tailRows(), base); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(base + "-tailing.png"); err != nil || st.Size() == 0 {
		t.Fatalf("no plot: %v", err)
	}
	figs := tailFigures(tailRows())
	seen := map[string]float64{}
	for _, f := range figs {
		seen[f.System+" "+f.Variant+" "+f.Metric] = f.Value
	}
	for k, want := range map[string]float64{
		"Kafka tailing franz-go (one process) groups=10 rate=20000 round=1 delivered_records_per_group": 19000,
		"Kafka tailing franz-go (one process) groups=10 rate=20000 round=1 e2e_latency_p99_worst":       69,
	} {
		if got, ok := seen[k]; !ok || got != want {
			t.Errorf("%s = %v (%v), want %v", k, got, ok, want)
		}
	}
	if _, ok := seen["Weir tailing franz-go (one process) groups=10 rate=0 round=1 failed"]; !ok {
		t.Errorf("the failed row has no failed figure: %v", seen)
	}
}

func TestFlagsUsedW3(t *testing.T) {
	h := &harness{cfg: config{rounds: 1, warmup: 300_000, records: 1_000_000, w3Modes: "tailing", w3Rate: 30000, w3Duration: time.Minute}}
	if got, want := h.flagsUsed(), " -w3-modes tailing -w3-rate 30000 -w3-duration 1m0s"; got != want {
		t.Fatalf("flagsUsed() = %q, want %q", got, want)
	}
	h.cfg.w3Modes, h.cfg.w3Rate, h.cfg.w3Duration = defaultW3Modes, defaultW3Rate, 30*time.Second
	if got := h.flagsUsed(); got != "" {
		t.Fatalf("defaults: flagsUsed() = %q, want none", got)
	}
}
