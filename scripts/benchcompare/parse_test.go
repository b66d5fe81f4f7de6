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

func TestParsePerf(t *testing.T) {
	out := "97089 records sent, 19410.0 records/sec (1.85 MB/sec), 2604.4 ms avg latency, 3940.0 ms max latency.\n" +
		"300000 records sent, 33825.684970 records/sec (3.23 MB/sec), 4274.89 ms avg latency, 6044.00 ms max latency, " +
		"4664 ms 50th, 5821 ms 95th, 5978 ms 99th, 6033 ms 99.9th.\n"
	m, err := parsePerf(out)
	if err != nil {
		t.Fatal(err)
	}
	want := measure{records: 300000, recordsPerSec: 33825.684970, mbPerSec: 3.23, p50: 4664, p95: 5821, p99: 5978, p999: 6033, max: 6044}
	if m != want {
		t.Fatalf("got %+v, want %+v", m, want)
	}
	if _, err := parsePerf("97089 records sent, 19410.0 records/sec (1.85 MB/sec), 2604.4 ms avg latency, 3940.0 ms max latency.\n"); err == nil {
		t.Fatal("a progress line alone was taken for a summary")
	}
}

func TestParseWeirBench(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		want      measure
		fails     bool
	}{
		{name: "ok", out: "bench produce: records=1000000 seconds=2.000 records/s=500000 MB/s=50.00 p50=1.500ms p99=12.250ms p999=20.000ms max=31.125ms errors=0\n",
			want: measure{records: 1000000, recordsPerSec: 500000, mbPerSec: 50e6 / (1 << 20), p50: 1.5, p99: 12.25, p999: 20, max: 31.125}},
		{name: "errors", out: "bench produce: records=10 seconds=2.000 records/s=5 MB/s=0.00 p50=1.500ms p99=12.250ms p999=20.000ms max=31.125ms errors=3\n", fails: true},
		{name: "none", out: "weir: no such topic\n", fails: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := parseWeirBench(tc.out)
			if tc.fails {
				if err == nil {
					t.Fatalf("parsed %+v, want an error", m)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !math.IsNaN(m.p95) {
				t.Fatalf("p95 %v, want NaN", m.p95)
			}
			m.p95 = 0
			if m != tc.want {
				t.Fatalf("got %+v, want %+v", m, tc.want)
			}
		})
	}
}

func TestCombine(t *testing.T) {
	c := combine([]measure{
		{records: 100, recordsPerSec: 50, p50: 1, p95: 2, p99: 3, max: 4},
		{records: 100, recordsPerSec: 25, p50: 5, p95: 1, p99: 2, max: 9},
	})
	// 200 records over the slower producer's 4 s; the worst of each percentile.
	if c.records != 200 || c.recordsPerSec != 50 || c.p50 != 5 || c.p95 != 2 || c.p99 != 3 || c.max != 9 {
		t.Fatalf("got %+v", c)
	}
}

func TestParseStat(t *testing.T) {
	st, err := parseStat("4242 (a (weird) name) S 17 4242 4242 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 1 0 1 2 3\n")
	if err != nil {
		t.Fatal(err)
	}
	if st.state != "S" || st.ppid != 17 || st.cpu != 3*time.Second {
		t.Fatalf("got %+v", st)
	}
	if _, err := parseStat("4242 (x) S 17"); err == nil {
		t.Fatal("a short line parsed")
	}
}

func TestSpliceSection(t *testing.T) {
	doc := "# B\n\nbefore\n" + sectionBegin + "\nold\n" + sectionEnd + "\nafter\n"
	got, err := spliceSection(doc, sectionBegin+"\nnew\n"+sectionEnd+"\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := "# B\n\nbefore\n" + sectionBegin + "\nnew\n" + sectionEnd + "\nafter\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if _, err := spliceSection("no markers", "x"); err == nil {
		t.Fatal("a document without markers was spliced")
	}
}

func TestRowsTable(t *testing.T) {
	rows := []result{
		{workload: "W1", system: apacheKafka.name, client: clientProducerPerf, acks: "all", producers: 1,
			measure: measure{recordsPerSec: 100000, mbPerSec: 9.54, p50: 2, p95: 3, p99: 4, max: 150}},
		{workload: "W1", system: weirSyncNever.name, client: clientProducerPerf, acks: "all", producers: 1,
			measure: measure{recordsPerSec: 200000, mbPerSec: 19.07, p50: 1, p95: 1.5, p99: 2, max: 50}},
		{workload: "W1", system: weirSyncNever.name, client: clientWeirBench, acks: "all", producers: 1, err: "boom\nagain"},
	}
	tab := rowsTable(rows, false)
	for _, want := range []string{"**100,000**", "| 150 |", "failed: boom again"} {
		if !strings.Contains(tab, want) {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}
	rt := ratioTable(rows)
	if !strings.Contains(rt, "| Weir (--sync never), ProducerPerformance | acks=all, 1 producer(s) | 2.00 | 0.50 |") {
		t.Errorf("ratio table:\n%s", rt)
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":                  `""`,
		"--http":            "--http",
		"$WORK/weir":        "$WORK/weir",
		"127.0.0.1:7701,x":  "127.0.0.1:7701,x",
		"a b":               `"a b"`,
		"it's \"q\" `x` \\": "\"it's \\\"q\\\" \\`x\\` \\\\\"",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestWritePlots draws the plots of made-up results (BENCHCOMPARE_PLOTS=DIR keeps them there
// to look at).
func TestWritePlots(t *testing.T) {
	dir := t.TempDir()
	if d := os.Getenv("BENCHCOMPARE_PLOTS"); d != "" {
		dir = d
	}
	h := &harness{}
	for _, sys := range []system{weirSyncAlways, apacheKafka, weirSyncNever} {
		clients := []string{clientProducerPerf}
		if sys.weir {
			clients = append(clients, clientWeirBench)
		}
		for k, client := range clients {
			for i, acks := range []string{"1", "all"} {
				for _, p := range []int{1, 4} {
					v := float64(10000*(i+1)*p) * float64(1+10*k)
					h.results = append(h.results, result{workload: "W1", system: sys.name, client: client, acks: acks, producers: p,
						measure: measure{recordsPerSec: v, p50: 10 * float64(p), p95: 20, p99: 30 * float64(i+1), max: 100}})
				}
			}
		}
	}
	h.results[1].err = "failed"
	if err := h.writePlots(workloads[:1], dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"w1-throughput.png", "w1-latency.png"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() < 1000 {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestCommandsOf(t *testing.T) {
	h := &harness{commands: []string{
		"go build -o $WORK/weir ./cmd/weir",
		"$WORK/weir node --id n1 --sync always",
		"run.sh ProducerPerformance --topic w1-r1-pp-acks1-p1",
		"scripts/kafka-server/run.sh 1",
		"run.sh ProducerPerformance --topic w1-r1-pp-acks1-p1",
		"$WORK/weir node --id n1 --sync always",
		"run.sh ProducerPerformance --topic w2-r1-pp-acksall-p1",
	}}
	got := strings.Join(h.commandsOf("W2"), "\n")
	if want := "$WORK/weir node --id n1 --sync always\nrun.sh ProducerPerformance --topic w2-r1-pp-acksall-p1"; got != want {
		t.Fatalf("W2's commands:\n%s\nwant:\n%s", got, want)
	}
	if got := h.commandsOf("W1"); len(got) != 4 {
		t.Fatalf("W1's commands: %q", got)
	}
}

// TestNoteRelative: a command's paths in the work directory are written from $WORK, and those
// in the repository from its root, as the command runs there (a W5 command said
// -plots /tmp/fullbench/docs/bench).
func TestNoteRelative(t *testing.T) {
	h := &harness{work: "/tmp/wb.1", root: "/src/weir"}
	h.note([]string{"/tmp/wb.1/benchflume", "-plots", "/src/weir/docs/bench", "-doc", "/src/weirx/d.md", "-x", "/src/weir"})
	if got, want := h.commands[0], "$WORK/benchflume -plots ./docs/bench -doc /src/weirx/d.md -x ."; got != want {
		t.Fatalf("noted %q, want %q", got, want)
	}
}

// TestTableHeads: W1 to W3's tables, with and without a round column, have a rule of as many
// cells as their header, and rows (the successful ones) of as many again.
func TestTableHeads(t *testing.T) {
	okRows := []result{{workload: "W1", system: apacheKafka.name, client: clientProducerPerf, acks: "all", producers: 1, round: 2,
		measure: measure{recordsPerSec: 100000, mbPerSec: 9.54, p50: 2, p95: 3, p99: 4, max: 150}}}
	for _, withRound := range []bool{false, true} {
		for name, tab := range map[string]string{
			"rows":    rowsTable(okRows, withRound),
			"fan-out": fanOutTable(fanOutRows()[:1], withRound),
			"tailing": tailTable(tailRows()[:1], withRound),
		} {
			lines := strings.Split(strings.TrimSpace(tab), "\n")
			if len(lines) < 3 {
				t.Fatalf("%s table (round %v): %q", name, withRound, tab)
			}
			cells := strings.Count(lines[0], "|")
			if strings.HasPrefix(lines[0], "| round ") != withRound || !strings.HasPrefix(lines[1], "|---|") {
				t.Errorf("%s table (round %v) starts:\n%s\n%s", name, withRound, lines[0], lines[1])
			}
			for _, l := range lines[1:] {
				if strings.Count(l, "|") != cells {
					t.Errorf("%s table (round %v): %d cells in %q, %d in its header", name, withRound, strings.Count(l, "|")-1, l, cells-1)
				}
			}
		}
	}
}
