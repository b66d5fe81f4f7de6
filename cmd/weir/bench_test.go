package main

import (
	"bytes"
	"context"
	"github.com/weirhq/weir/internal/syncbuf"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhq/weir/storage"
)

// benchSummary runs a bench command that must succeed and returns its summary's key=value pairs.
func benchSummary(t *testing.T, args ...string) map[string]float64 {
	t.Helper()
	code, out, errOut := weirIn("", nil, args...)
	if code != 0 {
		t.Fatalf("weir %v exited %d:\n%s%s", args, code, out, errOut)
	}
	var line string
	for _, l := range lines(out) {
		if strings.HasPrefix(l, "bench ") {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("weir %v: no summary line in:\n%s", args, out)
	}
	kv := map[string]float64{}
	for _, field := range strings.Fields(line)[2:] {
		k, v, ok := strings.Cut(field, "=")
		if !ok {
			t.Fatalf("summary field %q in %q", field, line)
		}
		x, err := strconv.ParseFloat(strings.TrimSuffix(v, "ms"), 64)
		if err != nil {
			t.Fatalf("summary field %q in %q: %v", field, line, err)
		}
		kv[k] = x
	}
	for _, k := range []string{"records", "seconds", "records/s", "MB/s", "errors"} {
		if _, ok := kv[k]; !ok {
			t.Fatalf("summary %q lacks %s", line, k)
		}
	}
	return kv
}

// checkSummary checks a summary's counts and that its rates follow from them.
func checkSummary(t *testing.T, kv map[string]float64, records int, recordBytes float64) {
	t.Helper()
	if kv["records"] != float64(records) || kv["errors"] != 0 {
		t.Fatalf("summary %v: want records=%d errors=0", kv, records)
	}
	sec := kv["seconds"]
	if sec <= 0 {
		t.Fatalf("summary %v: seconds must be positive", kv)
	}
	near := func(got, want float64) bool { return math.Abs(got-want) <= 0.01*want+1 }
	// seconds is rounded to 1 ms in the line; the rates were computed before rounding.
	if lo, hi := float64(records)/(sec+0.0005), float64(records)/max(sec-0.0005, 1e-9); kv["records/s"] < lo-1 || kv["records/s"] > hi+1 {
		t.Fatalf("summary %v: records/s not records/seconds", kv)
	}
	if !near(kv["MB/s"], kv["records/s"]*recordBytes/1e6) && kv["MB/s"] > 0.01 {
		t.Fatalf("summary %v: MB/s not records/s × %v B", kv, recordBytes)
	}
	if p50, ok := kv["p50"]; ok {
		if !(p50 <= kv["p99"] && kv["p99"] <= kv["p999"] && kv["p999"] <= kv["max"] && kv["max"] > 0) {
			t.Fatalf("summary %v: want 0 < p50 <= p99 <= p999 <= max", kv)
		}
	}
}

func TestBenchAgainstNode(t *testing.T) {
	addr := startClientNode(t)
	const n = 20000
	p := benchSummary(t, "--server", addr, "bench", "produce", "--topic", "b", "--partitions", "3",
		"--records", strconv.Itoa(n), "--acks", "all", "--producers", "2", "--batch-size", "16384", "--max-in-flight", "2")
	checkSummary(t, p, n, 100)
	c := benchSummary(t, "bench", "consume", "--server", addr, "--topic", "b")
	checkSummary(t, c, n, 100)
	g := benchSummary(t, "bench", "consume", "--server", addr, "--topic", "b", "--group", "g1")
	checkSummary(t, g, n, 100)
	// The group committed what it read: a second run has nothing left.
	g = benchSummary(t, "bench", "consume", "--server", addr, "--topic", "b", "--group", "g1")
	if g["records"] != 0 {
		t.Fatalf("second group run read %v records, want 0", g["records"])
	}
	// A duration-bound run at a fixed rate: about rate × duration records.
	p = benchSummary(t, "bench", "produce", "--server", addr, "--topic", "b", "--duration", "300ms", "--rate", "5000", "--record-size", "10")
	if got := p["records"]; got < 1000 || got > 1600 {
		t.Fatalf("300 ms at 5000 records/s produced %v records", got)
	}
	if p["seconds"] < 0.3 {
		t.Fatalf("--duration 300ms ran %v s", p["seconds"])
	}
	checkSummary(t, p, int(p["records"]), 10)
}

func TestBenchEmbedded(t *testing.T) {
	const n = 20000
	for _, acks := range []string{"all", "leader", "none"} {
		p := benchSummary(t, "bench", "produce", "--embedded", "--topic", "e", "--partitions", "2",
			"--records", strconv.Itoa(n), "--acks", acks, "--batch-size", "8192", "--max-in-flight", "3")
		checkSummary(t, p, n, 100)
	}
	p := benchSummary(t, "bench", "produce", "--embedded", "--loopback", "--topic", "e", "--records", strconv.Itoa(n), "--linger", "0")
	checkSummary(t, p, n, 100)
	c := benchSummary(t, "bench", "consume", "--embedded", "--topic", "e", "--partitions", "2", "--records", strconv.Itoa(n))
	checkSummary(t, c, n, 100)
	c = benchSummary(t, "bench", "consume", "--embedded", "--loopback", "--topic", "e", "--records", strconv.Itoa(n))
	checkSummary(t, c, n, 100)
}

func TestBenchUsage(t *testing.T) {
	for _, args := range [][]string{
		{"bench"},
		{"bench", "fetch", "--topic", "x"},
		{"bench", "produce"},
		{"bench", "produce", "--topic", "x", "--embedded", "--server", "127.0.0.1:1"},
		{"--server", "127.0.0.1:1", "bench", "produce", "--topic", "x", "--embedded"},
		{"bench", "produce", "--topic", "x", "--loopback"},
		{"bench", "produce", "--topic", "x", "--acks", "some"},
		{"bench", "produce", "--topic", "x", "--rate", "-1"},
		{"bench", "produce", "--topic", "x", "--producers", "0"},
		{"bench", "produce", "--topic", "x", "--batch-size", "10"},
		{"bench", "consume", "--topic", "x", "--rate", "10"}, // produce-only flag
		{"bench", "consume", "--topic", "x", "stray"},
	} {
		if code, _, errOut := weirIn("", nil, args...); code != 2 {
			t.Errorf("weir %v: exit %d, want 2 (usage)\n%s", args, code, errOut)
		}
	}
}

func TestLatencyHistQuantiles(t *testing.T) {
	us := time.Microsecond
	uniform := func(n int) []time.Duration {
		var ds []time.Duration
		for i := 1; i <= n; i++ {
			ds = append(ds, time.Duration(i)*us)
		}
		return ds
	}
	tests := []struct {
		name              string
		values            []time.Duration
		p50, p99, p999, m time.Duration
	}{
		{"empty", nil, 0, 0, 0, 0},
		{"one value", []time.Duration{1234 * us}, 1234 * us, 1234 * us, 1234 * us, 1234 * us},
		{"exact small values", []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 5, 10, 10, 10},
		{"negative is zero", []time.Duration{-5, 0, 0}, 0, 0, 0, 0},
		{"uniform 1..10000 µs", uniform(10000), 5000 * us, 9900 * us, 9990 * us, 10000 * us},
		{"one outlier in 1000", append(make([]time.Duration, 999), time.Second), 0, 0, 0, time.Second},
		{"two outliers in 1000", append(make([]time.Duration, 998), time.Second, time.Second), 0, 0, time.Second, time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h latencyHist
			for _, d := range tc.values {
				h.record(d)
			}
			if h.count() != uint64(len(tc.values)) {
				t.Fatalf("count %d, want %d", h.count(), len(tc.values))
			}
			for _, c := range []struct {
				q         float64
				got, want time.Duration
			}{{0.5, h.quantile(0.5), tc.p50}, {0.99, h.quantile(0.99), tc.p99}, {0.999, h.quantile(0.999), tc.p999}, {1, h.max(), tc.m}} {
				// A quantile is its bucket's highest value: at or above the exact one, by less
				// than a bucket's width (1/128 of the value).
				if c.got < c.want || float64(c.got-c.want) > float64(c.want)/128 {
					t.Errorf("q%v = %v, want %v (+0.8%%)", c.q, c.got, c.want)
				}
			}
		})
	}
}

func TestLatencyHistBuckets(t *testing.T) {
	// Buckets tile the values: each starts right after the one before, none is wider than
	// 1/128 of its lowest value, and the last ends at 2^64-1.
	var prevHi uint64
	for i := range histBuckets {
		lo, hi := histBounds(i)
		if i > 0 && lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, the one before ends at %d", i, lo, prevHi)
		}
		if hi < lo || (lo >= 1<<histSubBits && hi-lo+1 > lo/128) {
			t.Fatalf("bucket %d is [%d, %d]", i, lo, hi)
		}
		prevHi = hi
	}
	if prevHi != math.MaxUint64 {
		t.Fatalf("the last bucket ends at %d", prevHi)
	}
	vals := []uint64{0, 1, 255, 256, 257, 511, 512, 513, 1000, 1 << 20, 1<<40 + 12345, math.MaxInt64, math.MaxUint64}
	for range 10000 {
		vals = append(vals, rand.Uint64()>>rand.IntN(64))
	}
	for _, v := range vals {
		i := histIndex(v)
		lo, hi := histBounds(i)
		if i < 0 || i >= histBuckets || v < lo || v > hi {
			t.Fatalf("value %d: bucket %d [%d, %d]", v, i, lo, hi)
		}
	}
}

func TestLatencyHistMerge(t *testing.T) {
	var a, b, all latencyHist
	for i := range 5000 {
		d := time.Duration(rand.Int64N(int64(50 * time.Millisecond)))
		all.record(d)
		if i%3 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
	}
	var m latencyHist
	m.merge(&a)
	m.merge(&b)
	for _, q := range []float64{0, 0.1, 0.5, 0.9, 0.99, 0.999, 1} {
		if m.quantile(q) != all.quantile(q) {
			t.Fatalf("q%v: merged %v, recorded together %v", q, m.quantile(q), all.quantile(q))
		}
	}
	if m.count() != 5000 || m.max() != all.max() {
		t.Fatalf("merged count %d max %v, want 5000 and %v", m.count(), m.max(), all.max())
	}
}

// stallingProducer answers every record at once, except that one ProduceAsync call blocks for
// stall first, as a full buffer would.
type stallingProducer struct {
	calls int
	at    int
	stall time.Duration
}

func (p *stallingProducer) ProduceAsync(_ context.Context, _ storage.Record, fn func(int64, error)) {
	p.calls++
	if p.calls == p.at {
		time.Sleep(p.stall)
	}
	fn(0, nil)
}

func (p *stallingProducer) Close() error { return nil }

// TestRateLatencyFromSchedule: with --rate, the records held up behind a blocked send count the
// wait in their latency (no coordinated omission), although each one is answered at once.
func TestRateLatencyFromSchedule(t *testing.T) {
	p := &stallingProducer{at: 10, stall: 100 * time.Millisecond}
	var h latencyHist
	var stats produceStats
	var claimed atomic.Int64
	f := &benchFlags{records: 200, rate: 1000, producers: 1} // a record due every 1 ms
	produceLoop(p, &h, &stats, &claimed, []byte("v"), f, time.Now())
	if stats.acked.Load() != 200 {
		t.Fatalf("%d acknowledged", stats.acked.Load())
	}
	// The ~100 records due during the stall went out late, by 100 ms down to 0: a quarter of
	// all records waited more than ~50 ms. Timed from their sending, all but one took ~0.
	if p75 := h.quantile(0.75); p75 < 20*time.Millisecond {
		t.Fatalf("p75 %v after a 100 ms stall: the records due during it did not count their wait", p75)
	}
}

// TestBenchProfilesTheMeasurement: --cpuprofile starts after the setup, and for an embedded
// consume after the node is filled: what bench printed to standard error by then shows it.
func TestBenchProfilesTheMeasurement(t *testing.T) {
	var stderr syncbuf.Buffer
	var atStart []string
	startCPUProfile = func(io.Writer) error {
		atStart = append(atStart, stderr.String())
		return nil
	}
	stopCPUProfile = func() {}
	t.Cleanup(func() { startCPUProfile, stopCPUProfile = pprof.StartCPUProfile, pprof.StopCPUProfile })
	for _, c := range []struct{ mode, before string }{
		{"consume", "bench consume: filled p with 2000 records"},
		{"produce", "bench produce: topic p"},
	} {
		atStart = nil
		file := filepath.Join(t.TempDir(), "cpu.prof")
		args := []string{"bench", c.mode, "--embedded", "--topic", "p", "--records", "2000", "--cpuprofile", file}
		if code := runEnv(args, cli{stdin: strings.NewReader(""), stdout: io.Discard, stderr: &stderr}); code != 0 {
			t.Fatalf("weir %v exited %d:\n%s", args, code, stderr.String())
		}
		if len(atStart) != 1 || !strings.Contains(atStart[0], c.before) {
			t.Fatalf("bench %s: the CPU profile started %d times, first after %q; want once, after %q", c.mode, len(atStart), atStart, c.before)
		}
		if _, err := os.Stat(file); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCountBatches: the batches of an in-process fetch are counted from the fetch offset, and
// a batch cut short or with a bad header is reported as such.
func TestCountBatches(t *testing.T) {
	l, err := storage.Open(t.TempDir(), storage.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	b := storage.NewBatchBuilder()
	for i := range 2 {
		b.Reset()
		for j := range 5 {
			if err := b.Add(storage.Record{Key: []byte("k"), Value: []byte(strconv.Itoa(i*5 + j))}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := l.Append(b.Build()); err != nil {
			t.Fatal(err)
		}
	}
	data, err := l.Read(nil, 0, 1<<20, l.EndOffset())
	if err != nil {
		t.Fatal(err)
	}
	if n, nb, next, err := countBatches(data, 2); n != 8 || nb != 16 || next != 10 || err != nil {
		t.Fatalf("countBatches from 2: %d records, %d bytes, next %d, %v; want 8, 16, 10, nil", n, nb, next, err)
	}
	_, _, _, err = countBatches(data[:len(data)-3], 0)
	if err == nil || !strings.Contains(err.Error(), "batch at offset 5 cut short") || strings.Contains(err.Error(), "<nil>") {
		t.Fatalf("a truncated batch: %v", err)
	}
	h, _ := storage.ParseHeader(data)
	bad := bytes.Clone(data)
	bad[h.Size()+3] ^= 0xff // in the second batch's header
	_, _, _, err = countBatches(bad, 0)
	if err == nil || !strings.Contains(err.Error(), "batch after offset 5") {
		t.Fatalf("a bad header: %v", err)
	}
}

// delayedProducer answers every record after delay.
type delayedProducer struct {
	delay time.Duration
	wg    sync.WaitGroup
}

func (p *delayedProducer) ProduceAsync(_ context.Context, _ storage.Record, fn func(int64, error)) {
	p.wg.Add(1)
	time.AfterFunc(p.delay, func() { fn(0, nil); p.wg.Done() })
}

func (p *delayedProducer) Close() error { p.wg.Wait(); return nil }

// TestRateEarlyRecordsTimedFromSending: with --rate, records go out up to benchLead before they
// are due; one that went out early must be timed from its sending, not from its (later) due
// time, or its latency would read less than the producer's.
func TestRateEarlyRecordsTimedFromSending(t *testing.T) {
	p := &delayedProducer{delay: 3 * time.Millisecond}
	var h latencyHist
	var stats produceStats
	var claimed atomic.Int64
	f := &benchFlags{records: 2000, rate: 100_000, producers: 1} // one due every 10 µs: many early
	produceLoop(p, &h, &stats, &claimed, []byte("v"), f, time.Now())
	if stats.acked.Load() != 2000 {
		t.Fatalf("%d acknowledged", stats.acked.Load())
	}
	if low := h.quantile(0); low < p.delay {
		t.Fatalf("lowest latency %v, below the producer's %v: early records were timed from their due time", low, p.delay)
	}
}

// TestHistSince: the progress line's per-second p99 comes from the durations recorded since
// the last snapshot only.
func TestHistSince(t *testing.T) {
	var h latencyHist
	for range 1000 {
		h.record(100 * time.Millisecond)
	}
	var prev latencyHist
	prev.merge(&h)
	for range 1000 {
		h.record(time.Millisecond)
	}
	w := h.since(&prev)
	if w.count() != 1000 {
		t.Fatalf("window holds %d durations, want 1000", w.count())
	}
	if p99 := w.quantile(0.99); p99 < time.Millisecond || p99 > 1010*time.Microsecond {
		t.Fatalf("window p99 %v, want about 1 ms (the earlier 100 ms ones are not in it)", p99)
	}
}

// slowProducer blocks every send for delay, as a producer out of buffer space does.
type slowProducer struct{ delay time.Duration }

func (p *slowProducer) ProduceAsync(_ context.Context, _ storage.Record, fn func(int64, error)) {
	time.Sleep(p.delay)
	fn(0, nil)
}

func (p *slowProducer) Close() error { return nil }

// TestRateBehindScheduleEndsAtDuration: a producer that cannot keep up with --rate still stops
// at --duration (give or take benchReadEvery sends), not when the last record due by then has
// gone out (which took 1.08 s for a 100 ms run before).
func TestRateBehindScheduleEndsAtDuration(t *testing.T) {
	var h latencyHist
	var stats produceStats
	var claimed atomic.Int64
	f := &benchFlags{rate: 10_000, producers: 1, duration: 100 * time.Millisecond}
	start := time.Now()
	produceLoop(&slowProducer{delay: time.Millisecond}, &h, &stats, &claimed, []byte("v"), f, start)
	if el := time.Since(start); el > 3*f.duration {
		t.Fatalf("a %v run lasted %v (%d records)", f.duration, el, stats.acked.Load())
	}
}

// TestTimeLeft: the progress line's ETA comes from the records done at the average rate so
// far, or from the run's duration, whichever ends first; with neither there is none.
func TestTimeLeft(t *testing.T) {
	for _, c := range []struct {
		n, total       int64
		elapsed, limit time.Duration
		want           time.Duration
		ok             bool
	}{
		{250, 1000, 10 * time.Second, 0, 30 * time.Second, true},
		{1000, 1000, 10 * time.Second, 0, 0, true},
		{1200, 1000, 10 * time.Second, 0, 0, true}, // more than claimed (in flight): nothing left
		{0, 1000, 2 * time.Second, 0, 0, false},    // no rate yet
		{500, 0, 4 * time.Second, 0, 0, false},     // no total, no limit
		{500, 0, 4 * time.Second, 10 * time.Second, 6 * time.Second, true},
		{250, 1000, 10 * time.Second, 15 * time.Second, 5 * time.Second, true},  // the duration ends first
		{750, 1000, 30 * time.Second, 60 * time.Second, 10 * time.Second, true}, // the records end first
		{10, 0, 20 * time.Second, 15 * time.Second, 0, true},
	} {
		got, ok := timeLeft(c.n, c.total, c.elapsed, c.limit)
		if got != c.want || ok != c.ok {
			t.Errorf("timeLeft(%d, %d, %v, %v) = %v, %v; want %v, %v", c.n, c.total, c.elapsed, c.limit, got, ok, c.want, c.ok)
		}
	}
}

// TestConsumeProgressShowsETA: once bench consume knows how many records it will read, its
// progress line shows the time left, as bench produce's does.
func TestConsumeProgressShowsETA(t *testing.T) {
	progressEvery = 2 * time.Millisecond
	t.Cleanup(func() { progressEvery = time.Second })
	var stderr syncbuf.Buffer
	args := []string{"bench", "consume", "--embedded", "--topic", "eta", "--partitions", "2", "--records", "200000"}
	if code := runEnv(args, cli{stdin: strings.NewReader(""), stdout: io.Discard, stderr: &stderr}); code != 0 {
		t.Fatalf("weir %v exited %d:\n%s", args, code, stderr.String())
	}
	var lines, withETA int
	for l := range strings.Lines(stderr.String()) {
		if strings.HasPrefix(l, "bench consume: ") && strings.Contains(l, "records/s") {
			lines++
			if strings.Contains(l, " ETA ") {
				withETA++
			}
		}
	}
	if withETA == 0 {
		t.Fatalf("none of %d progress lines of bench consume shows an ETA:\n%s", lines, stderr.String())
	}
}

// TestBenchProduceHist checks --hist: the file's counts add up to the records produced, its
// bounds rise, and the summary's percentiles and max are read off it the same way.
func TestBenchProduceHist(t *testing.T) {
	const n = 5000
	path := filepath.Join(t.TempDir(), "hist.txt")
	p := benchSummary(t, "bench", "produce", "--embedded", "--topic", "h", "--records", strconv.Itoa(n), "--hist", path)
	checkSummary(t, p, n, 100)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var total, prev uint64
	var bounds []uint64
	var counts []uint64
	for _, l := range lines(string(b)) {
		if strings.HasPrefix(l, "#") || l == "" {
			continue
		}
		f := strings.Fields(l)
		if len(f) != 2 {
			t.Fatalf("line %q: want two fields", l)
		}
		hi, err1 := strconv.ParseUint(f[0], 10, 64)
		c, err2 := strconv.ParseUint(f[1], 10, 64)
		if err1 != nil || err2 != nil || c == 0 || (len(bounds) > 0 && hi <= prev) {
			t.Fatalf("line %q after bound %d: want rising bounds and positive counts", l, prev)
		}
		prev, total = hi, total+c
		bounds, counts = append(bounds, hi), append(counts, c)
	}
	if total != n {
		t.Fatalf("histogram counts %d records, want %d", total, n)
	}
	if got, want := float64(prev)/1e6, p["max"]; math.Abs(got-want) > 0.01*want+0.001 {
		t.Fatalf("last bound %v ms, summary max %v ms", got, want)
	}
	var cum uint64
	for i, c := range counts { // p50: the first bucket at or past the 2500th value
		if cum += c; cum >= n/2 {
			if got, want := float64(bounds[i])/1e6, p["p50"]; math.Abs(got-want) > 0.01*want+0.001 {
				t.Fatalf("p50 from the file %v ms, summary %v ms", got, want)
			}
			break
		}
	}
}

func TestWriteHist(t *testing.T) {
	var h latencyHist
	for _, d := range []time.Duration{3, 3, 300, 1000} {
		h.record(d)
	}
	var b bytes.Buffer
	if err := writeHist(&b, &h); err != nil {
		t.Fatal(err)
	}
	// 300 falls in the bucket [300, 301]; 1000 in [1000, 1003], capped at the max, 1000.
	want := "# weir bench produce latency histogram: highest_ns count (records=4 max_ns=1000)\n3 2\n301 1\n1000 1\n"
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}
