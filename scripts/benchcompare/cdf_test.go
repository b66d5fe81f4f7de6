//go:build linux

package main

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"gonum.org/v1/plot/plotter"
)

func TestPercentileCDF(t *testing.T) {
	got := percentileCDF(measure{p50: 2, p95: 5, p99: 9, p999: 20, max: 31})
	want := []cdfPoint{{2, 0.5}, {5, 0.95}, {9, 0.99}, {20, 0.999}, {31, 1}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// weir bench's summary has no p95; a row without p99.9 leaves it at 0.
	got = percentileCDF(measure{p50: 2, p95: math.NaN(), p99: 9, max: 31})
	want = []cdfPoint{{2, 0.5}, {9, 0.99}, {31, 1}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestParseWeirHist(t *testing.T) {
	got, err := parseWeirHist("# weir bench produce latency histogram: highest_ns count (records=4 max_ns=3000000)\n1000000 1\n2000000 2\n3000000 1\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []cdfPoint{{1, 0.25}, {2, 0.75}, {3, 1}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for name, bad := range map[string]string{
		"empty":       "# nothing\n",
		"one field":   "100\n",
		"not rising":  "200 1\n100 1\n",
		"not numbers": "a b\n",
		"zero counts": "100 0\n",
	} {
		if _, err := parseWeirHist(bad); err == nil {
			t.Errorf("%s: parsed %q", name, bad)
		}
	}
}

func TestStepXYs(t *testing.T) {
	got := stepXYs([]cdfPoint{{0, 0.1}, {2, 0.5}, {5, 1}})
	// 0 ms is drawn at the axis' start; each point rises from the fraction before it.
	want := plotter.XYs{{X: minPlotMs, Y: 0}, {X: minPlotMs, Y: 0.1}, {X: 2, Y: 0.1}, {X: 2, Y: 0.5}, {X: 5, Y: 0.5}, {X: 5, Y: 1}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if stepXYs(nil) != nil {
		t.Fatal("no points: want no line")
	}
}

func TestWriteCDFPlot(t *testing.T) {
	rows := []result{
		{workload: "W1", round: 1, system: apacheKafka.name, client: clientProducerPerf, acks: "1", producers: 1,
			cdf: []cdfPoint{{2, 0.5}, {5, 0.95}, {9, 0.99}, {20, 0.999}, {31, 1}}},
		{workload: "W1", round: 1, system: weirSyncNever.name, client: clientWeirBench, acks: "1", producers: 1,
			cdf: []cdfPoint{{0.1, 0.2}, {1, 0.9}, {3, 1}}},
		{workload: "W1", round: 1, system: weirSyncNever.name, client: clientProducerPerf, acks: "all", producers: 4, err: "failed"},
	}
	base := filepath.Join(t.TempDir(), "w1")
	if err := writeCDFPlot("W1", rows, base); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(base + "-latency-cdf.png"); err != nil || st.Size() == 0 {
		t.Fatalf("no plot: %v", err)
	}
	if got := firstCDF(rows, series{weirSyncNever.name, clientWeirBench}, caseKey{"1", 1}); len(got) != 3 {
		t.Fatalf("firstCDF: %v", got)
	}
	if got := firstCDF(rows, series{weirSyncNever.name, clientProducerPerf}, caseKey{"all", 4}); got != nil {
		t.Fatalf("firstCDF of a failed row: %v", got)
	}
}
