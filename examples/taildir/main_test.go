package main

import (
	"context"
	"github.com/weirhq/weir/internal/syncbuf"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func waitOutput(t *testing.T, out *syncbuf.Buffer, what, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %q not in the output:\n%s", what, want, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func appendTo(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// TestEndToEnd: a stack trace is one record with its level, DEBUG lines never reach the topic,
// a rotated file's last lines and the new file's lines arrive, and a second run with the same
// data goes on without printing anything twice.
func TestEndToEnd(t *testing.T) {
	logs, data := t.TempDir(), t.TempDir()
	app := filepath.Join(logs, "app.log")
	appendTo(t, app, "2026-12-01 10:00:00 INFO started\n2026-12-01 10:00:01 DEBUG noise\n"+
		"2026-12-01 10:00:02 ERROR failed\njava.lang.IllegalStateException: boom\n\tat App.main(App.java:3)\n")
	args := []string{"-data", data, "-files", filepath.Join(logs, "*.log"), "-multiline", `^\d{4}-\d{2}-\d{2} `}
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncbuf.Buffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, out) }()
	waitOutput(t, out, "the first line", app+" level=INFO: 2026-12-01 10:00:00 INFO started")
	// The stack trace ends at the next record's first line.
	appendTo(t, app, "2026-12-01 10:00:03 WARN slow\n")
	waitOutput(t, out, "the stack trace, joined", app+" level=ERROR: 2026-12-01 10:00:02 ERROR failed\n    | java.lang.IllegalStateException: boom\n    | \tat App.main(App.java:3)\n")
	// Rotation by rename: the old file's last line, then the new file's.
	appendTo(t, app, "2026-12-01 10:00:04 INFO before rotation\n")
	if err := os.Rename(app, filepath.Join(logs, "app.log.1")); err != nil {
		t.Fatal(err)
	}
	appendTo(t, app, "2026-12-01 10:00:05 INFO after rotation\n2026-12-01 10:00:06 INFO last of run one\n")
	waitOutput(t, out, "the line after the rotation", "after rotation")
	if before, after := strings.Index(out.String(), "before rotation"), strings.Index(out.String(), "after rotation"); before < 0 || before > after {
		t.Fatalf("the old file's last line is not printed before the new file's:\n%s", out.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	first := out.String()
	if strings.Contains(first, "DEBUG") {
		t.Fatalf("a DEBUG line reached the topic:\n%s", first)
	}

	// Run two: lines written while it was stopped, and nothing printed again.
	appendTo(t, app, "2026-12-01 10:00:07 INFO while stopped\n2026-12-01 10:00:08 INFO run two\n")
	ctx, cancel = context.WithCancel(context.Background())
	out2 := &syncbuf.Buffer{}
	go func() { done <- run(ctx, args, out2) }()
	waitOutput(t, out2, "the line written while stopped", "while stopped")
	time.Sleep(500 * time.Millisecond) // anything printed twice would be printed by now
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, l := range regexp.MustCompile(`INFO \w[^\n]*`).FindAllString(first, -1) {
		if strings.Contains(out2.String(), l) {
			t.Fatalf("%q printed again by the second run:\n%s", l, out2.String())
		}
	}
}

func TestBadFlags(t *testing.T) {
	for args, want := range map[string]string{
		"":                      "-files: no file pattern given",
		"-files [x":             "syntax error in pattern",
		"-files x -multiline (": "-multiline: error parsing regexp",
		"-files x -drop (":      "-drop: regex-filter interceptor",
		"-files x extra":        `unexpected argument "extra"`,
	} {
		err := run(context.Background(), strings.Fields(args), &syncbuf.Buffer{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", args, err, want)
		}
	}
}
