// Package bench measures sinks end to end: a topic of 6 partitions in an embedded node (default
// settings: the log fsyncs every write, acks=all) is loaded with b.N records of 1 KiB before the
// clock starts; then a sink flow is started and timed until its consumer group has committed
// every record, which for the file sink means that every record is in an fsynced file that its
// partition's state log records. b.N is the record count; run with a fixed count:
//
//	go test -run '^$' -bench . -benchtime 200000x ./connectors/sink/bench/
//
// MB/s counts the records' values (1,024 bytes each, 10^6 bytes a MB). cpu-s/GB is the process's
// CPU time (user and system, all goroutines: node and sink) over the timed part per GB of values;
// ms-to-first-write is the start of the flow up to its first Write (mostly the group's initial
// rebalance delay, 200 ms), ms-after-last-write the wait from the last Write's end to the last
// commit. WEIR_BENCH_FETCH sets the flow's fetch size in bytes (flow.FetchBytes; the runner's
// default, 1 MiB, otherwise); WEIR_BENCH_CPUPROFILE and WEIR_BENCH_TRACE name files for a CPU
// profile and an execution trace of the timed part only (-cpuprofile also covers the loading of
// the topic). BenchmarkNull, the same flow with the null sink (the runtime's own ceiling), runs
// only with WEIR_BENCH_NULL=1, so that -bench . times the file sink alone.
package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhq/weir/client"
	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/sink/file"
	"github.com/weirhq/weir/connectors/sink/null"
	"github.com/weirhq/weir/flow"
	"github.com/weirhq/weir/storage"
)

const (
	topic      = "bench"
	partitions = 6
	valueSize  = 1024
)

// load starts a node and produces n records of valueSize bytes to a topic of 6 partitions.
func load(b *testing.B, n int) *flow.Node {
	node, err := flow.StartNode(flow.NodeConfig{DataDir: b.TempDir(), ClientAddr: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { node.Close() })
	if err := node.CreateTopic(topic, partitions); err != nil {
		b.Fatal(err)
	}
	cl, err := client.Dial(node.ClientAddr())
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	p, err := cl.NewProducer(topic, client.BatchBytes(256<<10))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	errs := make(chan error, 1)
	for i := range n {
		// A value of 1,024 bytes without '\n' (the file sink writes it as a line): the record's
		// number, then filler.
		v := bytes.Repeat([]byte{'x'}, valueSize)
		copy(v, fmt.Sprintf("%010d ", i))
		p.ProduceAsync(ctx, storage.Record{Value: v}, func(_ int64, err error) {
			if err != nil {
				select {
				case errs <- err:
				default:
				}
			}
		})
	}
	if err := p.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	var total int64
	for part := range int32(partitions) {
		end, err := cl.ListOffsets(ctx, topic, part, client.Latest())
		if err != nil {
			b.Fatal(err)
		}
		total += end
	}
	if total != int64(n) {
		b.Fatalf("the topic holds %d records, want %d", total, n)
	}
	return node
}

// timed is a sink whose Writes are counted and timed: the share of the run spent in Write
// tells whether the sink or the runtime around it is the bottleneck.
type timed struct {
	connectors.Sink
	writes, records atomic.Int64
	busy            atomic.Int64 // nanoseconds in Write
	first, last     atomic.Int64 // UnixNano of the first Write's start and the last Write's end
}

func (t *timed) Write(ctx context.Context, msgs []connectors.Message) error {
	start := time.Now()
	t.first.CompareAndSwap(0, start.UnixNano())
	err := t.Sink.Write(ctx, msgs)
	end := time.Now()
	t.busy.Add(int64(end.Sub(start)))
	t.last.Store(end.UnixNano())
	t.writes.Add(1)
	t.records.Add(int64(len(msgs)))
	return err
}

// BorrowsMessages implements connectors.Borrower: wrap refuses sinks that are not Borrowers (the
// benchmark's, file and null, are), so that the runner reuses its memory as it would without the
// wrapper.
func (t *timed) BorrowsMessages() {}

// timedStaging is timed around a staging sink, and timedNotifier around one that also notifies:
// a wrapper must keep the optional interfaces of the sink it wraps. Hidden, they make the runner
// take the rolling-file sink for a plain Sink, whose Write is durable when it returns: it would
// commit each Write's offsets before the sink made them durable, and wait for each commit before
// fetching on.
type timedStaging struct {
	*timed
	staging connectors.StagingSink
}

func (t timedStaging) Durable() ([]connectors.PartitionOffset, error) { return t.staging.Durable() }
func (t timedStaging) Reset() error                                   { return t.staging.Reset() }

type timedNotifier struct {
	timedStaging
	notifier connectors.DurableNotifier
}

func (t timedNotifier) NotifyDurable(notify func()) { t.notifier.NotifyDurable(notify) }

// wrap returns the timed sink around inner, with inner's optional interfaces; inner must be a
// connectors.Borrower.
func wrap(inner connectors.Sink) (*timed, connectors.Sink) {
	if _, ok := inner.(connectors.Borrower); !ok {
		panic(fmt.Sprintf("bench: %T is not a connectors.Borrower", inner))
	}
	t := &timed{Sink: inner}
	st, ok := inner.(connectors.StagingSink)
	if !ok {
		return t, t
	}
	ts := timedStaging{timed: t, staging: st}
	if dn, ok := inner.(connectors.DurableNotifier); ok {
		return t, timedNotifier{timedStaging: ts, notifier: dn}
	}
	return t, ts
}

// run times sink's flow on node from its start until its group has committed all n records. It
// reports records/s, the records per Write and the share of the run spent in Write (sink-%).
func run(b *testing.B, node *flow.Node, inner connectors.Sink, n int) {
	sink, wrapped := wrap(inner)
	var opts []flow.SinkOption
	if s := os.Getenv("WEIR_BENCH_FETCH"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("WEIR_BENCH_FETCH=%q: want a number of bytes", s)
		}
		opts = append(opts, flow.FetchBytes(int32(v)))
	}
	rt := flow.New(node)
	defer rt.Stop()
	if name := os.Getenv("WEIR_BENCH_CPUPROFILE"); name != "" {
		f, err := os.Create(name)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	if name := os.Getenv("WEIR_BENCH_TRACE"); name != "" {
		f, err := os.Create(name)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			b.Fatal(err)
		}
		defer trace.Stop()
	}
	b.SetBytes(valueSize)
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	if err := rt.Sink("bench", wrapped, append(opts, flow.FromTopics(topic))...); err != nil {
		b.Fatal(err)
	}
	last, lastAt := int64(-1), time.Now()
	for {
		lag, err := node.GroupLag("sink:bench", topic)
		if err == nil && lag == 0 {
			break
		}
		if err == nil && lag != last {
			last, lastAt = lag, time.Now()
		} else if time.Since(lastAt) > 15*time.Second {
			b.Fatalf("%d records not committed, and none more for 15 s (%v)", lag, err)
		}
		time.Sleep(time.Millisecond)
	}
	d := time.Since(start)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	pprof.StopCPUProfile()
	trace.Stop()
	rt.Stop()
	b.ReportMetric(float64(n)/d.Seconds(), "records/s")
	if cpu > 0 {
		// The process's CPU time (user and system) over the timed part, per GB of values.
		b.ReportMetric(cpu.Seconds()/(float64(n)*valueSize/1e9), "cpu-s/GB")
	}
	if w := sink.writes.Load(); w > 0 {
		b.ReportMetric(float64(sink.records.Load())/float64(w), "records/write")
		b.ReportMetric(100*float64(sink.busy.Load())/float64(d), "sink-%")
		b.ReportMetric(float64(sink.first.Load()-start.UnixNano())/1e6, "ms-to-first-write")
		b.ReportMetric(float64(start.Add(d).UnixNano()-sink.last.Load())/1e6, "ms-after-last-write")
	}
}

// BenchmarkFile: the file sink (lines, 128 MiB or 5 minutes per file, the defaults), on the disk
// of b.TempDir. After the run it checks that the finished files hold every record's line once
// by their total size.
func BenchmarkFile(b *testing.B) {
	node := load(b, b.N)
	dir := filepath.Join(b.TempDir(), "out")
	sink, err := file.New(file.DefaultConfig(dir))
	if err != nil {
		b.Fatal(err)
	}
	run(b, node, sink, b.N)
	ents, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	var size int64
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			b.Fatal(err)
		}
		size += info.Size()
	}
	if want := int64(b.N) * (valueSize + 1); size != want {
		b.Fatalf("the files hold %d bytes, want %d (%d records of %d bytes and a newline)", size, want, b.N, valueSize)
	}
}

// BenchmarkNull: the null sink, which discards every record (a plain Sink: the runner commits
// after each Write). Only with WEIR_BENCH_NULL=1.
func BenchmarkNull(b *testing.B) {
	if os.Getenv("WEIR_BENCH_NULL") != "1" {
		b.Skip("WEIR_BENCH_NULL=1 runs it")
	}
	node := load(b, b.N)
	sink, err := null.New(null.Config{})
	if err != nil {
		b.Fatal(err)
	}
	run(b, node, sink, b.N)
	if got := sink.Records(); got != int64(b.N) {
		b.Fatalf("the sink was given %d records, want %d", got, b.N)
	}
}
