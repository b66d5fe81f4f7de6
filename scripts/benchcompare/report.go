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
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/weirhq/weir/internal/progress"
)

// The markers around the section of docs/benchmarks.md that a run rewrites.
const (
	sectionBegin = "<!-- bench-compare:begin -->"
	sectionEnd   = "<!-- bench-compare:end -->"
)

// machine is what the report says about where and what was measured.
type machine struct {
	date      time.Time
	cpus      int
	cpuModel  string
	memory    string
	uname     string
	goVersion string
	java      string
	commit    string
	loadStart string
	loadEnd   string
}

// describeMachine gathers the machine's facts at the start of a run.
func describeMachine(ctx context.Context, root string) machine {
	m := machine{date: time.Now().UTC(), cpus: runtime.NumCPU(), goVersion: runtime.Version(), loadStart: loadAverage()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpuModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			var kb int64
			if _, err := fmt.Sscanf(line, "MemTotal: %d kB", &kb); err == nil {
				m.memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		m.uname = strings.Join([]string{utsString(u.Sysname[:]), utsString(u.Release[:]), utsString(u.Version[:]), utsString(u.Machine[:])}, " ")
	}
	var errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, "java", "-version")
	cmd.Stderr = &errOut
	if cmd.Run() == nil {
		m.java, _, _ = strings.Cut(errOut.String(), "\n")
	}
	if out, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.commit = strings.TrimSpace(string(out))
		if st, err := exec.CommandContext(ctx, "git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			m.commit += " with uncommitted changes"
		}
	}
	return m
}

func utsString(b []int8) string {
	var s []byte
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}

// loadAverage is the first three fields of /proc/loadavg.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// series is one bar of a case: a system with a client.
type series struct{ system, client string }

func (s series) label() string {
	short := map[string]string{clientProducerPerf: "ProducerPerformance", clientWeirBench: "weir bench"}[s.client]
	return s.system + ", " + short
}

// caseKey is one combination of acks and producers.
type caseKey struct {
	acks      string
	producers int
}

func (k caseKey) label() string { return fmt.Sprintf("acks=%s, %d producer(s)", k.acks, k.producers) }

// rowsOf returns the results of workload id in the order they ran.
func (h *harness) rowsOf(id string) []result {
	var out []result
	for _, r := range h.results {
		if r.workload == id {
			out = append(out, r)
		}
	}
	return out
}

// seriesAndCases lists the series and cases of rows, in first-seen order.
func seriesAndCases(rows []result) ([]series, []caseKey) {
	var ss []series
	var cs []caseKey
	seenS, seenC := map[series]bool{}, map[caseKey]bool{}
	for _, r := range rows {
		s, c := series{r.system, r.client}, caseKey{r.acks, r.producers}
		if !seenS[s] {
			seenS[s] = true
			ss = append(ss, s)
		}
		if !seenC[c] {
			seenC[c] = true
			cs = append(cs, c)
		}
	}
	return ss, cs
}

// meanOf averages f over the successful rows of series s and case c (NaN if none).
func meanOf(rows []result, s series, c caseKey, f func(result) float64) float64 {
	sum, n := 0.0, 0
	for _, r := range rows {
		if r.err == "" && r.system == s.system && r.client == s.client && r.acks == c.acks && r.producers == c.producers {
			if v := f(r); !math.IsNaN(v) {
				sum += v
				n++
			}
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return sum / float64(n)
}

// report renders the section of docs/benchmarks.md, markers included.
func (h *harness) report(chosen []workload) string {
	var b strings.Builder
	m := h.machine
	mode := "full run"
	if h.cfg.quick {
		mode = "quick run (-quick: a smoke test, too few records for the figures to mean much)"
	}
	fmt.Fprintf(&b, "%s\n<!-- Written by `make bench-compare` (scripts/benchcompare): edits between these markers are overwritten. -->\n\n", sectionBegin)
	fmt.Fprintf(&b, "### Figures: %s, %s (preliminary)\n\n", mode, m.date.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Machine: %d CPUs (%s), %s of memory, %s. Load average %s at the start and %s at the end:\n", m.cpus, m.cpuModel, m.memory, m.uname, m.loadStart, m.loadEnd)
	fmt.Fprintf(&b, "  other work shares this machine, so these figures are preliminary.\n")
	fmt.Fprintf(&b, "- Versions: Weir at commit %s (%s); Apache Kafka %s (broker `org.apache.kafka:kafka_2.13`, tools `org.apache.kafka:kafka-tools`, from Maven Central); Apache Flume 1.11.0 and Hadoop 3.5.0 (W4 to W6, `scripts/flume`, `scripts/hdfs-minicluster`, from Maven Central); %s.\n", m.commit, m.goVersion, kafkaVersion, m.java)
	if note := warmUpNote(chosen, h.cfg.warmup); note != "" {
		fmt.Fprintf(&b, "- W1 to W3: %s records of %d B per measurement (shared evenly by its producers; in a fan-out workload, the topic's size, read whole by every group), %d round(s); %s.\n",
			thousands(float64(h.cfg.records)), recordSize, h.cfg.rounds, note)
	}
	if hasFlume(chosen) {
		fmt.Fprintf(&b, "- W4 to W6 (against Apache Flume, measured by `scripts/benchflume`) set their own sizes, said under each; one round each.\n")
	}
	fmt.Fprintf(&b, "- The run took %s.\n", h.elapsed.Round(time.Second))
	fmt.Fprintf(&b, "- Command: `make bench-compare` (`go run ./scripts/benchcompare%s`); every command it ran is listed under each workload.\n", h.flagsUsed())
	plotRel := ""
	if h.cfg.plots != "" && h.cfg.doc != "" {
		if rel, err := filepath.Rel(filepath.Dir(h.cfg.doc), h.cfg.plots); err == nil {
			plotRel = filepath.ToSlash(rel)
		}
	}
	for _, w := range chosen {
		if w.flume {
			out := h.flume[w.id]
			fmt.Fprintf(&b, "\n#### %s: %s\n\n%s\n", w.id, w.title, out.markdown)
			fmt.Fprintf(&b, "\n<details><summary>%s: the exact command</summary>\n\n```sh\n%s\n```\n\nscripts/benchflume starts the agents itself: Flume through `scripts/flume/run.sh` (its configuration and log in the work directory, kept with `-flume-args -keep`), Weir as benchflume's own child modes.\n\n</details>\n", w.id, out.command)
			continue
		}
		rows := h.rowsOf(w.id)
		if w.consume {
			fmt.Fprintf(&b, "\n#### %s: %s\n", w.id, w.title)
			if len(rows) > 0 {
				fmt.Fprintf(&b, "\n##### %s, saturated mode\n\n%s. %s\n\n", w.id, upperFirst(w.setup), fanOutNote)
				b.WriteString(fanOutTable(rows, h.cfg.rounds > 1))
				b.WriteString(fanOutRatioTable(rows))
				if plotRel != "" {
					fmt.Fprintf(&b, "\n![%s saturated throughput](%s/%s-throughput.png)\n", w.id, plotRel, strings.ToLower(w.id))
				}
			}
			if tails := h.tailsOf(w.id); len(tails) > 0 {
				fmt.Fprintf(&b, "\n##### %s, tailing mode\n\n%s %s\n\n", w.id, tailSetup(h.cfg), tailNote)
				b.WriteString(tailTable(tails, h.cfg.rounds > 1))
				b.WriteString(tailCostTable(tails))
				if plotRel != "" {
					fmt.Fprintf(&b, "\n![%s tailing](%s/%s-tailing.png)\n", w.id, plotRel, strings.ToLower(w.id))
				}
			}
			if plotRel != "" && h.cfg.rounds > 1 {
				fmt.Fprintf(&b, "\nThe plots show the mean over the %d rounds.\n", h.cfg.rounds)
			}
		} else {
			fmt.Fprintf(&b, "\n#### %s: %s\n\n%s. Latencies in ms; p95 is not reported by `weir bench produce` (—). Memory is the peak of the servers' summed RSS while the client ran, CPU the servers' CPU time over the run.\n\n", w.id, w.title, upperFirst(w.setup))
			b.WriteString(rowsTable(rows, h.cfg.rounds > 1))
			b.WriteString(ratioTable(rows))
		}
		if plotRel != "" && !w.consume {
			lw := strings.ToLower(w.id)
			fmt.Fprintf(&b, "\n![%s throughput](%s/%s-throughput.png)\n", w.id, plotRel, lw)
			fmt.Fprintf(&b, "![%s latency](%s/%s-latency.png)\n", w.id, plotRel, lw)
			if h.cfg.rounds > 1 {
				fmt.Fprintf(&b, "\nThe bar plots show the mean over the %d rounds.\n", h.cfg.rounds)
			}
			fmt.Fprintf(&b, "\n![%s latency CDF](%s/%s-latency-cdf.png)\n\n%s\n", w.id, plotRel, lw, cdfCaption)
		}
		fmt.Fprintf(&b, "\n<details><summary>%s: the exact commands, in order</summary>\n\n```sh\n", w.id)
		for _, c := range h.commandsOf(w.id) {
			b.WriteString(c + "\n")
		}
		b.WriteString("```\n\n</details>\n")
	}
	b.WriteString("\n" + sectionEnd + "\n")
	return b.String()
}

// commandsOf returns the commands noted while workload id ran: those naming its topics, and
// the server starts between them.
func (h *harness) commandsOf(id string) []string {
	prefix := strings.ToLower(id) + "-"
	var out, pending []string
	for _, c := range h.commands {
		switch {
		case strings.Contains(c, "--topic "+prefix):
			out = append(out, pending...)
			pending = nil
			out = append(out, c)
		case strings.Contains(c, "--topic "):
			pending = nil // the servers started were another workload's
		case strings.Contains(c, " node --id ") || strings.HasPrefix(c, kafkaServerScript):
			pending = append(pending, c)
		default:
			// go build and the like: in the header
		}
	}
	return out
}

// flagsUsed renders the flags of this run that differ from the defaults.
func (h *harness) flagsUsed() string {
	var f []string
	if h.cfg.quick {
		f = append(f, "-quick")
	}
	if h.cfg.rounds != 1 {
		f = append(f, fmt.Sprintf("-rounds %d", h.cfg.rounds))
	}
	if h.cfg.only != "" {
		f = append(f, "-only "+h.cfg.only)
	}
	if h.cfg.flumeArgs != "" {
		f = append(f, "-flume-args "+shellQuote(h.cfg.flumeArgs))
	}
	if def := map[bool]int64{false: 300_000, true: 0}[h.cfg.quick]; h.cfg.warmup != def {
		f = append(f, fmt.Sprintf("-warmup %d", h.cfg.warmup))
	}
	if h.cfg.w3Modes != defaultW3Modes {
		f = append(f, "-w3-modes "+h.cfg.w3Modes)
	}
	if h.cfg.w3Rate != defaultW3Rate {
		f = append(f, fmt.Sprintf("-w3-rate %.0f", h.cfg.w3Rate))
	}
	if def := map[bool]time.Duration{false: 30 * time.Second, true: 5 * time.Second}[h.cfg.quick]; h.cfg.w3Duration != def && h.cfg.w3Duration != 0 {
		f = append(f, "-w3-duration "+h.cfg.w3Duration.String())
	}
	if h.cfg.records != 1_000_000 && !h.cfg.quick {
		f = append(f, fmt.Sprintf("-records %d", h.cfg.records))
	}
	if len(f) == 0 {
		return ""
	}
	return " " + strings.Join(f, " ")
}

// writeTableHead writes a markdown table's header row (head: "| a | b |") and its rule, with a
// round column first when withRound.
func writeTableHead(b *strings.Builder, head string, withRound bool) {
	if withRound {
		head = "| round " + head
	}
	b.WriteString(head + "\n" + strings.Repeat("|---", strings.Count(head, "|")-1) + "|\n")
}

// writeRoundCell writes a row's round cell when the table has a round column.
func writeRoundCell(b *strings.Builder, round int, withRound bool) {
	if withRound {
		fmt.Fprintf(b, "| %d ", round)
	}
}

func rowsTable(rows []result, withRound bool) string {
	var b strings.Builder
	writeTableHead(&b, "| system | client | acks | producers | records/s | MB/s | p50 | p95 | p99 | max | server RSS (MiB) | server CPU (s) |", withRound)
	for _, r := range rows {
		writeRoundCell(&b, r.round, withRound)
		fmt.Fprintf(&b, "| %s | %s | %s | %d | ", r.system, r.client, r.acks, r.producers)
		if r.err != "" {
			fmt.Fprintf(&b, "failed: %s | | | | | | %d | %.1f |\n", oneLine(r.err, 160), r.peakRSS>>20, r.cpu.Seconds())
			continue
		}
		fmt.Fprintf(&b, "**%s** | %.2f | %s | %s | %s | %s | %d | %.1f |\n", thousands(r.recordsPerSec), r.mbPerSec,
			ms(r.p50), ms(r.p95), ms(r.p99), ms(r.max), r.peakRSS>>20, r.cpu.Seconds())
	}
	return b.String()
}

// ratioTable compares each Weir series with Apache Kafka's ProducerPerformance rows, case by
// case: throughput ratio (above 1: Weir is faster) and p99 ratio (below 1: Weir's is lower).
func ratioTable(rows []result) string {
	ss, cs := seriesAndCases(rows)
	kafka := series{apacheKafka.name, clientProducerPerf}
	var b strings.Builder
	b.WriteString("\nRatios of Weir's ProducerPerformance rows to Apache Kafka's, case by case (records/s: above 1 is Weir faster; p99: below 1 is Weir's lower; with several rounds, of the means over the rounds):\n\n")
	b.WriteString("| Weir series | case | records/s ratio | p99 ratio |\n|---|---|---|---|\n")
	n := 0
	for _, s := range ss {
		if s == kafka || s.client != clientProducerPerf { // only the same client compares like for like
			continue
		}
		for _, c := range cs {
			kr := meanOf(rows, kafka, c, func(r result) float64 { return r.recordsPerSec })
			wr := meanOf(rows, s, c, func(r result) float64 { return r.recordsPerSec })
			kp := meanOf(rows, kafka, c, func(r result) float64 { return r.p99 })
			wp := meanOf(rows, s, c, func(r result) float64 { return r.p99 })
			if math.IsNaN(wr) && math.IsNaN(wp) {
				continue
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", s.label(), c.label(), ratio(wr, kr), ratio(wp, kp))
			n++
		}
	}
	if n == 0 {
		return ""
	}
	return b.String()
}

func ratio(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// ms renders a latency in milliseconds.
func ms(v float64) string {
	switch {
	case math.IsNaN(v):
		return "—"
	case v >= 100:
		return thousands(v)
	default:
		return fmt.Sprintf("%.1f", v)
	}
}

// thousands renders v rounded, with commas between groups of three digits.
func thousands(v float64) string {
	return progress.Thousands(int64(math.RoundToEven(v))) // as %.0f rounds
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// oneLine makes s fit a table cell: no newlines or pipes, at most n bytes.
func oneLine(s string, n int) string {
	s = strings.NewReplacer("\n", " ", "|", "/").Replace(s)
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// replaceSection writes section into the file at path in place of the text between the
// markers (markers included); the file must have both, in order.
func replaceSection(path, section string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := spliceSection(string(b), section)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, []byte(out), 0o644)
}

var errNoMarkers = errors.New("no " + sectionBegin + " ... " + sectionEnd + " markers")

func spliceSection(doc, section string) (string, error) {
	i := strings.Index(doc, sectionBegin)
	j := strings.Index(doc, sectionEnd)
	if i < 0 || j < i {
		return "", errNoMarkers
	}
	end := j + len(sectionEnd)
	if end < len(doc) && doc[end] == '\n' {
		end++
	}
	return doc[:i] + section + doc[end:], nil
}

// hasFlume reports whether a workload against Apache Flume is among chosen.
func hasFlume(chosen []workload) bool {
	for _, w := range chosen {
		if w.flume {
			return true
		}
	}
	return false
}

// warmUpNote says which workloads were warmed up: the produce workloads are, with warmup
// records; a fan-out workload's fill is its warm-up.
func warmUpNote(chosen []workload, warmup int64) string {
	var produce, consume []string
	for _, w := range chosen {
		if w.flume {
			continue
		}
		if w.consume {
			consume = append(consume, w.id)
		} else {
			produce = append(produce, w.id)
		}
	}
	var parts []string
	if len(produce) > 0 {
		parts = append(parts, fmt.Sprintf("in %s each system warmed up with %s records (acks=1, not reported) after it started", strings.Join(produce, " and "), thousands(float64(warmup))))
	}
	if len(consume) > 0 {
		parts = append(parts, fmt.Sprintf("in %s's saturated mode no separate warm-up (the fill, not reported, is one; its tailing mode says its own)", strings.Join(consume, " and ")))
	}
	return strings.Join(parts, "; ")
}
