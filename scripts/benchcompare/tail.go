//go:build linux

package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// W3's tailing mode: a producer writes at a fixed rate for a fixed time while 0, 1 or 10
// consumer groups tail the topic, each reading records as they arrive. Unlike the saturated
// mode (every group reading a filled topic as fast as it can, which on two cores measures how
// the CPU is shared), the load here is fixed and chosen to fit the machine, so what ten
// groups cost shows as a change in the producer's rate and latency, in each group's delivered
// rate and in the records' end-to-end latency, and in the server's CPU time.
//
// Both systems are driven by the same clients: franz-go, the producer and every group in this
// harness's process, through the Kafka protocol.

// clientTail names the clients of the tailing mode in the tables.
const clientTail = "franz-go (one process)"

// tailLinger is the producer's linger: Apache Kafka's Java producer's default (linger.ms=5
// since Kafka 4.0), so that the franz-go producer batches as Kafka's own would.
const tailLinger = 5 * time.Millisecond

// tailDrain bounds the wait, after the producer's last acknowledgement, for the groups to
// read every record.
const tailDrain = 15 * time.Second

// tailWarmUp is the longest warm-up of a system before its tailing measurements.
const tailWarmUp = 10 * time.Second

// tailSpec is one tailing comparison on one node.
type tailSpec struct {
	workload   string
	partitions int32
	groups     []int // e.g. 0, 1, 10: with 0 the producer runs alone
	rate       float64
	duration   time.Duration
}

// tailGroup is what one group read.
type tailGroup struct {
	records int64
	// rate is records over the time from the producer's start to the group's last record.
	rate float64
	// p50, p99 and max are end-to-end latencies in ms: from a record's timestamp (set by the
	// producer when it sends it, in whole ms on the wire) to its arrival in PollFetches.
	p50, p99, max float64
}

// tailRow is one tailing measurement: a system, a count of groups.
type tailRow struct {
	workload string
	round    int
	system   string
	client   string
	groups   int
	target   float64 // the producer's rate, records/s
	seconds  float64 // the producer's time, from its start to its last acknowledgement
	sent     int64   // records acknowledged
	failed   int64   // records whose produce failed
	// rate is the producer's achieved rate: sent over seconds.
	rate                   float64
	prodP50, prodP99, pMax float64 // produce latency in ms, from each record's scheduled time to its acknowledgement
	perGroup               []tailGroup
	usage                          // the server's, from the producer's start to the end of the drain
	clientCPU              float64 // CPU seconds of this harness's process (producer and groups) over the same time
	err                    string
}

// latencies collects durations (in µs) from one goroutine at a time; quantiles sorts them.
type latencies struct {
	mu sync.Mutex
	us []int32
}

func (l *latencies) add(d time.Duration) {
	us := min(max(d.Microseconds(), 0), math.MaxInt32)
	l.mu.Lock()
	l.us = append(l.us, int32(us))
	l.mu.Unlock()
}

// quantiles returns the nearest-rank quantiles qs of the durations in ms (NaN for none).
func (l *latencies) quantiles(qs ...float64) []float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	slices.Sort(l.us)
	return nearestRank(l.us, qs)
}

// nearestRank returns, for each q, the ceil(q*n)-th smallest of sorted (in µs) in ms.
func nearestRank(sorted []int32, qs []float64) []float64 {
	out := make([]float64, len(qs))
	for i, q := range qs {
		if len(sorted) == 0 {
			out[i] = math.NaN()
			continue
		}
		k := int(math.Ceil(q*float64(len(sorted)))) - 1
		k = min(max(k, 0), len(sorted)-1)
		out[i] = float64(sorted[k]) / 1000
	}
	return out
}

// scheduledBy is how many records of a run at rate records/s are due by elapsed (the first is
// due at once).
func scheduledBy(elapsed time.Duration, rate float64, total int64) int64 {
	if elapsed < 0 {
		return 0
	}
	return min(int64(elapsed.Seconds()*rate)+1, total)
}

// tailComparison runs spec against Apache Kafka and Weir (--sync never), h.cfg.rounds times.
func (h *harness) tailComparison(ctx context.Context, spec tailSpec) error {
	for round := 1; round <= h.cfg.rounds; round++ {
		for _, sys := range []system{apacheKafka, weirSyncNever} {
			if err := h.tailAgainst(ctx, spec, round, sys); err != nil {
				return err
			}
		}
	}
	return nil
}

func (h *harness) tailAgainst(ctx context.Context, spec tailSpec, round int, sys system) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	h.progress("%s tailing round %d: starting %s, 1 node", spec.workload, round, sys.name)
	c, err := sys.start(ctx, h, 1)
	if err != nil {
		return fmt.Errorf("%s: %w", sys.name, err)
	}
	if h.cfg.warmup > 0 {
		// A fresh JVM compiles its hot paths during the first measurement: warm both systems
		// up alike, with one group tailing for up to 10 s, unreported.
		warm := spec
		warm.duration = min(spec.duration, tailWarmUp)
		h.measureTail(ctx, c, warm, round, sys, 1, "warmup")
	}
	for _, n := range spec.groups {
		if ctx.Err() != nil {
			break
		}
		r := h.measureTail(ctx, c, spec, round, sys, n, fmt.Sprintf("g%d", n))
		h.tails = append(h.tails, r)
	}
	if sys.weir { // extra rows: the groups are Weir's own client, the producer the same
		for _, n := range spec.groups {
			if n == 0 || ctx.Err() != nil {
				continue
			}
			h.tails = append(h.tails, h.measureTailWeirConsume(ctx, c, spec, round, sys, n))
		}
	}
	h.progress("%s tailing round %d: stopping %s", spec.workload, round, sys.name)
	if err := c.stop(); err != nil {
		return fmt.Errorf("stopping %s: %w", sys.name, err)
	}
	if left := h.procs.alive(); len(left) > 0 {
		return fmt.Errorf("after stopping %s, processes still run: %v", sys.name, left)
	}
	return ctx.Err()
}

// measureTail creates a fresh topic, starts groups tailing groups on it (each with one
// member, reading from the start of the empty topic, so from the first record produced),
// waits until every group has its partitions, then produces at spec.rate for spec.duration
// and waits for the groups to read every acknowledged record (up to tailDrain).
func (h *harness) measureTail(ctx context.Context, c *cluster, spec tailSpec, round int, sys system, groups int, tag string) tailRow {
	r := tailRow{workload: spec.workload, round: round, system: sys.name, client: clientTail, groups: groups, target: spec.rate}
	topic := fmt.Sprintf("%s-r%d-tail-%s", strings.ToLower(spec.workload), round, tag)
	what := fmt.Sprintf("groups=%d", groups)
	if tag == "warmup" {
		what = "warm-up (not reported), groups=1"
	}
	fail := func(err error) tailRow {
		r.err = err.Error()
		h.progress("  %s tailing %s: %v", sys.name, what, err)
		return r
	}
	if err := createTopic(ctx, c.bootstrap, topic, spec.partitions, 1); err != nil {
		return fail(err)
	}
	total := int64(spec.rate * spec.duration.Seconds())
	h.commands = append(h.commands, fmt.Sprintf("# franz-go in this harness's process (scripts/benchcompare/tail.go): --topic %s, a producer at %.0f records/s of %d B for %v (acks=1, linger %v), %d group(s) tailing",
		topic, spec.rate, recordSize, spec.duration, tailLinger, groups))
	ctx, cancel := context.WithTimeout(ctx, h.cfg.caseLimit)
	defer cancel()
	cctx, stopGroups := context.WithCancel(ctx)
	var wg sync.WaitGroup
	tails := make([]*tailer, groups)
	for i := range tails {
		t, err := newTailer(c.bootstrap, topic, fmt.Sprintf("%s-%d", topic, i+1))
		if err != nil {
			stopGroups()
			wg.Wait()
			closeTailers(tails)
			return fail(err)
		}
		tails[i] = t
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.run(cctx)
		}()
	}
	finish := func() {
		stopGroups()
		wg.Wait()
		closeTailers(tails)
	}
	for _, t := range tails {
		select {
		case <-t.assigned:
		case <-time.After(startLimit):
			finish()
			return fail(fmt.Errorf("group %s not assigned its partitions within %v", t.group, startLimit))
		case <-ctx.Done():
			finish()
			return fail(ctx.Err())
		}
	}
	s := startSampler(c.servers())
	cpu0 := selfCPU()
	stopWatch := h.watchTopic(ctx, c, topic, fmt.Sprintf("%s tailing at %.0f records/s, groups=%d", topic, spec.rate, groups), total)
	start := time.Now()
	p, err := produceAtRate(ctx, c.bootstrap, topic, spec.rate, total, start)
	stopWatch()
	if err == nil && p.failed > 0 {
		err = fmt.Errorf("%d of %d records failed: %v", p.failed, total, p.firstErr)
	}
	if err == nil {
		deadline := time.Now().Add(tailDrain)
		for _, t := range tails {
			for t.count.Load() < p.sent && time.Now().Before(deadline) && ctx.Err() == nil {
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	r.usage = s.stop()
	r.clientCPU = (selfCPU() - cpu0).Seconds()
	finish()
	if err != nil {
		return fail(err)
	}
	r.sent, r.failed, r.seconds = p.sent, p.failed, p.seconds
	if p.seconds > 0 {
		r.rate = float64(p.sent) / p.seconds
	}
	q := p.lat.quantiles(0.5, 0.99, 1)
	r.prodP50, r.prodP99, r.pMax = q[0], q[1], q[2]
	var short []string
	for _, t := range tails {
		g := t.result(start)
		r.perGroup = append(r.perGroup, g)
		if g.records < p.sent {
			why := ""
			if e, ok := t.err.Load().(error); ok {
				why = fmt.Sprintf(" (first fetch error: %v)", e)
			}
			short = append(short, fmt.Sprintf("%s read %d of %d%s", t.group, g.records, p.sent, why))
		}
	}
	if len(short) > 0 {
		r.err = fmt.Sprintf("within %v of the last acknowledgement: %s", tailDrain, strings.Join(short, "; "))
	}
	mean, lo, hi := spread(groupRates(r.perGroup))
	e2e50, _, _ := spread(groupField(r.perGroup, func(g tailGroup) float64 { return g.p50 }))
	_, _, e2e99 := spread(groupField(r.perGroup, func(g tailGroup) float64 { return g.p99 }))
	h.progress("  %s tailing %s: producer %.0f records/s (target %.0f), produce p99 %.1f ms; per group %.0f (%.0f to %.0f) records/s, end-to-end p50 %.1f ms (mean), p99 %.1f ms (worst); server CPU %.1f s, RSS %d MiB; harness CPU %.1f s",
		sys.name, what, r.rate, spec.rate, r.prodP99, mean, lo, hi, e2e50, e2e99, r.cpu.Seconds(), r.peakRSS>>20, r.clientCPU)
	return r
}

func groupRates(gs []tailGroup) []float64 {
	return groupField(gs, func(g tailGroup) float64 { return g.rate })
}

func groupField(gs []tailGroup, f func(tailGroup) float64) []float64 {
	out := make([]float64, len(gs))
	for i, g := range gs {
		out[i] = f(g)
	}
	return out
}

// produced is what produceAtRate measured.
type produced struct {
	sent, failed int64
	firstErr     error
	seconds      float64
	lat          *latencies
}

// produceAtRate sends total records of recordSize bytes to topic with one franz-go producer
// (acks=1), record i at start + i/rate (those due are sent together, then it sleeps a
// millisecond), and waits for every acknowledgement. A record's latency is from its scheduled
// time, so a producer that falls behind its schedule shows it.
func produceAtRate(ctx context.Context, bootstrap, topic string, rate float64, total int64, start time.Time) (produced, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(bootstrap, ",")...), kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(), kgo.ProducerLinger(tailLinger))
	if err != nil {
		return produced{}, err
	}
	defer cl.Close()
	value := make([]byte, recordSize)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	p := produced{lat: &latencies{us: make([]int32, 0, total)}}
	var sent, failed atomic.Int64
	var errOnce sync.Once
	var next int64
	for next < total {
		if err := ctx.Err(); err != nil {
			return p, err
		}
		due := scheduledBy(time.Since(start), rate, total)
		for ; next < due; next++ {
			at := start.Add(time.Duration(float64(next) / rate * float64(time.Second)))
			cl.Produce(ctx, &kgo.Record{Value: value, Timestamp: time.Now()}, func(_ *kgo.Record, err error) {
				if err != nil {
					failed.Add(1)
					errOnce.Do(func() { p.firstErr = err })
					return
				}
				p.lat.add(time.Since(at))
				sent.Add(1)
			})
		}
		time.Sleep(time.Millisecond)
	}
	if err := cl.Flush(ctx); err != nil {
		return p, err
	}
	p.seconds = time.Since(start).Seconds()
	p.sent, p.failed = sent.Load(), failed.Load()
	return p, nil
}

// tailer is one consumer group of one member, counting the records it reads and their
// end-to-end latency.
type tailer struct {
	group    string
	cl       *kgo.Client
	assigned chan struct{}
	count    atomic.Int64
	lat      latencies
	last     atomic.Int64 // unix ns of the last record's arrival
	err      atomic.Value // error: the first fetch error
}

func newTailer(bootstrap, topic, group string) (*tailer, error) {
	t := &tailer{group: group, assigned: make(chan struct{})}
	var once sync.Once
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(bootstrap, ",")...),
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			if len(m[topic]) > 0 {
				once.Do(func() { close(t.assigned) })
			}
		}))
	if err != nil {
		return nil, err
	}
	t.cl = cl
	return t, nil
}

// run polls until ctx ends.
func (t *tailer) run(ctx context.Context) {
	for ctx.Err() == nil {
		f := t.cl.PollFetches(ctx)
		now := time.Now()
		if errs := f.Errors(); len(errs) > 0 && ctx.Err() == nil {
			if t.err.Load() == nil {
				t.err.Store(fmt.Errorf("%s[%d]: %w", errs[0].Topic, errs[0].Partition, errs[0].Err))
			}
		}
		n := 0
		f.EachRecord(func(r *kgo.Record) {
			t.lat.add(now.Sub(r.Timestamp))
			n++
		})
		if n > 0 {
			t.count.Add(int64(n))
			t.last.Store(now.UnixNano())
		}
	}
}

// result is what the group read, its rate counted from the producer's start.
func (t *tailer) result(start time.Time) tailGroup {
	g := tailGroup{records: t.count.Load(), rate: math.NaN()}
	if last := t.last.Load(); last > 0 {
		if d := time.Unix(0, last).Sub(start).Seconds(); d > 0 {
			g.rate = float64(g.records) / d
		}
	}
	q := t.lat.quantiles(0.5, 0.99, 1)
	g.p50, g.p99, g.max = q[0], q[1], q[2]
	return g
}

func closeTailers(ts []*tailer) {
	for _, t := range ts {
		if t != nil {
			t.cl.Close()
		}
	}
}

// selfCPU is this process's CPU time, user and system, all threads (getrusage).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// tailJoinWait is how long the `weir bench consume` groups get to join before the producer
// starts: their processes do not say when they are assigned.
const tailJoinWait = 3 * time.Second

// measureTailWeirConsume is measureTail with `weir bench consume --group` processes (Weir's
// own client and protocol, one process per group) as the groups: started tailJoinWait before
// the producer, each reading the run's records. A group's delivered rate counts from the
// producer's start to its process's exit; they report no end-to-end latency.
func (h *harness) measureTailWeirConsume(ctx context.Context, c *cluster, spec tailSpec, round int, sys system, groups int) tailRow {
	r := tailRow{workload: spec.workload, round: round, system: sys.name, client: clientWeirConsume, groups: groups, target: spec.rate}
	topic := fmt.Sprintf("%s-r%d-tail-wb-g%d", strings.ToLower(spec.workload), round, groups)
	fail := func(err error) tailRow {
		r.err = err.Error()
		h.progress("  %s tailing, weir bench consume, groups=%d: %v", sys.name, groups, err)
		return r
	}
	if err := createTopic(ctx, c.bootstrap, topic, spec.partitions, 1); err != nil {
		return fail(err)
	}
	total := int64(spec.rate * spec.duration.Seconds())
	h.commands = append(h.commands, fmt.Sprintf("# franz-go producer in this harness's process (scripts/benchcompare/tail.go): --topic %s, %.0f records/s of %d B for %v (acks=1, linger %v), %v after these start:",
		topic, spec.rate, recordSize, spec.duration, tailLinger, tailJoinWait))
	ctx, cancel := context.WithTimeout(ctx, h.cfg.caseLimit)
	defer cancel()
	names := make([]string, groups)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", topic, i+1)
	}
	ends := make([]time.Time, groups)
	type done struct {
		runs []groupRun
		err  error
	}
	finished := make(chan done, 1)
	go func() {
		runs, err := concurrently(names, func(i int, name string) (groupRun, error) {
			args := []string{h.weirBin, "--server", c.weirServers, "bench", "consume", "--topic", topic, "--group", name,
				"--records", fmt.Sprint(total)}
			h.note(args)
			out, err := h.output(ctx, args)
			ends[i] = time.Now()
			if err != nil {
				return groupRun{}, err
			}
			return parseWeirConsume(out)
		})
		finished <- done{runs, err}
	}()
	select {
	case <-time.After(tailJoinWait):
	case d := <-finished:
		return fail(fmt.Errorf("the groups ended before the producer started: %v", d.err))
	}
	s := startSampler(c.servers())
	cpu0 := selfCPU()
	start := time.Now()
	p, err := produceAtRate(ctx, c.bootstrap, topic, spec.rate, total, start)
	if err == nil && p.failed > 0 {
		err = fmt.Errorf("%d of %d records failed: %v", p.failed, total, p.firstErr)
	}
	var d done
	select {
	case d = <-finished:
	case <-time.After(tailDrain):
		cancel() // stops the processes
		d = <-finished
		if d.err == nil {
			d.err = fmt.Errorf("the groups had not read every record %v after the last acknowledgement", tailDrain)
		}
	}
	r.usage = s.stop()
	r.clientCPU = (selfCPU() - cpu0).Seconds()
	if err != nil {
		return fail(err)
	}
	r.sent, r.failed, r.seconds = p.sent, p.failed, p.seconds
	if p.seconds > 0 {
		r.rate = float64(p.sent) / p.seconds
	}
	q := p.lat.quantiles(0.5, 0.99, 1)
	r.prodP50, r.prodP99, r.pMax = q[0], q[1], q[2]
	for i, g := range d.runs {
		tg := tailGroup{records: g.records, rate: math.NaN(), p50: math.NaN(), p99: math.NaN(), max: math.NaN()}
		if el := ends[i].Sub(start).Seconds(); el > 0 && g.records > 0 {
			tg.rate = float64(g.records) / el
		}
		r.perGroup = append(r.perGroup, tg)
	}
	if d.err != nil {
		r.err = d.err.Error()
	}
	mean, lo, hi := spread(groupRates(r.perGroup))
	h.progress("  %s tailing, weir bench consume, groups=%d: producer %.0f records/s, produce p99 %.1f ms; per group %.0f (%.0f to %.0f) records/s; server CPU %.1f s, RSS %d MiB; harness CPU %.1f s (the groups' processes not counted)",
		sys.name, groups, r.rate, r.prodP99, mean, lo, hi, r.cpu.Seconds(), r.peakRSS>>20, r.clientCPU)
	return r
}
