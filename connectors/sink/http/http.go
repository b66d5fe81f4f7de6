// Package http is a sink that sends the records it reads to an HTTP endpoint, in batches, as
// Flume's HTTP sink does: each request carries up to BatchSize records, as one JSON array or as
// newline-delimited JSON.
//
// # Guarantee
//
// At least once. Write returns nil only when the endpoint answered every request of the batch
// with a 2xx status, or when a request it refused for good was stored in the dead-letter topic
// (below); only then does the runner commit the offsets. When Write returns an error the
// runner restarts the sink and hands the batch over again from its committed offsets, so the
// requests of that batch that had succeeded are sent again: the endpoint must accept repeats
// (each record carries its topic, partition and offset, which identify it).
//
// # Retries
//
// A request that fails with a connection error, a timeout, 408, 429 or a 5xx status is sent
// again after a backoff that starts at MinBackoff and doubles up to MaxBackoff; a 429 or 503
// answer with a Retry-After header (seconds or an HTTP date) is sent again after the time it asks
// for instead (but not sooner than MinBackoff). Any other status (1xx, 3xx, 4xx: redirects are
// not followed) refuses the request for good and is not retried.
//
// # The Write's budget
//
// Retries draw on one budget per Write, not one per request. The budget ends RetryFor after the
// Write's first failed attempt or, when the Write's context has a deadline, at that deadline less
// a margin, whichever comes first (so a healthy endpoint, however slow, is bounded only by the
// context). The margin is a tenth of the time the context had left when Write was
// called, at most 2 s (2 s under the runner's one-minute write timeout), and keeps that time for
// the dead letters. Within the budget:
//
//   - no wait lasts past its end: a longer one (a long Retry-After included) is cut short, and
//     the request is sent once more at the end if the context leaves time for it, so that a
//     rate-limited or unavailable endpoint is waited for until the budget is spent, never given
//     up on sooner;
//   - each attempt is bounded by Timeout and by the context's deadline less the margin: an
//     attempt runs past the budget's end only when RetryFor, not the context, set that end, and
//     then for Timeout at most;
//   - a request that fails after the end is not sent again, and no other request is sent.
//
// Once the budget is spent, the request that was failing and all the requests of the Write not
// sent yet have failed (see Dead letters): a Write stops sending by the budget's end plus at
// most one attempt, then dead-letters what is left or returns the failure. A Write whose
// requests take longer than its context allows even when the endpoint takes them all (a slow
// endpoint, a large Write: the runner's hold up to 1 MiB of records and give a Write one minute)
// fails in the same way for the requests it had no time left for.
//
// # Dead letters
//
// With DeadLetterTopic set, a request that was refused for good, or that still failed when the
// budget was spent, is produced to that topic (through DeadLetterAddr or DeadLetter, acks=all,
// with the Write's context), and Write carries on with the next request, so one bad batch does
// not stop the flow; when the budget was spent, the requests not sent yet go there too, and
// Write returns nil. Each record goes there unchanged (key, value, timestamp, headers) with
// these headers added (replacing any of the same name): HeaderError (the last failure; for a
// request not sent, ErrBudgetSpent's text and the Write's last failure, if there was one),
// HeaderStatus (the last HTTP status, "0" when there was no answer or no attempt),
// HeaderAttempts ("0" for a request not sent), and the record's origin in HeaderTopic,
// HeaderPartition and HeaderOffset. If the dead-letter topic does not take the records either,
// Write returns the error and the batch is replayed. Without DeadLetterTopic, a failed request
// fails Write (with an *Error) and the runner replays the batch after its restart backoff, for
// as long as the endpoint refuses it: a batch the endpoint will never take stops the flow until
// it is fixed. The context ending (the flow stopping, or the Write running out of time though
// the margin was kept, for instance because the dead-letter topic was slow) fails Write with
// its error and never dead-letters.
//
// # Body
//
// Each record is the JSON object
//
//	{"topic":"t","partition":0,"offset":42,"timestamp":1700000000000,
//	 "key":"k","value":"v","headers":{"h":"x"}}
//
// timestamp is Unix milliseconds; key is left out when the record has none, headers when it has
// none. key and value are JSON strings holding the bytes as text when they are valid UTF-8;
// otherwise they hold the bytes in standard base64 and the object says so with
// "key_encoding":"base64" or "value_encoding":"base64" (absent means text). JSON sends a
// request's records as one array (Content-Type application/json), NDJSON as one object per line,
// each ending in '\n' (application/x-ndjson). Headers set Content-Type too if it names one.
//
// # Concurrency
//
// The runner calls Open, Write and Close from one goroutine at a time; a Write sends its
// requests one after the other, in offset order. Stats may be called from any goroutine.
package http

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/net/http/httpguts"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/sink/produce"
	"github.com/weirhq/weir/storage"
)

// Headers added to the records of a dead-lettered request.
const (
	HeaderError     = "dlq.error"     // the last attempt's failure
	HeaderStatus    = "dlq.status"    // the last HTTP status, "0" when none came
	HeaderAttempts  = "dlq.attempts"  // how many times the request was sent
	HeaderTopic     = "dlq.topic"     // where the record was read
	HeaderPartition = "dlq.partition" //
	HeaderOffset    = "dlq.offset"    //
)

// Format is the layout of a request's body.
type Format int

// The formats.
const (
	JSON   Format = iota // a JSON array of records
	NDJSON               // one JSON record per line
)

// Defaults of Config.
const (
	DefaultTimeout    = 10 * time.Second
	DefaultBatchSize  = 100
	DefaultRetryFor   = 30 * time.Second
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
)

// Producer produces records to a topic and returns once every one is acknowledged with
// acks=all. *produce.Producer is one.
type Producer interface {
	Produce(ctx context.Context, topic string, recs []storage.Record) error
}

// Config configures an http sink.
type Config struct {
	// URL receives the requests (http or https). Required.
	URL string
	// Method is POST (the default), PUT or PATCH.
	Method string
	// Headers are set on every request.
	Headers map[string]string
	// Timeout bounds one attempt of a request, answer body included (default DefaultTimeout).
	Timeout time.Duration
	// BatchSize is the most records in one request (default DefaultBatchSize).
	BatchSize int
	// Format is the layout of a request's body (default JSON).
	Format Format
	// RetryFor is the retry budget of a whole Write, counted from its first failed attempt and
	// shared by all its requests (default DefaultRetryFor). The budget ends earlier when the Write's
	// context ends sooner (less a margin of a tenth of the time left, at most 2 s); see "The
	// Write's budget" in the package doc. When it is spent, the records of the failing request
	// and of the requests not sent yet are dead-lettered, or the Write fails.
	RetryFor time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts (defaults DefaultMinBackoff and
	// DefaultMaxBackoff); a Retry-After header overrides it. No wait lasts past the end of the
	// Write's budget.
	MinBackoff, MaxBackoff time.Duration
	// DeadLetterTopic, if set, receives the records of requests that failed for good; set
	// DeadLetterAddr or DeadLetter with it.
	DeadLetterTopic string
	// DeadLetterAddr is the client address of a node ("127.0.0.1:7420"): the sink connects in
	// Open and disconnects in Close.
	DeadLetterAddr string
	// DeadLetter produces the dead letters instead; the sink does not close it.
	DeadLetter Producer
	// Client sends the requests (default: a client of its own, which follows no redirect).
	// Its Timeout, if any, applies besides Timeout.
	Client *http.Client
	// Logger receives retries and dead letters (default: discarded).
	Logger *slog.Logger
	// Now is the clock of Retry-After dates and of the Write's budget (default time.Now).
	Now func() time.Time
}

// Validate reports a configuration that cannot work, naming the field at fault.
func (c Config) Validate() error {
	if c.URL == "" {
		return errors.New("http sink: URL is empty")
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return fmt.Errorf("http sink: URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("http sink: URL %q: want an http or https URL with a host", c.URL)
	}
	switch c.Method {
	case "", http.MethodPost, http.MethodPut, http.MethodPatch:
	default:
		return fmt.Errorf("http sink: Method %q: want POST, PUT or PATCH", c.Method)
	}
	for k, v := range c.Headers {
		// What net/http checks before it sends a request: a header it would refuse would fail
		// every attempt without reaching the endpoint.
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("http sink: Headers: bad header name %q: want an HTTP token", k)
		}
		if !httpguts.ValidHeaderFieldValue(v) {
			return fmt.Errorf("http sink: Headers: value of %q holds a control character", k)
		}
	}
	switch {
	case c.Timeout < 0:
		return fmt.Errorf("http sink: Timeout %v is negative", c.Timeout)
	case c.BatchSize < 0:
		return fmt.Errorf("http sink: BatchSize %d is negative", c.BatchSize)
	case c.Format != JSON && c.Format != NDJSON:
		return fmt.Errorf("http sink: unknown Format %d", c.Format)
	case c.RetryFor < 0:
		return fmt.Errorf("http sink: RetryFor %v is negative", c.RetryFor)
	case c.MinBackoff < 0 || c.MaxBackoff < 0:
		return fmt.Errorf("http sink: MinBackoff %v or MaxBackoff %v is negative", c.MinBackoff, c.MaxBackoff)
	case c.MinBackoff > 0 && c.MaxBackoff > 0 && c.MaxBackoff < c.MinBackoff:
		return fmt.Errorf("http sink: MaxBackoff %v is less than MinBackoff %v", c.MaxBackoff, c.MinBackoff)
	case c.DeadLetterAddr != "" && c.DeadLetter != nil:
		return errors.New("http sink: set DeadLetterAddr or DeadLetter, not both")
	case c.DeadLetterTopic == "" && (c.DeadLetterAddr != "" || c.DeadLetter != nil):
		return errors.New("http sink: DeadLetterAddr or DeadLetter set without DeadLetterTopic")
	case c.DeadLetterTopic != "" && c.DeadLetterAddr == "" && c.DeadLetter == nil:
		return errors.New("http sink: DeadLetterTopic set without DeadLetterAddr or DeadLetter")
	case c.DeadLetterTopic != "" && !validTopic(c.DeadLetterTopic):
		return fmt.Errorf("http sink: DeadLetterTopic %q: use 1 to 200 letters, digits, '.', '_' or '-'", c.DeadLetterTopic)
	}
	return nil
}

func validTopic(name string) bool {
	if name == "" || len(name) > 200 {
		return false
	}
	for _, c := range name {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ErrBudgetSpent is the Err of a request that was not sent because the Write's budget was spent
// (see the package doc).
var ErrBudgetSpent = errors.New("http sink: request not sent: the Write's retry budget is spent")

// Error is a request that failed for good: refused, retried until the Write's budget was spent,
// or not sent because it was spent (Attempts 0, Err wrapping ErrBudgetSpent).
type Error struct {
	Status    int  // the last HTTP status; 0 when no answer came
	Attempts  int  // how many times the request was sent
	Permanent bool // refused with a status that is not retried (else the budget was spent)
	Err       error
}

func (e *Error) Error() string {
	if e.Attempts == 0 {
		return e.Err.Error() // ErrBudgetSpent, wrapped
	}
	why := "retries spent"
	if e.Permanent {
		why = "refused"
	}
	return fmt.Sprintf("http sink: %s after %d attempts: %v", why, e.Attempts, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Stats counts what the sink did since New.
type Stats struct {
	Requests     int64 // attempts sent, retries included
	Records      int64 // records the endpoint accepted (with 2xx)
	DeadLettered int64 // records produced to the dead-letter topic
}

// Sink posts records to an HTTP endpoint.
type Sink struct {
	cfg        Config
	client     *http.Client
	ownsClient bool
	contentTyp string

	dl    Producer
	owned *produce.Producer // the dead-letter producer Open dialled; nil otherwise

	requests, records, deadLettered atomic.Int64
}

// New returns an http sink; it connects to the endpoint (and the dead-letter node) only in
// Open and Write.
func New(cfg Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Method == "" {
		cfg.Method = http.MethodPost
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.RetryFor == 0 {
		cfg.RetryFor = DefaultRetryFor
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = DefaultMinBackoff
		if cfg.MaxBackoff > 0 {
			cfg.MinBackoff = min(cfg.MinBackoff, cfg.MaxBackoff)
		}
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = max(DefaultMaxBackoff, cfg.MinBackoff)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Sink{cfg: cfg, client: cfg.Client, contentTyp: "application/json"}
	if cfg.Format == NDJSON {
		s.contentTyp = "application/x-ndjson"
	}
	if s.client == nil {
		s.ownsClient = true
		s.client = &http.Client{
			Transport:     http.DefaultTransport.(*http.Transport).Clone(),
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return s, nil
}

// Open implements connectors.Sink: with DeadLetterAddr it connects to that node.
func (s *Sink) Open(context.Context) error {
	switch {
	case s.cfg.DeadLetter != nil:
		s.dl = s.cfg.DeadLetter
	case s.cfg.DeadLetterAddr != "":
		if s.owned != nil {
			return errors.New("http sink: Open of an open sink")
		}
		p, err := produce.Dial(s.cfg.DeadLetterAddr)
		if err != nil {
			return fmt.Errorf("http sink: dead-letter node: %w", err)
		}
		s.owned, s.dl = p, p
	}
	return nil
}

// Close implements connectors.Sink.
func (s *Sink) Close() error {
	if s.ownsClient {
		s.client.CloseIdleConnections()
	}
	s.dl = nil
	if s.owned == nil {
		return nil
	}
	err := s.owned.Close()
	s.owned = nil
	return err
}

// Stats returns the sink's counts.
func (s *Sink) Stats() Stats {
	return Stats{Requests: s.requests.Load(), Records: s.records.Load(), DeadLettered: s.deadLettered.Load()}
}

// Write implements connectors.Sink: it sends msgs in requests of up to BatchSize records, in
// order, and returns nil when each was accepted or dead-lettered.
func (s *Sink) Write(ctx context.Context, msgs []connectors.Message) error {
	b := s.budget(ctx)
	for len(msgs) > 0 {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("http sink: %w", err)
		}
		if !b.end.IsZero() && !s.cfg.Now().Before(b.end) {
			err := ErrBudgetSpent
			if b.last != nil {
				err = fmt.Errorf("%w; the last failure: %v", ErrBudgetSpent, b.last)
			}
			return s.deadLetter(ctx, msgs, &Error{Err: err})
		}
		n := min(len(msgs), s.cfg.BatchSize)
		if err := s.deliver(ctx, b, msgs[:n]); err != nil {
			return err
		}
		msgs = msgs[n:]
	}
	return nil
}

// maxMargin bounds the time of a Write's context kept for dead letters (a tenth of what the
// context has left when Write is called, at most maxMargin).
const maxMargin = 2 * time.Second

// budget is the time a Write has for its requests and their retries, on the clock Now.
type budget struct {
	end  time.Time // no wait lasts past it, no failure after it is retried; zero: none yet
	hard time.Time // no attempt lasts past it: the context's deadline less the margin; zero if none
	last error     // the Write's last failed attempt, if any
}

// budget returns the budget of a Write starting now with ctx: until a request fails, only the
// context's deadline (less the margin) bounds it.
func (s *Sink) budget(ctx context.Context) *budget {
	now := s.cfg.Now()
	b := &budget{}
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl) // the context's clock, which Now may not be
		left -= min(left/10, maxMargin)
		b.hard = now.Add(left)
		b.end = b.hard
	}
	return b
}

// failed starts the retry budget at the Write's first failure: RetryFor from now, or the
// context's end if that comes first.
func (b *budget) failed(now time.Time, retryFor time.Duration, err error) {
	if b.last == nil {
		if e := now.Add(retryFor); b.end.IsZero() || e.Before(b.end) {
			b.end = e
		}
	}
	b.last = err
}

// deliver sends one request's records, retrying as the package doc says, and dead-letters them
// if that fails.
func (s *Sink) deliver(ctx context.Context, b *budget, msgs []connectors.Message) error {
	body, err := encode(s.cfg.Format, msgs)
	if err != nil {
		return fmt.Errorf("http sink: encode: %w", err)
	}
	backoff := s.cfg.MinBackoff
	var fail *Error
	for attempt := 1; ; attempt++ {
		timeout := s.cfg.Timeout
		if !b.hard.IsZero() {
			timeout = min(timeout, b.hard.Sub(s.cfg.Now()))
		}
		if timeout <= 0 {
			// A wait that ran to the end of the budget set by the context: no time for
			// another attempt.
			if fail == nil {
				fail = &Error{Err: ErrBudgetSpent}
			}
			return s.deadLetter(ctx, msgs, fail)
		}
		status, retryAfter, err := s.send(ctx, timeout, body)
		if err == nil {
			s.records.Add(int64(len(msgs)))
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("http sink: %w", ctx.Err())
		}
		b.failed(s.cfg.Now(), s.cfg.RetryFor, err)
		fail = &Error{Status: status, Attempts: attempt, Err: err}
		if !retryable(status) {
			fail.Permanent = true
			return s.deadLetter(ctx, msgs, fail)
		}
		left := b.end.Sub(s.cfg.Now())
		if left <= 0 {
			return s.deadLetter(ctx, msgs, fail)
		}
		wait := backoff
		if retryAfter >= 0 {
			wait = max(retryAfter, s.cfg.MinBackoff) // no faster than MinBackoff, even if asked
		}
		backoff = min(2*backoff, s.cfg.MaxBackoff)
		// Never give up on a long wait alone: wait what is left, and try once more.
		wait = min(wait, left)
		s.cfg.Logger.Info("http sink: request failed; retrying", "url", s.cfg.URL, "status", status,
			"attempt", attempt, "wait", wait, "retry_after", retryAfter, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("http sink: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// retryable says whether a request that failed with status (0: no answer) is sent again.
func retryable(status int) bool {
	return status == 0 || status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500
}

// send makes one attempt, bounded by timeout. It returns the status (0 when no answer came),
// the wait a Retry-After header asked for (-1 when none) and, unless the status is 2xx, an
// error.
func (s *Sink) send(ctx context.Context, timeout time.Duration, body []byte) (int, time.Duration, error) {
	s.requests.Add(1)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, s.cfg.Method, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return 0, -1, err
	}
	req.Header.Set("Content-Type", s.contentTyp)
	for k, v := range s.cfg.Headers {
		req.Header.Set(k, v)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, -1, err
	}
	defer resp.Body.Close()
	// Read a little of the answer for the error, and some more so the connection can be reused.
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, -1, nil
	}
	retryAfter := time.Duration(-1)
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), s.cfg.Now())
	}
	err = fmt.Errorf("%s %s: %s", s.cfg.Method, s.cfg.URL, resp.Status)
	if text := strings.TrimSpace(strings.ToValidUTF8(string(head), "?")); text != "" {
		err = fmt.Errorf("%w: %s", err, text)
	}
	return resp.StatusCode, retryAfter, err
}

// parseRetryAfter reads a Retry-After value, delay-seconds or an HTTP date, as a wait from now;
// -1 when v is empty or neither.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return -1
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return -1
		}
		return time.Duration(min(secs, int64(365*24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return -1
}

// deadLetter produces msgs to the dead-letter topic and returns nil, or returns fail when there
// is no dead-letter topic or it did not take them.
func (s *Sink) deadLetter(ctx context.Context, msgs []connectors.Message, fail *Error) error {
	if s.dl == nil {
		return fail
	}
	recs := make([]storage.Record, len(msgs))
	for i, m := range msgs {
		h := make(map[string]string, len(m.Headers)+6)
		for k, v := range m.Headers {
			h[k] = v
		}
		h[HeaderError] = fail.Err.Error()
		h[HeaderStatus] = strconv.Itoa(fail.Status)
		h[HeaderAttempts] = strconv.Itoa(fail.Attempts)
		h[HeaderTopic] = m.Topic
		h[HeaderPartition] = strconv.FormatInt(int64(m.Partition), 10)
		h[HeaderOffset] = strconv.FormatInt(m.Offset, 10)
		recs[i] = storage.Record{Key: m.Key, Value: m.Value, Headers: h, Timestamp: m.Timestamp}
	}
	if err := s.dl.Produce(ctx, s.cfg.DeadLetterTopic, recs); err != nil {
		return fmt.Errorf("%w; dead-letter topic %s: %w", fail, s.cfg.DeadLetterTopic, err)
	}
	s.deadLettered.Add(int64(len(msgs)))
	s.cfg.Logger.Warn("http sink: request dead-lettered", "url", s.cfg.URL, "topic", s.cfg.DeadLetterTopic,
		"records", len(msgs), "first", fmt.Sprintf("%s/%d@%d", msgs[0].Topic, msgs[0].Partition, msgs[0].Offset),
		"err", fail)
	return nil
}

// record is a record in a request's body (see the package doc).
type record struct {
	Topic         string            `json:"topic"`
	Partition     int32             `json:"partition"`
	Offset        int64             `json:"offset"`
	Timestamp     int64             `json:"timestamp"`
	Key           *string           `json:"key,omitempty"`
	KeyEncoding   string            `json:"key_encoding,omitempty"`
	Value         string            `json:"value"`
	ValueEncoding string            `json:"value_encoding,omitempty"`
	Headers       map[string]string `json:"headers,omitempty"`
}

// text returns b as a JSON string's content: itself when valid UTF-8, else base64 and
// "base64" as its encoding.
func text(b []byte) (string, string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return base64.StdEncoding.EncodeToString(b), "base64"
}

// encode lays msgs out in format.
func encode(format Format, msgs []connectors.Message) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if format == JSON {
		buf.WriteByte('[')
	}
	for i, m := range msgs {
		r := record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Timestamp: m.Timestamp, Headers: m.Headers}
		if len(m.Key) > 0 {
			k, e := text(m.Key)
			r.Key, r.KeyEncoding = &k, e
		}
		r.Value, r.ValueEncoding = text(m.Value)
		if format == JSON && i > 0 {
			buf.WriteByte(',')
		}
		if err := enc.Encode(&r); err != nil {
			return nil, err
		}
		if format == JSON {
			buf.Truncate(buf.Len() - 1) // Encode's newline
		}
	}
	if format == JSON {
		buf.WriteByte(']')
	}
	return buf.Bytes(), nil
}
