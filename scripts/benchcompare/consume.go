//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The clients of the fan-out workload (W3).
const (
	// clientConsumerPerf is Kafka's ConsumerPerformance, one JVM per group.
	clientConsumerPerf = "ConsumerPerformance"
	// clientFranzGo is franz-go inside the harness's own process, one client per group: ten
	// groups cost one process, not ten JVMs on a 2-core machine.
	clientFranzGo = "franz-go (one process)"
	// clientWeirConsume is `weir bench consume --group`, one process per group, through
	// Weir's own client port.
	clientWeirConsume = "weir bench consume"
)

// fanOutSpec is a consumer fan-out comparison on one node: a topic of partitions partitions
// filled with h.cfg.records records, then read whole by each count of concurrent groups.
type fanOutSpec struct {
	workload   string
	partitions int32
	groups     []int
}

// groupRun is what one consumer group's read of the whole topic took. seconds counts from the
// group's first assignment to its last record (ConsumerPerformance's fetch time; franz-go the
// same; weir bench consume from the start of its group consumer, its join included).
type groupRun struct {
	records int64
	seconds float64
	join    float64 // seconds from the client's start to its first assignment (NaN: not reported)
	// from and to are when that time began and ended, on this machine's clock (zero: unknown).
	from, to time.Time
}

func (g groupRun) rate() float64 {
	if g.seconds <= 0 {
		return math.NaN()
	}
	return float64(g.records) / g.seconds
}

// combineGroups sums concurrent groups: the aggregate is all records over the span from the
// first group's start to the last group's end (groups started at once do not all read at
// once: a JVM may start seconds after another), or over the longest group's time when a run's
// span is unknown; each group's own rate is kept, and the longest join.
func combineGroups(runs []groupRun) (measure, []float64, float64) {
	m := measure{p50: math.NaN(), p95: math.NaN(), p99: math.NaN(), p999: math.NaN(), max: math.NaN()}
	rates := make([]float64, len(runs))
	longest, join := 0.0, math.NaN()
	var first, last time.Time
	spans := true
	for i, r := range runs {
		m.records += r.records
		longest = max(longest, r.seconds)
		if r.from.IsZero() || r.to.IsZero() {
			spans = false
		} else {
			if first.IsZero() || r.from.Before(first) {
				first = r.from
			}
			if r.to.After(last) {
				last = r.to
			}
		}
		rates[i] = r.rate()
		if !math.IsNaN(r.join) && (math.IsNaN(join) || r.join > join) {
			join = r.join
		}
	}
	if spans && len(runs) > 0 && last.After(first) {
		longest = last.Sub(first).Seconds()
	}
	if longest > 0 {
		m.recordsPerSec = float64(m.records) / longest
		m.mbPerSec = m.recordsPerSec * recordSize / (1 << 20)
	}
	return m, rates, join
}

// fanOutComparison runs spec against Apache Kafka and Weir (--sync never), h.cfg.rounds times.
// Weir --sync always is left out: reads do not fsync, so it would differ only in the fill.
func (h *harness) fanOutComparison(ctx context.Context, spec fanOutSpec) error {
	for round := 1; round <= h.cfg.rounds; round++ {
		for _, sys := range []system{apacheKafka, weirSyncNever} {
			if err := h.fanOutAgainst(ctx, spec, round, sys); err != nil {
				return err
			}
		}
	}
	return nil
}

func (h *harness) fanOutAgainst(ctx context.Context, spec fanOutSpec, round int, sys system) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	h.progress("%s round %d: starting %s, 1 node", spec.workload, round, sys.name)
	c, err := sys.start(ctx, h, 1)
	if err != nil {
		return fmt.Errorf("%s: %w", sys.name, err)
	}
	stop := func() error {
		h.progress("%s round %d: stopping %s", spec.workload, round, sys.name)
		if err := c.stop(); err != nil {
			return fmt.Errorf("stopping %s: %w", sys.name, err)
		}
		if left := h.procs.alive(); len(left) > 0 {
			return fmt.Errorf("after stopping %s, processes still run: %v", sys.name, left)
		}
		return nil
	}
	topic := fmt.Sprintf("%s-r%d", strings.ToLower(spec.workload), round)
	if err := createTopic(ctx, c.bootstrap, topic, spec.partitions, 1); err != nil {
		_ = stop()
		return err
	}
	fill, err := h.runProducerPerf(ctx, c, topic, "1", 1, h.cfg.records)
	if err != nil {
		_ = stop()
		return fmt.Errorf("filling %s on %s: %w", topic, sys.name, err)
	}
	h.progress("  filled %s with %d records (not reported: %.0f records/s)", topic, fill.records, fill.recordsPerSec)
	clients := []string{clientConsumerPerf, clientFranzGo}
	if sys.weir {
		clients = append(clients, clientWeirConsume)
	}
	for _, client := range clients {
		for _, n := range spec.groups {
			if ctx.Err() != nil {
				_ = stop()
				return ctx.Err()
			}
			h.results = append(h.results, h.measureFanOut(ctx, c, spec, round, sys, client, topic, n))
		}
	}
	if err := stop(); err != nil {
		return err
	}
	return ctx.Err()
}

// measureFanOut runs groups consumer groups at once on topic, each reading all of it, while
// sampling the servers.
func (h *harness) measureFanOut(ctx context.Context, c *cluster, spec fanOutSpec, round int, sys system, client, topic string, groups int) result {
	r := result{workload: spec.workload, round: round, system: sys.name, client: client, groups: groups}
	short := map[string]string{clientConsumerPerf: "cp", clientFranzGo: "fg", clientWeirConsume: "wb"}[client]
	names := make([]string, groups)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%s-g%d-%d", topic, short, groups, i+1)
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.caseLimit)
	defer cancel()
	s := startSampler(c.servers())
	stopWatch := h.watchGroups(ctx, c, topic, names, fmt.Sprintf("%s %s groups=%d (committed)", topic, client, groups), h.cfg.records*int64(groups))
	var runs []groupRun
	var err error
	switch client {
	case clientConsumerPerf:
		runs, err = h.runConsumerPerf(ctx, c, topic, names, h.cfg.records)
	case clientFranzGo:
		runs, err = h.runFranzGo(ctx, c, topic, names, h.cfg.records)
	case clientWeirConsume:
		runs, err = h.runWeirConsume(ctx, c, topic, names, h.cfg.records)
	}
	stopWatch()
	r.usage = s.stop()
	if err != nil {
		r.err = err.Error()
		h.progress("  %s %s groups=%d: %v", sys.name, client, groups, err)
		return r
	}
	r.measure, r.groupRates, r.join = combineGroups(runs)
	mean, lo, hi := spread(r.groupRates)
	h.progress("  %s %s groups=%d: aggregate %.0f records/s, per group %.0f (%.0f to %.0f), RSS %d MiB, CPU %.1f s",
		sys.name, client, groups, r.recordsPerSec, mean, lo, hi, r.peakRSS>>20, r.cpu.Seconds())
	return r
}

// spread is the mean, lowest and highest of vs, NaN left out (all NaN for none).
func spread(vs []float64) (mean, lo, hi float64) {
	mean, lo, hi = math.NaN(), math.NaN(), math.NaN()
	sum, n := 0.0, 0
	for _, v := range vs {
		if math.IsNaN(v) {
			continue
		}
		if n == 0 {
			lo, hi = v, v
		}
		sum += v
		n++
		lo, hi = min(lo, v), max(hi, v)
	}
	if n > 0 {
		mean = sum / float64(n)
	}
	return mean, lo, hi
}

// concurrently runs f for every group name at once and returns their runs, or all errors.
func concurrently(names []string, f func(i int, name string) (groupRun, error)) ([]groupRun, error) {
	runs := make([]groupRun, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runs[i], errs[i] = f(i, name)
		}()
	}
	wg.Wait()
	return runs, errors.Join(errs...)
}

// runConsumerPerf runs one ConsumerPerformance process per group name, all at once, each
// reading records records of topic from the earliest offset.
func (h *harness) runConsumerPerf(ctx context.Context, c *cluster, topic string, names []string, records int64) ([]groupRun, error) {
	return concurrently(names, func(_ int, name string) (groupRun, error) {
		args := []string{kafkaToolsScript, "org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server", c.bootstrap,
			"--topic", topic, "--group", name, "--num-records", fmt.Sprint(records), "--hide-header", "--timeout", "30000"}
		h.note(args)
		out, err := h.output(ctx, args)
		if err != nil {
			return groupRun{}, err
		}
		g, err := parseConsumerPerf(out)
		if err == nil && g.records < records {
			err = fmt.Errorf("ConsumerPerformance %s: %d of %d records read", name, g.records, records)
		}
		return g, err
	})
}

// consumerPerfLine matches ConsumerPerformance's summary (with --hide-header): start, end,
// MB, MB/s, records, records/s, rebalance ms, fetch ms, fetch MB/s, fetch records/s, e.g.
// "2026-12-01 23:59:00:123, 2026-12-01 23:59:02:456, 2.8610, 1.2263, 30000, 12857.7797, 345, 1988, 1.4392, 15090.5433".
var consumerPerfLine = regexp.MustCompile(`(?m)^([^,\n]+), ([^,\n]+), ([\d.]+), ([\d.]+), (\d+), ([\d.]+), (-?\d+), (-?\d+), ([\d.NaInfity-]+), ([\d.NaInfity-]+)\s*$`)

// parseConsumerPerfDate reads ConsumerPerformance's default --date-format, yyyy-MM-dd
// HH:mm:ss:SSS, in the machine's time zone (the JVM's and Go's both); Go's layouts take no
// colon before the milliseconds.
func parseConsumerPerfDate(s string) (time.Time, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 || len(s)-i != 4 {
		return time.Time{}, fmt.Errorf("date %q: no :SSS", s)
	}
	ms, err := strconv.Atoi(s[i+1:])
	if err != nil {
		return time.Time{}, fmt.Errorf("date %q: %w", s, err)
	}
	t, err := time.ParseInLocation("2006-01-02 15:04:05", strings.TrimSpace(s[:i]), time.Local)
	if err != nil {
		return time.Time{}, err
	}
	return t.Add(time.Duration(ms) * time.Millisecond), nil
}

// parseConsumerPerf reads the last summary line of one ConsumerPerformance run: the records
// it read, its fetch time (the time after the group's first assignment) and its join.
func parseConsumerPerf(out string) (groupRun, error) {
	m := consumerPerfLine.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		return groupRun{}, errors.New("no summary line in ConsumerPerformance's output")
	}
	last := m[len(m)-1]
	records, err1 := strconv.ParseInt(last[5], 10, 64)
	end, errEnd := parseConsumerPerfDate(last[2])
	rebalance, err2 := strconv.ParseInt(last[7], 10, 64)
	fetch, err3 := strconv.ParseInt(last[8], 10, 64)
	if err := errors.Join(err1, err2, err3, errEnd); err != nil {
		return groupRun{}, fmt.Errorf("summary %q: %w", strings.TrimSpace(last[0]), err)
	}
	if fetch <= 0 {
		return groupRun{}, fmt.Errorf("summary %q: fetch time %d ms", strings.TrimSpace(last[0]), fetch)
	}
	d := time.Duration(fetch) * time.Millisecond
	return groupRun{records: records, seconds: d.Seconds(), join: float64(rebalance) / 1000, from: end.Add(-d), to: end}, nil
}

// runFranzGo reads topic whole with one franz-go client per group name, all in this process
// and at once.
func (h *harness) runFranzGo(ctx context.Context, c *cluster, topic string, names []string, records int64) ([]groupRun, error) {
	h.commands = append(h.commands, fmt.Sprintf("# franz-go in this harness's process (scripts/benchcompare/consume.go): groups %s --topic %s --records %d",
		strings.Join(names, ","), topic, records))
	return concurrently(names, func(_ int, name string) (groupRun, error) {
		return franzGoGroup(ctx, c.bootstrap, topic, name, records)
	})
}

// franzGoGroup joins group, reads topic from the earliest offsets until want records, and
// times it from the first assignment.
func franzGoGroup(ctx context.Context, bootstrap, topic, group string, want int64) (groupRun, error) {
	var assigned atomic.Int64
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(bootstrap, ",")...),
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) {
			assigned.CompareAndSwap(0, time.Now().UnixNano())
		}))
	if err != nil {
		return groupRun{}, err
	}
	defer cl.Close()
	start := time.Now()
	var n int64
	for n < want {
		f := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return groupRun{records: n}, fmt.Errorf("franz-go %s: %d of %d records read: %w", group, n, want, err)
		}
		if errs := f.Errors(); len(errs) > 0 {
			return groupRun{records: n}, fmt.Errorf("franz-go %s: %s[%d]: %w", group, errs[0].Topic, errs[0].Partition, errs[0].Err)
		}
		n += int64(f.NumRecords())
	}
	end := time.Now()
	from := start
	if a := assigned.Load(); a > 0 {
		from = time.Unix(0, a)
	}
	return groupRun{records: n, seconds: end.Sub(from).Seconds(), join: from.Sub(start).Seconds(), from: from, to: end}, nil
}

// runWeirConsume runs one `weir bench consume --group` process per group name, all at once,
// against Weir's client port.
func (h *harness) runWeirConsume(ctx context.Context, c *cluster, topic string, names []string, records int64) ([]groupRun, error) {
	return concurrently(names, func(_ int, name string) (groupRun, error) {
		args := []string{h.weirBin, "--server", c.weirServers, "bench", "consume", "--topic", topic, "--group", name,
			"--records", fmt.Sprint(records)}
		h.note(args)
		out, err := h.output(ctx, args)
		if err != nil {
			return groupRun{}, err
		}
		g, err := parseWeirConsume(out)
		if err == nil { // its time ended just before the process printed and exited
			g.to = time.Now()
			g.from = g.to.Add(-time.Duration(g.seconds * float64(time.Second)))
		}
		return g, err
	})
}

// weirConsumeSummary matches the summary line of `weir bench consume`.
var weirConsumeSummary = regexp.MustCompile(`bench consume: records=(\d+) seconds=([\d.]+) records/s=[\d.]+ MB/s=[\d.]+ errors=(\d+)`)

// parseWeirConsume reads the summary line of `weir bench consume` (its time includes the
// group's join: NaN join).
func parseWeirConsume(out string) (groupRun, error) {
	m := weirConsumeSummary.FindStringSubmatch(out)
	if m == nil {
		return groupRun{}, errors.New("no summary line in weir bench consume's output")
	}
	records, err1 := strconv.ParseInt(m[1], 10, 64)
	seconds, err2 := strconv.ParseFloat(m[2], 64)
	errs, err3 := strconv.Atoi(m[3])
	if err := errors.Join(err1, err2, err3); err != nil {
		return groupRun{}, fmt.Errorf("summary %q: %w", m[0], err)
	}
	if errs > 0 {
		return groupRun{}, fmt.Errorf("%d errors: %s", errs, m[0])
	}
	return groupRun{records: records, seconds: seconds, join: math.NaN()}, nil
}
