// Package progress is the live display of the benchmark harnesses (scripts/benchcompare,
// scripts/benchflume): while a workload runs, one line a second on standard error with how many
// records are done, the rate over the last second and the estimated time left.
//
// A Meter does not count anything itself: its owner hands it a count function (records in a
// topic's end offsets, lines in a sink's files, a Flume sink's drained events) that it calls
// once a second from a goroutine it owns; Stop ends that goroutine and waits for it. The count
// function is called from that goroutine only.
package progress

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Meter prints a progress line every period until stopped.
type Meter struct {
	w      io.Writer
	what   string
	total  int64
	count  func() (int64, bool)
	period time.Duration
	quit   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

// Start starts a meter for what (the line's label) that prints count's result against total
// (0: not known, no ETA) every second. count returns false when it could not count this time
// (the line is then skipped).
func Start(w io.Writer, what string, total int64, count func() (int64, bool)) *Meter {
	return startEvery(w, what, total, time.Second, count)
}

func startEvery(w io.Writer, what string, total int64, period time.Duration, count func() (int64, bool)) *Meter {
	m := &Meter{w: w, what: what, total: total, count: count, period: period, quit: make(chan struct{})}
	m.wg.Add(1)
	go m.run()
	return m
}

func (m *Meter) run() {
	defer m.wg.Done()
	start := time.Now()
	t := time.NewTicker(m.period)
	defer t.Stop()
	var last int64
	lastAt := start
	for {
		select {
		case <-m.quit:
			return
		case now := <-t.C:
			n, ok := m.count()
			if !ok {
				continue
			}
			rate := float64(n-last) / now.Sub(lastAt).Seconds()
			last, lastAt = n, now
			fmt.Fprintf(m.w, "%s   %s\n", now.Format("15:04:05"), Line(m.what, n, m.total, rate, now.Sub(start)))
		}
	}
}

// Stop ends the display and waits for its goroutine; calls after the first do nothing.
func (m *Meter) Stop() {
	m.once.Do(func() { close(m.quit) })
	m.wg.Wait()
}

// Line renders one progress line: n of total records after elapsed, rate records/s in the last
// period, and the time left at the average rate so far (when total is known and n > 0), e.g.
// "W6 weir: 1,200,000 of 3,000,000 records (40%), 150,000 records/s, ETA 12s".
func Line(what string, n, total int64, rate float64, elapsed time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", what, Thousands(n))
	if total > 0 {
		fmt.Fprintf(&b, " of %s records (%d%%)", Thousands(total), n*100/total)
	} else {
		b.WriteString(" records")
	}
	fmt.Fprintf(&b, ", %s records/s", Thousands(int64(rate+0.5)))
	if left, ok := TimeLeft(n, total, elapsed); ok {
		fmt.Fprintf(&b, ", ETA %s", left.Round(time.Second))
	}
	return b.String()
}

// TimeLeft estimates the time left of a run that did n of total records in elapsed, at its
// average rate so far; ok is false when total is unknown (0) or nothing is done yet.
func TimeLeft(n, total int64, elapsed time.Duration) (time.Duration, bool) {
	if total <= 0 || n <= 0 {
		return 0, false
	}
	return time.Duration(float64(elapsed) * float64(max(total-n, 0)) / float64(n)), true
}

// Thousands renders n with commas between groups of three digits.
func Thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
