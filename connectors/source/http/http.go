// Package http is a source that takes events over HTTP, as Flume's HTTP source does: a POST
// with Content-Type application/json carries a JSON array of events, each
// {"headers": {"k": "v"}, "body": "text"} (Flume's JSONHandler format; "key" sets the record's
// key); any other POST body is one event, the body as it is.
//
// The answer comes once the topic acknowledged the request's events: 200 with
// {"accepted": N} then (the runner tells the source through connectors.Acker), so a client that
// got 200 knows its events are stored (and retries otherwise). 400 says what is wrong with a
// body that does not parse, 405 and 413 refuse other methods and bodies over Config.MaxBody, and
// 503 (with Retry-After) refuses a request while Config.MaxPending events or
// Config.MaxPendingBytes bytes already wait for the topic, or while the flow restarts.
//
// # Delivery
//
// A request's events are acknowledged all together or not at all (they are read in one batch).
// If the flow's actor fails before the topic acknowledged them, the request gets 503: the client
// sends it again, and events the topic had stored before the failure are stored twice, within
// the runtime's one-batch bound. The position is always empty: what is acknowledged is answered,
// and nothing else can be asked for again.
package http

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/weirhq/weir/storage"
)

// Config configures a Source.
type Config struct {
	// Addr is the address to listen on (host:port; port 0 picks one, see Addr).
	Addr string
	// Path is the URL path events are posted to (default "/").
	Path string
	// TLS, if set, is the server configuration: the source serves HTTPS.
	TLS *tls.Config
	// MaxBody is the largest body taken, in bytes (default 16 MiB).
	MaxBody int64
	// MaxPending is how many events, and MaxPendingBytes how many bytes of bodies, may wait
	// for the topic before requests get 503 (defaults 100,000 and 64 MiB).
	MaxPending      int
	MaxPendingBytes int64
	// Batch is the most events one Read returns (default 10,000; a larger request goes whole).
	// Linger is how long Read waits for more requests after the first (default 2 ms).
	Batch  int
	Linger time.Duration
	// Logger receives server errors; discarded by default.
	Logger *slog.Logger
}

// Source takes events over HTTP. It is a connectors.Source.
type Source struct {
	cfg Config

	mu       sync.Mutex
	srv      *http.Server
	ln       net.Listener
	queue    []*request // waiting to be read
	queued   int        // events in queue and in flight
	bytes    int64      // body bytes in queue and in flight
	inflight []*request // returned by Read, answered when acknowledged (Acked)
	wake     chan struct{}
	closed   bool
}

// request is one POST waiting for its answer.
type request struct {
	recs  []storage.Record
	bytes int64
	done  chan error // nil: acknowledged
}

// New checks cfg and returns a Source; it listens from Open on.
func New(cfg Config) (*Source, error) {
	if cfg.Addr == "" {
		return nil, errors.New("http source: no address to listen on")
	}
	if cfg.Path == "" {
		cfg.Path = "/"
	}
	if !strings.HasPrefix(cfg.Path, "/") {
		return nil, fmt.Errorf("http source: path %q does not start with /", cfg.Path)
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 16 << 20
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 100_000
	}
	if cfg.MaxPendingBytes <= 0 {
		cfg.MaxPendingBytes = 64 << 20
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 10_000
	}
	if cfg.Linger <= 0 {
		cfg.Linger = 2 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Source{cfg: cfg, wake: make(chan struct{}, 1)}, nil
}

// Open starts the server (or, after a Close, again on the same address). The position is
// ignored.
func (s *Source) Open(_ context.Context, _ []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("http source: listen on %s: %w", s.cfg.Addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc(s.cfg.Path, s.serve)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		ErrorLog: slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelWarn)}
	s.ln = ln
	s.closed = false
	serve := ln
	if s.cfg.TLS != nil {
		serve = tls.NewListener(ln, s.cfg.TLS)
	}
	go func(srv *http.Server) { _ = srv.Serve(serve) }(s.srv)
	return nil
}

// Addr is the address listened on, once open.
func (s *Source) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Acked answers 200 to the requests whose events Read returned: the topic acknowledged them.
// It implements connectors.Acker.
func (s *Source) Acked([]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.inflight {
		s.queued -= len(r.recs)
		s.bytes -= r.bytes
		r.done <- nil
	}
	s.inflight = nil
}

// Read returns the events of the requests waiting, up to Config.Batch: it waits for the first
// request until ctx is done, then for more within Config.Linger. The requests are answered when
// the runner reports the events acknowledged (Acked), or 503 by Close.
func (s *Source) Read(ctx context.Context) ([]storage.Record, []byte, error) {
	var out []storage.Record
	var linger <-chan time.Time
	for {
		s.mu.Lock()
		for len(s.queue) > 0 && (len(out) == 0 || len(out)+len(s.queue[0].recs) <= s.cfg.Batch) {
			r := s.queue[0]
			s.queue = s.queue[1:]
			out = append(out, r.recs...)
			s.inflight = append(s.inflight, r)
		}
		full := len(s.queue) > 0
		s.mu.Unlock()
		if full || len(out) >= s.cfg.Batch {
			return out, nil, nil
		}
		if len(out) > 0 && linger == nil {
			t := time.NewTimer(s.cfg.Linger)
			defer t.Stop()
			linger = t.C
		}
		select {
		case <-s.wake:
		case <-linger:
			return out, nil, nil
		case <-ctx.Done():
			return out, nil, nil
		}
	}
}

// Close stops the server; requests not yet acknowledged get 503.
func (s *Source) Close() error {
	s.mu.Lock()
	srv := s.srv
	s.srv, s.ln, s.closed = nil, nil, true
	pending := append(s.inflight, s.queue...)
	s.inflight, s.queue, s.queued, s.bytes = nil, nil, 0, 0
	s.mu.Unlock()
	for _, r := range pending {
		r.done <- errors.New("the flow stopped before the topic acknowledged the events")
	}
	if srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(ctx)
}

// event is an event of a JSON body.
type event struct {
	Headers map[string]string `json:"headers"`
	Body    *string           `json:"body"`
	Key     *string           `json:"key"`
}

func (s *Source) serve(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "only POST is taken", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, s.cfg.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, fmt.Sprintf("body over %d bytes", s.cfg.MaxBody), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	recs, err := parseBody(req.Header.Get("Content-Type"), body, time.Now().UnixMilli())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if len(recs) == 0 {
		writeAccepted(w, 0)
		return
	}
	r := &request{recs: recs, bytes: int64(len(body)), done: make(chan error, 1)}
	s.mu.Lock()
	switch {
	case s.closed || s.srv == nil:
		s.mu.Unlock()
		w.Header().Set("Retry-After", "1")
		http.Error(w, "the flow is restarting", http.StatusServiceUnavailable)
		return
	case s.queued > 0 && (s.queued+len(recs) > s.cfg.MaxPending || s.bytes+r.bytes > s.cfg.MaxPendingBytes):
		s.mu.Unlock()
		w.Header().Set("Retry-After", "1")
		http.Error(w, fmt.Sprintf("overloaded: %d events (%d bytes) wait for the topic", s.queued, s.bytes), http.StatusServiceUnavailable)
		return
	}
	s.queue = append(s.queue, r)
	s.queued += len(recs)
	s.bytes += r.bytes
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	select {
	case err := <-r.done:
		if err != nil {
			w.Header().Set("Retry-After", "1")
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		writeAccepted(w, len(recs))
	case <-req.Context().Done():
		// The client went away; its events may still be stored.
	}
}

func writeAccepted(w http.ResponseWriter, n int) {
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, "{\"accepted\":%d}\n", n)
}

// parseBody turns a body into records: a JSON array of events for application/json, else the
// body as one record.
func parseBody(contentType string, body []byte, now int64) ([]storage.Record, error) {
	mt := strings.TrimSpace(strings.ToLower(strings.SplitN(contentType, ";", 2)[0]))
	if mt != "application/json" {
		if len(body) == 0 {
			return nil, errors.New("empty body")
		}
		return []storage.Record{{Value: body, Timestamp: now}}, nil
	}
	var events []event
	if err := json.Unmarshal(body, &events); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return nil, fmt.Errorf("body: invalid JSON at byte %d: %v", se.Offset, se)
		case errors.As(err, &te):
			return nil, fmt.Errorf(`body: want a JSON array of {"headers": {...}, "body": "..."}: at byte %d, %s where %s belongs`, te.Offset, te.Value, te.Type)
		}
		return nil, fmt.Errorf("body: %v", err)
	}
	recs := make([]storage.Record, 0, len(events))
	for i, e := range events {
		if e.Body == nil {
			return nil, fmt.Errorf(`body: event %d has no "body"`, i)
		}
		r := storage.Record{Value: []byte(*e.Body), Headers: e.Headers, Timestamp: now}
		if e.Key != nil {
			r.Key = []byte(*e.Key)
		}
		recs = append(recs, r)
	}
	return recs, nil
}
