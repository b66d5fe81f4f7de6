package main

import (
	"context"
	"github.com/weirhq/weir/internal/syncbuf"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

func waitOutput(t *testing.T, out *syncbuf.Buffer, re *regexp.Regexp) []string {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not in the output:\n%s", re, out.String())
		}
	}
}

// TestEndToEnd: events of each type reach their topic with an id, after a 200.
func TestEndToEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncbuf.Buffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-data", t.TempDir(), "-addr", "127.0.0.1:0"}, out) }()
	url := waitOutput(t, out, regexp.MustCompile(`listening: (\S+)`))[1]
	body := `[{"headers":{"type":"click"},"body":"buy"},{"headers":{"type":"view"},"body":"home"},{"body":"ping"}]`
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for _, want := range []string{`clicks id=\S{36}: buy`, `views id=\S{36}: home`, `other id=\S{36}: ping`} {
		waitOutput(t, out, regexp.MustCompile(want))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
