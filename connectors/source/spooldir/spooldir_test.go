package spooldir

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// write creates a file in dir with n lines "name-i", modified at the given time.
func write(t *testing.T, dir, name string, n int, mod time.Time) {
	t.Helper()
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%s-%d\n", name, i)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mod, mod); err != nil {
		t.Fatal(err)
	}
}

// run reads like the runner: Read, then Acked with the position, until want lines or nothing
// comes for a while. It returns the lines and the last position.
func run(t *testing.T, s *Source, want int) ([]string, []byte) {
	t.Helper()
	var got []string
	var pos []byte
	for idle := 0; len(got) < want && idle < 20; {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		recs, p, err := s.Read(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			idle++
		}
		for _, r := range recs {
			got = append(got, string(r.Value))
		}
		if p != nil {
			pos = p
			s.Acked(p)
		}
	}
	return got, pos
}

func newSource(t *testing.T, cfg Config) *Source {
	t.Helper()
	cfg.Poll = 10 * time.Millisecond
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestFilesOldestFirstThenDone: every line of every file, oldest file first, each file marked
// done once read (renamed, or deleted); hidden files are left alone.
func TestFilesOldestFirstThenDone(t *testing.T) {
	for _, del := range []bool{false, true} {
		dir := t.TempDir()
		base := time.Now().Add(-time.Hour)
		write(t, dir, "b", 5, base)
		write(t, dir, "a", 3, base.Add(time.Minute))
		write(t, dir, ".hidden", 2, base)
		s := newSource(t, Config{Dir: dir, Batch: 2, Delete: del})
		if err := s.Open(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
		got, _ := run(t, s, 8)
		if want := "b-0 b-1 b-2 b-3 b-4 a-0 a-1 a-2"; strings.Join(got, " ") != want {
			t.Fatalf("delete %v: lines %q, want %q", del, got, want)
		}
		run(t, s, 0) // one more Read marks the last file done
		all, _ := filepath.Glob(filepath.Join(dir, "*"))
		var names []string
		for _, n := range all {
			if n = filepath.Base(n); !strings.HasPrefix(n, ".") {
				names = append(names, n)
			}
		}
		want := "a.COMPLETED b.COMPLETED"
		if del {
			want = ""
		}
		if strings.Join(names, " ") != want {
			t.Fatalf("delete %v: directory holds %q, want %q", del, names, want)
		}
		if _, err := os.Stat(filepath.Join(dir, ".hidden")); err != nil {
			t.Fatalf("hidden file: %v", err)
		}
	}
}

// TestResumeAfterCrash: a new source opened at the last committed position goes on at the next
// line; a file found fully read (a crash before its rename) is marked done at Open.
func TestResumeAfterCrash(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "f", 10, time.Now().Add(-time.Minute))
	s := newSource(t, Config{Dir: dir, Batch: 4})
	s.Open(context.Background(), nil)
	ctx := context.Background()
	recs, pos, err := s.Read(ctx)
	if err != nil || len(recs) != 4 {
		t.Fatalf("%d lines, %v", len(recs), err)
	}
	s.Close() // the crash: pos was committed, nothing else
	s2 := newSource(t, Config{Dir: dir, Batch: 4})
	if err := s2.Open(ctx, pos); err != nil {
		t.Fatal(err)
	}
	got, last := run(t, s2, 6)
	if strings.Join(got, " ") != "f-4 f-5 f-6 f-7 f-8 f-9" {
		t.Fatalf("after the crash: %q", got)
	}
	// Crash again after the last commit, before the rename.
	s2.Close()
	os.Rename(filepath.Join(dir, "f.COMPLETED"), filepath.Join(dir, "f")) // as if not renamed yet
	s3 := newSource(t, Config{Dir: dir})
	if err := s3.Open(ctx, last); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "f.COMPLETED")); err != nil {
		t.Fatalf("a file read to its end before a crash was not marked done at Open: %v", err)
	}
	if got, _ := run(t, s3, 0); len(got) != 0 {
		t.Fatalf("read again: %q", got)
	}
}

// TestBadFileQuarantined: a file with a line over MaxLine goes to the quarantine directory with
// the reason; the next file is read.
func TestBadFileQuarantined(t *testing.T) {
	dir := t.TempDir()
	base := time.Now().Add(-time.Hour)
	if err := os.WriteFile(filepath.Join(dir, "bad"), []byte("ok\n"+strings.Repeat("x", 100)+"\nafter\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(filepath.Join(dir, "bad"), base, base)
	write(t, dir, "good", 2, base.Add(time.Minute))
	s := newSource(t, Config{Dir: dir, MaxLine: 50})
	s.Open(context.Background(), nil)
	got, _ := run(t, s, 3)
	if strings.Join(got, " ") != "ok good-0 good-1" {
		t.Fatalf("lines %q", got)
	}
	reason, err := os.ReadFile(filepath.Join(dir, ".quarantine", "bad.error"))
	if err != nil || !strings.Contains(string(reason), "line at byte 3 is longer than 50 bytes") {
		t.Fatalf("quarantine reason %q, %v", reason, err)
	}
}

// TestFileEndingAtABatch: a file whose end a Read finds with no line left is marked done at the
// next Read, without an acknowledgement to wait for.
func TestFileEndingAtABatch(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "f", 2, time.Now().Add(-time.Minute))
	s := newSource(t, Config{Dir: dir, Batch: 2})
	s.Open(context.Background(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	for range 3 {
		if _, _, err := s.Read(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "f.COMPLETED")); err != nil {
		t.Fatalf("not marked done: %v", err)
	}
}

func TestBadConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "no directory") {
		t.Fatalf("no dir: %v", err)
	}
	if _, err := New(Config{Dir: "/nonexistent/weir"}); err == nil || !strings.Contains(err.Error(), "is not a directory") {
		t.Fatalf("missing dir: %v", err)
	}
	s := newSource(t, Config{Dir: t.TempDir()})
	if err := s.Open(context.Background(), []byte{1, 2}); err == nil || !strings.Contains(err.Error(), "position of 2 bytes") {
		t.Fatalf("bad position: %v", err)
	}
}

func FuzzPosition(f *testing.F) {
	f.Add(encodePosition("app.log", 42, 123))
	f.Add(append(make([]byte, 16), '.', '.'))
	f.Add(append([]byte{0xff}, make([]byte, 16)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		name, ino, off, err := decodePosition(b)
		if err != nil {
			return
		}
		if off < 0 || strings.Contains(name, "/") || name == "" || strings.HasPrefix(name, ".") {
			t.Fatalf("accepted %q at %d", name, off)
		}
		if n2, i2, o2, err := decodePosition(encodePosition(name, ino, off)); err != nil || n2 != name || i2 != ino || o2 != off {
			t.Fatalf("round trip of %q %d %d: %q %d %d %v", name, ino, off, n2, i2, o2, err)
		}
	})
}
