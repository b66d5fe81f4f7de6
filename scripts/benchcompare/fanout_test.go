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

func TestParseConsumerPerf(t *testing.T) {
	out := "[2026-12-01 23:59:00,001] WARN something, with commas (org.apache.kafka.x)\n" +
		"2026-12-01 23:59:00:123, 2026-12-01 23:59:02:456, 2.8610, 1.2263, 30000, 12857.7797, 345, 1988, 1.4392, 15090.5433\n"
	g, err := parseConsumerPerf(out)
	if err != nil {
		t.Fatal(err)
	}
	end := time.Date(2026, 12, 1, 23, 59, 2, 456e6, time.Local)
	if want := (groupRun{records: 30000, seconds: 1.988, join: 0.345, from: end.Add(-1988 * time.Millisecond), to: end}); g != want {
		t.Fatalf("got %+v, want %+v", g, want)
	}
	// A run that read nothing has no fetch time: Java prints NaN or Infinity for its rates.
	if _, err := parseConsumerPerf("2026-12-01 23:59:00:123, 2026-12-01 23:59:10:456, 0.0000, 0.0000, 0, 0.0000, 10333, 0, NaN, NaN\n"); err == nil {
		t.Fatal("a run without fetch time parsed")
	}
	if _, err := parseConsumerPerf("start.time, end.time, data.consumed.in.MB, MB.sec\n"); err == nil {
		t.Fatal("a header parsed")
	}
}

func TestParseWeirConsume(t *testing.T) {
	g, err := parseWeirConsume("bench consume:   1s     5000 records/s\nbench consume: records=30000 seconds=1.500 records/s=20000 MB/s=2.00 errors=0\n")
	if err != nil {
		t.Fatal(err)
	}
	if g.records != 30000 || g.seconds != 1.5 || !math.IsNaN(g.join) || g.rate() != 20000 {
		t.Fatalf("got %+v", g)
	}
	if _, err := parseWeirConsume("bench consume: records=3 seconds=1.500 records/s=2 MB/s=0.00 errors=1\n"); err == nil {
		t.Fatal("a run with errors parsed")
	}
	if _, err := parseWeirConsume("weir: no such topic\n"); err == nil {
		t.Fatal("no summary parsed")
	}
}

func TestCombineGroups(t *testing.T) {
	m, rates, join := combineGroups([]groupRun{{records: 100, seconds: 2, join: 0.5}, {records: 100, seconds: 4, join: math.NaN()}})
	// 200 records over the slower group's 4 s.
	if m.records != 200 || m.recordsPerSec != 50 || join != 0.5 || len(rates) != 2 || rates[0] != 50 || rates[1] != 25 {
		t.Fatalf("got %+v %v %v", m, rates, join)
	}
	// With both groups' spans known, the aggregate is over the whole span: 1 s to 6 s.
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	m, _, _ = combineGroups([]groupRun{{records: 100, seconds: 2, from: t0.Add(time.Second), to: t0.Add(3 * time.Second)},
		{records: 100, seconds: 4, from: t0.Add(2 * time.Second), to: t0.Add(6 * time.Second)}})
	if m.recordsPerSec != 40 {
		t.Fatalf("aggregate over the span: %v, want 40", m.recordsPerSec)
	}
	mean, lo, hi := spread([]float64{50, math.NaN(), 25})
	if mean != 37.5 || lo != 25 || hi != 50 {
		t.Fatalf("spread: %v %v %v", mean, lo, hi)
	}
	if mean, _, _ := spread(nil); !math.IsNaN(mean) {
		t.Fatalf("spread of nothing: %v", mean)
	}
}

func fanOutRows() []result {
	mk := func(sys, client string, groups int, agg float64, rates ...float64) result {
		return result{workload: "W3", system: sys, client: client, groups: groups, groupRates: rates, join: 0.25,
			measure: measure{records: int64(1000 * groups), recordsPerSec: agg}}
	}
	return []result{
		mk(apacheKafka.name, clientConsumerPerf, 1, 100000, 100000),
		mk(apacheKafka.name, clientConsumerPerf, 10, 400000, 45000, 40000, 35000),
		mk(weirSyncNever.name, clientFranzGo, 1, 200000, 200000),
		mk(weirSyncNever.name, clientFranzGo, 10, 1900000, 190000),
		{workload: "W3", system: weirSyncNever.name, client: clientWeirConsume, groups: 10, err: "boom"},
	}
}

func TestFanOutTables(t *testing.T) {
	rows := fanOutRows()
	tab := fanOutTable(rows, false)
	for _, want := range []string{"| 10 | 10,000 | **400,000** |", "**40,000** (35,000 to 45,000)", "failed: boom", "| 0.25 |"} {
		if !strings.Contains(tab, want) {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}
	rt := fanOutRatioTable(rows)
	for _, want := range []string{
		"| Apache Kafka 4.4.0 | ConsumerPerformance | 100,000 | 10 | 40,000 | 0.40 | 4.00 |",
		"| Weir (--sync never) | franz-go (one process) | 200,000 | 10 | 190,000 | 0.95 | 9.50 |",
		"| Weir (--sync never) | weir bench consume | — | 10 | — | — | — |",
	} {
		if !strings.Contains(rt, want) {
			t.Errorf("ratio table lacks %q:\n%s", want, rt)
		}
	}
}

// TestWriteFanOutPlot draws W3's plot from made-up rows (BENCHCOMPARE_PLOTS=DIR keeps it).
func TestWriteFanOutPlot(t *testing.T) {
	dir := t.TempDir()
	if d := os.Getenv("BENCHCOMPARE_PLOTS"); d != "" {
		dir = d
	}
	h := &harness{results: fanOutRows()}
	if err := h.writePlots([]workload{{id: "W3", consume: true}}, dir); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dir, "w3-throughput.png")); err != nil || st.Size() < 1000 {
		t.Fatalf("w3-throughput.png: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "w3-latency.png")); err == nil {
		t.Fatal("a latency plot for a fan-out workload")
	}
}

func TestWarmUpNote(t *testing.T) {
	got := warmUpNote(workloads, 300_000)
	want := "in W1 and W2 each system warmed up with 300,000 records (acks=1, not reported) after it started; in W3's saturated mode no separate warm-up (the fill, not reported, is one; its tailing mode says its own)"
	if got != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	if got := warmUpNote(workloads[2:], 0); got != "in W3's saturated mode no separate warm-up (the fill, not reported, is one; its tailing mode says its own)" {
		t.Fatalf("W3 alone: %q", got)
	}
}
