package exec

import (
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
)

// readAll reads until io.EOF, or until n records, or the time is up.
func readAll(t *testing.T, s *Source, n int, within time.Duration) ([]string, error) {
	t.Helper()
	var out []string
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) && (n <= 0 || len(out) < n) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		recs, pos, err := s.Read(ctx)
		cancel()
		if pos != nil {
			t.Fatalf("position %x, want none", pos)
		}
		for _, r := range recs {
			out = append(out, string(r.Value))
		}
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

func open(t *testing.T, cfg Config) *Source {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestReadsEveryLineThenEnds: with Never, every line the command prints is read, in order, and
// the source ends when the command exits.
func TestReadsEveryLineThenEnds(t *testing.T) {
	s := open(t, Config{Command: []string{"sh", "-c", "seq 1 5000"}})
	got, err := readAll(t, s, 0, 20*time.Second)
	if !errors.Is(err, io.EOF) || len(got) != 5000 {
		t.Fatalf("%d lines, %v; want 5000 and EOF", len(got), err)
	}
	for i, v := range got {
		if v != strconv.Itoa(i+1) {
			t.Fatalf("line %d is %q", i, v)
		}
	}
}

// TestRestartPolicies: Always runs the command again after each exit; OnFailure only after a
// failing exit.
func TestRestartPolicies(t *testing.T) {
	s := open(t, Config{Command: []string{"sh", "-c", "echo a; echo b"}, Restart: Always, RestartDelay: 10 * time.Millisecond})
	got, err := readAll(t, s, 6, 10*time.Second)
	if err != nil || strings.Join(got[:6], ",") != "a,b,a,b,a,b" {
		t.Fatalf("Always: %q, %v", got, err)
	}
	s = open(t, Config{Command: []string{"sh", "-c", "echo once"}, Restart: OnFailure, RestartDelay: 10 * time.Millisecond})
	got, err = readAll(t, s, 0, 10*time.Second)
	if !errors.Is(err, io.EOF) || strings.Join(got, ",") != "once" {
		t.Fatalf("OnFailure, exit 0: %q, %v", got, err)
	}
	s = open(t, Config{Command: []string{"sh", "-c", "echo x; exit 3"}, Restart: OnFailure, RestartDelay: 10 * time.Millisecond})
	got, err = readAll(t, s, 3, 10*time.Second)
	if err != nil || strings.Join(got[:3], ",") != "x,x,x" {
		t.Fatalf("OnFailure, exit 3: %q, %v", got, err)
	}
}

// TestCloseStopsTheCommand: Close stops a command that would run for ever (and its children).
func TestCloseStopsTheCommand(t *testing.T) {
	s := open(t, Config{Command: []string{"sh", "-c", "while true; do echo tick; sleep 0.01; done"}})
	if got, err := readAll(t, s, 3, 10*time.Second); err != nil || len(got) < 3 {
		t.Fatalf("%q, %v", got, err)
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Close took %v", d)
	}
}

// TestBadConfig: each bad setting is refused with an error naming it.
func TestBadConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "no command"},
		{Config{Command: []string{"no-such-command-weir"}}, `command "no-such-command-weir"`},
		{Config{Command: []string{"sh"}, Restart: 9}, "unknown restart policy 9"},
	} {
		if _, err := New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error saying %q", c.cfg, err, c.want)
		}
	}
}
