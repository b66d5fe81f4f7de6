//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The workloads against Apache Flume (W4, W5, W6) are measured by scripts/benchflume, which has
// their agents, loads and checks; the harness builds it once, runs it for each such workload
// with -only, passes its live progress through to standard error, and takes its results: the
// JSON lines (the harness's JSON file holds them with its own rows) and its markdown (the
// workload's subsection of this harness's section, under the header that says where and what
// was measured).
const flumeHarness = "./scripts/benchflume"

// flumeOutput is what a benchflume run left for the report.
type flumeOutput struct {
	markdown string   // the workload's subsection, its heading removed
	json     [][]byte // its JSON lines
	command  string   // how it was run, with the work directory as $WORK
}

// flumeWorkload runs benchflume for workload id ("W5", say).
func (h *harness) flumeWorkload(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if h.flumeBin == "" {
		h.flumeBin = filepath.Join(h.work, "benchflume")
		if err := h.command(ctx, "go", "build", "-o", h.flumeBin, flumeHarness); err != nil {
			return fmt.Errorf("go build %s: %w", flumeHarness, err)
		}
	}
	lower := strings.ToLower(id)
	dir := filepath.Join(h.work, "flume-"+lower)
	jsonPath, mdPath := filepath.Join(h.work, lower+".jsonl"), filepath.Join(h.work, lower+".md")
	plots, ref := "", "."
	if h.cfg.plots != "" {
		plots = h.abs(h.cfg.plots)
		if h.cfg.doc != "" {
			if rel, err := filepath.Rel(filepath.Dir(h.abs(h.cfg.doc)), plots); err == nil {
				ref = filepath.ToSlash(rel)
			}
		}
	}
	args := []string{h.flumeBin, "-only", lower, "-work", dir, "-json", jsonPath, "-md", mdPath, "-plots", plots, "-plot-ref", ref}
	if h.cfg.quick {
		args = append(args, "-quick")
	}
	args = append(args, strings.Fields(h.cfg.flumeArgs)...)
	h.note(args)
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = h.root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	// Interrupted, it stops its agents and their process groups itself: give it the time.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 2 * time.Minute
	if err := h.procs.start(cmd); err != nil {
		return err
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("%s: %w (its work directory: %s)", flumeHarness, err, dir)
	}
	md, err := os.ReadFile(mdPath)
	if err != nil {
		return err
	}
	out := flumeOutput{markdown: flumeSubsection(string(md), id)}
	out.command = strings.ReplaceAll(h.commands[len(h.commands)-1], "$WORK/benchflume", "go run "+flumeHarness)
	if out.json, err = readLines(jsonPath); err != nil {
		return err
	}
	if out.markdown == "" {
		return fmt.Errorf("%s wrote no %s subsection into %s", flumeHarness, id, mdPath)
	}
	if h.flume == nil {
		h.flume = map[string]flumeOutput{}
	}
	h.flume[id] = out
	return nil
}

// flumeSubsection cuts the subsection of workload id out of benchflume's markdown: from its
// "### ID:" heading (left out) to the next "### " heading or the commands at the end.
func flumeSubsection(md, id string) string {
	var b strings.Builder
	in := false
	for _, line := range strings.SplitAfter(md, "\n") {
		switch {
		case strings.HasPrefix(line, "### "+id+":"):
			in = true
			continue
		case in && (strings.HasPrefix(line, "### ") || strings.HasPrefix(line, "Commands (") || strings.HasPrefix(line, "<!-- benchflume: end")):
			in = false
		}
		if in {
			b.WriteString(line)
		}
	}
	return strings.TrimSpace(b.String())
}

// readLines returns the non-empty lines of the file at path.
func readLines(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
			out = append(out, append([]byte(nil), line...))
		}
	}
	return out, sc.Err()
}

// abs resolves p against the repository's root unless it is absolute.
func (h *harness) abs(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(h.root, p)
}

// figure is one line of the results file: the shape benchflume's JSON lines have.
type figure struct {
	Workload string  `json:"workload"`
	System   string  `json:"system"`
	Variant  string  `json:"variant"`
	Metric   string  `json:"metric"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
}

// figures turns the produce and fan-out rows into result figures (NaN values left out).
func figures(rows []result) []figure {
	var out []figure
	for _, r := range rows {
		variant := fmt.Sprintf("%s acks=%s producers=%d round=%d", r.client, r.acks, r.producers, r.round)
		if r.groups > 0 {
			variant = fmt.Sprintf("%s groups=%d round=%d", r.client, r.groups, r.round)
		}
		add := func(metric string, v float64, unit string) {
			if v == v { // not NaN
				out = append(out, figure{r.workload, r.system, variant, metric, v, unit})
			}
		}
		if r.err != "" {
			add("failed", 1, "run")
			continue
		}
		add("throughput_records", r.recordsPerSec, "records/s")
		add("throughput", r.mbPerSec, "MiB/s")
		if r.groups == 0 {
			add("latency_p50", r.p50, "ms")
			add("latency_p95", r.p95, "ms")
			add("latency_p99", r.p99, "ms")
			add("latency_max", r.max, "ms")
		}
		add("rss_peak", float64(r.peakRSS)/(1<<20), "MiB")
		add("cpu", r.cpu.Seconds(), "s")
	}
	return out
}

// writeJSON writes every figure of the run, one JSON object a line: the harness's own rows,
// then benchflume's lines as it wrote them, in the order the workloads ran.
func (h *harness) writeJSON(path string, chosen []workload) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, w := range chosen {
		if w.flume {
			for _, line := range h.flume[w.id].json {
				buf.Write(line)
				buf.WriteByte('\n')
			}
			continue
		}
		for _, f := range append(figures(h.rowsOf(w.id)), tailFigures(h.tailsOf(w.id))...) {
			if err := enc.Encode(f); err != nil {
				return err
			}
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}
