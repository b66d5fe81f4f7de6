//go:build linux

package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// writePlots writes, for each workload, ID-throughput.png (records/s per case: a panel for
// ProducerPerformance, a bar per system, and one for weir bench against Weir) and
// ID-latency.png (a panel per case: ProducerPerformance's p50, p95, p99 and max, a bar per
// system) into dir. A value a run did not give (a failed run) is drawn as no bar.
func (h *harness) writePlots(chosen []workload, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, w := range chosen {
		rows := h.rowsOf(w.id)
		if w.consume {
			base := filepath.Join(dir, strings.ToLower(w.id))
			if len(rows) > 0 {
				if err := writeFanOutPlot(w.id, rows, base); err != nil {
					return err
				}
			}
			if tails := h.tailsOf(w.id); len(tails) > 0 {
				if err := writeTailPlot(w.id, tails, base); err != nil {
					return err
				}
			}
			continue
		}
		if len(rows) == 0 {
			continue
		}
		all, cs := seriesAndCases(rows)
		var perf, own []series
		for _, s := range all {
			if s.client == clientProducerPerf {
				perf = append(perf, s)
			} else {
				own = append(own, s)
			}
		}
		base := filepath.Join(dir, strings.ToLower(w.id))
		labels := make([]string, len(cs))
		for i, c := range cs {
			labels[i] = c.label()
		}
		throughput := func(ss []series, title string) (*plot.Plot, error) {
			return groupedBars(title, "records/s", labels, ss, func(s series, i int) float64 {
				return meanOf(rows, s, cs[i], func(r result) float64 { return r.recordsPerSec })
			})
		}
		p, err := throughput(perf, w.id+": records/s, Kafka's ProducerPerformance")
		if err != nil {
			return err
		}
		tiles := [][]*plot.Plot{{p}}
		if len(own) > 0 {
			if p, err = throughput(own, w.id+": records/s, Weir's client (weir bench produce)"); err != nil {
				return err
			}
			tiles[0] = append(tiles[0], p)
		}
		if err := saveTiles(tiles, 7*vg.Inch, 5*vg.Inch, base+"-throughput.png"); err != nil {
			return err
		}
		var panels [][]*plot.Plot
		const cols = 2
		pct := []string{"p50", "p95", "p99", "max"}
		get := []func(result) float64{
			func(r result) float64 { return r.p50 }, func(r result) float64 { return r.p95 },
			func(r result) float64 { return r.p99 }, func(r result) float64 { return r.max },
		}
		for i, c := range cs {
			p, err := groupedBars(fmt.Sprintf("%s: latency (ms), ProducerPerformance, %s", w.id, c.label()), "ms", pct, perf, func(s series, j int) float64 {
				return meanOf(rows, s, c, get[j])
			})
			if err != nil {
				return err
			}
			if i%cols == 0 {
				panels = append(panels, make([]*plot.Plot, min(cols, len(cs))))
			}
			panels[len(panels)-1][i%cols] = p
		}
		if err := saveTiles(panels, 7*vg.Inch, 4.5*vg.Inch, base+"-latency.png"); err != nil {
			return err
		}
		if err := writeCDFPlot(w.id, rows, base); err != nil {
			return err
		}
	}
	return nil
}

// systemColor gives each system one colour in every plot.
func systemColor(s series) color.Color {
	if s.client == clientWeirConsume { // beside the same system's franz-go bars (W3 tailing)
		return plotutil.Color(4)
	}
	for i, sys := range []system{weirSyncAlways, apacheKafka, weirSyncNever} {
		if s.system == sys.name {
			return plotutil.Color(i)
		}
	}
	return plotutil.Color(3)
}

// groupedBars draws one group of bars per category, one bar per series in each, with a legend
// above the bars (the y axis has room for it).
func groupedBars(title, yLabel string, categories []string, ss []series, value func(s series, i int) float64) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = yLabel
	p.Legend.Top = true
	width := vg.Points(math.Max(6, 60/float64(max(1, len(ss)))))
	top := 0.0
	for k, s := range ss {
		vals := make(plotter.Values, len(categories))
		for i := range categories {
			v := value(s, i)
			if math.IsNaN(v) {
				v = 0
			}
			vals[i] = v
			top = max(top, v)
		}
		bars, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return nil, err
		}
		bars.LineStyle.Width = 0
		bars.Color = systemColor(s)
		bars.Offset = vg.Length(float64(k)-float64(len(ss)-1)/2) * width
		p.Add(bars)
		label := s.system
		switch s.client {
		case clientWeirBench:
			label += ", weir bench"
		case clientWeirConsume:
			label += ", " + clientWeirConsume
		}
		p.Legend.Add(label, bars)
	}
	p.NominalX(categories...)
	p.Y.Min = 0
	if top > 0 {
		p.Y.Max = top * (1.15 + 0.08*float64(len(ss)))
	} else {
		p.Y.Max = 1 // no bar (every run failed): no negative axis
	}
	p.Add(plotter.NewGrid())
	return p, nil
}

// saveTiles draws plots in a grid into one PNG.
func saveTiles(panels [][]*plot.Plot, w, h vg.Length, path string) error {
	rows, cols := len(panels), len(panels[0])
	img := vgimg.New(vg.Length(cols)*w, vg.Length(rows)*h)
	dc := draw.New(img)
	t := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	for _, row := range panels { // a grid's last row may have an empty tile: give it a blank plot
		for i := range row {
			if row[i] == nil {
				row[i] = plot.New()
				row[i].HideAxes()
			}
		}
	}
	canvases := plot.Align(panels, t, dc)
	for r := range panels {
		for c := range panels[r] {
			panels[r][c].Draw(canvases[r][c])
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
