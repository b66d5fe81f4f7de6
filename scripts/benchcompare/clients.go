//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// recordSize is the value size of every record the workloads send, in bytes.
const recordSize = 100

// The clients whose figures the tables show.
const (
	clientProducerPerf = "ProducerPerformance"
	clientWeirBench    = "weir bench produce"
)

// measure is what one client run reports. Latencies are in milliseconds; NaN where the client
// does not report that percentile.
type measure struct {
	records       int64
	recordsPerSec float64
	mbPerSec      float64
	p50, p95, p99 float64
	p999          float64 // p99.9 (0 where a test or an old row leaves it out)
	max           float64
}

// result is one row of a workload's table.
type result struct {
	workload  string
	round     int
	system    string
	client    string
	acks      string // "1" or "all", as Kafka's producer names them
	producers int
	// groups, groupRates and join are the fan-out workload's (W3): how many consumer groups
	// read at once (0 in a produce row), each group's records/s, and the longest join in
	// seconds (NaN: not reported). measure then holds the aggregate.
	groups     int
	groupRates []float64
	join       float64
	// cdf is the produce latency distribution of the run, lowest first (nil: none): the full
	// histogram of `weir bench produce --hist`, or ProducerPerformance's percentiles.
	cdf []cdfPoint
	measure
	usage
	err string // why the run failed; the figures are then zero
}

// perfSummary matches ProducerPerformance's last line, e.g. "300000 records sent, 68399.452804
// records/sec (6.52 MB/sec), 1284.93 ms avg latency, 2021.00 ms max latency, 1332 ms 50th,
// 1962 ms 95th, 1993 ms 99th, 2014 ms 99.9th."
var perfSummary = regexp.MustCompile(`(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ` +
	`([\d.]+) ms avg latency, ([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th`)

// parsePerf reads the summary line of one ProducerPerformance run.
func parsePerf(out string) (measure, error) {
	m := perfSummary.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		return measure{}, errors.New("no summary line in ProducerPerformance's output")
	}
	last := m[len(m)-1]
	f := make([]float64, len(last))
	for i := 1; i < len(last); i++ {
		v, err := strconv.ParseFloat(last[i], 64)
		if err != nil {
			return measure{}, fmt.Errorf("summary %q: %w", last[0], err)
		}
		f[i] = v
	}
	return measure{records: int64(f[1]), recordsPerSec: f[2], mbPerSec: f[3], max: f[5], p50: f[6], p95: f[7], p99: f[8], p999: f[9]}, nil
}

// combine adds up the runs of concurrent producers: records over the longest run's time, and
// for each latency percentile the worst producer's (percentiles cannot be merged exactly
// without the producers' histograms).
func combine(runs []measure) measure {
	var total int64
	var longest float64
	c := measure{p50: math.NaN(), p95: math.NaN(), p99: math.NaN(), p999: math.NaN(), max: math.NaN()}
	worst := func(a, b float64) float64 {
		if math.IsNaN(a) {
			return b
		}
		if math.IsNaN(b) {
			return a
		}
		return max(a, b)
	}
	for _, r := range runs {
		total += r.records
		if r.recordsPerSec > 0 {
			longest = max(longest, float64(r.records)/r.recordsPerSec)
		}
		c.p50, c.p95, c.p99, c.max = worst(c.p50, r.p50), worst(c.p95, r.p95), worst(c.p99, r.p99), worst(c.max, r.max)
		c.p999 = worst(c.p999, r.p999)
	}
	c.records = total
	if longest > 0 {
		c.recordsPerSec = float64(total) / longest
		c.mbPerSec = c.recordsPerSec * recordSize / (1 << 20) // ProducerPerformance's MB is MiB
	}
	return c
}

// runProducerPerf runs producers ProducerPerformance processes at once, each sending its share
// of records to topic as fast as it can.
func (h *harness) runProducerPerf(ctx context.Context, c *cluster, topic, acks string, producers int, records int64) (measure, error) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.caseLimit)
	defer cancel()
	runs := make([]measure, producers)
	errs := make([]error, producers)
	stop := h.watchTopic(ctx, c, topic, fmt.Sprintf("%s ProducerPerformance acks=%s producers=%d", topic, acks, producers), records)
	defer stop()
	var wg sync.WaitGroup
	for i := range producers {
		n := records / int64(producers)
		if i == 0 {
			n += records % int64(producers)
		}
		args := []string{kafkaToolsScript, "org.apache.kafka.tools.ProducerPerformance", "--topic", topic,
			"--num-records", fmt.Sprint(n), "--record-size", fmt.Sprint(recordSize), "--throughput", "-1",
			"--bootstrap-server", c.bootstrap, "--command-property", "acks=" + acks}
		h.note(args)
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := h.output(ctx, args)
			if err == nil {
				runs[i], err = parsePerf(out)
			}
			// ProducerPerformance counts only the records whose send succeeded (and prints the
			// others' exceptions), so a short count is a failed run.
			if err == nil && runs[i].records != n {
				err = fmt.Errorf("ProducerPerformance: %d of %d records acknowledged", runs[i].records, n)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return measure{}, err
	}
	return combine(runs), nil
}

// weirSummary matches the summary line of `weir bench produce`.
var weirSummary = regexp.MustCompile(`bench produce: records=(\d+) seconds=[\d.]+ records/s=([\d.]+) MB/s=([\d.]+) ` +
	`p50=([\d.]+)ms p99=([\d.]+)ms p999=([\d.]+)ms max=([\d.]+)ms errors=(\d+)`)

// parseWeirBench reads the summary line of `weir bench produce`, which has no p95.
func parseWeirBench(out string) (measure, error) {
	m := weirSummary.FindStringSubmatch(out)
	if m == nil {
		return measure{}, errors.New("no summary line in weir bench produce's output")
	}
	f := make([]float64, len(m))
	for i := 1; i < len(m); i++ {
		v, err := strconv.ParseFloat(m[i], 64)
		if err != nil {
			return measure{}, fmt.Errorf("summary %q: %w", m[0], err)
		}
		f[i] = v
	}
	if f[8] > 0 {
		return measure{}, fmt.Errorf("%.0f records failed: %s", f[8], m[0])
	}
	return measure{records: int64(f[1]), recordsPerSec: f[2], mbPerSec: f[3] * 1e6 / (1 << 20), // weir bench's MB is 10^6 B
		p50: f[4], p95: math.NaN(), p99: f[5], p999: f[6], max: f[7]}, nil
}

// runWeirBench runs `weir bench produce` with producers producers (one process) against a
// Weir cluster's client ports, and reads the latency histogram it writes (--hist).
func (h *harness) runWeirBench(ctx context.Context, c *cluster, topic, acks string, producers int, records int64) (measure, []cdfPoint, error) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.caseLimit)
	defer cancel()
	weirAcks := map[string]string{"1": "leader", "all": "all"}[acks]
	args := []string{h.weirBin, "--server", c.weirServers, "bench", "produce", "--topic", topic,
		"--records", fmt.Sprint(records), "--record-size", fmt.Sprint(recordSize), "--acks", weirAcks,
		"--producers", fmt.Sprint(producers), "--hist", filepath.Join(h.work, topic+".hist")}
	h.note(args)
	stop := h.watchTopic(ctx, c, topic, fmt.Sprintf("%s weir bench produce acks=%s producers=%d", topic, acks, producers), records)
	out, err := h.output(ctx, args)
	stop()
	if err != nil {
		return measure{}, nil, err
	}
	m, err := parseWeirBench(out)
	if err != nil {
		return measure{}, nil, err
	}
	b, err := os.ReadFile(filepath.Join(h.work, topic+".hist"))
	if err != nil {
		return m, nil, err
	}
	cdf, err := parseWeirHist(string(b))
	return m, cdf, err
}

// output runs args in the repository's root and returns its standard output; a failure's
// error carries the end of its standard error.
func (h *harness) output(ctx context.Context, args []string) (string, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = h.root
	cmd.WaitDelay = 10 * time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := h.procs.start(cmd); err != nil {
		return "", err
	}
	if err := cmd.Wait(); err != nil {
		tail := errOut.String()
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(args[:min(len(args), 3)], " "), err, strings.TrimSpace(tail))
	}
	return out.String(), nil
}

// command runs args in the repository's root with its output on standard error.
func (h *harness) command(ctx context.Context, args ...string) error {
	h.note(args)
	out, err := h.output(ctx, args)
	if out != "" {
		fmt.Fprint(os.Stderr, out)
	}
	return err
}
