//go:build linux

package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// cdfPoint is one step of a produce latency CDF: a fraction frac of the records were
// acknowledged within ms milliseconds.
type cdfPoint struct{ ms, frac float64 }

// percentileCDF turns the percentiles a client printed (ProducerPerformance: p50, p95, p99,
// p99.9 and max) into the points of a step CDF; a percentile not reported (NaN or 0 for
// p99.9) is left out. It is a lower bound of the true CDF between its points.
func percentileCDF(m measure) []cdfPoint {
	var out []cdfPoint
	for _, p := range []cdfPoint{{m.p50, 0.5}, {m.p95, 0.95}, {m.p99, 0.99}, {m.p999, 0.999}, {m.max, 1}} {
		if math.IsNaN(p.ms) || (p.frac == 0.999 && p.ms == 0) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// parseWeirHist reads the file `weir bench produce --hist` writes (a comment line, then a
// bucket a line, "highest_ns count", lowest first) into the points of its CDF.
func parseWeirHist(s string) ([]cdfPoint, error) {
	type bucket struct{ hi, n uint64 }
	var bs []bucket
	var total uint64
	for i, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("histogram line %d %q: want two fields", i+1, line)
		}
		hi, err1 := strconv.ParseUint(f[0], 10, 64)
		n, err2 := strconv.ParseUint(f[1], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("histogram line %d: %w", i+1, err)
		}
		if len(bs) > 0 && hi <= bs[len(bs)-1].hi {
			return nil, fmt.Errorf("histogram line %d: bound %d not above the one before", i+1, hi)
		}
		bs = append(bs, bucket{hi, n})
		total += n
	}
	if total == 0 {
		return nil, errors.New("histogram: no records")
	}
	out := make([]cdfPoint, len(bs))
	var cum uint64
	for i, b := range bs {
		cum += b.n
		out[i] = cdfPoint{ms: float64(b.hi) / 1e6, frac: float64(cum) / float64(total)}
	}
	return out, nil
}

// minPlotMs is where the log-scaled latency axis starts: a point below it is drawn at it.
const minPlotMs = 0.01

// stepXYs draws pts as a step function that starts at 0 at the first point's latency: at
// each point it rises to the point's fraction and stays there until the next point.
func stepXYs(pts []cdfPoint) plotter.XYs {
	if len(pts) == 0 {
		return nil
	}
	xy := plotter.XYs{{X: max(pts[0].ms, minPlotMs), Y: 0}}
	prev := 0.0
	for _, p := range pts {
		x := max(p.ms, minPlotMs)
		xy = append(xy, plotter.XY{X: x, Y: prev}, plotter.XY{X: x, Y: p.frac})
		prev = p.frac
	}
	return xy[1:]
}

// firstCDF is the CDF of the first row (in run order) of series s and case c that has one.
func firstCDF(rows []result, s series, c caseKey) []cdfPoint {
	for _, r := range rows {
		if r.err == "" && r.cdf != nil && r.system == s.system && r.client == s.client && r.acks == c.acks && r.producers == c.producers {
			return r.cdf
		}
	}
	return nil
}

// writeCDFPlot draws base-latency-cdf.png: a panel per case, a line per system and client
// (the x axis is latency in ms on a log scale, the y axis the fraction of records
// acknowledged within it). ProducerPerformance's lines are steps through its five
// percentiles; `weir bench produce`'s are its full histogram, dashed.
func writeCDFPlot(id string, rows []result, base string) error {
	ss, cs := seriesAndCases(rows)
	var panels [][]*plot.Plot
	const cols = 2
	for i, c := range cs {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("%s: produce latency CDF, %s", id, c.label())
		p.X.Label.Text = "latency (ms, log scale)"
		p.Y.Label.Text = "fraction of records"
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.Min, p.Y.Max = 0, 1
		p.Legend.Top, p.Legend.Left = false, false // bottom right: below a CDF's rise
		lo, hi := math.Inf(1), 0.0
		for _, s := range ss {
			pts := firstCDF(rows, s, c)
			if len(pts) == 0 {
				continue
			}
			xy := stepXYs(pts)
			line, err := plotter.NewLine(xy)
			if err != nil {
				return err
			}
			line.Color = systemColor(s)
			line.Width = vg.Points(1.5)
			if s.client != clientProducerPerf {
				line.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
			}
			p.Add(line)
			p.Legend.Add(s.label(), line)
			lo, hi = min(lo, xy[0].X), max(hi, xy[len(xy)-1].X)
		}
		if hi > 0 {
			p.X.Min, p.X.Max = lo/1.5, hi*1.5
		} else {
			p.X.Min, p.X.Max = 1, 10 // no line: an empty axis that the log scale accepts
		}
		p.Add(plotter.NewGrid())
		if i%cols == 0 {
			panels = append(panels, make([]*plot.Plot, min(cols, len(cs))))
		}
		panels[len(panels)-1][i%cols] = p
	}
	if len(panels) == 0 {
		return nil
	}
	return saveTiles(panels, 7*vg.Inch, 4.5*vg.Inch, base+"-latency-cdf.png")
}

// cdfCaption explains the CDF plots under them.
const cdfCaption = "Produce latency CDFs (x: latency in ms, log scale; y: fraction of records acknowledged within it), a line per system and client. " +
	"ProducerPerformance prints only p50, p95, p99, p99.9 and max: its solid lines are step CDFs through those five points " +
	"(below p50 nothing is known, and the line starts at p50); with several producers, each point is the worst producer's. " +
	"`weir bench produce`'s dashed lines are its full latency histogram (`--hist`; buckets 0.8 % wide), all producers merged. " +
	"With several rounds, the first round's run is drawn."
