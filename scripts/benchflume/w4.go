package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weirhq/weir/client"
	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/internal/progress"
	"github.com/weirhq/weir/storage"
)

// W4: a spike. A Go client posts requests of w4Batch events (bodies of 150 bytes in Flume's
// JSON format) at w4In events a second, open loop: request k is due at k times the interval,
// whether or not earlier ones were answered (at most 512 in flight), and its latency is counted
// from when it was due, so a stalled agent shows as latency, not as fewer requests. The agent
// stores them and forwards them over HTTP to a consumer in this program that takes w4Out events
// a second (it holds a request until its events' turn comes). The spike lasts w4For; the agent's
// resident memory is sampled every 250 ms.

// w4Marker begins every event body; the consumer counts events by it.
const w4Marker = "ev="

// consumer is the rate-limited endpoint the agents' HTTP sinks post to.
type consumer struct {
	rate  float64 // events per second
	mu    sync.Mutex
	next  time.Time // when the next event may be taken
	taken atomic.Int64
}

func (c *consumer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !c.take(r.Context(), bytes.Count(body, []byte(w4Marker))) {
		return
	}
	w.WriteHeader(http.StatusOK)
}

// take waits until n more events may be taken, and counts them; false if ctx ended first.
func (c *consumer) take(ctx context.Context, n int) bool {
	c.mu.Lock()
	now := time.Now()
	if c.next.Before(now) {
		c.next = now
	}
	// The request's events are taken from until on, and the next request's after them: a
	// sender slower than the rate is never held, a faster one is held to it.
	until := c.next
	c.next = c.next.Add(time.Duration(float64(n) / c.rate * float64(time.Second)))
	c.mu.Unlock()
	select {
	case <-time.After(time.Until(until)):
	case <-ctx.Done():
		return false
	}
	c.taken.Add(int64(n))
	return true
}

// w4Sample is the state of a run at a time since the spike began.
type w4Sample struct {
	at       time.Duration
	rss      int64
	accepted int64 // events answered 200
	refused  int64 // events answered otherwise or not at all
	consumed int64
}

// w4Request is one request of the load.
type w4Request struct {
	due     time.Duration // since the spike began
	latency time.Duration
	status  int // 0: no answer
}

// w4Run is one agent's run.
type w4Run struct {
	system, variant string
	requests        []w4Request
	samples         []w4Sample
	rssIdle         int64         // before the spike
	consumed        int64         // events the consumer took while the load ran
	spike           time.Duration // how long requests were sent
	ran             time.Duration // until the last request was answered (or timed out)
	cpu             float64       // CPU seconds the agent used meanwhile
}

// w4Event returns event n's body: 150 bytes.
func w4Event(n int) string {
	body := fmt.Sprintf("%s%010d 2026-12-01T10:00:00.000Z INFO [worker-3] com.example.Orders - order accepted ", w4Marker, n)
	return body + strings.Repeat("x", max(0, 150-len(body)))
}

// w4Body returns a request of batch events numbered from first, in Flume's JSON format.
func w4Body(first, batch int) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i := range batch {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"headers":{"n":"%d"},"body":"%s"}`, first+i, w4Event(first+i))
	}
	b.WriteByte(']')
	return b.Bytes()
}

// sender sends the batch of events numbered from first and returns an HTTP status: 200 when
// every event was accepted, 0 when there was no answer.
type sender func(ctx context.Context, first, batch int) int

// httpSender posts to url.
func httpSender(url string) (sender, func()) {
	cl := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 512, DialContext: (&net.Dialer{}).DialContext},
	}
	return func(ctx context.Context, first, batch int) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(w4Body(first, batch)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := cl.Do(req)
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}, cl.CloseIdleConnections
}

// clientSender produces with the Weir client: the batch's records one by one (the producer
// batches them), answered when all are acknowledged (acks=all), 503 if any failed.
func clientSender(p *client.Producer) sender {
	return func(ctx context.Context, first, batch int) int {
		var wg sync.WaitGroup
		var failed atomic.Bool
		wg.Add(batch)
		for i := range batch {
			p.ProduceAsync(ctx, storage.Record{Value: []byte(w4Event(first + i))}, func(_ int64, err error) {
				if err != nil {
					failed.Store(true)
				}
				wg.Done()
			})
		}
		wg.Wait()
		if failed.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}
}

// load sends the spike with send and returns every request's outcome.
func load(ctx context.Context, send sender, rate, batch int, d time.Duration, accepted, refused *atomic.Int64) []w4Request {
	interval := time.Duration(float64(batch) / float64(rate) * float64(time.Second))
	n := int(d / interval)
	reqs := make([]w4Request, n)
	slots := make(chan struct{}, 512)
	var wg sync.WaitGroup
	start := time.Now()
	for k := range n {
		due := time.Duration(k) * interval
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(start.Add(due))):
		}
		if ctx.Err() != nil {
			reqs = reqs[:k]
			break
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			r := &reqs[k]
			r.due = due
			r.status = send(ctx, k*batch, batch)
			r.latency = time.Since(start.Add(due))
			if r.status == http.StatusOK {
				accepted.Add(int64(batch))
			} else {
				refused.Add(int64(batch))
			}
		}()
	}
	wg.Wait()
	return reqs
}

// flumeW4Conf is the agent "a": http source -> channel -> HTTP sink posting to url. The memory
// channels take transactions of up to 1,000 events; the file channel has its defaults
// (capacity 1,000,000, transactions of 10,000).
func flumeW4Conf(port, url, work, channel string, capacity int) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("a.sources = h")
	p("a.channels = c")
	p("a.sinks = k")
	p("a.sources.h.type = http")
	p("a.sources.h.bind = 127.0.0.1")
	p("a.sources.h.port = %s", port)
	p("a.sources.h.channels = c")
	flumeChannel(p, channel, work, capacity, 1000)
	p("a.sinks.k.type = org.apache.flume.sink.http.HttpSink")
	p("a.sinks.k.channel = c")
	p("a.sinks.k.endpoint = %s", url)
	p("a.sinks.k.requestTimeout = 10000")
	// HttpSink backs off and rolls the transaction back on every status unless told otherwise,
	// 200 included (it then sends the same event again after a backoff of a second or more).
	p("a.sinks.k.backoff.200 = false")
	p("a.sinks.k.rollback.200 = false")
	p("a.sinks.k.incrementMetrics.200 = true")
	return b.String()
}

// w4Agent is one agent of W4: start starts it with its source at listen and its sink posting
// to url. A native agent is a bare Weir node whose client port is at listen: the load is
// produced with the Weir client to topic "spike", which a consumer in this program reads at
// the consumer's rate.
type w4Agent struct {
	system, variant string
	native          bool
	start           func(work, listen, url string) (*proc, error)
}

// runW4 runs one agent through the spike.
func (b *bench) runW4(ctx context.Context, a w4Agent) (w4Run, error) {
	system, variant := a.system, a.variant
	r := w4Run{system: system, variant: variant, spike: b.cfg.w4For}
	work := filepath.Join(b.work, "w4", system+"-"+variant)
	if err := os.RemoveAll(work); err != nil {
		return r, err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return r, err
	}
	cons := &consumer{rate: float64(b.cfg.w4Out)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return r, err
	}
	srv := &http.Server{Handler: cons}
	go srv.Serve(ln)
	defer srv.Close()
	listen, err := freeAddr()
	if err != nil {
		return r, err
	}
	p, err := a.start(work, listen, "http://"+ln.Addr().String()+"/")
	if err != nil {
		return r, err
	}
	defer p.stop(30 * time.Second)
	if err := waitListening(p, listen, 60*time.Second); err != nil {
		return r, err
	}
	// Let the agent settle (the JVM finishes starting its components) before the idle figure.
	time.Sleep(2 * time.Second)
	r.rssIdle, _ = readRSS(p.pid())

	var accepted, refused atomic.Int64
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var send sender
	consumed := make(chan struct{})
	if a.native {
		cl, err := client.Dial(listen)
		if err != nil {
			return r, err
		}
		defer cl.Close()
		if err := cl.CreateTopic(ctx, "spike", 1, 1); err != nil {
			return r, err
		}
		prod, err := cl.NewProducer("spike", client.Acks(wire.AcksAll))
		if err != nil {
			return r, err
		}
		defer prod.Close()
		send = clientSender(prod)
		c, err := cl.NewConsumer("spike", 0, client.From(client.Earliest()))
		if err != nil {
			return r, err
		}
		go func() {
			defer close(consumed)
			defer c.Close()
			for sctx.Err() == nil {
				msgs, err := c.PollRecords(sctx, 100)
				if err == nil && !cons.take(sctx, len(msgs)) {
					return
				}
			}
		}()
	} else {
		var closeIdle func()
		send, closeIdle = httpSender("http://" + listen + "/")
		defer closeIdle()
		close(consumed)
	}
	cpu0, _ := readCPU(p.pid())
	began := time.Now()
	sampled := make(chan []w4Sample, 1)
	go func() {
		var ss []w4Sample
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			rss, _ := readRSS(p.pid())
			ss = append(ss, w4Sample{at: time.Since(began), rss: rss, accepted: accepted.Load(), refused: refused.Load(), consumed: cons.taken.Load()})
			select {
			case <-sctx.Done():
				sampled <- ss
				return
			case <-t.C:
			}
		}
	}()
	// The progress line counts the events answered (accepted or refused) against those offered.
	offered := int64(float64(b.cfg.w4In) * b.cfg.w4For.Seconds())
	meter := progress.Start(os.Stderr, fmt.Sprintf("W4 %s %s (events answered)", system, variant), offered,
		func() (int64, bool) { return accepted.Load() + refused.Load(), true })
	r.requests = load(ctx, send, b.cfg.w4In, b.cfg.w4Batch, b.cfg.w4For, &accepted, &refused)
	meter.Stop()
	r.consumed, r.ran = cons.taken.Load(), time.Since(began)
	if cpu, err := readCPU(p.pid()); err == nil {
		r.cpu = cpu - cpu0
	}
	cancel()
	r.samples = <-sampled
	<-consumed
	if err := ctx.Err(); err != nil {
		return r, err
	}
	if p.exited() {
		return r, fmt.Errorf("%s %s exited during the spike (%v): see %s", system, variant, p.err, filepath.Join(work, "agent.log"))
	}
	if !p.stop(30 * time.Second) {
		b.logf("%s %s did not stop within 30 s of SIGTERM: killed", system, variant)
	}
	return r, nil
}

// w4 runs the agents of W4.
func (b *bench) w4(ctx context.Context) ([]w4Run, error) {
	agents := []w4Agent{
		{"weir", "http-topic-http", false, func(work, listen, url string) (*proc, error) {
			return b.startWeir("weir-w4", work, "-data", filepath.Join(work, "node"), "-listen", listen, "-url", url)
		}},
		{"weir", "client-topic-client", true, func(work, listen, _ string) (*proc, error) {
			return b.startWeir("weir-node", work, "-data", filepath.Join(work, "node"), "-listen", listen)
		}},
		{"flume", "memory-10k", false, func(work, listen, url string) (*proc, error) {
			_, port, _ := net.SplitHostPort(listen)
			return b.startFlume(work, flumeW4Conf(port, url, work, "memory", 10_000))
		}},
		{"flume", "memory-1m", false, func(work, listen, url string) (*proc, error) {
			_, port, _ := net.SplitHostPort(listen)
			return b.startFlume(work, flumeW4Conf(port, url, work, "memory", 1_000_000))
		}},
		{"flume", "file-channel", false, func(work, listen, url string) (*proc, error) {
			_, port, _ := net.SplitHostPort(listen)
			return b.startFlume(work, flumeW4Conf(port, url, work, "file", 0))
		}},
	}
	var runs []w4Run
	for _, a := range agents {
		b.logf("W4: %s %s: %d events/s offered for %v, the consumer takes %d/s", a.system, a.variant, b.cfg.w4In, b.cfg.w4For, b.cfg.w4Out)
		r, err := b.runW4(ctx, a)
		if err != nil {
			return runs, err
		}
		runs = append(runs, r)
		b.w4Results(r)
	}
	return runs, nil
}

// w4Results records a run's figures.
func (b *bench) w4Results(r w4Run) {
	add := func(metric string, v float64, unit string) {
		b.add(result{Workload: "W4", System: r.system, Variant: r.variant, Metric: metric, Value: v, Unit: unit})
	}
	var ok []time.Duration
	var refused, failed int
	for _, q := range r.requests {
		switch q.status {
		case http.StatusOK:
			ok = append(ok, q.latency)
		case 0:
			failed++
		default:
			refused++
		}
	}
	batch := float64(b.cfg.w4Batch)
	secs := r.spike.Seconds()
	add("offered", float64(len(r.requests))*batch/secs, "events/s")
	add("accepted", float64(len(ok))*batch, "events")
	add("refused", float64(refused)*batch, "events")
	add("failed", float64(failed)*batch, "events")
	add("consumed_rate", float64(r.consumed)/r.ran.Seconds(), "events/s")
	add("load_seconds", r.ran.Seconds(), "s")
	add("cpu", r.cpu, "s")
	slices.Sort(ok)
	if len(ok) > 0 {
		add("latency_p50", ms(quantile(ok, 0.50)), "ms")
		add("latency_p99", ms(quantile(ok, 0.99)), "ms")
		add("latency_max", ms(ok[len(ok)-1]), "ms")
	}
	var peak, end int64
	for _, s := range r.samples {
		peak = max(peak, s.rss)
		end = s.rss
	}
	add("rss_idle", float64(r.rssIdle)/(1<<20), "MiB")
	add("rss_peak", float64(peak)/(1<<20), "MiB")
	add("rss_end", float64(end)/(1<<20), "MiB")
	b.logf("W4: %s %s: accepted %d events, refused %d, failed %d; p50 %.1f ms p99 %.1f ms; consumed %.0f/s; RSS idle %.0f MiB, peak %.0f MiB",
		r.system, r.variant, len(ok)*b.cfg.w4Batch, refused*b.cfg.w4Batch, failed*b.cfg.w4Batch,
		ms(quantile(ok, 0.5)), ms(quantile(ok, 0.99)), float64(r.consumed)/r.ran.Seconds(), float64(r.rssIdle)/(1<<20), float64(peak)/(1<<20))
}

// quantile returns the q quantile of sorted (0 when empty).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
