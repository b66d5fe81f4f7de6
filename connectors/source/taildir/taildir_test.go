package taildir

import (
	"bytes"
	"context"
	"fmt"
	"github.com/weirhq/weir/internal/syncbuf"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirhq/weir/storage"
)

// tailer drives a Source as the flow runner does: Read, then "acknowledge" (keep the records
// and the position) or "crash" (drop the batch, Close, Open at the last kept position).
type tailer struct {
	t   *testing.T
	cfg Config
	s   *Source
	pos []byte
	got []storage.Record
}

func newTailer(t *testing.T, cfg Config) *tailer {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tl := &tailer{t: t, cfg: cfg, s: s}
	if err := s.Open(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tl.s.Close() })
	return tl
}

// read reads once, waiting up to wait, and acknowledges what it got.
func (tl *tailer) read(wait time.Duration) []storage.Record {
	tl.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	recs, pos, err := tl.s.Read(ctx)
	if err != nil {
		tl.t.Fatal(err)
	}
	if pos != nil { // the runner commits a position that comes with no records too
		tl.pos = pos
	}
	tl.got = append(tl.got, recs...)
	return recs
}

// crash reads a batch and drops it unacknowledged, then reopens at the last position.
func (tl *tailer) crash() {
	tl.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	tl.s.Read(ctx)
	cancel()
	tl.restart()
}

// restart closes the source and opens a new one at the last acknowledged position.
func (tl *tailer) restart() {
	tl.t.Helper()
	tl.s.Close()
	s, err := New(tl.cfg)
	if err != nil {
		tl.t.Fatal(err)
	}
	if err := s.Open(context.Background(), tl.pos); err != nil {
		tl.t.Fatal(err)
	}
	tl.s = s
}

// until reads until the values read end with want's count, or fails after 10 s.
func (tl *tailer) until(n int) []string {
	tl.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(tl.got) < n && time.Now().Before(deadline) {
		tl.read(50 * time.Millisecond)
	}
	return tl.values()
}

func (tl *tailer) values() []string {
	out := make([]string, len(tl.got))
	for i, r := range tl.got {
		out[i] = string(r.Value)
	}
	return out
}

func appendFile(t *testing.T, path, data string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func fast(cfg Config) Config {
	cfg.Poll = 10 * time.Millisecond
	cfg.RotateWait = 100 * time.Millisecond
	return cfg
}

func TestTailsFilesAndFindsNewOnes(t *testing.T) {
	dir := t.TempDir()
	appendFile(t, filepath.Join(dir, "a.log"), "a1\na2\n")
	appendFile(t, filepath.Join(dir, "b.txt"), "not matched\n")
	tl := newTailer(t, fast(Config{Patterns: []string{filepath.Join(dir, "*.log")}, PathHeader: "file"}))
	if got := tl.until(2); strings.Join(got, " ") != "a1 a2" {
		t.Fatalf("%q", got)
	}
	if tl.got[0].Headers["file"] != filepath.Join(dir, "a.log") {
		t.Fatalf("headers %v", tl.got[0].Headers)
	}
	appendFile(t, filepath.Join(dir, "a.log"), "a3\npartial")
	appendFile(t, filepath.Join(dir, "c.log"), "c1\r\n")
	got := tl.until(4)
	if strings.Join(got[2:], " ") != "a3 c1" && strings.Join(got[2:], " ") != "c1 a3" {
		t.Fatalf("%q", got)
	}
	tl.read(50 * time.Millisecond)
	if len(tl.got) != 4 {
		t.Fatalf("an unfinished line was delivered: %q", tl.values())
	}
	appendFile(t, filepath.Join(dir, "a.log"), " line\n")
	if got := tl.until(5); got[4] != "partial line" {
		t.Fatalf("%q", got)
	}
}

// writer writes numbered lines to path with O_APPEND, and rotates the file every `every` lines
// by rename (to path.N) or by copytruncate (copy to path.N, truncate; the writer is held during
// both, since copytruncate loses what is written between them whatever the reader does).
type writer struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func (w *writer) open(t *testing.T) {
	f, err := os.OpenFile(w.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Error(err)
		return
	}
	w.f = f
}

func (w *writer) run(t *testing.T, n, every int, copyTruncate bool, rate int) {
	w.open(t)
	var line []byte
	start := time.Now()
	for i := range n {
		if i%1000 == 0 && rate > 0 {
			time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))))
		}
		line = strconv.AppendInt(line[:0], int64(i), 10)
		line = append(line, " some log text to make the line longer than a number\n"...)
		w.mu.Lock()
		if _, err := w.f.Write(line); err != nil {
			t.Error(err)
		}
		if (i+1)%every == 0 {
			rotated := fmt.Sprintf("%s.%d", w.path, (i+1)/every)
			if copyTruncate {
				data, err := os.ReadFile(w.path)
				if err == nil {
					err = os.WriteFile(rotated, data, 0o644)
				}
				if err == nil {
					err = os.Truncate(w.path, 0)
				}
				if err != nil {
					t.Error(err)
				}
			} else {
				if err := os.Rename(w.path, rotated); err != nil {
					t.Error(err)
				}
				w.f.Close()
				w.open(t)
			}
		}
		w.mu.Unlock()
	}
	w.f.Close()
}

// checkSequence requires values to be lines 0..n-1, each once, in order.
func checkSequence(t *testing.T, values []string, n int) {
	t.Helper()
	next := 0
	for i, v := range values {
		num, _, _ := strings.Cut(v, " ")
		if num != strconv.Itoa(next) {
			t.Fatalf("record %d is %q, want line %d (of %d)", i, v, next, n)
		}
		next++
	}
	if next != n {
		t.Fatalf("%d lines read, want %d", next, n)
	}
}

// Rotation during heavy writes (100k lines/s, a rotation every 0.2 s), by rename and by
// copytruncate, with the pattern matching only the live name, while the source "crashes" (drops
// a batch unacknowledged and reopens at the last position) every few batches: every line arrives
// exactly once, in order. Then rename rotation as fast as the writer goes, with a pattern that
// also matches the rotated names, where the source may fall behind by several rotations: every
// line still arrives exactly once (the order of files found late is by name).
func TestRotationUnderHeavyWrites(t *testing.T) {
	for _, tc := range []struct {
		name         string
		copyTruncate bool
		rate         int
		glob         string
	}{
		{"rename", false, 100_000, ""},
		{"copytruncate", true, 100_000, ""},
		{"rename-unpaced", false, 0, "*"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "app.log")
			const n, every = 200_000, 20_000
			appendFile(t, path, "")
			tl := newTailer(t, fast(Config{Patterns: []string{path + tc.glob}, Batch: 500}))
			w := &writer{path: path}
			done := make(chan struct{})
			go func() { defer close(done); w.run(t, n, every, tc.copyTruncate, tc.rate) }()
			deadline := time.Now().Add(60 * time.Second)
			for i := 0; len(tl.got) < n && time.Now().Before(deadline); i++ {
				if i%7 == 3 {
					tl.crash()
				} else {
					tl.read(50 * time.Millisecond)
				}
			}
			<-done
			tl.read(200 * time.Millisecond)
			if tc.glob == "" {
				checkSequence(t, tl.values(), n)
				return
			}
			vs := tl.values()
			sort.Slice(vs, func(i, j int) bool { return lineNumber(vs[i]) < lineNumber(vs[j]) })
			checkSequence(t, vs, n)
		})
	}
}

func lineNumber(v string) int {
	num, _, _ := strings.Cut(v, " ")
	n, _ := strconv.Atoi(num)
	return n
}

// A file rotated out of the patterns while the source is down is found in its directory and
// read to its end before the new file of its name.
func TestResumeAfterRotationWhileDown(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, "0\n1\n2\n")
	tl := newTailer(t, fast(Config{Patterns: []string{path}, Batch: 2}))
	tl.until(2)
	tl.s.Close()
	appendFile(t, path, "3\n")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, "4\n5\n")
	tl.restart()
	checkSequence(t, tl.until(6), 6)
}

// The truncation of a file while the source is down: the unread rest comes from its copy.
func TestResumeAfterCopyTruncateWhileDown(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, "0\n1\n2\n")
	tl := newTailer(t, fast(Config{Patterns: []string{path}, Batch: 2}))
	tl.until(2)
	tl.s.Close()
	appendFile(t, path, "3\n")
	data, _ := os.ReadFile(path)
	os.WriteFile(path+"-20261201", data, 0o644)
	os.Truncate(path, 0)
	appendFile(t, path, "4\n")
	tl.restart()
	checkSequence(t, tl.until(5), 5)
}

// A file in the position whose first bytes changed (rewritten, or its inode reused) is read
// from its start; a file gone while the source was down is logged and forgotten.
func TestChangedAndGoneFiles(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	appendFile(t, a, "a-old-1\na-old-2\n")
	appendFile(t, b, "b1\n")
	var logs syncbuf.Buffer
	cfg := fast(Config{Patterns: []string{filepath.Join(dir, "*.log")}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	tl := newTailer(t, cfg)
	tl.until(3)
	tl.s.Close()
	os.WriteFile(a, []byte("a-new-1\na-new-2\na-new-3\n"), 0o644) // same inode, new content
	os.Remove(b)
	tl.got = nil
	tl.restart()
	if got := strings.Join(tl.until(3), " "); got != "a-new-1 a-new-2 a-new-3" {
		t.Fatalf("%q", got)
	}
	for _, want := range []string{"truncated or rewritten", "file is gone"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

func TestMultiline(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, "2026-12-01 one\n  at a\n  at b\n2026-12-01 two\n2026-12-01 three\n  at c\n")
	cfg := fast(Config{Patterns: []string{path}, Multiline: &Multiline{Start: regexp.MustCompile(`^\d{4}-`), Timeout: 300 * time.Millisecond}})
	tl := newTailer(t, cfg)
	got := tl.until(2)
	if strings.Join(got, "|") != "2026-12-01 one\n  at a\n  at b|2026-12-01 two" {
		t.Fatalf("%q", got)
	}
	// The last record waits for its timeout (or the next start). A crash before then reads its
	// lines again from the committed offset.
	tl.crash()
	appendFile(t, path, "  at d\n")
	got = tl.until(3)
	if got[2] != "2026-12-01 three\n  at c\n  at d" {
		t.Fatalf("%q", got)
	}
	// Continue mode, and MaxLines.
	p2 := filepath.Join(dir, "c.log")
	appendFile(t, p2, "x\n y\n z\n w\nq\n")
	tl2 := newTailer(t, fast(Config{Patterns: []string{p2}, Multiline: &Multiline{Continue: regexp.MustCompile(`^\s`), MaxLines: 3, Timeout: 50 * time.Millisecond}}))
	if got := tl2.until(3); strings.Join(got, "|") != "x\n y\n z| w|q" {
		t.Fatalf("%q", got)
	}
}

// An overlong line arrives in MaxLine pieces, all but the last marked, and resumes mid-line.
func TestOverlongLineInPieces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, strings.Repeat("a", 25)+"\nshort\n")
	tl := newTailer(t, fast(Config{Patterns: []string{path}, MaxLine: 10, Batch: 1}))
	tl.until(1)
	tl.restart()
	got := tl.until(4)
	if strings.Join(got, "|") != "aaaaaaaaaa|aaaaaaaaaa|aaaaa|short" {
		t.Fatalf("%q", got)
	}
	for i, r := range tl.got {
		if (r.Headers[HeaderSplit] == "more") != (i < 2) {
			t.Fatalf("record %d headers %v", i, r.Headers)
		}
	}
}

func TestStartAtEnd(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, "old\n")
	tl := newTailer(t, fast(Config{Patterns: []string{filepath.Join(dir, "*")}, StartAtEnd: true}))
	appendFile(t, path, "new\n")
	appendFile(t, filepath.Join(dir, "later.log"), "later\n")
	got := tl.until(2)
	if strings.Join(got, " ") != "new later" {
		t.Fatalf("%q", got)
	}
}

// Idle descriptors are closed and the file reopened when it grows.
func TestIdleCloseReopens(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, "1\n")
	cfg := fast(Config{Patterns: []string{path}, IdleClose: 30 * time.Millisecond})
	tl := newTailer(t, cfg)
	tl.until(1)
	time.Sleep(60 * time.Millisecond)
	tl.read(30 * time.Millisecond)
	if tl.s.files[0].f != nil {
		t.Fatal("idle file still open")
	}
	appendFile(t, path, "2\n")
	if got := tl.until(2); strings.Join(got, " ") != "1 2" {
		t.Fatalf("%q", got)
	}
}

func TestBadConfigAndPosition(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Patterns: []string{"/tmp/[x"}},
		{Patterns: []string{"/tmp/x"}, Multiline: &Multiline{}},
		{Patterns: []string{"/tmp/x"}, Multiline: &Multiline{Start: regexp.MustCompile("a"), Continue: regexp.MustCompile("b")}},
	} {
		if _, err := New(cfg); err == nil || !strings.HasPrefix(err.Error(), "taildir source: ") {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
	s, _ := New(Config{Patterns: []string{filepath.Join(t.TempDir(), "*")}})
	if err := s.Open(context.Background(), []byte{1, 5, 0}); err == nil || !strings.Contains(err.Error(), "position of 3 bytes is corrupt") {
		t.Fatalf("%v", err)
	}
}

func FuzzPosition(f *testing.F) {
	f.Add(encodePosition([]entry{{key: fileKey{1, 2}, commit: 30, headLen: 30, headSum: 7, path: "/var/log/a"}}))
	f.Add([]byte{1, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		es, err := decodePosition(p)
		if err != nil {
			return
		}
		if !bytes.Equal(encodePosition(es), p) {
			// Uvarints have one shortest form; a longer one decodes the same.
			es2, err := decodePosition(encodePosition(es))
			if err != nil || fmt.Sprint(es2) != fmt.Sprint(es) {
				t.Fatalf("round trip: %v then %v, %v", es, es2, err)
			}
		}
	})
}
