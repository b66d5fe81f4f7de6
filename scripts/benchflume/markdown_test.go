package main

import (
	"strings"
	"testing"
	"time"
)

// TestMarkdownTables: every table of the section has as many cells in each row as in its head,
// and no value is printed with a bad format (a W4 row had 16 cells for 14 columns, two of them
// %!s(MISSING)), and each plot is linked once.
func TestMarkdownTables(t *testing.T) {
	b := &bench{cfg: config{stall: time.Minute, plotRef: "bench", w4Batch: 100, w4In: 10000, w4Out: 1000, w4For: 30 * time.Second},
		w6in: w5Input{lines: 1000, bytes: 150_000}}
	w4 := []w4Run{{system: "weir", variant: "http-topic-http"}, {system: "flume", variant: "memory-10k"}}
	for _, r := range w4 {
		for _, m := range []string{"offered", "accepted", "refused", "failed", "latency_p50", "latency_p99", "latency_max", "consumed_rate", "cpu", "rss_idle", "rss_peak", "rss_end"} {
			b.results = append(b.results, result{Workload: "W4", System: r.system, Variant: r.variant, Metric: m, Value: 1})
		}
	}
	w5 := []w5Run{{system: "weir", variant: "file-sink", total: 2 * time.Second, first: time.Second, delivered: 1000}}
	w6 := []w6Run{{system: "weir", variant: "hdfs-sink", total: 2 * time.Second, first: time.Second, delivered: 1000, cpu: 0.5, files: 3}}
	for i := range w6 {
		b.w6Results(b.w6in, &w6[i])
	}
	plots := []string{"flume-w4-rss.png", "flume-w5-rss.png", "flume-w6-cpu.png"}
	md := b.markdown(machine{started: time.Now(), finished: time.Now()}, w5, w4, w6, plots)
	if strings.Contains(md, "%!") {
		t.Fatalf("a bad format in the markdown:\n%s", md)
	}
	for _, name := range plots { // each plot once, in its workload's part
		if n := strings.Count(md, "!["+name+"](bench/"+name+")"); n != 1 {
			t.Errorf("plot %s linked %d times:\n%s", name, n, md)
		}
	}
	var head string
	tables := 0
	for _, line := range strings.Split(md, "\n") {
		if !strings.HasPrefix(line, "|") {
			head = ""
			continue
		}
		if head == "" {
			head, tables = line, tables+1
			continue
		}
		if got, want := strings.Count(line, "|"), strings.Count(head, "|"); got != want {
			t.Errorf("%d cells in %q, want %d as in %q", got-1, line, want-1, head)
		}
	}
	if tables < 3 {
		t.Fatalf("%d tables, want W4's, W5's and W6's:\n%s", tables, md)
	}
}
