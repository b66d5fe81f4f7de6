// Command benchflume runs Apache Flume 1.11.0 next to Weir on this machine and measures both on
// the workloads of issue 8 that Flume is the peer for:
//
//   - W5, tailing files into rolling files: N MB of log lines in a few files, tailed into rolling
//     output files; Weir (taildir source -> topic -> file sink) against Flume (TAILDIR -> file
//     channel, or memory channel -> file_roll). Throughput from the agent's start until every
//     line is in the output, lines lost and written twice, resident memory.
//   - W4, a spike: a Go client posts events over HTTP at ten times the rate a rate-limited
//     consumer takes them; Weir (http source -> topic -> http sink) against Flume (http source ->
//     memory channel or file channel -> HTTP sink). Resident memory every 250 ms, the latency of
//     every request and the requests refused (Flume answers 503 when its channel is full).
//   - W6, a topic into HDFS: W5's lines put once into a topic of an embedded node, then written
//     into one MiniDFSCluster (scripts/hdfs-minicluster) by Weir (the node with an HDFS sink flow)
//     and by Flume (its Kafka source reading the topic through a Weir node's Kafka listener ->
//     file channel or memory channel -> HDFS sink); timed until every record is in a closed file,
//     every file read back and checked (w6.go).
//
// Each agent is a process of its own: Flume through scripts/flume/run.sh (java -Xmx1g), Weir as
// this program in a child mode (an embedded node with default settings). Every process started
// runs in its own process group, is stopped with SIGTERM then SIGKILL when its run ends or fails
// or this program is interrupted, and is killed by the kernel if this program dies.
//
// Results go to a JSON-lines file ({"workload","system","variant","metric","value","unit"}),
// to a section of docs/benchmarks.md between markers, and to PNG plots under docs/bench/.
//
//	go run ./scripts/benchflume -quick        # a few minutes: 50 MB (W5), 20 MB (W6), spikes of 10 s
//	go run ./scripts/benchflume -only w6 -w6-mb 200
//
// `make bench-compare` (scripts/benchcompare) runs it for W4, W5 and W6 (-only wN), and puts
// its figures and markdown into its own; `make bench-flume` is that for these three alone.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// config is what the flags set.
type config struct {
	quick      bool
	only       string // comma-separated: w4, w5, w6 (empty: all)
	hdfsRun    string
	w6MB       int
	work       string
	keep       bool
	flumeRun   string
	jsonOut    string
	mdOut      string
	plotDir    string
	plotRef    string
	w5MB       int
	w5Files    int
	stall      time.Duration
	w4For      time.Duration
	w4In       int // events/s offered
	w4Out      int // events/s the consumer takes
	w4Batch    int // events per request
	flumeHeap  string
	flumeBatch int // W5: the Flume source's and sink's batch size
}

// result is one figure, one line of the JSON-lines file.
type result struct {
	Workload string  `json:"workload"`
	System   string  `json:"system"`
	Variant  string  `json:"variant"`
	Metric   string  `json:"metric"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
}

// bench is one run of the program.
type bench struct {
	cfg     config
	work    string
	self    string // this program, for the Weir children
	results []result
	w5in    w5Input
	w6in    w5Input
}

func main() {
	if len(os.Args) > 1 {
		if child, ok := childModes[os.Args[1]]; ok {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			err := child(ctx, os.Args[2:])
			stop()
			if err != nil {
				fmt.Fprintln(os.Stderr, os.Args[1]+":", err)
				os.Exit(1)
			}
			return
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchflume:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	var c config
	fl := flag.NewFlagSet("benchflume", flag.ContinueOnError)
	fl.BoolVar(&c.quick, "quick", false, "a short run: 50 MB for W5, spikes of 10 s")
	fl.StringVar(&c.only, "only", "", "comma-separated workloads to run: w4, w5, w6 (all by default)")
	fl.StringVar(&c.work, "work", "", "working directory (default: a new one under $TMPDIR, removed at the end)")
	fl.BoolVar(&c.keep, "keep", false, "keep the working directory (agent logs, configurations, outputs)")
	fl.StringVar(&c.flumeRun, "flume", "scripts/flume/run.sh", "the script that fetches and runs Flume")
	fl.StringVar(&c.hdfsRun, "hdfs", "scripts/hdfs-minicluster/run.sh", "W6: the script that builds and runs the MiniDFSCluster")
	fl.IntVar(&c.w6MB, "w6-mb", 0, "W6: megabytes of records (default 500, 20 with -quick)")
	fl.StringVar(&c.jsonOut, "json", "docs/bench/flume.jsonl", "JSON-lines results file (empty: none)")
	fl.StringVar(&c.mdOut, "md", "docs/benchmarks.md", "markdown file whose benchflume section is replaced (empty: none)")
	fl.StringVar(&c.plotDir, "plots", "docs/bench", "directory of the PNG plots (empty: none)")
	fl.StringVar(&c.plotRef, "plot-ref", "bench", "the plots' directory as the markdown links name it (relative to the markdown file)")
	fl.IntVar(&c.w5MB, "w5-mb", 0, "W5: megabytes of input (default 500, 50 with -quick)")
	fl.IntVar(&c.w5Files, "w5-files", 4, "W5: input files")
	fl.DurationVar(&c.stall, "stall", 60*time.Second, "W5: give up when no line arrived for this long")
	fl.DurationVar(&c.w4For, "w4-for", 0, "W4: how long the spike lasts (default 30s, 10s with -quick)")
	fl.IntVar(&c.w4In, "w4-in", 10000, "W4: events per second offered")
	fl.IntVar(&c.w4Out, "w4-out", 1000, "W4: events per second the consumer takes")
	fl.IntVar(&c.w4Batch, "w4-batch", 100, "W4: events per request")
	fl.StringVar(&c.flumeHeap, "flume-heap", "1g", "the Flume JVM's -Xmx")
	fl.IntVar(&c.flumeBatch, "flume-batch", 1000, "W5: batch size of Flume's TAILDIR source and file_roll sink (at most 10000, the file channel's transaction capacity)")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fl.Arg(0))
	}
	if c.w5MB == 0 {
		c.w5MB = map[bool]int{true: 50, false: 500}[c.quick]
	}
	if c.w6MB == 0 {
		c.w6MB = map[bool]int{true: 20, false: 500}[c.quick]
	}
	if c.w4For == 0 {
		c.w4For = map[bool]time.Duration{true: 10 * time.Second, false: 30 * time.Second}[c.quick]
	}
	want, err := parseOnly(c.only)
	if err != nil {
		return err
	}
	if c.w4In <= 0 || c.w4Out <= 0 || c.w4Batch <= 0 || c.w5MB <= 0 || c.w5Files <= 0 || c.w6MB <= 0 {
		return errors.New("-w4-in, -w4-out, -w4-batch, -w5-mb, -w5-files and -w6-mb must be above 0")
	}
	if c.flumeBatch < 1 || c.flumeBatch > 10000 {
		return fmt.Errorf("-flume-batch %d: want 1 to 10000", c.flumeBatch)
	}
	b := &bench{cfg: c}
	if b.self, err = os.Executable(); err != nil {
		return err
	}
	if c.work == "" {
		if b.work, err = os.MkdirTemp("", "benchflume-"); err != nil {
			return err
		}
		if !c.keep {
			defer os.RemoveAll(b.work)
		}
	} else {
		b.work = c.work
		if err := os.MkdirAll(b.work, 0o755); err != nil {
			return err
		}
	}
	b.logf("working directory %s", b.work)
	// Fetch Flume before any clock starts.
	if out, err := runOutput(c.flumeRun, "--fetch"); err != nil {
		return fmt.Errorf("%s --fetch: %w\n%s", c.flumeRun, err, out)
	}
	env := describeMachine(args)
	var w5runs []w5Run
	var w4runs []w4Run
	var w6runs []w6Run
	if want["w5"] {
		if w5runs, err = b.w5(ctx); err != nil {
			return fmt.Errorf("W5: %w", err)
		}
	}
	if want["w4"] {
		if w4runs, err = b.w4(ctx); err != nil {
			return fmt.Errorf("W4: %w", err)
		}
	}
	if want["w6"] {
		if w6runs, err = b.w6(ctx); err != nil {
			return fmt.Errorf("W6: %w", err)
		}
	}
	env.loadAfter = loadAvg()
	env.finished = time.Now()
	return b.report(env, w5runs, w4runs, w6runs)
}

// parseOnly reads -only: comma-separated workload ids (case does not matter); empty is all.
func parseOnly(only string) (map[string]bool, error) {
	all := []string{"w4", "w5", "w6"}
	want := map[string]bool{}
	if strings.TrimSpace(only) == "" {
		for _, w := range all {
			want[w] = true
		}
		return want, nil
	}
	for _, id := range strings.Split(only, ",") {
		id = strings.ToLower(strings.TrimSpace(id))
		if !slices.Contains(all, id) {
			return nil, fmt.Errorf("-only: no workload %q (want w4, w5 or w6)", id)
		}
		want[id] = true
	}
	return want, nil
}

// logf prints progress on standard error.
func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s benchflume: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// add records a figure.
func (b *bench) add(r result) { b.results = append(b.results, r) }

// startWeir starts this program in a child mode, logging to work/agent.log.
func (b *bench) startWeir(mode, work string, args ...string) (*proc, error) {
	return startProc("weir "+mode, filepath.Join(work, "agent.log"), nil, append([]string{b.self, mode}, args...)...)
}

// startFlume writes conf to work/agent.properties and starts the agent "a" with it; env adds
// to its environment (FLUME_JAVA_OPTS, say).
func (b *bench) startFlume(work, conf string, env ...string) (*proc, error) {
	path := filepath.Join(work, "agent.properties")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	env = append([]string{"FLUME_HEAP=" + b.cfg.flumeHeap}, env...)
	return startProc("flume", filepath.Join(work, "agent.log"), env, b.cfg.flumeRun, path, "a")
}

// shortErr trims a command's output for an error message.
func shortErr(out []byte) string {
	s := strings.TrimSpace(string(out))
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	return s
}
