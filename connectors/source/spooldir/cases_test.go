package spooldir

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/storage"
)

// A line longer than the 64 KiB bufio buffer (but under MaxLine, 1 MiB by default) must come
// out intact. Read keeps `full` aliasing the bufio buffer across the next ReadSlice, so its first
// 64 KiB are overwritten by the bytes that follow.
func TestLongLineNotCorrupted(t *testing.T) {
	dir := t.TempDir()
	line := append(bytes.Repeat([]byte("a"), 64<<10), bytes.Repeat([]byte("b"), 5000)...)
	data := append(append(bytes.Clone(line), '\n'), []byte("next\n")...)
	if err := os.WriteFile(filepath.Join(dir, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	s := newSource(t, Config{Dir: dir})
	s.Open(context.Background(), nil)
	recs, _, err := s.Read(context.Background())
	if err != nil || len(recs) != 2 {
		t.Fatalf("%d records, %v", len(recs), err)
	}
	if !bytes.Equal(recs[0].Value, line) {
		t.Fatalf("line corrupted: starts %q, want %q", recs[0].Value[:12], line[:12])
	}
}

// A file dropped under the name of one already done, with the committed position still naming
// the old one (nothing read since), is marked done at Open without a line read (or read from
// the old offset when it is longer).
func TestReplacedFileSameName(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "events", 10, time.Now().Add(-time.Hour))
	s := newSource(t, Config{Dir: dir})
	s.Open(context.Background(), nil)
	_, last := run(t, s, 10)
	run(t, s, 0)
	if _, err := os.Stat(filepath.Join(dir, "events.COMPLETED")); err != nil {
		t.Fatal(err)
	}
	write(t, dir, "events", 5, time.Now()) // the next drop, same name
	s.Close()                              // an actor restart: Close, Open(last committed)
	if err := s.Open(context.Background(), last); err != nil {
		t.Fatal(err)
	}
	got, _ := run(t, s, 5)
	if len(got) != 5 {
		t.Fatalf("new file under an old name: %d lines read, want 5 (%q)", len(got), got)
	}
}

// Lines returned before an overlong line are in the batch in flight; the file is quarantined at
// once, so a crash before the commit loses them (Open of the old position finds no file).
func TestQuarantineWaitsForTheLinesBefore(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "bad"), []byte("ok\n"+strings.Repeat("x", 100)+"\n"), 0o644)
	s := newSource(t, Config{Dir: dir, MaxLine: 50})
	s.Open(context.Background(), nil)
	recs, _, _ := s.Read(context.Background())
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	s.Close() // crash: nothing committed
	s2 := newSource(t, Config{Dir: dir, MaxLine: 50})
	s2.Open(context.Background(), nil)
	if got, _ := run(t, s2, 1); len(got) != 1 {
		t.Fatalf("line of the unacknowledged batch lost after a crash: %q", got)
	}
}

// TestQuarantineFailureIsAnError: a bad file that cannot be moved to the quarantine makes Read
// fail, naming both reasons; its good line is not read again.
func TestQuarantineFailureIsAnError(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(t.TempDir(), "file")
	os.WriteFile(blocker, nil, 0o644)
	os.WriteFile(filepath.Join(dir, "bad"), []byte("ok\n"+strings.Repeat("x", 100)+"\n"), 0o644)
	s := newSource(t, Config{Dir: dir, MaxLine: 50, Quarantine: filepath.Join(blocker, "q")})
	s.Open(context.Background(), nil)
	var lines []string
	var err error
	for i := 0; i < 5 && err == nil; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		var recs []storage.Record
		recs, _, err = s.Read(ctx)
		cancel()
		for _, r := range recs {
			lines = append(lines, string(r.Value))
		}
	}
	if err == nil || !strings.Contains(err.Error(), "longer than 50 bytes") || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("error %v", err)
	}
	if strings.Join(lines, " ") != "ok" {
		t.Fatalf("lines %q, want the good one once", lines)
	}
}

// CRLF and a last line without newline: resuming at every committed position reads each line
// exactly once (this one passes).
func TestCRLFResumeEachLine(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte("a\r\n\r\nb\r\nc"), 0o644)
	var got []string
	var pos []byte
	for range 6 {
		s := newSource(t, Config{Dir: dir, Batch: 1})
		if err := s.Open(context.Background(), pos); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		recs, p, _ := s.Read(ctx)
		cancel()
		for _, r := range recs {
			got = append(got, string(r.Value))
		}
		if p != nil {
			pos = p
		}
		s.Close()
	}
	if strings.Join(got, "|") != "a||b|c" {
		t.Fatalf("%q", got)
	}
}
