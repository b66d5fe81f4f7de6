//go:build linux

package main

import (
	"fmt"
	"math"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
)

// fanOutNote explains the fan-out tables.
const fanOutNote = "A group's records/s is its records over its own time from its first assignment to its last record " +
	"(ConsumerPerformance's fetch.nMsg.sec; franz-go timed the same way; `weir bench consume` from the start of its group consumer, its join included); " +
	"the aggregate is all groups' records over the span from the first group's start to the last group's end (ConsumerPerformance's JVMs do not all start at once); join is the longest time from a client's start to its first assignment. " +
	"ConsumerPerformance and `weir bench consume` run one process per group, so 10 groups are 10 client processes (10 JVMs for ConsumerPerformance) " +
	"on the same CPUs as the server: with few cores this measures the machine as much as the server. franz-go runs every group in one process " +
	"(this harness's), which loads the machine less. Memory is the peak of the server's RSS while the clients ran, CPU the server's CPU time over the run."

// fanOutCases lists the group counts of rows and their series, in first-seen order.
func fanOutCases(rows []result) ([]series, []int) {
	var ss []series
	var gs []int
	seenS, seenG := map[series]bool{}, map[int]bool{}
	for _, r := range rows {
		s := series{r.system, r.client}
		if !seenS[s] {
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

// fanOutMean averages f over the successful rows of series s with groups groups (NaN if none).
func fanOutMean(rows []result, s series, groups int, f func(result) float64) float64 {
	sum, n := 0.0, 0
	for _, r := range rows {
		if r.err == "" && r.system == s.system && r.client == s.client && r.groups == groups {
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

func perGroupMean(r result) float64 {
	m, _, _ := spread(r.groupRates)
	return m
}

// fanOutTable renders one row per fan-out measurement.
func fanOutTable(rows []result, withRound bool) string {
	var b strings.Builder
	writeTableHead(&b, "| system | client | groups | records read | records/s, aggregate | MB/s, aggregate | records/s per group: mean (lowest to highest) | longest join (s) | server RSS (MiB) | server CPU (s) |", withRound)
	for _, r := range rows {
		writeRoundCell(&b, r.round, withRound)
		fmt.Fprintf(&b, "| %s | %s | %d | ", r.system, r.client, r.groups)
		if r.err != "" {
			fmt.Fprintf(&b, "failed: %s | | | | | | %d | %.1f |\n", oneLine(r.err, 160), r.peakRSS>>20, r.cpu.Seconds())
			continue
		}
		mean, lo, hi := spread(r.groupRates)
		per := "**" + thousands(mean) + "**"
		if len(r.groupRates) > 1 {
			per += fmt.Sprintf(" (%s to %s)", thousands(lo), thousands(hi))
		}
		join := "—"
		if !math.IsNaN(r.join) {
			join = fmt.Sprintf("%.2f", r.join)
		}
		fmt.Fprintf(&b, "%s | **%s** | %.2f | %s | %s | %d | %.1f |\n", thousands(float64(r.records)), thousands(r.recordsPerSec), r.mbPerSec,
			per, join, r.peakRSS>>20, r.cpu.Seconds())
	}
	return b.String()
}

// fanOutRatioTable gives, per system and client, one group alone against each larger count
// of groups: the mean per-group records/s over one group's (the target: at least 0.90,
// ten groups costing a group at most 10 %) and the aggregate over one group's.
func fanOutRatioTable(rows []result) string {
	ss, gs := fanOutCases(rows)
	var b strings.Builder
	b.WriteString("\nFan-out cost, per system and client (with several rounds, of the means over the rounds; issue 8's target is a per-group ratio of at least 0.90):\n\n")
	b.WriteString("| system | client | 1 group alone (records/s) | groups | per group, mean (records/s) | per group ÷ alone | aggregate ÷ alone |\n|---|---|---|---|---|---|---|\n")
	n := 0
	for _, s := range ss {
		alone := fanOutMean(rows, s, 1, func(r result) float64 { return r.recordsPerSec })
		for _, g := range gs {
			if g == 1 {
				continue
			}
			per := fanOutMean(rows, s, g, perGroupMean)
			agg := fanOutMean(rows, s, g, func(r result) float64 { return r.recordsPerSec })
			fmt.Fprintf(&b, "| %s | %s | %s | %d | %s | %s | %s |\n", s.system, s.client, orDash(alone), g, orDash(per), ratio(per, alone), ratio(agg, alone))
			n++
		}
	}
	if n == 0 {
		return ""
	}
	return b.String()
}

func orDash(v float64) string {
	if math.IsNaN(v) {
		return "—"
	}
	return thousands(v)
}

// writeFanOutPlot draws base-throughput.png for a fan-out workload: a panel per client, a
// group of bars per case (one group alone; with more groups, the aggregate and the mean per
// group), a bar per system.
func writeFanOutPlot(id string, rows []result, base string) error {
	ss, gs := fanOutCases(rows)
	type cat struct {
		label string
		value func(s series) float64
	}
	var cats []cat
	for _, g := range gs {
		if g == 1 {
			cats = append(cats, cat{"1 group", func(s series) float64 {
				return fanOutMean(rows, s, 1, func(r result) float64 { return r.recordsPerSec })
			}})
			continue
		}
		cats = append(cats,
			cat{fmt.Sprintf("%d groups, aggregate", g), func(s series) float64 {
				return fanOutMean(rows, s, g, func(r result) float64 { return r.recordsPerSec })
			}},
			cat{fmt.Sprintf("%d groups, per group (mean)", g), func(s series) float64 { return fanOutMean(rows, s, g, perGroupMean) }})
	}
	labels := make([]string, len(cats))
	for i, c := range cats {
		labels[i] = c.label
	}
	var clients []string
	byClient := map[string][]series{}
	for _, s := range ss {
		if byClient[s.client] == nil {
			clients = append(clients, s.client)
		}
		byClient[s.client] = append(byClient[s.client], s)
	}
	var row []*plot.Plot
	for _, client := range clients {
		p, err := groupedBars(fmt.Sprintf("%s: records/s, %s", id, client), "records/s", labels, byClient[client], func(s series, i int) float64 {
			return cats[i].value(s)
		})
		if err != nil {
			return err
		}
		row = append(row, p)
	}
	if len(row) == 0 {
		return nil
	}
	return saveTiles([][]*plot.Plot{row}, 7*vg.Inch, 5*vg.Inch, base+"-throughput.png")
}
