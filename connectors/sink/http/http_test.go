package http_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	nethttp "net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhq/weir/connectors"
	httpsink "github.com/weirhq/weir/connectors/sink/http"
	"github.com/weirhq/weir/storage"
)

// rec is a record as a request's body holds it.
type rec struct {
	Topic         string            `json:"topic"`
	Partition     int32             `json:"partition"`
	Offset        int64             `json:"offset"`
	Timestamp     int64             `json:"timestamp"`
	Key           *string           `json:"key"`
	KeyEncoding   string            `json:"key_encoding"`
	Value         string            `json:"value"`
	ValueEncoding string            `json:"value_encoding"`
	Headers       map[string]string `json:"headers"`
}

// server is an endpoint whose answers a test scripts: answer returns the status (and may set
// headers) for the n-th request (from 1); 2xx requests' records are kept.
type server struct {
	*httptest.Server
	n       atomic.Int64
	mu      sync.Mutex
	reqs    []*nethttp.Request
	times   []time.Time
	bodies  [][]rec
	records []rec // of the requests answered 2xx
}

func newServer(t *testing.T, answer func(n int64, w nethttp.ResponseWriter, r *nethttp.Request) int) *server {
	s := &server{}
	s.Server = httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		n := s.n.Add(1)
		body, _ := io.ReadAll(r.Body)
		recs, err := decode(r.Header.Get("Content-Type"), body)
		if err != nil {
			t.Errorf("request %d: %v", n, err)
		}
		status := answer(n, w, r)
		s.mu.Lock()
		s.reqs = append(s.reqs, r)
		s.times = append(s.times, time.Now())
		s.bodies = append(s.bodies, recs)
		if status/100 == 2 {
			s.records = append(s.records, recs...)
		}
		s.mu.Unlock()
		w.WriteHeader(status)
		fmt.Fprintf(w, "answer %d", status)
	}))
	t.Cleanup(s.Close)
	return s
}

func decode(contentType string, body []byte) ([]rec, error) {
	var out []rec
	switch contentType {
	case "application/json":
		err := json.Unmarshal(body, &out)
		return out, err
	case "application/x-ndjson":
		if len(body) > 0 && body[len(body)-1] != '\n' {
			return nil, errors.New("ndjson body does not end in a newline")
		}
		sc := bufio.NewScanner(bytes.NewReader(body))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var r rec
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				return nil, fmt.Errorf("line %q: %w", sc.Text(), err)
			}
			out = append(out, r)
		}
		return out, sc.Err()
	}
	return nil, fmt.Errorf("content type %q", contentType)
}

func ok(int64, nethttp.ResponseWriter, *nethttp.Request) int { return 200 }

func msgs(n int) []connectors.Message {
	out := make([]connectors.Message, n)
	for i := range out {
		out[i] = connectors.Message{Topic: "events", Partition: int32(i % 2), Offset: int64(i),
			Record: storage.Record{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i), Timestamp: int64(1000 + i)}}
	}
	return out
}

// fakeDL is a dead-letter producer that keeps what it is given, or fails with err.
type fakeDL struct {
	mu    sync.Mutex
	topic string
	recs  []storage.Record
	err   error
}

func (f *fakeDL) Produce(ctx context.Context, topic string, recs []storage.Record) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	if err := ctx.Err(); err != nil { // as a real producer would, given no time
		return err
	}
	f.topic = topic
	f.recs = append(f.recs, recs...)
	return nil
}

func open(t *testing.T, cfg httpsink.Config) *httpsink.Sink {
	t.Helper()
	s, err := httpsink.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestValidate(t *testing.T) {
	dl := &fakeDL{}
	good := httpsink.Config{URL: "http://127.0.0.1:1/in"}
	for _, tc := range []struct {
		name string
		edit func(c *httpsink.Config)
		want string // in the error; "" for none
	}{
		{"good", func(*httpsink.Config) {}, ""},
		{"everything", func(c *httpsink.Config) {
			*c = httpsink.Config{URL: "https://x/y", Method: "PUT", Headers: map[string]string{"X-A": "b"}, Timeout: time.Second,
				BatchSize: 5, Format: httpsink.NDJSON, RetryFor: time.Second, MinBackoff: time.Millisecond, MaxBackoff: time.Second,
				DeadLetterTopic: "dlq", DeadLetter: dl}
		}, ""},
		{"no URL", func(c *httpsink.Config) { c.URL = "" }, "URL is empty"},
		{"URL without scheme", func(c *httpsink.Config) { c.URL = "localhost:80/x" }, "URL"},
		{"URL ftp", func(c *httpsink.Config) { c.URL = "ftp://h/x" }, "URL \"ftp://h/x\""},
		{"method", func(c *httpsink.Config) { c.Method = "GET" }, "Method \"GET\""},
		{"header name", func(c *httpsink.Config) { c.Headers = map[string]string{"a b": "c"} }, "Headers: bad header name \"a b\""},
		{"header name empty", func(c *httpsink.Config) { c.Headers = map[string]string{"": "c"} }, "Headers: bad header name \"\""},
		// Names and values net/http refuses to send, though they hold no space or line break.
		{"header name not a token", func(c *httpsink.Config) { c.Headers = map[string]string{"X-Team(ops)": "a"} }, "Headers: bad header name \"X-Team(ops)\""},
		{"header name non-ASCII", func(c *httpsink.Config) { c.Headers = map[string]string{"X-Ünit": "a"} }, "Headers: bad header name \"X-Ünit\""},
		{"header value", func(c *httpsink.Config) { c.Headers = map[string]string{"a": "b\r\nc: d"} }, "Headers: value of \"a\""},
		{"header value NUL", func(c *httpsink.Config) { c.Headers = map[string]string{"X-Token": "ab\x00c"} }, "Headers: value of \"X-Token\""},
		{"header value DEL", func(c *httpsink.Config) { c.Headers = map[string]string{"X-Token": "ab\x7f"} }, "Headers: value of \"X-Token\""},
		{"header value tab", func(c *httpsink.Config) { c.Headers = map[string]string{"X-Token": "a\tb"} }, ""},
		{"timeout", func(c *httpsink.Config) { c.Timeout = -1 }, "Timeout"},
		{"batch size", func(c *httpsink.Config) { c.BatchSize = -1 }, "BatchSize"},
		{"format", func(c *httpsink.Config) { c.Format = 7 }, "Format"},
		{"retry for", func(c *httpsink.Config) { c.RetryFor = -time.Second }, "RetryFor"},
		{"backoff order", func(c *httpsink.Config) { c.MinBackoff, c.MaxBackoff = time.Second, time.Millisecond }, "MaxBackoff"},
		{"dlq without topic", func(c *httpsink.Config) { c.DeadLetter = dl }, "without DeadLetterTopic"},
		{"dlq topic alone", func(c *httpsink.Config) { c.DeadLetterTopic = "dlq" }, "without DeadLetterAddr or DeadLetter"},
		{"dlq both", func(c *httpsink.Config) { c.DeadLetterTopic, c.DeadLetter, c.DeadLetterAddr = "dlq", dl, "x:1" }, "not both"},
		{"dlq bad topic", func(c *httpsink.Config) { c.DeadLetterTopic, c.DeadLetter = "a/b", dl }, "DeadLetterTopic \"a/b\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			_, err := httpsink.New(c)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestBatching: a Write of 250 records with BatchSize 100 makes three requests of 100, 100 and
// 50 records, in offset order, each record with every field, in both formats.
func TestBatching(t *testing.T) {
	for _, format := range []httpsink.Format{httpsink.JSON, httpsink.NDJSON} {
		t.Run(fmt.Sprint(format), func(t *testing.T) {
			srv := newServer(t, ok)
			s := open(t, httpsink.Config{URL: srv.URL + "/in", Method: "PUT", Headers: map[string]string{"Authorization": "Bearer x"},
				BatchSize: 100, Format: format})
			in := msgs(250)
			in[3].Headers = map[string]string{"h": "x"}
			in[4].Key = nil
			in[5].Value = []byte{0xff, 0x00, 0xfe}
			in[6].Key = []byte{0xc3}
			in[7].Value = []byte(`<"quoted">&`)
			if err := s.Write(context.Background(), in); err != nil {
				t.Fatal(err)
			}
			if len(srv.bodies) != 3 || len(srv.bodies[0]) != 100 || len(srv.bodies[1]) != 100 || len(srv.bodies[2]) != 50 {
				t.Fatalf("%d requests; want 3 of 100, 100, 50 records", len(srv.bodies))
			}
			for _, r := range srv.reqs {
				if r.Method != "PUT" || r.URL.Path != "/in" || r.Header.Get("Authorization") != "Bearer x" {
					t.Fatalf("request %s %s with headers %v", r.Method, r.URL, r.Header)
				}
			}
			if st := s.Stats(); st.Requests != 3 || st.Records != 250 {
				t.Fatalf("stats %+v", st)
			}
			for i, r := range srv.records {
				m := in[i]
				if r.Topic != m.Topic || r.Partition != m.Partition || r.Offset != m.Offset || r.Timestamp != m.Timestamp {
					t.Fatalf("record %d: %+v", i, r)
				}
				value := r.Value
				if r.ValueEncoding == "base64" {
					b, err := base64.StdEncoding.DecodeString(r.Value)
					if err != nil {
						t.Fatal(err)
					}
					value = string(b)
				} else if r.ValueEncoding != "" {
					t.Fatalf("record %d: value_encoding %q", i, r.ValueEncoding)
				}
				if value != string(m.Value) {
					t.Fatalf("record %d: value %q, want %q", i, value, m.Value)
				}
				switch {
				case m.Key == nil && r.Key != nil:
					t.Fatalf("record %d has no key, body says %q", i, *r.Key)
				case m.Key != nil && r.Key == nil:
					t.Fatalf("record %d: key missing", i)
				case m.Key != nil:
					key := *r.Key
					if r.KeyEncoding == "base64" {
						b, _ := base64.StdEncoding.DecodeString(key)
						key = string(b)
					}
					if key != string(m.Key) {
						t.Fatalf("record %d: key %q, want %q", i, key, m.Key)
					}
				}
			}
			if srv.records[5].ValueEncoding != "base64" || srv.records[6].KeyEncoding != "base64" || srv.records[3].Headers["h"] != "x" {
				t.Fatalf("binary value, binary key or headers not sent as documented: %+v %+v %+v", srv.records[5], srv.records[6], srv.records[3])
			}
			if srv.records[7].ValueEncoding != "" {
				t.Fatalf("text value sent as %q", srv.records[7].ValueEncoding)
			}
		})
	}
}

// TestRetriesServerErrors: 503, 500 and 408 are retried with backoff, and the records arrive
// once the endpoint takes them; Write returns nil.
func TestRetriesServerErrors(t *testing.T) {
	srv := newServer(t, func(n int64, _ nethttp.ResponseWriter, _ *nethttp.Request) int {
		if failures := []int{503, 500, 408}; n <= int64(len(failures)) {
			return failures[n-1]
		}
		return 200
	})
	s := open(t, httpsink.Config{URL: srv.URL, BatchSize: 1000, MinBackoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond})
	if err := s.Write(context.Background(), msgs(30)); err != nil {
		t.Fatal(err)
	}
	if srv.n.Load() != 4 || len(srv.records) != 30 {
		t.Fatalf("%d requests, %d records taken; want 4 and 30", srv.n.Load(), len(srv.records))
	}
	for i := 1; i < 4; i++ {
		if len(srv.bodies[i]) != 30 {
			t.Fatalf("retry %d carried %d records, want 30", i, len(srv.bodies[i]))
		}
	}
	// Backoff 10, 20, 40 ms between the attempts.
	if gap := srv.times[3].Sub(srv.times[0]); gap < 70*time.Millisecond {
		t.Fatalf("three retries within %v: no backoff", gap)
	}
}

// TestRetryAfter: a 429 with Retry-After: 1 is retried after a second, although the backoff is
// a few milliseconds.
func TestRetryAfter(t *testing.T) {
	srv := newServer(t, func(n int64, w nethttp.ResponseWriter, _ *nethttp.Request) int {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			return 429
		}
		return 200
	})
	s := open(t, httpsink.Config{URL: srv.URL, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	if err := s.Write(context.Background(), msgs(3)); err != nil {
		t.Fatal(err)
	}
	if srv.n.Load() != 2 || len(srv.records) != 3 {
		t.Fatalf("%d requests, %d records taken", srv.n.Load(), len(srv.records))
	}
	if gap := srv.times[1].Sub(srv.times[0]); gap < 950*time.Millisecond {
		t.Fatalf("retried %v after a 429 asking for 1 s", gap)
	}
}

// TestRetryAfterBeyondBudget: a 429 or 503 whose Retry-After asks for more than the budget has
// left is not given up on at once: the sink waits until the budget's end and sends the request
// once more, so an endpoint that is back by then takes it, and otherwise the request is
// dead-lettered (or fails the Write) only when the budget is spent.
func TestRetryAfterBeyondBudget(t *testing.T) {
	const retryFor = 400 * time.Millisecond
	for _, tc := range []struct {
		name       string
		status     int
		recovers   bool // the second attempt is answered 200
		deadLetter bool
	}{
		{"429, endpoint back", 429, true, false},
		{"503, endpoint back", 503, true, false},
		{"503, dead letter", 503, false, true},
		{"429, no dead-letter topic", 429, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, func(n int64, w nethttp.ResponseWriter, _ *nethttp.Request) int {
				if tc.recovers && n > 1 {
					return 200
				}
				w.Header().Set("Retry-After", "3600")
				return tc.status
			})
			cfg := httpsink.Config{URL: srv.URL, RetryFor: retryFor, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
			dl := &fakeDL{}
			if tc.deadLetter {
				cfg.DeadLetterTopic, cfg.DeadLetter = "dead", dl
			}
			s := open(t, cfg)
			start := time.Now()
			err := s.Write(context.Background(), msgs(3))
			d := time.Since(start)
			if d < retryFor-50*time.Millisecond || d > 3*time.Second {
				t.Fatalf("Write returned after %v; want about RetryFor (%v)", d, retryFor)
			}
			if srv.n.Load() != 2 {
				t.Fatalf("%d requests; want 2 (the second at the budget's end)", srv.n.Load())
			}
			switch {
			case tc.recovers:
				if err != nil || len(srv.records) != 3 {
					t.Fatalf("got %v with %d records taken; want nil and 3", err, len(srv.records))
				}
			case tc.deadLetter:
				if err != nil || len(dl.recs) != 3 || dl.recs[0].Headers[httpsink.HeaderAttempts] != "2" ||
					dl.recs[0].Headers[httpsink.HeaderStatus] != fmt.Sprint(tc.status) {
					t.Fatalf("got %v and %d dead letters (%v)", err, len(dl.recs), dl.recs)
				}
			default:
				var he *httpsink.Error
				if !errors.As(err, &he) || he.Status != tc.status || he.Permanent || he.Attempts != 2 {
					t.Fatalf("got %v, want the %d after 2 attempts", err, tc.status)
				}
			}
		})
	}
}

// TestWriteBudget: RetryFor is one budget for the whole Write, cut to the Write context's
// deadline less a margin: while the endpoint is down, a Write of many requests returns before
// its context ends, having dead-lettered each record not taken exactly once (the request that
// spent the budget and those not sent yet), or with the failure when there is no dead-letter
// topic; either way the runner moves on or replays without running out of time.
func TestWriteBudget(t *testing.T) {
	const records, batch = 40, 2 // 20 requests
	for _, tc := range []struct {
		name       string
		ctxTimeout time.Duration // 0: no deadline
		retryFor   time.Duration
		hang       bool // the endpoint answers nothing (else 503) after its first two requests
		deadLetter bool
		maxTime    time.Duration // Write returns within
	}{
		// The context's deadline sets the budget's end (1 s less the 100 ms margin).
		{"context deadline, dead letters", time.Second, time.Hour, false, true, time.Second},
		{"context deadline, no dead-letter topic", time.Second, time.Hour, false, false, time.Second},
		// An attempt is cut at the budget's end too, not only at Timeout (1 minute).
		{"context deadline, endpoint hangs", time.Second, time.Hour, true, true, time.Second},
		// RetryFor sets it: a per-request budget would take 19 × 300 ms.
		{"RetryFor, dead letters", 0, 300 * time.Millisecond, false, true, time.Second},
		{"RetryFor, no dead-letter topic", 0, 300 * time.Millisecond, false, false, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, func(n int64, _ nethttp.ResponseWriter, r *nethttp.Request) int {
				if n <= 2 {
					return 200
				}
				if tc.hang {
					<-r.Context().Done()
				}
				return 503
			})
			cfg := httpsink.Config{URL: srv.URL, BatchSize: batch, Timeout: time.Minute, RetryFor: tc.retryFor,
				MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
			dl := &fakeDL{}
			if tc.deadLetter {
				cfg.DeadLetterTopic, cfg.DeadLetter = "dead", dl
			}
			s := open(t, cfg)
			ctx := context.Background()
			if tc.ctxTimeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.ctxTimeout)
				defer cancel()
			}
			start := time.Now()
			err := s.Write(ctx, msgs(records))
			if d := time.Since(start); d > tc.maxTime || ctx.Err() != nil {
				t.Fatalf("Write returned %v after %v (context: %v)", err, d, ctx.Err())
			}
			if len(srv.records) != 2*batch {
				t.Fatalf("endpoint took %d records, want %d", len(srv.records), 2*batch)
			}
			if !tc.deadLetter {
				var he *httpsink.Error
				if !errors.As(err, &he) || he.Permanent || he.Attempts < 2 || errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("got %v, want the third request's failure after retries", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(dl.recs) != records-2*batch {
				t.Fatalf("%d dead letters, want %d", len(dl.recs), records-2*batch)
			}
			for i, r := range dl.recs {
				if want := fmt.Sprint(2*batch + i); r.Headers[httpsink.HeaderOffset] != want {
					t.Fatalf("dead letter %d is offset %s, want %s: each once, in order", i, r.Headers[httpsink.HeaderOffset], want)
				}
				attempts, errText := r.Headers[httpsink.HeaderAttempts], r.Headers[httpsink.HeaderError]
				switch {
				case i < batch && (attempts == "0" || attempts == "1" && !tc.hang):
					t.Fatalf("the failing request's dead letter says %s attempts", attempts)
				case i >= batch && (attempts != "0" || r.Headers[httpsink.HeaderStatus] != "0" ||
					!strings.Contains(errText, httpsink.ErrBudgetSpent.Error())):
					t.Fatalf("dead letter %d of a request not sent: %v", i, r.Headers)
				case i >= batch && !tc.hang && !strings.Contains(errText, "503"):
					t.Fatalf("dead letter %d does not name the failure that spent the budget: %q", i, errText)
				}
			}
			if st := s.Stats(); st.DeadLettered != records-2*batch || st.Records != 2*batch {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestSlowEndpointNotBudgeted: a healthy endpoint slower than RetryFor per Write takes every
// request: RetryFor counts from a Write's first failure, not from its start (a Write of many
// slow requests dead-lettered healthy records before).
func TestSlowEndpointNotBudgeted(t *testing.T) {
	srv := newServer(t, func(int64, nethttp.ResponseWriter, *nethttp.Request) int {
		time.Sleep(100 * time.Millisecond)
		return 200
	})
	s := open(t, httpsink.Config{URL: srv.URL, BatchSize: 1, RetryFor: 250 * time.Millisecond})
	if err := s.Write(context.Background(), msgs(6)); err != nil {
		t.Fatal(err)
	}
	if n := srv.n.Load(); n != 6 || len(srv.records) != 6 {
		t.Fatalf("%d requests, %d records taken; want all 6", n, len(srv.records))
	}
}

// TestPermanentNotRetried: 400 and 404 are refused for good: one attempt, and without a
// dead-letter topic Write returns the error (the runner replays the batch).
func TestPermanentNotRetried(t *testing.T) {
	for _, status := range []int{400, 404, 413} {
		srv := newServer(t, func(int64, nethttp.ResponseWriter, *nethttp.Request) int { return status })
		s := open(t, httpsink.Config{URL: srv.URL, MinBackoff: time.Millisecond})
		err := s.Write(context.Background(), msgs(3))
		var he *httpsink.Error
		if !errors.As(err, &he) || he.Status != status || !he.Permanent || he.Attempts != 1 {
			t.Fatalf("status %d: got %v", status, err)
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("answer %d", status)) {
			t.Fatalf("error %q does not quote the answer", err)
		}
		if srv.n.Load() != 1 {
			t.Fatalf("status %d retried: %d requests", status, srv.n.Load())
		}
	}
}

// TestDeadLetterWhenRetriesSpent: an endpoint that keeps failing (500, then no endpoint at all)
// is retried for RetryFor, then the batch goes to the dead-letter topic with its headers and
// Write returns nil; the next requests of the Write are still sent.
func TestDeadLetterWhenRetriesSpent(t *testing.T) {
	var down atomic.Bool
	srv := newServer(t, func(_ int64, _ nethttp.ResponseWriter, r *nethttp.Request) int {
		if down.Load() {
			return 500
		}
		return 200
	})
	dl := &fakeDL{}
	s := open(t, httpsink.Config{URL: srv.URL, BatchSize: 2, RetryFor: 300 * time.Millisecond,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, DeadLetterTopic: "dead", DeadLetter: dl})
	down.Store(true)
	in := msgs(2)
	in[0].Headers = map[string]string{"keep": "me"}
	if err := s.Write(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if n := srv.n.Load(); n < 4 {
		t.Fatalf("%d attempts in 300 ms of retries", n)
	}
	if dl.topic != "dead" || len(dl.recs) != 2 {
		t.Fatalf("dead letters: %d to %q", len(dl.recs), dl.topic)
	}
	r := dl.recs[0]
	if string(r.Key) != "k0" || string(r.Value) != "v0" || r.Timestamp != 1000 || r.Headers["keep"] != "me" ||
		r.Headers[httpsink.HeaderStatus] != "500" || r.Headers[httpsink.HeaderTopic] != "events" ||
		r.Headers[httpsink.HeaderPartition] != "0" || r.Headers[httpsink.HeaderOffset] != "0" ||
		!strings.Contains(r.Headers[httpsink.HeaderError], "500") || r.Headers[httpsink.HeaderAttempts] == "1" {
		t.Fatalf("dead letter %+v", r)
	}
	if dl.recs[1].Headers[httpsink.HeaderOffset] != "1" || dl.recs[1].Headers[httpsink.HeaderPartition] != "1" {
		t.Fatalf("second dead letter %+v", dl.recs[1])
	}
	if len(in[0].Headers) != 1 {
		t.Fatal("dead-lettering changed the message's headers")
	}

	// No endpoint: connection errors are retried too, then dead-lettered.
	url := srv.URL
	srv.Close()
	s2 := open(t, httpsink.Config{URL: url, RetryFor: 200 * time.Millisecond, MinBackoff: 10 * time.Millisecond,
		DeadLetterTopic: "dead", DeadLetter: dl})
	if err := s2.Write(context.Background(), msgs(1)); err != nil {
		t.Fatal(err)
	}
	if st := s2.Stats(); st.Requests < 3 || st.DeadLettered != 1 {
		t.Fatalf("connection refused: stats %+v", st)
	}
	if got := dl.recs[2].Headers[httpsink.HeaderStatus]; got != "0" {
		t.Fatalf("status header %q without an answer", got)
	}
}

// TestDeadLetterFails: when the dead-letter topic refuses the batch too, Write returns both
// errors and the runner replays.
func TestDeadLetterFails(t *testing.T) {
	srv := newServer(t, func(int64, nethttp.ResponseWriter, *nethttp.Request) int { return 400 })
	boom := errors.New("dead-letter topic away")
	s := open(t, httpsink.Config{URL: srv.URL, DeadLetterTopic: "dead", DeadLetter: &fakeDL{err: boom}})
	err := s.Write(context.Background(), msgs(1))
	var he *httpsink.Error
	if !errors.Is(err, boom) || !errors.As(err, &he) || he.Status != 400 {
		t.Fatalf("got %v, want the 400 and the dead-letter failure", err)
	}
	if s.Stats().DeadLettered != 0 {
		t.Fatal("counted as dead-lettered")
	}
}

// TestTimeout: an endpoint slower than Timeout fails the attempt, which is retried until
// RetryFor is spent.
func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := newServer(t, func(_ int64, _ nethttp.ResponseWriter, r *nethttp.Request) int {
		select {
		case <-r.Context().Done():
		case <-release:
		}
		return 200
	})
	defer close(release)
	s := open(t, httpsink.Config{URL: srv.URL, Timeout: 100 * time.Millisecond, RetryFor: 350 * time.Millisecond, MinBackoff: 10 * time.Millisecond})
	start := time.Now()
	err := s.Write(context.Background(), msgs(1))
	var he *httpsink.Error
	if !errors.As(err, &he) || he.Status != 0 || he.Permanent || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want a timeout after retries", err)
	}
	if he.Attempts < 2 {
		t.Fatalf("%d attempts", he.Attempts)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
		t.Fatalf("Write returned after %v, RetryFor 350 ms", d)
	}
}

// TestCancel: when the Write's context ends, Write returns its error at once, during an attempt
// or a backoff, and never dead-letters.
func TestCancel(t *testing.T) {
	for _, during := range []string{"attempt", "backoff"} {
		t.Run(during, func(t *testing.T) {
			release := make(chan struct{})
			srv := newServer(t, func(_ int64, _ nethttp.ResponseWriter, r *nethttp.Request) int {
				if during == "backoff" {
					return 503
				}
				select {
				case <-r.Context().Done():
				case <-release:
				}
				return 200
			})
			defer close(release)
			dl := &fakeDL{}
			s := open(t, httpsink.Config{URL: srv.URL, Timeout: time.Minute, RetryFor: time.Hour, MinBackoff: time.Minute,
				DeadLetterTopic: "dead", DeadLetter: dl})
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			start := time.Now()
			err := s.Write(ctx, msgs(1))
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("got %v, want context.Canceled", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("Write returned %v after the cancel", d)
			}
			if len(dl.recs) != 0 {
				t.Fatal("dead-lettered on cancel")
			}
		})
	}
}

// TestNoRedirect: a 3xx answer is not followed (a POST would become a GET) and not retried.
func TestNoRedirect(t *testing.T) {
	srv := newServer(t, func(_ int64, w nethttp.ResponseWriter, _ *nethttp.Request) int {
		w.Header().Set("Location", "/elsewhere")
		return 302
	})
	s := open(t, httpsink.Config{URL: srv.URL})
	var he *httpsink.Error
	if err := s.Write(context.Background(), msgs(1)); !errors.As(err, &he) || he.Status != 302 || srv.n.Load() != 1 {
		t.Fatalf("got %v after %d requests", err, srv.n.Load())
	}
}
