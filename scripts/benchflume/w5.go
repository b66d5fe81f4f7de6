package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/weirhq/weir/internal/progress"
)

// W5: tailing files into rolling files. The input is generated once: lines of 100 to 200 bytes,
// each with a sequence number (seq=%010d) unique across the files, dealt round-robin to a few
// files. Each agent starts with the files complete and is timed from its process's start until
// its output directory holds as many lines as the input; then it is stopped (SIGTERM) and every
// output line is checked by its sequence number for lines lost and lines written twice.

// w5Input describes the generated files.
type w5Input struct {
	dir   string
	glob  string
	lines int64
	bytes int64
}

// w5Line returns line seq: 100 to 200 bytes with its newline, the length varying with seq.
func w5Line(buf []byte, seq int64) []byte {
	const head = "2026-12-01T10:00:00.%03dZ INFO  [worker-%d] com.example.Orders - order accepted seq=%010d "
	buf = fmt.Appendf(buf[:0], head, seq%1000, seq%8, seq)
	n := 100 + int(seq*37%101) // 100..200 with the newline
	for len(buf) < n-1 {
		buf = append(buf, "abcdefghijklmnopqrstuvwxyz"[len(buf)%26])
	}
	return append(buf, '\n')
}

// generateW5 writes at least mb megabytes (10^6 bytes) of lines into files files of dir.
func generateW5(dir string, files int, mb int) (w5Input, error) {
	in := w5Input{dir: dir, glob: filepath.Join(dir, "*.log")}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return in, err
	}
	ws := make([]*bufio.Writer, files)
	fs := make([]*os.File, files)
	for i := range files {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("app-%d.log", i)))
		if err != nil {
			return in, err
		}
		fs[i], ws[i] = f, bufio.NewWriterSize(f, 1<<20)
	}
	var buf []byte
	for in.bytes < int64(mb)*1_000_000 {
		buf = w5Line(buf, in.lines)
		if _, err := ws[in.lines%int64(files)].Write(buf); err != nil {
			return in, err
		}
		in.lines++
		in.bytes += int64(len(buf))
	}
	for i := range files {
		if err := ws[i].Flush(); err != nil {
			return in, err
		}
		if err := fs[i].Close(); err != nil {
			return in, err
		}
	}
	return in, nil
}

// outputFile reports whether name in an output directory holds lines: not the file sink's
// manifest or lock (its state is a directory, and directories are skipped).
func outputFile(name string) bool { return name != ".manifest" && name != ".lock" }

// lineCounter counts the newlines in the files of a directory as they grow, reading each file
// only from where it read last. Files are known by inode, so a file renamed (the Weir file
// sink's in-progress file becoming a finished one) is not counted again.
type lineCounter struct {
	dir   string
	read  map[uint64]int64 // inode -> bytes counted
	lines int64
	buf   []byte
}

func newLineCounter(dir string) *lineCounter {
	return &lineCounter{dir: dir, read: map[uint64]int64{}, buf: make([]byte, 1<<20)}
}

// update reads what the files gained since the last call and returns the lines counted so far.
func (c *lineCounter) update() int64 {
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return c.lines
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || !outputFile(e.Name()) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // renamed or removed meanwhile: seen again at the next call
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok || info.Size() <= c.read[st.Ino] {
			continue
		}
		f, err := os.Open(filepath.Join(c.dir, e.Name()))
		if err != nil {
			continue
		}
		off := c.read[st.Ino]
		for {
			n, err := f.ReadAt(c.buf, off)
			c.lines += int64(bytes.Count(c.buf[:n], []byte{'\n'}))
			off += int64(n)
			if err != nil {
				break
			}
		}
		c.read[st.Ino] = off
		f.Close()
	}
	return c.lines
}

// w5Check is what the output directory holds once the agent stopped.
type w5Check struct {
	lost, doubled, garbled int64
}

// checkW5 reads every output line and counts the sequence numbers missing, those seen more
// than once (each extra copy counts) and lines without a valid one.
func checkW5(dir string, total int64) (w5Check, error) {
	var c w5Check
	seen := make([]uint8, total)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return c, err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || !outputFile(e.Name()) {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return c, err
		}
		err = checkLines(f, seen, &c)
		f.Close()
		if err != nil {
			return c, err
		}
	}
	c.countLost(seen)
	return c, nil
}

// checkLines reads the lines of r, marks each sequence number in seen and counts in c the
// lines seen more than once and those without a valid number (W5's and W6's lines).
func checkLines(r io.Reader, seen []uint8, c *w5Check) error {
	br := bufio.NewReaderSize(r, 1<<20)
	total := int64(len(seen))
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			i := bytes.Index(line, []byte("seq="))
			var seq int64 = -1
			if i >= 0 && len(line) >= i+14 {
				if v, err := strconv.ParseInt(string(line[i+4:i+14]), 10, 64); err == nil && v < total {
					seq = v
				}
			}
			if seq < 0 {
				c.garbled++
			} else if seen[seq]++; seen[seq] > 1 {
				c.doubled++
				seen[seq] = 2 // no wrap-around
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil && err != bufio.ErrBufferFull {
			return err
		}
	}
}

// countLost counts the sequence numbers never seen.
func (c *w5Check) countLost(seen []uint8) {
	for _, s := range seen {
		if s == 0 {
			c.lost++
		}
	}
}

// flumeW5Conf is the agent "a": TAILDIR -> channel -> file_roll, batches of batch events at the
// source and the sink (Flume's defaults are 100), files rolled every 300 s (as Weir's file sink
// rolls at 5 minutes).
func flumeW5Conf(in w5Input, work, out, channel string, batch int) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("a.sources = t")
	p("a.channels = c")
	p("a.sinks = f")
	p("a.sources.t.type = TAILDIR")
	p("a.sources.t.channels = c")
	p("a.sources.t.positionFile = %s", filepath.Join(work, "taildir-position.json"))
	p("a.sources.t.filegroups = g")
	// The file name part is a regular expression; '\' escapes in a properties file, so it doubles.
	p(`a.sources.t.filegroups.g = %s/.*\\.log`, in.dir)
	p("a.sources.t.batchSize = %d", batch)
	flumeChannel(p, channel, work, 100000, batch)
	p("a.sinks.f.type = file_roll")
	p("a.sinks.f.channel = c")
	p("a.sinks.f.sink.directory = %s", out)
	p("a.sinks.f.sink.rollInterval = 300")
	p("a.sinks.f.sink.batchSize = %d", batch)
	return b.String()
}

// w5Run is one agent's run.
type w5Run struct {
	system, variant string
	total           time.Duration // process start to the last line counted
	first           time.Duration // process start to the first line counted
	delivered       int64         // lines counted when the run ended
	check           w5Check
	rss             []rssSample
	progress        []rssSample // lines counted over time (Bytes holds lines)
	stalled         bool
	cpu             float64 // CPU seconds the agent used from its start to the end of the run
}

// runW5 runs one agent against in: started by start (which gets the run's work and output
// directories), timed until its output holds every line or nothing more arrived for stall.
func runW5(ctx context.Context, b *bench, in w5Input, system, variant string, stall time.Duration,
	start func(work, out string) (*proc, error)) (w5Run, error) {
	r := w5Run{system: system, variant: variant}
	work := filepath.Join(b.work, "w5", system+"-"+variant)
	out := filepath.Join(work, "out")
	if err := os.RemoveAll(work); err != nil {
		return r, err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return r, err
	}
	p, err := start(work, out)
	if err != nil {
		return r, err
	}
	defer p.stop(30 * time.Second)
	rss := sampleRSS(p.pid(), 250*time.Millisecond)
	counter := newLineCounter(out)
	var done atomic.Int64
	meter := progress.Start(os.Stderr, fmt.Sprintf("W5 %s %s (lines)", system, variant), in.lines, func() (int64, bool) { return done.Load(), true })
	defer meter.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last, lastAt := int64(0), time.Now()
	for r.delivered < in.lines {
		select {
		case <-ctx.Done():
			rss.stop()
			return r, ctx.Err()
		case <-tick.C:
		}
		if p.exited() {
			rss.stop()
			return r, fmt.Errorf("%s %s exited during the run (%v): see %s", system, variant, p.err, filepath.Join(work, "agent.log"))
		}
		r.delivered = counter.update()
		done.Store(r.delivered)
		now := time.Since(p.started)
		r.progress = append(r.progress, rssSample{At: now, Bytes: r.delivered})
		if r.delivered > 0 && r.first == 0 {
			r.first = now
		}
		if r.delivered > last {
			last, lastAt = r.delivered, time.Now()
			r.total = now
		} else if time.Since(lastAt) > stall {
			r.stalled = true
			break
		}
	}
	meter.Stop()
	// A moment for any line written twice to land, then stop: the agents finish their files.
	time.Sleep(time.Second)
	r.cpu, _ = readCPU(p.pid())
	r.rss = rss.stop()
	if !p.stop(30 * time.Second) {
		b.logf("%s %s did not stop within 30 s of SIGTERM: killed", system, variant)
	}
	r.check, err = checkW5(out, in.lines)
	return r, err
}

// w5 runs the agents of W5 and returns their results.
func (b *bench) w5(ctx context.Context) ([]w5Run, error) {
	in, err := generateW5(filepath.Join(b.work, "w5-input"), b.cfg.w5Files, b.cfg.w5MB)
	if err != nil {
		return nil, err
	}
	b.logf("W5: %d lines, %d bytes in %d files", in.lines, in.bytes, b.cfg.w5Files)
	b.w5in = in
	var runs []w5Run
	agents := []struct {
		system, variant string
		start           func(work, out string) (*proc, error)
	}{
		{"weir", "file-sink", func(work, out string) (*proc, error) {
			return b.startWeir("weir-w5", work, "-data", filepath.Join(work, "node"), "-files", in.glob, "-out", out)
		}},
		{"flume", "file-channel", func(work, out string) (*proc, error) {
			return b.startFlume(work, flumeW5Conf(in, work, out, "file", b.cfg.flumeBatch))
		}},
		{"flume", "memory-channel", func(work, out string) (*proc, error) {
			return b.startFlume(work, flumeW5Conf(in, work, out, "memory", b.cfg.flumeBatch))
		}},
	}
	for _, a := range agents {
		b.logf("W5: %s %s", a.system, a.variant)
		r, err := runW5(ctx, b, in, a.system, a.variant, b.cfg.stall, a.start)
		if err != nil {
			return runs, err
		}
		b.logf("W5: %s %s: %d of %d lines in %.2f s (first after %.2f s), lost %d, doubled %d, garbled %d", a.system, a.variant,
			r.delivered, in.lines, r.total.Seconds(), r.first.Seconds(), r.check.lost, r.check.doubled, r.check.garbled)
		runs = append(runs, r)
		b.w5Results(in, r)
	}
	return runs, nil
}

// w5Results records a run's figures.
func (b *bench) w5Results(in w5Input, r w5Run) {
	add := func(metric string, v float64, unit string) {
		b.add(result{Workload: "W5", System: r.system, Variant: r.variant, Metric: metric, Value: v, Unit: unit})
	}
	secs := r.total.Seconds()
	if secs > 0 && !r.stalled {
		add("throughput", float64(in.bytes)/1e6/secs, "MB/s")
		add("throughput_lines", float64(in.lines)/secs, "lines/s")
		if d := (r.total - r.first).Seconds(); d > 0 {
			add("throughput_after_first_line", float64(in.bytes)/1e6/d, "MB/s")
		}
	}
	add("time_to_all_lines", secs, "s")
	add("time_to_first_line", r.first.Seconds(), "s")
	add("lines_in", float64(in.lines), "lines")
	add("lines_lost", float64(r.check.lost), "lines")
	add("lines_doubled", float64(r.check.doubled), "lines")
	add("lines_garbled", float64(r.check.garbled), "lines")
	add("cpu", r.cpu, "s")
	if r.cpu > 0 {
		add("cpu_per_100mb", r.cpu/(float64(in.bytes)/1e8), "s")
	}
	peak, mean := rssStats(r.rss)
	add("rss_peak", float64(peak)/(1<<20), "MiB")
	add("rss_mean", float64(mean)/(1<<20), "MiB")
}
