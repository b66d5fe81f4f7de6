//go:build linux

package main

import (
	"fmt"
	"math"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
)

// tailNote explains the tailing tables.
const tailNote = "The producer's records/s is the records acknowledged over the time from its start to its last acknowledgement; " +
	"produce latency runs from each record's scheduled time to its acknowledgement (so a producer behind its schedule shows it). " +
	"A group's delivered records/s is the records it read over the time from the producer's start to its last record (at most the target rate). " +
	"End-to-end latency runs from a record's timestamp (set by the producer as it sends the record, carried in whole milliseconds, " +
	"so up to 1 ms is added) to its arrival in the group's PollFetches; p50 is the mean over the groups, p99 and max the worst group's. " +
	"Server CPU is the server's CPU time from the producer's start until every group has read every record (or " + "15 s after the last acknowledgement" + "), " +
	"RSS its peak; harness CPU is this harness's process (the producer and every group) over the same time. " +
	"A row is marked failed when a group had not read every acknowledged record 15 s after the last acknowledgement. " +
	"Against Weir, extra rows have `weir bench consume --group` processes (Weir's own client and protocol, one process per group, started 3 s before the same franz-go producer, as they do not say when they are assigned) as the groups: " +
	"their delivered rate counts from the producer's start to the process's exit, they report no end-to-end latency, and the harness's CPU does not include theirs."

// tailSetup describes the tailing mode's load.
func tailSetup(cfg config) string {
	return fmt.Sprintf("One node; per measurement a fresh topic of 6 partitions; 0, 1 or 10 consumer groups (one member each, from the start of the empty topic) join and are assigned first, "+
		"then one producer writes %s records/s of %d B for %v (%s records; acks=1, linger %v, Kafka's Java producer's default), while the groups tail the topic. "+
		"The load is fixed and chosen to fit this machine, unlike the saturated mode's: what ten groups cost shows as a change in the producer's rate and latency, in each group's delivered rate and latency, and in the server's CPU time. "+
		"The producer and every group are franz-go clients in this harness's process, the same for both systems (`-w3-rate`, `-w3-duration` set the load). "+
		"The cases run in the order 0, 1, 10 groups against each system; %s.",
		thousands(cfg.w3Rate), recordSize, cfg.w3Duration, thousands(cfg.w3Rate*cfg.w3Duration.Seconds()), tailLinger, tailWarmUpNote(cfg))
}

// tailWarmUpNote says how the systems were warmed up before the tailing measurements.
func tailWarmUpNote(cfg config) string {
	if cfg.warmup <= 0 {
		return "no warm-up (-warmup 0, as with -quick): a fresh JVM's first case (0 groups) also pays for its just-in-time compilation"
	}
	return fmt.Sprintf("before them each system is warmed up, unreported, by the same load with one group tailing for %v", min(cfg.w3Duration, tailWarmUp))
}

// tailsOf returns the tailing rows of workload id in the order they ran.
func (h *harness) tailsOf(id string) []tailRow {
	var out []tailRow
	for _, r := range h.tails {
		if r.workload == id {
			out = append(out, r)
		}
	}
	return out
}

// tailTable renders one row per tailing measurement.
func tailTable(rows []tailRow, withRound bool) string {
	var b strings.Builder
	writeTableHead(&b, "| system | groups' client | groups | producer records/s (target) | produce p50 / p99 / max (ms) | delivered records/s per group: mean (lowest to highest) | end-to-end p50 / p99 / max (ms) | server CPU (s) | server RSS (MiB) | harness CPU (s) |", withRound)
	for _, r := range rows {
		writeRoundCell(&b, r.round, withRound)
		client := r.client
		if r.groups == 0 {
			client = "— (producer alone)"
		}
		fmt.Fprintf(&b, "| %s | %s | %d | ", r.system, client, r.groups)
		if r.sent == 0 && r.err != "" {
			fmt.Fprintf(&b, "failed: %s | | | | %.1f | %d | %.1f |\n", oneLine(r.err, 160), r.cpu.Seconds(), r.peakRSS>>20, r.clientCPU)
			continue
		}
		per, e2e := "—", "—"
		if len(r.perGroup) > 0 {
			mean, lo, hi := spread(groupRates(r.perGroup))
			per = "**" + orDash(mean) + "**"
			if len(r.perGroup) > 1 {
				per += fmt.Sprintf(" (%s to %s)", orDash(lo), orDash(hi))
			}
			p50, _, _ := spread(groupField(r.perGroup, func(g tailGroup) float64 { return g.p50 }))
			_, _, p99 := spread(groupField(r.perGroup, func(g tailGroup) float64 { return g.p99 }))
			_, _, mx := spread(groupField(r.perGroup, func(g tailGroup) float64 { return g.max }))
			if !math.IsNaN(p50) {
				e2e = fmt.Sprintf("%s / **%s** / %s", ms(p50), ms(p99), ms(mx))
			}
		}
		if r.err != "" {
			per += " (failed: " + oneLine(r.err, 160) + ")"
		}
		fmt.Fprintf(&b, "**%s** (%s) | %s / **%s** / %s | %s | %s | %.1f | %d | %.1f |\n", thousands(r.rate), thousands(r.target),
			ms(r.prodP50), ms(r.prodP99), ms(r.pMax), per, e2e, r.cpu.Seconds(), r.peakRSS>>20, r.clientCPU)
	}
	return b.String()
}

// tailMean averages f over the rows of series s with groups groups that produced (NaN if
// none). With 0 groups the producer runs alone: any client's row of the system counts.
func tailMean(rows []tailRow, s series, groups int, f func(tailRow) float64) float64 {
	sum, n := 0.0, 0
	for _, r := range rows {
		if r.sent > 0 && r.system == s.system && (r.client == s.client || groups == 0) && r.groups == groups {
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

// The figures the tailing cost table and plot compare.
var (
	tailProducerRate = func(r tailRow) float64 { return r.rate }
	tailProduceP99   = func(r tailRow) float64 { return r.prodP99 }
	tailServerCPU    = func(r tailRow) float64 { return r.cpu.Seconds() }
	tailPerGroup     = func(r tailRow) float64 { m, _, _ := spread(groupRates(r.perGroup)); return m }
	tailE2EP99       = func(r tailRow) float64 {
		_, _, hi := spread(groupField(r.perGroup, func(g tailGroup) float64 { return g.p99 }))
		return hi
	}
	tailE2EP50 = func(r tailRow) float64 {
		m, _, _ := spread(groupField(r.perGroup, func(g tailGroup) float64 { return g.p50 }))
		return m
	}
)

// tailSeries lists the series (system and client) and group counts of rows, in first-seen
// order.
func tailSeries(rows []tailRow) ([]series, []int) {
	var ss []series
	var gs []int
	seenS, seenG := map[series]bool{}, map[int]bool{}
	for _, r := range rows {
		if s := (series{r.system, r.client}); !seenS[s] {
			seenS[s] = true
			ss = append(ss, s)
		}
		if !seenG[r.groups] {
			seenG[r.groups] = true
			gs = append(gs, r.groups)
		}
	}
	return ss, gs
}

// tailCostTable gives, per system and count of groups, the cost against the producer alone
// (producer's rate and p99, server CPU) and against one group (per-group delivered rate,
// end-to-end p99). Issue 8's target: ten groups cost at most 10 % of one group's throughput,
// a per-group ratio of at least 0.90.
func tailCostTable(rows []tailRow) string {
	ss, gs := tailSeries(rows)
	var b strings.Builder
	b.WriteString("\nWhat the groups cost, per system (with several rounds, of the means over the rounds): the producer's records/s, its p99 and the server's CPU time against the producer alone (0 groups); each group's delivered records/s and end-to-end p99 against one group's. Issue 8's target is a per-group ratio of at least 0.90 at 10 groups:\n\n")
	b.WriteString("| system | groups' client | groups | producer records/s ÷ 0 groups' | produce p99 ÷ 0 groups' | server CPU ÷ 0 groups' | per-group delivered ÷ 1 group's | end-to-end p99 (worst group) ÷ 1 group's |\n|---|---|---|---|---|---|---|---|\n")
	n := 0
	for _, s := range ss {
		for _, g := range gs {
			if g == 0 {
				continue
			}
			cost := func(f func(tailRow) float64, base int) string {
				return ratio(tailMean(rows, s, g, f), tailMean(rows, s, base, f))
			}
			per, e2e := cost(tailPerGroup, 1), cost(tailE2EP99, 1)
			if g == 1 {
				per, e2e = "1 (the base)", "1 (the base)"
			}
			fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %s | %s |\n", s.system, s.client, g, cost(tailProducerRate, 0), cost(tailProduceP99, 0), cost(tailServerCPU, 0), per, e2e)
			n++
		}
	}
	if n == 0 {
		return ""
	}
	return b.String()
}

// writeTailPlot draws base-tailing.png: panels of bars per count of groups, a bar per system:
// the producer's records/s, each group's delivered records/s (mean), the produce p99, the
// end-to-end p50 and p99 (the worst group's), and the server's CPU seconds.
func writeTailPlot(id string, rows []tailRow, base string) error {
	ss, gs := tailSeries(rows)
	labels := make([]string, len(gs))
	for i, g := range gs {
		labels[i] = fmt.Sprintf("%d groups", g)
	}
	panel := func(title, y string, f func(tailRow) float64) (*plot.Plot, error) {
		return groupedBars(fmt.Sprintf("%s tailing: %s", id, title), y, labels, ss, func(s series, i int) float64 {
			return tailMean(rows, s, gs[i], f)
		})
	}
	specs := []struct {
		title, y string
		f        func(tailRow) float64
	}{
		{"producer records/s", "records/s", tailProducerRate},
		{"delivered records/s per group (mean)", "records/s", tailPerGroup},
		{"produce latency p99 (ms)", "ms", tailProduceP99},
		{"end-to-end latency p50 (ms, mean of groups)", "ms", tailE2EP50},
		{"end-to-end latency p99 (ms, worst group)", "ms", tailE2EP99},
		{"server CPU (s)", "s", tailServerCPU},
	}
	var panels [][]*plot.Plot
	for i, sp := range specs {
		p, err := panel(sp.title, sp.y, sp.f)
		if err != nil {
			return err
		}
		if i%2 == 0 {
			panels = append(panels, make([]*plot.Plot, 2))
		}
		panels[len(panels)-1][i%2] = p
	}
	return saveTiles(panels, 6*vg.Inch, 4*vg.Inch, base+"-tailing.png")
}

// tailFigures are the JSON figures of the tailing rows.
func tailFigures(rows []tailRow) []figure {
	var out []figure
	for _, r := range rows {
		variant := fmt.Sprintf("tailing %s groups=%d rate=%.0f round=%d", r.client, r.groups, r.target, r.round)
		add := func(metric string, v float64, unit string) {
			if !math.IsNaN(v) {
				out = append(out, figure{r.workload, r.system, variant, metric, v, unit})
			}
		}
		if r.err != "" {
			add("failed", 1, "run")
		}
		if r.sent == 0 {
			continue
		}
		add("producer_records", r.rate, "records/s")
		add("produce_latency_p50", r.prodP50, "ms")
		add("produce_latency_p99", r.prodP99, "ms")
		if len(r.perGroup) > 0 {
			add("delivered_records_per_group", tailPerGroup(r), "records/s")
			add("e2e_latency_p50_mean", tailE2EP50(r), "ms")
			add("e2e_latency_p99_worst", tailE2EP99(r), "ms")
		}
		add("rss_peak", float64(r.peakRSS)/(1<<20), "MiB")
		add("cpu", r.cpu.Seconds(), "s")
		add("harness_cpu", r.clientCPU, "s")
	}
	return out
}
