package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// The markdown section is everything between these two lines of docs/benchmarks.md; a run
// replaces it, or appends it when the file has none.
const (
	mdBegin = "<!-- benchflume: begin (written by go run ./scripts/benchflume; edits here are lost) -->"
	mdEnd   = "<!-- benchflume: end -->"
)

// machine is what a report says about where and when it was measured.
type machine struct {
	started, finished     time.Time
	nproc                 int
	memory                string
	uname                 string
	goVersion             string
	java                  string
	commit                string
	loadBefore, loadAfter string
	command               string
}

func runOutput(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return shortErr(out), err
	}
	return strings.TrimSpace(string(out)), nil
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func describeMachine(args []string) machine {
	m := machine{started: time.Now(), nproc: runtime.NumCPU(), goVersion: runtime.Version(), loadBefore: loadAvg()}
	m.uname, _ = runOutput("uname", "-srm")
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.ParseFloat(f[1], 64); err == nil {
					m.memory = fmt.Sprintf("%.1f GiB", kb/(1<<20))
				}
			}
		}
	}
	if out, err := runOutput("java", "-version"); err == nil {
		m.java = strings.SplitN(out, "\n", 2)[0]
	}
	m.commit, _ = runOutput("git", "rev-parse", "--short", "HEAD")
	if out, _ := runOutput("git", "status", "--porcelain", "--untracked-files=no"); out != "" {
		m.commit += " (with local changes)"
	}
	m.command = strings.TrimSpace("go run ./scripts/benchflume " + strings.Join(args, " "))
	return m
}

// report writes the JSON lines, the plots and the markdown section.
func (b *bench) report(env machine, w5runs []w5Run, w4runs []w4Run, w6runs []w6Run) error {
	if p := b.cfg.jsonOut; p != "" {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		for _, r := range b.results {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			return err
		}
		b.logf("results in %s", p)
	}
	var plots []string
	if dir := b.cfg.plotDir; dir != "" {
		var err error
		if plots, err = writePlots(dir, w5runs, w4runs, w6runs); err != nil {
			return err
		}
		b.logf("plots in %s", dir)
	}
	if p := b.cfg.mdOut; p != "" {
		if err := replaceSection(p, b.markdown(env, w5runs, w4runs, w6runs, plots)); err != nil {
			return err
		}
		b.logf("section written in %s", p)
	}
	return nil
}

// value returns the figure of a run's metric, and whether there is one.
func (b *bench) value(workload, system, variant, metric string) (float64, bool) {
	for _, r := range b.results {
		if r.Workload == workload && r.System == system && r.Variant == variant && r.Metric == metric {
			return r.Value, true
		}
	}
	return 0, false
}

func (b *bench) cell(workload, system, variant, metric, format string) string {
	v, ok := b.value(workload, system, variant, metric)
	if !ok {
		return "—"
	}
	return fmt.Sprintf(format, v)
}

// markdown is the section of docs/benchmarks.md.
func (b *bench) markdown(env machine, w5runs []w5Run, w4runs []w4Run, w6runs []w6Run, plots []string) string {
	var s strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&s, format+"\n", args...) }
	p(mdBegin)
	p("## Apache Flume as a peer: W5 (tail to rolling files), W4 (spike) and W6 (topic to HDFS) (issue 8)")
	p("")
	p("Written by `%s` (`make bench-flume` runs the full size). **Preliminary**: the machine is a", env.command)
	p("shared 2-core VM on which other work ran at the same time (load average below), so figures")
	p("can move by far more than the ±20%% noted at the top of this file. Each agent is a process of")
	p("its own, run one after the other: Flume 1.11.0 from Maven Central through `scripts/flume/run.sh`")
	p("(`java -Xmx%s`, log4j2 at WARN), Weir as an embedded node with default settings (every log write", b.cfg.flumeHeap)
	p("fsynced, acks=all, GOGC=400 as `weir` sets it) in a child process of the benchmark. RSS is")
	p("VmRSS from /proc every 250 ms. Raw figures: `%s` (JSON lines).", b.cfg.jsonOut)
	p("")
	p("| | |")
	p("|---|---|")
	p("| date | %s to %s |", env.started.UTC().Format("2006-01-02 15:04"), env.finished.UTC().Format("15:04 MST"))
	p("| machine | %d CPUs (nproc), %s memory, `%s` |", env.nproc, env.memory, env.uname)
	p("| load average (1, 5, 15 min) | %s before, %s after |", env.loadBefore, env.loadAfter)
	p("| versions | Weir %s, %s, %s, Apache Flume 1.11.0 |", env.commit, env.goVersion, env.java)
	p("")
	if len(w5runs) > 0 {
		in := b.w5in
		p("### W5: tail files into rolling files")
		p("")
		p("%d lines of 100 to 200 bytes (%.1f MB) in %d files, complete before each agent starts", in.lines, float64(in.bytes)/1e6, b.cfg.w5Files)
		p("(read from the page cache). Timed from the agent's process start until its output directory")
		p("holds as many lines as the input; then the agent gets SIGTERM and every output line is checked")
		p("by its sequence number. MB/s counts the input's bytes, newlines included.")
		p("")
		p("- Weir: taildir source → topic (3 partitions) → file sink (lines, default rolls). Every source")
		p("  batch is fsynced to the topic and every sink Write to its file.")
		p("- Flume: TAILDIR (batchSize %d) → file channel (defaults: fsync at each commit) or memory", b.cfg.flumeBatch)
		p("  channel (capacity 100,000, transactions of %d) → file_roll (batchSize %d, roll every", b.cfg.flumeBatch, b.cfg.flumeBatch)
		p("  300 s; it flushes each batch but does not fsync). Flume's default batch size is 100.")
		p("- CPU s per 100 MB: the agent process's user and system CPU time from its start (the JVM's")
		p("  start and JIT included) until every line was out, per 100 MB of input. It depends less on")
		p("  the other work on the machine than MB/s does.")
		p("")
		p("| system | channel / path | MB/s | lines/s | MB/s after the first line | time to first line | lost | doubled | CPU s per 100 MB | RSS peak | RSS mean |")
		p("|---|---|---|---|---|---|---|---|---|---|---|")
		for _, r := range w5runs {
			p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |", r.system, r.variant,
				b.cell("W5", r.system, r.variant, "throughput", "**%.1f**"),
				b.cell("W5", r.system, r.variant, "throughput_lines", "%.0f"),
				b.cell("W5", r.system, r.variant, "throughput_after_first_line", "%.1f"),
				b.cell("W5", r.system, r.variant, "time_to_first_line", "%.2f s"),
				b.cell("W5", r.system, r.variant, "lines_lost", "%.0f"),
				b.cell("W5", r.system, r.variant, "lines_doubled", "%.0f"),
				b.cell("W5", r.system, r.variant, "cpu_per_100mb", "%.1f"),
				b.cell("W5", r.system, r.variant, "rss_peak", "%.0f MiB"),
				b.cell("W5", r.system, r.variant, "rss_mean", "%.0f MiB"))
			if r.stalled {
				p("| | (stalled: no line arrived for %v, %d of %d lines) | | | | | | | | | |", b.cfg.stall, r.delivered, in.lines)
			}
		}
		p("")
		plotLinks(p, plots, "w5", b.cfg.plotRef)
		p("")
	}
	if len(w4runs) > 0 {
		p("### W4: a spike at ten times the consumer's rate")
		p("")
		p("A Go client posts requests of %d events (bodies of 150 bytes, Flume's JSON format) to each", b.cfg.w4Batch)
		p("agent's HTTP source at %d events/s for %v, open loop (latency counted from when a request", b.cfg.w4In, b.cfg.w4For)
		p("was due, at most 512 in flight, no retries). The agent forwards the events over HTTP to a")
		p("consumer in the benchmark that takes %d events/s. A request is accepted when answered 200:", b.cfg.w4Out)
		p("for Flume, once its events are in the channel; for Weir, once they are in the topic (fsynced).")
		p("")
		p("- Weir `http-topic-http`: http source → topic (1 partition) → http sink (batches of 100")
		p("  records), the same shape as the Flume agents.")
		p("- Weir `client-topic-client`: no HTTP; the benchmark produces the same events with the Weir")
		p("  client (acks=all, the producer's default batching) to a bare node's topic of 1 partition,")
		p("  and a client consumer in the benchmark reads it at the consumer's rate. A request's latency")
		p("  is from when its %d events were due until the last of them was acknowledged.", b.cfg.w4Batch)
		p("- Flume: http source → memory channel (capacity 10,000 or 1,000,000, transactions of 1,000)")
		p("  or file channel (defaults: capacity 1,000,000) → HTTP sink (`HttpSink`, told not to back off")
		p("  or roll back on 200; it sends one event a request, in a transaction of its own).")
		p("")
		p("Known limits of this comparison:")
		p("")
		p("- Flume's HTTP sink takes one event per channel transaction, so with the file channel it drains")
		p("  at the rate of the channel's commits (each fsynced), and with a memory channel at the rate of")
		p("  one HTTP request per event: the consumer column shows whether an agent reached %d/s at all.", b.cfg.w4Out)
		p("- A Flume sink that found its channel empty backs off (one more second each time, up to 5 s),")
		p("  so Flume's sinks can start draining a few seconds into the spike; the agents are idle for")
		p("  2 s before it begins.")
		p("- Refused requests are not retried: with a retrying client, Flume's refusals would become")
		p("  latency and load instead.")
		p("- A put into a full memory channel waits up to the channel's keep-alive (3 s by default) for")
		p("  room before it fails, holding one of the HTTP source's threads: the requests behind it queue,")
		p("  which is where the latency of a memory channel that fills comes from.")
		p("- CPU s is the agent process's CPU time during the spike; for `client-topic-client` the")
		p("  producer and the consumer run in the benchmark and are not counted. A JVM's RSS includes")
		p("  heap that G1 grew into and has not returned: it is the process's footprint, not the size of")
		p("  the channel's contents.")
		p("")
		p("| system | buffer | offered | accepted | refused (503) | no answer | latency p50 | p99 | max | consumed | CPU s | RSS idle | RSS peak | RSS at end |")
		p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
		for _, r := range w4runs {
			p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |", r.system, r.variant,
				b.cell("W4", r.system, r.variant, "offered", "%.0f/s"),
				b.cell("W4", r.system, r.variant, "accepted", "%.0f"),
				b.cell("W4", r.system, r.variant, "refused", "%.0f"),
				b.cell("W4", r.system, r.variant, "failed", "%.0f"),
				b.cell("W4", r.system, r.variant, "latency_p50", "%.1f ms"),
				b.cell("W4", r.system, r.variant, "latency_p99", "**%.1f ms**"),
				b.cell("W4", r.system, r.variant, "latency_max", "%.0f ms"),
				b.cell("W4", r.system, r.variant, "consumed_rate", "%.0f/s"),
				b.cell("W4", r.system, r.variant, "cpu", "%.1f"),
				b.cell("W4", r.system, r.variant, "rss_idle", "%.0f MiB"),
				b.cell("W4", r.system, r.variant, "rss_peak", "**%.0f MiB**"),
				b.cell("W4", r.system, r.variant, "rss_end", "%.0f MiB"))
		}
		p("")
		plotLinks(p, plots, "w4", b.cfg.plotRef)
		p("")
	}
	if len(w6runs) > 0 {
		b.markdownW6(p, w6runs, plots)
	}
	p("Commands (the first fetches Flume with Maven into `~/.cache/weir/flume`, once):")
	p("")
	p("```sh")
	p("scripts/flume/run.sh --fetch")
	p("%s", env.command)
	p("```")
	p(mdEnd)
	return s.String()
}

// markdownW6 writes W6's part of the section.
func (b *bench) markdownW6(p func(string, ...any), runs []w6Run, plots []string) {
	in := b.w6in
	p("### W6: topic to HDFS")
	p("")
	p("%d records, W5's lines of 100 to 200 bytes (%.1f MB with their newlines), put once (not timed) into a", in.lines, float64(in.bytes)/1e6)
	p("topic of %d partitions of an embedded Weir node, then written into one MiniDFSCluster", w6Partitions)
	p("(`scripts/hdfs-minicluster/run.sh`: Hadoop 3.5.0, one DataNode, 128 MiB blocks) by each agent in")
	p("turn, each into a directory of its own. Timed from the agent's process start until every record")
	p("is in a closed HDFS file; then every file is read back from HDFS and each line checked by its")
	p("sequence number (lost, doubled). MB/s counts the lines' bytes with their newlines, as in W5 (what lands in HDFS).")
	p("")
	p("- Weir `hdfs-sink`: one process, an embedded node (default settings) on a copy of the filled")
	p("  data with an HDFS sink flow (text, one file per partition, rolled at 128 MiB or after %v", w6Idle)
	p("  without records). Done when the sink group's lag is 0: the sink commits a partition's offset")
	p("  only once its file is closed and renamed.")
	p("- Flume `kafka-source-*`: Flume 1.11.0's Kafka source (kafka-clients 2.7.2, batches of %d) reads", w6Batch)
	p("  the same topic through the Kafka listener of an embedded Weir node (a process of its own) →")
	p("  file channel (defaults: fsync at each commit) or memory channel (capacity 100,000) → HDFS")
	p("  sink (`DataStream`, text, batches of %d, rolled at 128 MiB or after %v idle, Hadoop 3.5.0's", w6Batch, w6Idle)
	p("  shaded client). Done when its sink has drained every event (Flume's HTTP monitoring) and no")
	p("  in-use `.tmp` file is left. Flume's CPU and RSS are the JVM's; the Weir node that served the")
	p("  Kafka source is reported beside them (node CPU) and in the total.")
	p("- CPU s per 100 MB: CPU time (user and system, from /proc) per 100 MB of input; for the")
	p("  agent from its process start (JVM start and JIT included) to the end of the run. The")
	p("  MiniDFSCluster's own CPU is in neither.")
	p("- Time to first record: from the agent's start until its first file is in HDFS (Weir: an")
	p("  in-progress file; Flume: a `.tmp` file, or an event drained by its sink): the start and,")
	p("  for Flume, the Kafka group join. MB/s after the first record leaves that time out.")
	p("- The progress lines count records done: for Weir those committed, which happens as each")
	p("  file closes (at 128 MiB or when the topic is drained), so Weir's count jumps at the end.")
	p("")
	p("| system | path | MB/s | records/s | MB/s after the first record | time | time to first record | files | lost | doubled | agent CPU s per 100 MB | node CPU s per 100 MB | total CPU s per 100 MB | RSS peak | RSS mean | node RSS peak |")
	p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range runs {
		p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |", r.system, r.variant,
			b.cell("W6", r.system, r.variant, "throughput", "**%.1f**"),
			b.cell("W6", r.system, r.variant, "throughput_records", "%.0f"),
			b.cell("W6", r.system, r.variant, "throughput_after_first_record", "%.1f"),
			b.cell("W6", r.system, r.variant, "time_to_all_records", "%.1f s"),
			b.cell("W6", r.system, r.variant, "time_to_first_record", "%.1f s"),
			b.cell("W6", r.system, r.variant, "files", "%.0f"),
			b.cell("W6", r.system, r.variant, "records_lost", "%.0f"),
			b.cell("W6", r.system, r.variant, "records_doubled", "%.0f"),
			b.cell("W6", r.system, r.variant, "cpu_per_100mb", "%.1f"),
			b.cell("W6", r.system, r.variant, "node_cpu_per_100mb", "%.1f"),
			b.cell("W6", r.system, r.variant, "total_cpu_per_100mb", "**%.1f**"),
			b.cell("W6", r.system, r.variant, "rss_peak", "%.0f MiB"),
			b.cell("W6", r.system, r.variant, "rss_mean", "%.0f MiB"),
			b.cell("W6", r.system, r.variant, "node_rss_peak", "%.0f MiB"))
		if r.stalled {
			p("| | (stalled: no progress for %v, %d of %d records) | | | | | | | | | | | | | | |", b.cfg.stall, r.delivered, in.lines)
		}
	}
	p("")
	plotLinks(p, plots, "w6", b.cfg.plotRef)
	p("")
}

// replaceSection puts section in place of the old one in path, or at its end.
func replaceSection(path, section string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	text := string(old)
	i, j := strings.Index(text, mdBegin), strings.Index(text, mdEnd)
	switch {
	case i >= 0 && j > i:
		text = text[:i] + strings.TrimSuffix(section, "\n") + text[j+len(mdEnd):]
	default:
		if text != "" && !strings.HasSuffix(text, "\n\n") {
			text = strings.TrimRight(text, "\n") + "\n\n"
		}
		text += section
	}
	return os.WriteFile(path, []byte(text), 0o644)
}

// plotLinks writes a markdown image line for each plot whose file name holds workload (w4, w5,
// w6), under the directory ref.
func plotLinks(p func(format string, args ...any), plots []string, workload, ref string) {
	for _, name := range plots {
		if strings.Contains(name, workload) {
			p("![%s](%s/%s)", name, ref, name)
		}
	}
}
