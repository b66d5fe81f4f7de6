package main

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// series is one line of a plot.
type series struct {
	name string
	xys  plotter.XYs
}

// writePlots draws the PNGs of the runs into dir and returns their file names.
func writePlots(dir string, w5runs []w5Run, w4runs []w4Run, w6runs []w6Run) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var names []string
	draw := func(name, title, x, y string, logY bool, ss []series) error {
		if len(ss) == 0 {
			return nil
		}
		if err := linePlot(filepath.Join(dir, name), title, x, y, logY, ss); err != nil {
			return err
		}
		names = append(names, name)
		return nil
	}
	if len(w5runs) > 0 {
		var rss, progress []series
		for _, r := range w5runs {
			name := r.system + " " + r.variant
			rss = append(rss, series{name, rssXYs(r.rss)})
			var xys plotter.XYs
			for _, s := range r.progress {
				xys = append(xys, plotter.XY{X: s.At.Seconds(), Y: float64(s.Bytes)})
			}
			progress = append(progress, series{name, xys})
		}
		if err := draw("flume-w5-rss.png", "W5: resident memory while tailing into rolling files", "seconds since the agent's start", "RSS (MiB)", false, rss); err != nil {
			return names, err
		}
		if err := draw("flume-w5-progress.png", "W5: lines in the output files", "seconds since the agent's start", "lines", false, progress); err != nil {
			return names, err
		}
	}
	if len(w4runs) > 0 {
		var rss, lat []series
		for _, r := range w4runs {
			name := r.system + " " + r.variant
			var xys plotter.XYs
			for _, s := range r.samples {
				xys = append(xys, plotter.XY{X: s.at.Seconds(), Y: float64(s.rss) / (1 << 20)})
			}
			rss = append(rss, series{name, xys})
			lat = append(lat, series{name, p99PerSecond(r.requests)})
		}
		if err := draw("flume-w4-rss.png", "W4: resident memory during the spike", "seconds since the spike began", "RSS (MiB)", false, rss); err != nil {
			return names, err
		}
		if err := draw("flume-w4-latency.png", "W4: p99 latency of accepted requests, per second", "second of the spike (when requests were due)", "p99 latency (ms, log scale)", true, lat); err != nil {
			return names, err
		}
	}
	if len(w6runs) > 0 {
		if err := w6Bars(dir, "flume-w6-throughput.png", "flume-w6-cpu.png", w6runs); err != nil {
			return names, err
		}
		names = append(names, "flume-w6-throughput.png", "flume-w6-cpu.png")
	}
	return names, nil
}

// w6Bars draws W6's MB/s, a bar per run, into dir/throughput and the CPU seconds per 100 MB
// (the agent's, with the Weir node's that served Flume's Kafka source stacked on it) into
// dir/cpu.
func w6Bars(dir, throughput, cpu string, runs []w6Run) error {
	var mbps, agent, node plotter.Values
	var labels []string
	for _, r := range runs {
		mbps = append(mbps, r.mbps)
		agent = append(agent, r.agentPer100MB)
		node = append(node, r.cpuPer100MB-r.agentPer100MB)
		labels = append(labels, r.system+"\n"+r.variant)
	}
	w := vg.Points(40)
	p := plot.New()
	p.Title.Text = "W6: topic to HDFS (MiniDFSCluster), throughput"
	p.Y.Label.Text = "MB/s (higher is better)"
	bars, err := plotter.NewBarChart(mbps, w)
	if err != nil {
		return err
	}
	bars.Color = plotutil.Color(0)
	p.Add(bars)
	p.NominalX(labels...)
	if err := p.Save(9*vg.Inch, 4.5*vg.Inch, filepath.Join(dir, throughput)); err != nil {
		return err
	}
	p = plot.New()
	p.Title.Text = "W6: topic to HDFS, CPU seconds per 100 MB"
	p.Y.Label.Text = "CPU s per 100 MB (lower is better)"
	a, err := plotter.NewBarChart(agent, w)
	if err != nil {
		return err
	}
	a.Color = plotutil.Color(0)
	n, err := plotter.NewBarChart(node, w)
	if err != nil {
		return err
	}
	n.Color = plotutil.Color(1)
	n.StackOn(a)
	p.Add(a, n)
	p.Legend.Add("agent", a)
	p.Legend.Add("Weir node serving Flume's Kafka source", n)
	p.Legend.Top = true
	p.NominalX(labels...)
	p.Y.Max *= 1.3
	return p.Save(9*vg.Inch, 4.5*vg.Inch, filepath.Join(dir, cpu))
}

func rssXYs(samples []rssSample) plotter.XYs {
	var xys plotter.XYs
	for _, s := range samples {
		xys = append(xys, plotter.XY{X: s.At.Seconds(), Y: float64(s.Bytes) / (1 << 20)})
	}
	return xys
}

// p99PerSecond returns the p99 latency of the accepted requests due in each second.
func p99PerSecond(reqs []w4Request) plotter.XYs {
	bySecond := map[int][]time.Duration{}
	for _, q := range reqs {
		if q.status == http.StatusOK {
			s := int(q.due / time.Second)
			bySecond[s] = append(bySecond[s], q.latency)
		}
	}
	var secs []int
	for s := range bySecond {
		secs = append(secs, s)
	}
	slices.Sort(secs)
	var xys plotter.XYs
	for _, s := range secs {
		l := bySecond[s]
		slices.Sort(l)
		xys = append(xys, plotter.XY{X: float64(s) + 0.5, Y: max(ms(quantile(l, 0.99)), 0.1)})
	}
	return xys
}

func linePlot(path, title, x, y string, logY bool, ss []series) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	if logY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	p.Add(plotter.NewGrid())
	var args []any
	for _, s := range ss {
		if len(s.xys) == 0 {
			continue
		}
		args = append(args, s.name, s.xys)
	}
	if err := plotutil.AddLines(p, args...); err != nil {
		return err
	}
	// Room above the lines for the legend.
	if logY {
		p.Y.Max *= 8
	} else {
		p.Y.Max *= 1.35
	}
	p.Legend.Top = true
	p.Legend.Left = true
	return p.Save(9*vg.Inch, 4.5*vg.Inch, path)
}
