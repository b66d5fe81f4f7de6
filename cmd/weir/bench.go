package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/bits"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/weirhq/weir/actors"
	"github.com/weirhq/weir/client"
	"github.com/weirhq/weir/cluster/wire"
	meter "github.com/weirhq/weir/internal/progress"
	"github.com/weirhq/weir/storage"
)

// `weir bench produce|consume` measures a node: records/s, MB/s and, for produce, the latency
// from a record's ProduceAsync to its acknowledgement. Progress goes to standard error once a
// second; one summary line of key=value pairs goes to standard output.
//
// Three paths:
//   - --server ADDR: the Go client over TCP to a running node;
//   - --embedded: a node in this process (temporary directory, fsync off), produced to and
//     fetched from in-process, the way a flow's source and sink runners do: batches go straight
//     to the partition actors as actors.Produce and actors.Fetch messages;
//   - --embedded --loopback: the same node, but through its client port on 127.0.0.1, so that
//     one CPU profile (--cpuprofile) holds both the client and the node.

const (
	benchDefaultRecords = 1_000_000
	benchMaxShownErrors = 5
	// benchReadEvery is how many records a producer ahead of its schedule sends between two
	// readings of the clock.
	benchReadEvery = 64
	// benchLead is how far ahead of its --rate schedule a producer may send records.
	benchLead = time.Millisecond
	// benchStall ends a consume that has read nothing for this long.
	benchStall = 10 * time.Second
)

// benchFlags are the flags of `weir bench`.
type benchFlags struct {
	server      string
	embedded    bool
	loopback    bool
	topic       string
	partitions  int
	records     int64
	duration    time.Duration
	recordSize  int
	acksName    string
	acks        wire.Acks
	rate        float64
	producers   int
	batchSize   int
	linger      time.Duration
	maxInFlight int
	group       string
	cpuprofile  string
	memprofile  string
	hist        string
}

// runBench handles `weir bench produce|consume`.
func runBench(args []string, env cli) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: bench: want produce or consume", errUsage)
	}
	mode := args[0]
	if isHelp(mode) {
		return benchHelp(env)
	}
	if mode != "produce" && mode != "consume" {
		return fmt.Errorf("%w: bench %q: want produce or consume", errUsage, mode)
	}
	fs, f, server := newBenchFlags(mode, env)
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: bench %s: unexpected argument %q", errUsage, mode, strings.Join(pos, " "))
	}
	f.server = *server
	serverGiven := env.server != ""
	fs.Visit(func(fl *flag.Flag) { serverGiven = serverGiven || fl.Name == "server" })
	if err := f.check(mode, serverGiven); err != nil {
		return err
	}
	var cpuFile *os.File
	if f.cpuprofile != "" { // created now, to fail before a long fill; written during the measurement
		if cpuFile, err = os.Create(f.cpuprofile); err != nil {
			return err
		}
		defer cpuFile.Close()
	}
	b, err := openBench(f, env.stderr)
	if err != nil {
		return err
	}
	defer b.close()
	b.cpuFile = cpuFile
	if f.memprofile != "" {
		defer func() {
			if err := writeAllocProfile(f.memprofile); err != nil {
				fmt.Fprintln(env.stderr, "weir: bench:", err)
			}
		}()
	}
	if mode == "produce" {
		return b.produce(env)
	}
	return b.consume(env)
}

// newBenchFlags registers the flags of `weir bench MODE`.
func newBenchFlags(mode string, env cli) (*flag.FlagSet, *benchFlags, *string) {
	fs := flag.NewFlagSet("bench "+mode, flag.ContinueOnError)
	f := &benchFlags{}
	server := serverFlag(fs, env)
	fs.BoolVar(&f.embedded, "embedded", false, "start a node in this process (temporary directory, fsync off) and use it in-process")
	fs.BoolVar(&f.loopback, "loopback", false, "with --embedded: go through the embedded node's client port on 127.0.0.1")
	fs.StringVar(&f.topic, "topic", "", "topic (created if missing)")
	fs.IntVar(&f.partitions, "partitions", 1, "partitions of the topic when it is created")
	fs.Int64Var(&f.records, "records", 0, "records to produce (default 1,000,000 without --duration) or to consume (default: all up to the end at start)")
	fs.StringVar(&f.cpuprofile, "cpuprofile", "", "write a CPU profile of the measurement to this file")
	fs.StringVar(&f.memprofile, "memprofile", "", "write a profile of the memory allocated by this process (go tool pprof -sample_index=alloc_space) to this file at the end")
	if mode == "produce" {
		fs.DurationVar(&f.duration, "duration", 0, "produce for this long (with --records: whichever ends first)")
		fs.IntVar(&f.recordSize, "record-size", 100, "value bytes per record (keyless records)")
		fs.StringVar(&f.acksName, "acks", "leader", "all (committed), leader (appended) or none")
		fs.Float64Var(&f.rate, "rate", 0, "records/s over all producers (0: as fast as possible)")
		fs.IntVar(&f.producers, "producers", 1, "concurrent producers (each with its own connection)")
		fs.IntVar(&f.batchSize, "batch-size", 1<<20, "bytes at which a partition's batch is sent")
		fs.DurationVar(&f.linger, "linger", client.DefaultLinger, "how long a batch waits for more records")
		fs.IntVar(&f.maxInFlight, "max-in-flight", 1, "batches per partition awaiting their answer")
		fs.StringVar(&f.hist, "hist", "", "write the latency histogram to this file at the end (a bucket a line: highest ns, count)")
	} else {
		fs.StringVar(&f.group, "group", "", "consume as a member of this group (default: every partition from the earliest offset)")
	}
	return fs, f, server
}

// benchHelp is `weir bench -h`.
func benchHelp(env cli) error {
	produce, _, _ := newBenchFlags("produce", env)
	consume, _, _ := newBenchFlags("consume", env)
	return groupHelp("bench", []subcommand{
		{"produce --topic T [flags]", "measure produce: records/s, MB/s and latency (p50..max)", produce},
		{"consume --topic T [flags]", "measure consume: records/s and MB/s", consume},
	})
}

// writeAllocProfile writes the allocations of the process so far to file.
func writeAllocProfile(file string) error {
	pf, err := os.Create(file)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(pf, 0); err != nil {
		pf.Close()
		return fmt.Errorf("memory profile: %w", err)
	}
	return pf.Close()
}

// check validates the flags.
func (f *benchFlags) check(mode string, serverGiven bool) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: bench %s: %s", errUsage, mode, fmt.Sprintf(format, args...))
	}
	switch {
	case f.topic == "":
		return bad("--topic is required")
	case f.embedded && serverGiven:
		return bad("--server and --embedded: choose one")
	case f.loopback && !f.embedded:
		return bad("--loopback needs --embedded")
	case f.partitions < 1 || f.partitions > 10_000:
		return bad("--partitions %d: want 1 to 10000", f.partitions)
	case f.records < 0:
		return bad("--records %d: must not be negative", f.records)
	}
	if mode == "consume" {
		if f.embedded && f.records == 0 {
			f.records = benchDefaultRecords // the embedded node is empty: fill it with this many
		}
		return nil
	}
	acks, err := wire.ParseAcks(f.acksName)
	if err != nil {
		return bad("--acks: %v", err)
	}
	f.acks = acks
	switch {
	case f.duration < 0:
		return bad("--duration %v: must not be negative", f.duration)
	case f.recordSize < 0 || f.recordSize > storage.MaxBatchSize/2:
		return bad("--record-size %d: want 0 to %d", f.recordSize, storage.MaxBatchSize/2)
	case f.rate < 0 || math.IsNaN(f.rate) || math.IsInf(f.rate, 0):
		return bad("--rate %v: want 0 (no limit) or more", f.rate)
	case f.producers < 1 || f.producers > 1000:
		return bad("--producers %d: want 1 to 1000", f.producers)
	case f.batchSize <= storage.HeaderSize || f.batchSize > storage.MaxBatchSize:
		return bad("--batch-size %d: want %d to %d", f.batchSize, storage.HeaderSize+1, storage.MaxBatchSize)
	case f.linger < 0:
		return bad("--linger %v: must not be negative", f.linger)
	case f.maxInFlight < 1:
		return bad("--max-in-flight %d: want 1 or more", f.maxInFlight)
	}
	if f.records == 0 && f.duration == 0 {
		f.records = benchDefaultRecords
	}
	return nil
}

// bench is one run: the node it measures (in-process or behind a client port) and the topic.
type bench struct {
	f      *benchFlags
	stderr io.Writer
	node   *actors.Node // with --embedded
	dir    string       // the embedded node's data directory
	addr   string       // the client port, "" for the in-process path

	cpuFile *os.File // --cpuprofile, written by startCPUProfile
}

// startCPUProfile and stopCPUProfile are pprof's; tests replace them.
var (
	startCPUProfile = pprof.StartCPUProfile
	stopCPUProfile  = pprof.StopCPUProfile
)

// profile starts the CPU profile of the measurement if --cpuprofile asks for one; the returned
// function stops it.
func (b *bench) profile() (stop func(), err error) {
	if b.cpuFile == nil {
		return func() {}, nil
	}
	if err := startCPUProfile(b.cpuFile); err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return stopCPUProfile, nil
}

// openBench starts the embedded node if asked to.
func openBench(f *benchFlags, stderr io.Writer) (*bench, error) {
	b := &bench{f: f, stderr: stderr, addr: f.server}
	if !f.embedded {
		return b, nil
	}
	dir, err := os.MkdirTemp("", "weir-bench-")
	if err != nil {
		return nil, err
	}
	cfg := actors.NodeConfig{DataDir: dir, Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	cfg.Log = storage.DefaultConfig()
	cfg.Log.Sync = storage.SyncNever
	if f.loopback {
		cfg.ClientAddr = "127.0.0.1:0"
	}
	n, err := actors.StartNode(cfg)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	b.node, b.dir, b.addr = n, dir, n.ClientAddr()
	return b, nil
}

func (b *bench) close() {
	if b.node != nil {
		b.node.Close()
		os.RemoveAll(b.dir)
	}
}

// inProcess says whether records go to the partition actors directly.
func (b *bench) inProcess() bool { return b.node != nil && b.addr == "" }

// ensureTopic creates the topic unless it exists and returns its partition count.
func (b *bench) ensureTopic(ctx context.Context) (int32, error) {
	if b.node != nil { // in-process, even with --loopback: it waits until the node serves the topic
		if err := b.node.CreateTopic(b.f.topic, int32(b.f.partitions)); err != nil && !errors.Is(err, wire.ErrTopicExists) {
			return 0, err
		}
		t, _ := b.node.Topic(b.f.topic)
		return t.Partitions, nil
	}
	c, err := connect(b.addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if err := c.CreateTopic(ctx, b.f.topic, int32(b.f.partitions), 1); err != nil && !errors.Is(err, wire.ErrTopicExists) {
		return 0, err
	}
	return c.Partitions(ctx, b.f.topic)
}

// partitionPIDs returns the topic's partition actors once each has elected itself leader.
func (b *bench) partitionPIDs(nparts int32) ([]*actor.PID, error) {
	root := b.node.System().Root
	pids := make([]*actor.PID, nparts)
	deadline := time.Now().Add(30 * time.Second)
	for p := range nparts {
		for {
			pid, err := b.node.Partition(b.f.topic, p)
			if err == nil {
				res, _ := root.RequestFuture(pid, &actors.GetStatus{}, time.Second).Result()
				if s, ok := res.(*actors.Status); ok && s.Err == nil && s.Leader != 0 && s.Leader == s.NodeID {
					pids[p] = pid
					break
				}
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("bench: partition %s/%d has no leader after 30 s", b.f.topic, p)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return pids, nil
}

// benchProducer is what the produce benchmark drives: a client.Producer, or an inprocProducer.
type benchProducer interface {
	ProduceAsync(ctx context.Context, rec storage.Record, fn func(offset int64, err error))
	Close() error
}

// produceStats are the counters of a produce run, shared by the producers' callbacks.
type produceStats struct {
	acked, failed atomic.Int64
	mu            sync.Mutex
	shown         []string // the first errors
}

func (s *produceStats) fail(err error) {
	s.failed.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.shown) < benchMaxShownErrors {
		s.shown = append(s.shown, err.Error())
	}
}

// produce runs `weir bench produce`.
func (b *bench) produce(env cli) error {
	f := b.f
	ctx := context.Background()
	nparts, err := b.ensureTopic(ctx)
	if err != nil {
		return err
	}
	var newProducer func() (benchProducer, func(), error)
	if b.inProcess() {
		pids, err := b.partitionPIDs(nparts)
		if err != nil {
			return err
		}
		newProducer = func() (benchProducer, func(), error) {
			return newInprocProducer(b.node.System(), pids, f.acks, f.batchSize, f.linger, f.maxInFlight), func() {}, nil
		}
	} else {
		newProducer = func() (benchProducer, func(), error) {
			c, err := connect(b.addr)
			if err != nil {
				return nil, nil, err
			}
			p, err := c.NewProducer(f.topic, client.Acks(f.acks), client.BatchBytes(f.batchSize),
				client.Linger(f.linger), client.MaxInFlight(f.maxInFlight))
			if err != nil {
				c.Close()
				return nil, nil, err
			}
			return p, func() { c.Close() }, nil
		}
	}
	prods := make([]benchProducer, f.producers)
	closers := make([]func(), f.producers)
	defer func() {
		for _, c := range closers {
			if c != nil {
				c()
			}
		}
	}()
	for i := range prods {
		if prods[i], closers[i], err = newProducer(); err != nil {
			return err
		}
	}

	value := benchValue(f.recordSize)
	hists := make([]*latencyHist, f.producers)
	var (
		stats   produceStats
		claimed atomic.Int64
		wg      sync.WaitGroup
	)
	path := "client"
	if b.inProcess() {
		path = "in-process"
	}
	fmt.Fprintf(b.stderr, "bench produce: topic %s (%d partitions), %s, acks=%s, %d B records, %d producer(s)\n",
		f.topic, nparts, path, f.acks, f.recordSize, f.producers)
	stopProfile, err := b.profile()
	if err != nil {
		return err
	}
	defer stopProfile()
	for i := range hists {
		hists[i] = &latencyHist{}
	}
	prog := newProgress(b.stderr, "produce", func() (int64, int64) {
		n := stats.acked.Load() + stats.failed.Load()
		return n, n * int64(f.recordSize)
	})
	prog.total.Store(f.records)
	prog.limit = f.duration
	prog.latency = func() *latencyHist {
		var h latencyHist
		for _, x := range hists {
			h.merge(x)
		}
		return &h
	}
	prog.begin()
	start := time.Now()
	for i, p := range prods {
		wg.Add(1)
		go func(p benchProducer, h *latencyHist) {
			defer wg.Done()
			produceLoop(p, h, &stats, &claimed, value, f, start)
		}(p, hists[i])
	}
	wg.Wait()
	elapsed := time.Since(start)
	prog.stop()

	var h latencyHist
	for _, x := range hists {
		h.merge(x)
	}
	records, failed := stats.acked.Load()+stats.failed.Load(), stats.failed.Load()
	for _, e := range stats.shown {
		fmt.Fprintln(b.stderr, "weir: bench produce:", e)
	}
	if failed > int64(len(stats.shown)) {
		fmt.Fprintf(b.stderr, "weir: bench produce: ... and %d more errors\n", failed-int64(len(stats.shown)))
	}
	sec := elapsed.Seconds()
	fmt.Fprintf(env.stdout, "bench produce: records=%d seconds=%.3f records/s=%.0f MB/s=%.2f p50=%s p99=%s p999=%s max=%s errors=%d\n",
		records, sec, float64(records)/sec, float64(records)*float64(f.recordSize)/1e6/sec,
		fmtMillis(h.quantile(0.50)), fmtMillis(h.quantile(0.99)), fmtMillis(h.quantile(0.999)), fmtMillis(h.max()), failed)
	if f.hist != "" {
		if err := writeHistFile(f.hist, &h); err != nil {
			return fmt.Errorf("bench produce: --hist: %w", err)
		}
	}
	if failed > 0 {
		return fmt.Errorf("bench produce: %d of %d records failed", failed, records)
	}
	return nil
}

// writeHistFile writes h to the file at path with writeHist.
func writeHistFile(path string, h *latencyHist) error {
	var b bytes.Buffer
	if err := writeHist(&b, h); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// writeHist writes the non-empty buckets of h, lowest first, a line each: the bucket's highest
// value in nanoseconds (capped at the largest value recorded, as quantile reports it) and its
// count, separated by a space, after a comment line saying so. A reader gets the full latency
// distribution (the CDF plots of scripts/benchcompare), not only the summary's percentiles.
func writeHist(w io.Writer, h *latencyHist) error {
	if _, err := fmt.Fprintf(w, "# weir bench produce latency histogram: highest_ns count (records=%d max_ns=%d)\n", h.count(), h.max()); err != nil {
		return err
	}
	for i := range h.counts {
		c := h.counts[i].Load()
		if c == 0 {
			continue
		}
		_, hi := histBounds(i)
		if _, err := fmt.Fprintf(w, "%d %d\n", min(hi, math.MaxInt64, uint64(h.max())), c); err != nil {
			return err
		}
	}
	return nil
}

// produceLoop produces records with one producer until the run's records are claimed or its
// duration is over, at the producer's share of --rate, then closes the producer (which waits
// for every answer). With --rate, a record's latency is from its scheduled time.
func produceLoop(p benchProducer, h *latencyHist, stats *produceStats, claimed *atomic.Int64, value []byte, f *benchFlags, start time.Time) {
	ctx := context.Background()
	var interval time.Duration
	if f.rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(f.producers) / f.rate)
	}
	// now is the clock as last read. With --rate it is read only when the next record is due
	// after it, and the producer sleeps only when it is more than benchLead ahead: sleeps are
	// coarse (about a millisecond on the benchmark VM, whatever is asked), so waking for each
	// record (one is due every 0.5 µs at 2 M/s) would cost more than producing it and delay
	// every record by a sleep. So records go out in bursts, up to benchLead before they are
	// due; one sent early is timed from when it was sent (approximately: from the last clock
	// reading before it, taken at most benchReadEvery records earlier, which overstates its
	// latency by microseconds), one sent late from when it was due. Behind schedule the clock is
	// read every benchReadEvery records too, so that the run ends at its duration.
	now, readAt := start, int64(0)
	for sent := int64(1); ; sent++ {
		if f.records > 0 && claimed.Add(1) > f.records {
			break
		}
		var t0 time.Time
		if interval > 0 {
			due := start.Add(time.Duration(sent) * interval)
			if (due.After(now) && due.Sub(now) > benchLead) || sent-readAt >= benchReadEvery {
				now, readAt = time.Now(), sent
				if d := due.Sub(now); d > benchLead {
					time.Sleep(d - benchLead)
					now = time.Now()
				}
			}
			if f.duration > 0 && now.Sub(start) >= f.duration {
				break // behind schedule: the run still ends at its duration
			}
			// Latency counts from when the record was due, not from when it went out: a send
			// that blocked (backpressure) or a late wake-up delays the records after it, and
			// timing them from their late start would hide that (coordinated omission).
			t0 = due
			if now.Before(due) {
				t0 = now
			}
			if f.duration > 0 && due.Sub(start) >= f.duration {
				time.Sleep(time.Until(start.Add(f.duration))) // the run lasts its duration
				break
			}
		} else {
			t0 = time.Now()
			now = t0
			if f.duration > 0 && t0.Sub(start) >= f.duration {
				break
			}
		}
		p.ProduceAsync(ctx, storage.Record{Value: value}, func(_ int64, err error) {
			h.record(time.Since(t0))
			if err != nil {
				stats.fail(err)
				return
			}
			stats.acked.Add(1)
		})
	}
	if err := p.Close(); err != nil {
		stats.fail(fmt.Errorf("closing a producer: %w", err))
	}
}

// benchValue returns a record value of n printable bytes.
func benchValue(n int) []byte {
	v := make([]byte, n)
	for i := range v {
		v[i] = 'a' + byte(i*7%26)
	}
	return v
}

// fmtMillis formats a duration as milliseconds with three decimals and the unit.
func fmtMillis(d time.Duration) string {
	return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond))
}

// progress prints the rate of a counter once a second until stopped and, when it has a
// latency histogram, the p99 of the latencies recorded in that second, and when it knows the
// run's records or duration, the time left.
type progress struct {
	w       io.Writer
	what    string
	count   func() (records, bytes int64)
	latency func() *latencyHist // a snapshot of the run's histogram so far; nil for none
	total   atomic.Int64        // the run's records (0: not known yet)
	limit   time.Duration       // the run's duration (0: none)
	done    chan struct{}
	wg      sync.WaitGroup
}

// timeLeft estimates the time left of a run that has done n of total records (total 0: not
// known) in elapsed, at its average rate so far, and that ends after limit (0: none) at the
// latest. ok is false when neither says anything yet.
func timeLeft(n, total int64, elapsed, limit time.Duration) (left time.Duration, ok bool) {
	left, ok = meter.TimeLeft(n, total, elapsed)
	if limit > 0 {
		byTime := max(limit-elapsed, 0)
		if !ok || byTime < left {
			left, ok = byTime, true
		}
	}
	return left, ok
}

// progressEvery is how often the progress line is printed (tests shorten it).
var progressEvery = time.Second

// startProgress returns a progress display that starts printing at once; newProgress and begin
// let the caller set latency first.
func startProgress(w io.Writer, what string, count func() (records, bytes int64)) *progress {
	p := newProgress(w, what, count)
	p.begin()
	return p
}

func newProgress(w io.Writer, what string, count func() (records, bytes int64)) *progress {
	return &progress{w: w, what: what, count: count, done: make(chan struct{})}
}

func (p *progress) begin() {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		start, lastAt := time.Now(), time.Now()
		var last, lastBytes int64
		prev := &latencyHist{}
		for {
			select {
			case <-p.done:
				return
			case now := <-t.C:
				n, nb := p.count()
				sec := now.Sub(lastAt).Seconds()
				line := fmt.Sprintf("bench %s: %3.0fs %10.0f records/s %8.2f MB/s (%d records)",
					p.what, now.Sub(start).Seconds(), float64(n-last)/sec, float64(nb-lastBytes)/1e6/sec, n)
				if p.latency != nil {
					cur := p.latency()
					if win := cur.since(prev); win.count() > 0 {
						line += " p99 " + fmtMillis(win.quantile(0.99))
					}
					prev = cur
				}
				if left, ok := timeLeft(n, p.total.Load(), now.Sub(start), p.limit); ok {
					line += " ETA " + left.Round(time.Second).String()
				}
				fmt.Fprintln(p.w, line)
				last, lastBytes, lastAt = n, nb, now
			}
		}
	}()
}

func (p *progress) stop() {
	close(p.done)
	p.wg.Wait()
}

// consumeStats count what a consume run read.
type consumeStats struct {
	records, bytes atomic.Int64
	total          *atomic.Int64 // the progress display's total, told the target (nil: none)
}

// consume runs `weir bench consume`.
func (b *bench) consume(env cli) error {
	f := b.f
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nparts, err := b.ensureTopic(ctx)
	if err != nil {
		return err
	}
	if b.node != nil { // the embedded node starts empty: fill it first
		if err := b.fill(nparts); err != nil {
			return err
		}
	}
	stopProfile, err := b.profile()
	if err != nil {
		return err
	}
	defer stopProfile()
	var st consumeStats
	prog := startProgress(b.stderr, "consume", func() (int64, int64) { return st.records.Load(), st.bytes.Load() })
	st.total = &prog.total // the consume functions set it when they know the target
	var (
		start   time.Time
		target  int64
		readErr error
	)
	switch {
	case b.inProcess():
		start, target, readErr = b.consumeInProcess(ctx, nparts, &st)
	case f.group != "":
		start, target, readErr = b.consumeGroup(ctx, nparts, &st)
	default:
		start, target, readErr = b.consumePartitions(ctx, nparts, &st)
	}
	elapsed := time.Since(start)
	prog.stop()
	records := st.records.Load()
	errs := 0
	if readErr != nil {
		errs = 1
	}
	sec := elapsed.Seconds()
	fmt.Fprintf(env.stdout, "bench consume: records=%d seconds=%.3f records/s=%.0f MB/s=%.2f errors=%d\n",
		records, sec, float64(records)/sec, float64(st.bytes.Load())/1e6/sec, errs)
	if readErr != nil {
		return fmt.Errorf("bench consume: %w", readErr)
	}
	if records < target {
		return fmt.Errorf("bench consume: read %d of %d records", records, target)
	}
	return nil
}

// fill produces --records records of 100 bytes to the embedded node, in-process.
func (b *bench) fill(nparts int32) error {
	pids, err := b.partitionPIDs(nparts)
	if err != nil {
		return err
	}
	p := newInprocProducer(b.node.System(), pids, wire.AcksAll, 1<<20, 5*time.Millisecond, 1)
	var stats produceStats
	var claimed atomic.Int64
	start := time.Now()
	produceLoop(p, &latencyHist{}, &stats, &claimed, benchValue(100), &benchFlags{records: b.f.records, producers: 1}, start)
	if n := stats.failed.Load(); n > 0 {
		return fmt.Errorf("filling the embedded node: %d records failed: %s", n, strings.Join(stats.shown, "; "))
	}
	fmt.Fprintf(b.stderr, "bench consume: filled %s with %d records of 100 B in %v\n", b.f.topic, b.f.records, time.Since(start).Round(time.Millisecond))
	return nil
}

// consumeTarget returns how many records to read: --records, or all up to the end at start.
func (b *bench) consumeTarget(ends, starts []int64) int64 {
	if b.f.records > 0 {
		return b.f.records
	}
	var n int64
	for i := range ends {
		n += ends[i] - starts[i]
	}
	return n
}

// counter stops a consume at its target.
type counter struct {
	st     *consumeStats
	target int64
	cancel context.CancelFunc
	last   atomic.Int64 // unix nanoseconds of the last read
}

// newCounter returns a counter that stops at target, and tells the progress display the
// target so that it can show the time left.
func newCounter(st *consumeStats, target int64, cancel context.CancelFunc) *counter {
	if st.total != nil {
		st.total.Store(target)
	}
	return &counter{st: st, target: target, cancel: cancel}
}

// add counts records read; it reports whether the target is reached.
func (c *counter) add(records, bytes int64) bool {
	c.st.bytes.Add(bytes)
	c.last.Store(time.Now().UnixNano())
	if c.st.records.Add(records) >= c.target {
		c.cancel()
		return true
	}
	return false
}

func (c *counter) done() bool { return c.st.records.Load() >= c.target }

func (c *counter) stalled() bool {
	return time.Since(time.Unix(0, c.last.Load())) > benchStall
}

// consumeInProcess fetches every partition from its start with actors.Fetch messages, one
// goroutine per partition.
func (b *bench) consumeInProcess(ctx context.Context, nparts int32, st *consumeStats) (time.Time, int64, error) {
	pids, err := b.partitionPIDs(nparts)
	if err != nil {
		return time.Now(), 0, err
	}
	root := b.node.System().Root
	starts, ends := make([]int64, nparts), make([]int64, nparts)
	for p, pid := range pids {
		res, err := root.RequestFuture(pid, &actors.GetStatus{}, 5*time.Second).Result()
		s, ok := res.(*actors.Status)
		if err != nil || !ok {
			return time.Now(), 0, fmt.Errorf("partition %d: status: %v", p, err)
		}
		starts[p], ends[p] = s.StartOffset, s.HighWatermark
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := newCounter(st, b.consumeTarget(ends, starts), cancel)
	c.last.Store(time.Now().UnixNano())
	errs := make([]error, nparts)
	var wg sync.WaitGroup
	start := time.Now()
	for p, pid := range pids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[p] = fetchLoop(ctx, root, pid, starts[p], c)
		}()
	}
	wg.Wait()
	return start, c.target, errors.Join(errs...)
}

// fetchLoop reads one partition in-process until the counter says stop.
func fetchLoop(ctx context.Context, root *actor.RootContext, pid *actor.PID, off int64, c *counter) error {
	for ctx.Err() == nil && !c.done() {
		if c.stalled() {
			return fmt.Errorf("nothing read for %v", benchStall)
		}
		res, err := root.RequestFuture(pid, &actors.Fetch{Offset: off, MaxBytes: 1 << 20, MaxWaitMs: 100}, 5*time.Second).Result()
		if err != nil {
			return fmt.Errorf("fetch at %d: %w", off, err)
		}
		resp, ok := res.(*wire.FetchResponse)
		if !ok {
			return fmt.Errorf("fetch at %d: unexpected answer %T", off, res)
		}
		if resp.Err != nil {
			if resp.Err.Code.Retriable() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("fetch at %d: %w", off, resp.Err)
		}
		n, nb, next, err := countBatches(resp.Batches, off)
		if err != nil {
			return fmt.Errorf("fetch at %d: %w", off, err)
		}
		off = next
		if n > 0 && c.add(n, nb) {
			return nil
		}
	}
	return nil
}

// countBatches decodes the batches a fetch at off returned and counts their records at or
// after off, and the bytes of their keys and values; next is the offset after the last batch.
// A batch cut short or with a bad header is an error saying so, at its offset.
func countBatches(data []byte, off int64) (n, nb, next int64, err error) {
	next, err = storage.DecodeBatches(data, off, func(_ int64, r storage.Record) error {
		n++
		nb += int64(len(r.Key) + len(r.Value))
		return nil
	})
	return n, nb, next, err
}

// consumePartitions reads every partition from its earliest offset with one client.Consumer
// (and goroutine) per partition.
func (b *bench) consumePartitions(ctx context.Context, nparts int32, st *consumeStats) (time.Time, int64, error) {
	cl, err := connect(b.addr)
	if err != nil {
		return time.Now(), 0, err
	}
	defer cl.Close()
	starts, ends, err := b.listOffsets(ctx, cl, nparts)
	if err != nil {
		return time.Now(), 0, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := newCounter(st, b.consumeTarget(ends, starts), cancel)
	c.last.Store(time.Now().UnixNano())
	cons := make([]*client.Consumer, nparts)
	for p := range nparts {
		if cons[p], err = cl.NewConsumer(b.f.topic, p, client.From(client.Earliest()), client.MaxWait(100*time.Millisecond)); err != nil {
			return time.Now(), 0, err
		}
		defer cons[p].Close()
	}
	errs := make([]error, nparts)
	var wg sync.WaitGroup
	start := time.Now()
	for p := range nparts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[p] = pollLoop(ctx, cons[p].PollRecords, c)
		}()
	}
	wg.Wait()
	return start, c.target, errors.Join(errs...)
}

// listOffsets returns the earliest and the latest offset of each partition of the topic.
func (b *bench) listOffsets(ctx context.Context, cl *client.Client, nparts int32) (starts, ends []int64, err error) {
	starts, ends = make([]int64, nparts), make([]int64, nparts)
	for p := range nparts {
		if starts[p], err = cl.ListOffsets(ctx, b.f.topic, p, client.Earliest()); err != nil {
			return nil, nil, err
		}
		if ends[p], err = cl.ListOffsets(ctx, b.f.topic, p, client.Latest()); err != nil {
			return nil, nil, err
		}
	}
	return starts, ends, nil
}

// consumeGroup reads the topic as a member of --group; without --records it reads what the
// group has not committed yet (from the earliest offset where it has no commit).
func (b *bench) consumeGroup(ctx context.Context, nparts int32, st *consumeStats) (time.Time, int64, error) {
	cl, err := connect(b.addr)
	if err != nil {
		return time.Now(), 0, err
	}
	defer cl.Close()
	starts, ends, err := b.listOffsets(ctx, cl, nparts)
	if err != nil {
		return time.Now(), 0, err
	}
	parts := wire.TopicPartitions{Topic: b.f.topic}
	for p := range nparts {
		parts.Partitions = append(parts.Partitions, p)
	}
	committed, err := cl.FetchCommitted(ctx, b.f.group, parts)
	if err != nil {
		return time.Now(), 0, err
	}
	for _, po := range committed {
		if po.Topic == b.f.topic && po.Partition >= 0 && po.Partition < nparts && po.Offset > starts[po.Partition] {
			starts[po.Partition] = min(po.Offset, ends[po.Partition])
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := newCounter(st, b.consumeTarget(ends, starts), cancel)
	c.last.Store(time.Now().UnixNano())
	g, err := cl.NewGroupConsumer(b.f.group, []string{b.f.topic}, client.ResetOffset(client.ResetEarliest), client.MaxWait(100*time.Millisecond))
	if err != nil {
		return time.Now(), 0, err
	}
	defer g.Close()
	start := time.Now()
	return start, c.target, pollLoop(ctx, g.PollRecords, c)
}

// pollLoop polls until the counter says stop.
func pollLoop(ctx context.Context, poll func(context.Context, int) ([]client.Message, error), c *counter) error {
	for ctx.Err() == nil && !c.done() {
		if c.stalled() {
			return fmt.Errorf("nothing read for %v", benchStall)
		}
		msgs, err := poll(ctx, 0)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		var nb int64
		for _, m := range msgs {
			nb += int64(len(m.Key) + len(m.Value))
		}
		if len(msgs) > 0 && c.add(int64(len(msgs)), nb) {
			return nil
		}
	}
	return nil
}

// inprocProducer sends batches straight to partition actors, as a flow's source runner does:
// no client, no socket, no request encoding. Keyless records go to one partition until its
// batch is sealed (by size, linger or Close), then to the next. Each partition has at most
// maxInFlight batches awaiting their answer; ProduceAsync blocks while a sealed batch waits for
// room. Each batch in flight has a goroutine that waits for the answer and runs the callbacks;
// Close waits for them and for the linger timer. With linger 0 every record is a batch of its
// own (the client, by contrast, sends what gathered while its loop was busy).
type inprocProducer struct {
	root       *actor.RootContext
	pids       []*actor.PID
	acks       wire.Acks
	batchBytes int
	linger     time.Duration
	slots      []chan struct{} // per partition, one token per batch in flight
	wg         sync.WaitGroup  // batches in flight and the armed linger timer

	mu    sync.Mutex
	b     *storage.BatchBuilder
	fns   []func(int64, error)
	part  int
	gen   uint64 // counts sealed batches; a linger timer seals only the batch it was armed for
	timer *time.Timer
}

// sealedBatch is a batch ready to send.
type sealedBatch struct {
	part int
	data []byte
	fns  []func(int64, error)
}

func newInprocProducer(system *actor.ActorSystem, pids []*actor.PID, acks wire.Acks, batchBytes int, linger time.Duration, maxInFlight int) *inprocProducer {
	p := &inprocProducer{root: system.Root, pids: pids, acks: acks, batchBytes: batchBytes, linger: linger,
		slots: make([]chan struct{}, len(pids)), b: storage.NewBatchBuilder()}
	for i := range p.slots {
		p.slots[i] = make(chan struct{}, maxInFlight)
	}
	return p
}

// ProduceAsync adds a record to the open batch; fn gets the record's offset (-1 with acks
// none) or the error.
func (p *inprocProducer) ProduceAsync(_ context.Context, rec storage.Record, fn func(int64, error)) {
	p.mu.Lock()
	first := p.b.Len() == 0
	if err := p.b.Add(rec); err != nil {
		p.mu.Unlock()
		fn(-1, err)
		return
	}
	p.fns = append(p.fns, fn)
	if p.b.Size() < p.batchBytes {
		if first && p.linger > 0 {
			gen := p.gen
			p.wg.Add(1)
			p.timer = time.AfterFunc(p.linger, func() { p.lingered(gen) })
		}
		if p.linger > 0 {
			p.mu.Unlock()
			return
		}
	}
	sb := p.sealLocked()
	p.mu.Unlock()
	p.send(sb)
}

// lingered seals the batch numbered gen if it is still open.
func (p *inprocProducer) lingered(gen uint64) {
	defer p.wg.Done()
	p.mu.Lock()
	if p.gen != gen || p.b.Len() == 0 {
		p.mu.Unlock()
		return
	}
	p.timer = nil // fired: sealLocked must not count it again
	sb := p.sealLocked()
	p.mu.Unlock()
	p.send(sb)
}

// sealLocked takes the open batch and moves to the next partition.
func (p *inprocProducer) sealLocked() sealedBatch {
	if p.timer != nil {
		if p.timer.Stop() {
			p.wg.Done() // the timer will not run
		}
		p.timer = nil
	}
	sb := sealedBatch{part: p.part, data: bytes.Clone(p.b.Build()), fns: p.fns}
	p.b.Reset()
	p.fns = nil
	p.gen++
	p.part = (p.part + 1) % len(p.pids)
	return sb
}

// send waits for room in the batch's partition, then sends it; a goroutine awaits the answer.
func (p *inprocProducer) send(sb sealedBatch) {
	p.slots[sb.part] <- struct{}{}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		base, err := p.request(sb.part, sb.data)
		<-p.slots[sb.part]
		for i, fn := range sb.fns {
			off := int64(-1)
			if err == nil && base >= 0 {
				off = base + int64(i)
			}
			fn(off, err)
		}
	}()
}

// request produces one batch, retrying retriable errors. With acks none the partition does not
// answer: a GetStatus sent after the batch stands for the answer, so that the batches in flight
// stay bounded (it returns once the partition has taken the batch).
func (p *inprocProducer) request(part int, data []byte) (int64, error) {
	pid := p.pids[part]
	for attempt := 0; ; attempt++ {
		msg := &actors.Produce{Batch: data, Acks: p.acks, Deadline: time.Now().Add(10 * time.Second).UnixMilli()}
		var e *wire.Error
		if p.acks == wire.AcksNone {
			p.root.Send(pid, msg)
			if _, err := p.root.RequestFuture(pid, &actors.GetStatus{}, 10*time.Second).Result(); err != nil {
				return -1, fmt.Errorf("partition %d: %w", part, err)
			}
			return -1, nil
		}
		res, err := p.root.RequestFuture(pid, msg, 11*time.Second).Result()
		if r, ok := res.(*actors.ProduceReply); ok && err == nil {
			if r.Err == nil {
				return r.BaseOffset, nil
			}
			e = r.Err
		} else {
			e = wire.Errorf(wire.CodeTimeout, "no answer: %v", err)
		}
		if !e.Code.Retriable() || attempt >= 10 {
			return -1, fmt.Errorf("partition %d: %w", part, e)
		}
		time.Sleep(min(10*time.Millisecond<<attempt, time.Second))
	}
}

// Close sends the open batch and waits for every answer.
func (p *inprocProducer) Close() error {
	p.mu.Lock()
	var sb sealedBatch
	open := p.b.Len() > 0
	if open {
		sb = p.sealLocked()
	}
	p.mu.Unlock()
	if open {
		p.send(sb)
	}
	p.wg.Wait()
	return nil
}

// latencyHist is a log-bucketed histogram of durations in nanoseconds, in the manner of HDR
// histograms: values below 2^histSubBits have a bucket each, and every power of two above is
// split into 2^(histSubBits-1) equal buckets, so a bucket's width is at most 1/2^(histSubBits-1)
// of its lower bound (0.8% with 8 bits). A quantile is reported as the highest value of its
// bucket, capped at the largest value recorded. Its methods may be called from any goroutine.
type latencyHist struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	hi     atomic.Int64
}

const (
	histSubBits = 8
	histBuckets = 1<<histSubBits + (64-histSubBits)<<(histSubBits-1)
)

// histIndex is the bucket of v.
func histIndex(v uint64) int {
	if v < 1<<histSubBits {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits // >= 1
	top := int(v >> shift)               // in [2^(s-1), 2^s)
	return 1<<histSubBits + (shift-1)<<(histSubBits-1) + top - 1<<(histSubBits-1)
}

// histBounds are the lowest and highest values of bucket i.
func histBounds(i int) (lo, hi uint64) {
	if i < 1<<histSubBits {
		return uint64(i), uint64(i)
	}
	j := i - 1<<histSubBits
	shift := j>>(histSubBits-1) + 1
	top := uint64(j&(1<<(histSubBits-1)-1)) + 1<<(histSubBits-1)
	return top << shift, (top+1)<<shift - 1 // the last bucket's hi wraps to 2^64-1
}

// record adds one duration (negative ones count as 0).
func (h *latencyHist) record(d time.Duration) {
	d = max(d, 0)
	// The maximum first: a snapshot (merge, since) that sees the count must see it too, or it
	// would cap the quantiles below the value counted.
	for {
		cur := h.hi.Load()
		if int64(d) <= cur || h.hi.CompareAndSwap(cur, int64(d)) {
			break
		}
	}
	h.counts[histIndex(uint64(d))].Add(1)
	h.n.Add(1)
}

// merge adds o's counts to h.
func (h *latencyHist) merge(o *latencyHist) {
	for i := range o.counts {
		if c := o.counts[i].Load(); c > 0 {
			h.counts[i].Add(c)
		}
	}
	h.n.Add(o.n.Load())
	for {
		cur, x := h.hi.Load(), o.hi.Load()
		if x <= cur || h.hi.CompareAndSwap(cur, x) {
			return
		}
	}
}

// since returns the durations recorded in h but not in prev, an earlier snapshot of h. Its max
// is the highest value of its highest non-empty bucket.
func (h *latencyHist) since(prev *latencyHist) *latencyHist {
	d := &latencyHist{}
	for i := range h.counts {
		c, p := h.counts[i].Load(), prev.counts[i].Load()
		if c > p {
			d.counts[i].Store(c - p)
			d.n.Add(c - p)
			_, hi := histBounds(i)
			d.hi.Store(int64(min(hi, math.MaxInt64, uint64(h.hi.Load()))))
		}
	}
	return d
}

// count is the number of durations recorded.
func (h *latencyHist) count() uint64 { return h.n.Load() }

// max is the largest duration recorded (0 if none).
func (h *latencyHist) max() time.Duration { return time.Duration(h.hi.Load()) }

// quantile returns the duration below or at which a fraction q of the recorded ones lie: the
// smallest bucket holding the ceil(q*n)-th value, as its highest value (capped at max).
func (h *latencyHist) quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = min(max(rank, 1), n)
	var cum uint64
	for i := range h.counts {
		cum += h.counts[i].Load()
		if cum >= rank {
			_, hi := histBounds(i)
			return min(time.Duration(min(hi, math.MaxInt64)), h.max())
		}
	}
	return h.max()
}
