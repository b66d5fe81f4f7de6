package http

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/internal/testcert"
	"github.com/weirhq/weir/storage"
)

func TestParseBody(t *testing.T) {
	recs, err := parseBody("application/json; charset=utf-8", []byte(`[{"headers":{"a":"1"},"body":"x"},{"body":"y","key":"k"}]`), 7)
	if err != nil || len(recs) != 2 || string(recs[0].Value) != "x" || recs[0].Headers["a"] != "1" ||
		string(recs[1].Key) != "k" || recs[1].Timestamp != 7 {
		t.Fatalf("%+v, %v", recs, err)
	}
	recs, err = parseBody("text/plain", []byte("raw line"), 7)
	if err != nil || len(recs) != 1 || string(recs[0].Value) != "raw line" {
		t.Fatalf("raw: %+v, %v", recs, err)
	}
	for _, c := range []struct{ ct, body, want string }{
		{"application/json", `[{"body":"x"},`, "invalid JSON"},
		{"application/json", `{"body":"x"}`, "want a JSON array"},
		{"application/json", `[{"headers":{"a":1},"body":"x"}]`, "want a JSON array"},
		{"application/json", `[{"headers":{}}]`, `event 0 has no "body"`},
		{"text/plain", ``, "empty body"},
	} {
		if _, err := parseBody(c.ct, []byte(c.body), 0); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %q: %v, want an error saying %q", c.ct, c.body, err, c.want)
		}
	}
}

func FuzzParseBody(f *testing.F) {
	f.Add(true, []byte(`[{"headers":{"a":"1"},"body":"x","key":"k"}]`))
	f.Add(true, []byte(`[{"body":"y"}]`))
	f.Add(false, []byte("raw"))
	f.Fuzz(func(t *testing.T, isJSON bool, b []byte) {
		ct := "text/plain"
		if isJSON {
			ct = "application/json"
		}
		recs, err := parseBody(ct, b, 1)
		if err == nil && !isJSON && (len(recs) != 1 || string(recs[0].Value) != string(b)) {
			t.Fatalf("raw body %q gave %+v", b, recs)
		}
	})
}

// curlPath is curl's path, or the test is skipped.
func curlPath(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed")
	}
	return path
}

// curl runs curl and returns the status and body; it may run off the test's goroutine.
func curl(path string, args ...string) (code int, body string, err error) {
	out, err := exec.Command(path, append([]string{"-s", "-w", "\n%{http_code}", "--max-time", "10"}, args...)...).Output()
	if err != nil {
		return 0, "", fmt.Errorf("curl %v: %w", args, err)
	}
	s := strings.TrimRight(string(out), "\n")
	i := strings.LastIndexByte(s, '\n')
	fmt.Sscan(s[i+1:], &code)
	if i < 0 {
		return code, "", nil
	}
	return code, strings.TrimRight(s[:i], "\n"), nil
}

func open(t *testing.T, cfg Config) (*Source, string) {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, "http://" + s.Addr().String() + "/"
}

func read(t *testing.T, s *Source) []storage.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	recs, pos, err := s.Read(ctx)
	if err != nil || pos != nil {
		t.Fatalf("read: %v, position %x", err, pos)
	}
	return recs
}

// TestAnswerAfterAcknowledgement: curl's POST is answered 200 only when the runner reports the
// events acknowledged (Acked), not when they are read.
func TestAnswerAfterAcknowledgement(t *testing.T) {
	path := curlPath(t)
	s, url := open(t, Config{})
	type answer struct {
		code int
		body string
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		code, body, err := curl(path, "-H", "Content-Type: application/json", "--data", `[{"headers":{"h":"1"},"body":"a"},{"body":"b"}]`, url)
		got <- answer{code, body, err}
	}()
	recs := read(t, s)
	if len(recs) != 2 || string(recs[0].Value) != "a" || recs[0].Headers["h"] != "1" || string(recs[1].Value) != "b" {
		t.Fatalf("records %+v", recs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, _, _ = s.Read(ctx) // reading again is no acknowledgement
	cancel()
	select {
	case a := <-got:
		t.Fatalf("answered %d %q %v before the topic acknowledged", a.code, a.body, a.err)
	case <-time.After(300 * time.Millisecond):
	}
	s.Acked(nil)
	a := <-got
	if a.err != nil || a.code != 200 || a.body != `{"accepted":2}` {
		t.Fatalf("answer %d %q %v", a.code, a.body, a.err)
	}
}

// TestBadRequests: each bad request gets its status and a reason.
func TestBadRequests(t *testing.T) {
	path := curlPath(t)
	_, url := open(t, Config{MaxBody: 64})
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{url}, 405, "only POST"},
		{[]string{"-H", "Content-Type: application/json", "--data", `[{"body":`, url}, 400, "invalid JSON at byte"},
		{[]string{"-H", "Content-Type: application/json", "--data", `[{"headers":{}}]`, url}, 400, `event 0 has no "body"`},
		{[]string{"--data", strings.Repeat("x", 100), url}, 413, "body over 64 bytes"},
	} {
		code, body, err := curl(path, c.args...)
		if err != nil || code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("curl %v: %d %q %v, want %d saying %q", c.args, code, body, err, c.code, c.want)
		}
	}
}

// TestOverloadAndClose: with MaxPending events waiting, the next request gets 503; closing the
// source answers the waiting ones 503 too (their clients send them again).
func TestOverloadAndClose(t *testing.T) {
	path := curlPath(t)
	s, url := open(t, Config{MaxPending: 2})
	first := make(chan int, 1)
	go func() {
		code, _, _ := curl(path, "-H", "Content-Type: application/json", "--data", `[{"body":"a"},{"body":"b"}]`, url)
		first <- code
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		q := s.queued
		s.mu.Unlock()
		if q == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first request was not queued")
		}
		time.Sleep(10 * time.Millisecond)
	}
	code, body, err := curl(path, "--data", "c", url)
	if err != nil || code != 503 || !strings.Contains(body, "overloaded: 2 events") {
		t.Fatalf("over the limit: %d %q %v", code, body, err)
	}
	s.Close()
	if code := <-first; code != 503 {
		t.Fatalf("a waiting request got %d when the source closed, want 503", code)
	}
}

// TestTLS: with Config.TLS the source serves HTTPS; curl, trusting the test certificate,
// posts over it.
func TestTLS(t *testing.T) {
	path := curlPath(t)
	cert := testcert.New(t)
	s, url := open(t, Config{TLS: cert.Server})
	url = strings.Replace(url, "http://", "https://", 1)
	done := make(chan error, 1)
	go func() {
		code, body, err := curl(path, "--cacert", cert.PEMFile, "--data", "secure", url)
		if err == nil && (code != 200 || body != `{"accepted":1}`) {
			err = fmt.Errorf("answer %d %q", code, body)
		}
		done <- err
	}()
	if recs := read(t, s); len(recs) != 1 || string(recs[0].Value) != "secure" {
		t.Fatalf("records %+v", recs)
	}
	s.Acked(nil)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if code, _, err := curl(path, "--data", "x", url); err == nil && code == 200 {
		t.Fatal("a client that does not trust the certificate got through")
	}
}
