//go:build linux

// Command benchcompare measures Weir against Apache Kafka (KRaft) and Apache Flume on this
// machine in one run, one system at a time, with the same clients and workloads, and writes
// what it measured into docs/benchmarks.md (between the markers of its section), every figure
// into docs/bench/compare.jsonl (a JSON object a line) and PNG plots into docs/bench/.
// `make bench-compare` runs it from the repository's root; -only selects workloads (w1,w5),
// -quick makes a smoke test of every one.
//
// W1 to W3 (workloads.go) start each system in turn (Weir with --sync always, Apache Kafka,
// Weir with --sync never, alternated), drive it with clients (Kafka's ProducerPerformance
// through scripts/kafka-tools/run.sh; Weir's `weir bench produce` as an extra row for Weir),
// sample the servers' resident memory and CPU time while each client runs, and stop every
// process they started before the next system starts. Apache Kafka runs through
// scripts/kafka-server/run.sh (fetched from Maven Central); Weir is go build'd from this tree.
// While a producing client runs, a line a second shows the records its topic holds, the rate
// and the time left (watch.go).
//
// W4 to W6, against Apache Flume (a spike over HTTP, tailing files into rolling files, a topic
// into HDFS), are measured by scripts/benchflume, which this program builds and runs for each
// (flume.go): its progress lines pass through, its figures join this program's JSON file and its
// subsection of markdown this program's section.
//
// Concurrency: the workloads run one after the other on the main goroutine; the only other
// goroutines are a sampler and a progress display per measurement and the readers of child
// processes' output, each stopped and waited for by the function that started it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// config is what the flags set.
type config struct {
	quick     bool
	rounds    int
	only      string
	records   int64
	warmup    int64
	doc       string
	plots     string
	keep      bool
	caseLimit time.Duration
	flumeArgs string
	json      string
	weirPort  int
	kafkaPort int
	// W3's modes and the tailing mode's load.
	w3Modes    string
	w3Rate     float64
	w3Duration time.Duration
}

func main() {
	var cfg config
	flag.BoolVar(&cfg.quick, "quick", false, "a smoke test: few records per measurement (the figures mean little)")
	flag.IntVar(&cfg.rounds, "rounds", 1, "how many times each workload alternates the systems")
	flag.StringVar(&cfg.only, "only", "", "comma-separated workload ids to run (default: all, W1 to W6), e.g. w1,w5")
	flag.Int64Var(&cfg.records, "records", 0, "records per measurement, over all its producers (default: 1,000,000; 30,000 with -quick)")
	flag.Int64Var(&cfg.warmup, "warmup", -1, "records sent, unmeasured, to each system after it starts (default: 300,000; 0 with -quick)")
	flag.StringVar(&cfg.doc, "doc", "docs/benchmarks.md", "markdown file whose bench-compare section is rewritten (empty: print the section)")
	flag.StringVar(&cfg.plots, "plots", "docs/bench", "directory for the PNG plots (empty: none)")
	flag.StringVar(&cfg.json, "json", "docs/bench/compare.jsonl", "file of every figure of the run, a JSON object a line (empty: none)")
	flag.StringVar(&cfg.flumeArgs, "flume-args", "", "more flags for scripts/benchflume, which measures W4, W5 and W6 (e.g. \"-w6-mb 200\")")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the work directory (binaries, node data and logs)")
	flag.DurationVar(&cfg.caseLimit, "case-timeout", 5*time.Minute, "longest one client run may take before it is stopped and reported failed")
	flag.IntVar(&cfg.weirPort, "weir-port", defaultWeirPort, "first port of Weir's nodes (each takes 4, 10 apart)")
	flag.IntVar(&cfg.kafkaPort, "kafka-port", defaultKafkaPort, "first port of Apache Kafka's brokers (scripts/kafka-server's KAFKA_PORT)")
	flag.StringVar(&cfg.w3Modes, "w3-modes", defaultW3Modes, "W3's modes, comma-separated: saturated (groups read a filled topic as fast as they can), tailing (groups tail a topic a producer writes at -w3-rate)")
	flag.Float64Var(&cfg.w3Rate, "w3-rate", defaultW3Rate, "W3 tailing: the producer's rate, records/s of 100 B")
	flag.DurationVar(&cfg.w3Duration, "w3-duration", 0, "W3 tailing: how long the producer writes (default 30s; 5s with -quick)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "benchcompare: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, cfg)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchcompare:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config) error {
	if cfg.rounds < 1 {
		return errors.New("-rounds must be at least 1")
	}
	if cfg.records == 0 {
		cfg.records = 1_000_000
		if cfg.quick {
			cfg.records = 30_000
		}
	}
	if cfg.warmup < 0 {
		cfg.warmup = 300_000
		if cfg.quick {
			cfg.warmup = 0
		}
	}
	if cfg.w3Duration == 0 {
		cfg.w3Duration = 30 * time.Second
		if cfg.quick {
			cfg.w3Duration = 5 * time.Second
		}
	}
	if cfg.w3Rate <= 0 || cfg.w3Duration < 0 {
		return errors.New("-w3-rate and -w3-duration must be positive")
	}
	if _, _, err := w3Modes(cfg.w3Modes); err != nil {
		return err
	}
	chosen, err := selectWorkloads(cfg.only)
	if err != nil {
		return err
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	for _, p := range []string{"go.mod", kafkaToolsScript, kafkaServerScript, flumeHarness} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			return fmt.Errorf("run from the repository's root (make bench-compare): %w", err)
		}
	}
	work, err := os.MkdirTemp("", "weir-bench-compare.")
	if err != nil {
		return err
	}
	h := &harness{cfg: cfg, root: root, work: work, procs: &procTable{}}
	defer func() {
		h.procs.stopAll()
		if cfg.keep {
			fmt.Fprintln(os.Stderr, "benchcompare: kept", work)
		} else {
			_ = os.RemoveAll(work)
		}
	}()
	h.machine = describeMachine(ctx, root)
	h.progress("building weir (go build ./cmd/weir)")
	h.weirBin = filepath.Join(work, "weir")
	if err := h.command(ctx, "go", "build", "-o", h.weirBin, "./cmd/weir"); err != nil {
		return fmt.Errorf("go build: %w", err)
	}
	start := time.Now()
	for _, w := range chosen {
		h.progress("== %s: %s", w.id, w.title)
		if err := w.run(ctx, h); err != nil {
			return fmt.Errorf("%s: %w", w.id, err)
		}
	}
	h.machine.loadEnd = loadAverage()
	h.elapsed = time.Since(start)
	if left := h.procs.alive(); len(left) > 0 {
		return fmt.Errorf("processes still running after the workloads: %v", left)
	}
	h.progress("every process started is gone (%d started)", h.procs.count())
	section := h.report(chosen)
	if cfg.plots != "" {
		if err := h.writePlots(chosen, h.abs(cfg.plots)); err != nil {
			return err
		}
	}
	if cfg.json != "" {
		if err := h.writeJSON(h.abs(cfg.json), chosen); err != nil {
			return err
		}
	}
	if cfg.doc == "" {
		fmt.Print(section)
		return nil
	}
	return replaceSection(h.abs(cfg.doc), section)
}

// harness holds what one run has measured and the paths it works with.
type harness struct {
	cfg     config
	root    string
	work    string
	weirBin string
	procs   *procTable
	machine machine
	elapsed time.Duration
	results []result
	// tails are the rows of W3's tailing mode.
	tails []tailRow
	// commands are the client and setup commands in the order they ran, with the work
	// directory written as $WORK.
	commands []string
	// flumeBin is scripts/benchflume, built at the first workload against Flume; flume holds
	// what it measured, by workload id.
	flumeBin string
	flume    map[string]flumeOutput
}

// progress prints a line to standard error, with the time.
func (h *harness) progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// note records a command for the report.
func (h *harness) note(args []string) {
	q := make([]string, len(args))
	for i, a := range args {
		a = strings.ReplaceAll(a, h.work, "$WORK")
		if h.root != "" && (a == h.root || strings.HasPrefix(a, h.root+"/")) {
			// Paths in the repository as the command is run from its root (make bench-compare).
			a = "." + strings.TrimPrefix(a, h.root)
		}
		q[i] = shellQuote(a)
	}
	h.commands = append(h.commands, strings.Join(q, " "))
}

// shellQuote quotes a for sh where it needs it; $WORK is left for the shell to expand.
func shellQuote(a string) string {
	if a == "" {
		return `""`
	}
	if strings.ContainsFunc(a, func(r rune) bool { return !strings.ContainsRune(safeShellChars, r) }) {
		return `"` + strings.NewReplacer(`"`, `\"`, "`", "\\`", `\`, `\\`).Replace(a) + `"`
	}
	return a
}

const safeShellChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:,=+@$%"

// selectWorkloads returns the workloads named in only (comma-separated ids), or all of them.
func selectWorkloads(only string) ([]workload, error) {
	if only == "" {
		return workloads, nil
	}
	var out []workload
	for _, id := range strings.Split(only, ",") {
		found := false
		for _, w := range workloads {
			if strings.EqualFold(w.id, strings.TrimSpace(id)) {
				out = append(out, w)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("-only: no workload %q", id)
		}
	}
	return out, nil
}

// The defaults of W3's flags.
const (
	defaultW3Modes = "saturated,tailing"
	defaultW3Rate  = 20_000
)

// w3Modes reads -w3-modes.
func w3Modes(s string) (saturated, tailing bool, err error) {
	for _, m := range strings.Split(s, ",") {
		switch strings.TrimSpace(strings.ToLower(m)) {
		case "saturated":
			saturated = true
		case "tailing":
			tailing = true
		case "":
		default:
			return false, false, fmt.Errorf("-w3-modes: no mode %q (saturated, tailing)", m)
		}
	}
	if !saturated && !tailing {
		return false, false, errors.New("-w3-modes: no mode")
	}
	return saturated, tailing, nil
}
