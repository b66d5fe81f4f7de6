package taildir

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// copyTruncate copies path to cp, truncates path and writes data to it (same inode).
func copyTruncate(t *testing.T, path, cp, data string) {
	t.Helper()
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if cp != "" {
		if err := os.WriteFile(cp, old, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, data)
}

// A bug of the first version, fixed: the head check in readFile runs only when at > len(head). A file shorter than 1 KiB
// has len(head) == read offset, so a copytruncate followed by writes past the old offset
// (before the next look) is not detected: the new content is read from the old offset.
func TestSmallFileCopyTruncateNotDetected(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, "ab\n")
	tl := newTailer(t, Config{Patterns: []string{path}, Poll: time.Hour})
	tl.read(50 * time.Millisecond)
	copyTruncate(t, path, path+".1", "xyz\nlonger\n")
	tl.read(50 * time.Millisecond)
	tl.read(50 * time.Millisecond)
	if got := strings.Join(tl.values(), "|"); got != "ab|xyz|longer" {
		t.Fatalf("got %q, want %q", got, "ab|xyz|longer")
	}
}

// A bug of the first version, fixed: a file started at an offset other than 0 (StartAtEnd) never captures its head, so
// copytruncate is never detected by first bytes (nor is the copy looked for: headLen 0).
func TestStartAtEndHasNoHead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, "old line\n")
	tl := newTailer(t, Config{Patterns: []string{path}, Poll: time.Hour, StartAtEnd: true})
	appendFile(t, path, "new\n")
	tl.read(50 * time.Millisecond)
	copyTruncate(t, path, path+".1", "fresh1\nfresh2\nfresh3\n")
	tl.read(50 * time.Millisecond)
	tl.read(50 * time.Millisecond)
	if got := strings.Join(tl.values(), "|"); got != "new|fresh1|fresh2|fresh3" {
		t.Fatalf("got %q, want %q", got, "new|fresh1|fresh2|fresh3")
	}
}

// A bug of the first version, fixed: a truncation caught by the head check in readFile goes on reading the truncated file
// from 0 in the same batch; the copy's unread rest (tracked by findCopy) comes in a later Read,
// after the new lines: out of order, against "the copy's unread part is read first".
func TestCopyRestAfterNewContent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	var old strings.Builder
	for i := range 200 {
		fmt.Fprintf(&old, "old-%03d\n", i) // 1600 bytes: the head is 1 KiB
	}
	appendFile(t, path, old.String())
	tl := newTailer(t, Config{Patterns: []string{path}, Poll: time.Hour})
	tl.until(200)
	appendFile(t, path, "old-200\n") // written, not yet read, then copytruncate
	var fresh strings.Builder
	for i := range 300 {
		fmt.Fprintf(&fresh, "new-%03d\n", i)
	}
	copyTruncate(t, path, path+".1", fresh.String())
	vs := tl.until(501)
	if len(vs) < 501 || vs[200] != "old-200" {
		t.Fatalf("after old-199 came %q (want old-200), old-200 at index %d", vs[200], indexOf(vs, "old-200"))
	}
}

func indexOf(vs []string, s string) int {
	for i, v := range vs {
		if v == s {
			return i
		}
	}
	return -1
}

// A bug of the first version, fixed: a file whose descriptor was closed for idleness is dropped at once by look() when it
// is renamed out of the patterns: what the writer writes to it before reopening its log (the
// reason RotateWait exists), and its unfinished last line, are lost.
func TestIdleClosedRotatedFileDropped(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, "1\npart")
	tl := newTailer(t, Config{Patterns: []string{path}, Poll: 10 * time.Millisecond,
		RotateWait: 500 * time.Millisecond, IdleClose: 30 * time.Millisecond})
	tl.until(1)
	time.Sleep(60 * time.Millisecond)
	tl.read(30 * time.Millisecond)
	if tl.s.files[0].f != nil {
		t.Fatal("not idle-closed")
	}
	// logrotate renames; the writer still writes to its open descriptor, then reopens.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path+".1", "ial\n2\n")
	appendFile(t, path, "3\n")
	if got := strings.Join(tl.until(4), " "); got != "1 partial 2 3" {
		t.Fatalf("got %q, want %q", got, "1 partial 2 3")
	}
}

// A bug of the first version, fixed: a multi-line record longer than MaxLine is cut at MaxLine bytes; the lines past it
// are silently dropped (not delivered in pieces, not logged), yet committed.
func TestMultilineOverMaxLineLosesLines(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, "S1\n a1234\n b1234\nS2\n")
	tl := newTailer(t, fast(Config{Patterns: []string{path}, MaxLine: 10,
		Multiline: &Multiline{Start: regexp.MustCompile(`^S`), Timeout: 50 * time.Millisecond}}))
	got := strings.Join(tl.until(2), "|")
	if !strings.Contains(got, "b1234") {
		t.Fatalf("line \" b1234\" lost: %q", got)
	}
}

// A bug of the first version, fixed: when look() finds a file truncated and no copy, the complete lines already read into
// fl.buf (left there when the batch filled) are thrown away, though they are in memory.
func TestTruncationDropsBufferedLines(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, "1\n2\n3\n")
	tl := newTailer(t, fast(Config{Patterns: []string{path}, Batch: 1}))
	tl.read(50 * time.Millisecond)   // "1"; "2\n3\n" stay in fl.buf
	copyTruncate(t, path, "", "x\n") // copy compressed at once: none in the directory
	time.Sleep(20 * time.Millisecond)
	if got := strings.Join(tl.until(4), " "); got != "1 2 3 x" {
		t.Fatalf("got %q, want %q", got, "1 2 3 x")
	}
}

// With StartAtEnd, the first Read returns the start position with no records, so that the
// runner commits it: a crash before the first batch of lines is acknowledged reopens there, not
// at the end again (which would lose that batch and everything written since the start).
func TestStartAtEndCrashBeforeFirstAck(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, "old\n")
	tl := newTailer(t, fast(Config{Patterns: []string{path}, StartAtEnd: true}))
	if recs := tl.read(time.Second); len(recs) != 0 || tl.pos == nil {
		t.Fatalf("first Read: %d records, position %x; want none and the start position", len(recs), tl.pos)
	}
	appendFile(t, path, "new1\n")
	tl.crash()
	appendFile(t, path, "new2\n")
	if got := strings.Join(tl.until(2), " "); got != "new1 new2" {
		t.Fatalf("got %q, want %q", got, "new1 new2")
	}
}

// A bug of the first version, fixed: with Multiline, the last record of a file rotated by rename waits for its Timeout (or
// the drop) while the new file's records are delivered: the old file's last lines come after
// the new file's, against "Its lines come before those of the file that now has its name".
func TestMultilineRotationOrder(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, "S1\n c1\n")
	tl := newTailer(t, fast(Config{Patterns: []string{path}, RotateWait: time.Second,
		Multiline: &Multiline{Start: regexp.MustCompile(`^S`), Timeout: 500 * time.Millisecond}}))
	tl.read(30 * time.Millisecond) // S1 pending
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, "S2\n c2\nS3\n")
	got := tl.until(2)
	if got[0] != "S1\n c1" {
		t.Fatalf("records %q: the rotated file's last record is not first", got)
	}
}

// A bug of the first version, fixed: on Open, a position entry not under the patterns is looked for by inode in its
// directory; when found with other first bytes (the inode now belongs to another file, e.g.
// app.log.1.gz), it is read from its start as a rotated file: a file that matches no pattern
// is delivered.
func TestOpenReadsUnrelatedFileByInode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, "a1\na2\n")
	tl := newTailer(t, fast(Config{Patterns: []string{path}}))
	tl.until(2)
	tl.s.Close()
	// Stand-in for inode reuse: the inode is now another, non-matching file's.
	other := filepath.Join(dir, "secret.bin")
	if err := os.Rename(path, other); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, []byte("not a log: binary junk\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tl.restart()
	tl.read(300 * time.Millisecond)
	if got := tl.values(); len(got) != 2 {
		t.Fatalf("a file matching no pattern was delivered: %q", got)
	}
}

// A bug of the first version, fixed: filepath.Glob ignores directory errors, so a file that is briefly not matched
// (a failing ReadDir: EMFILE, EIO, EACCES; here: moved out and back) is taken as rotated; if its
// descriptor was closed for idleness it is dropped at once and, found again, read from its
// start: every line delivered twice, well beyond the batch in flight.
func TestTransientMissReadsFileAgain(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, "1\n2\n")
	tl := newTailer(t, Config{Patterns: []string{path}, Poll: 10 * time.Millisecond, IdleClose: 30 * time.Millisecond})
	tl.until(2)
	time.Sleep(60 * time.Millisecond)
	tl.read(30 * time.Millisecond)
	if tl.s.files[0].f != nil {
		t.Fatal("not idle-closed")
	}
	aside := filepath.Join(t.TempDir(), "aside")
	if err := os.Rename(path, aside); err != nil {
		t.Fatal(err)
	}
	tl.read(30 * time.Millisecond) // one look without it
	if err := os.Rename(aside, path); err != nil {
		t.Fatal(err)
	}
	tl.read(100 * time.Millisecond)
	if got := strings.Join(tl.values(), " "); got != "1 2" {
		t.Fatalf("got %q, want %q", got, "1 2")
	}
}

// A bug of the first version, fixed: Open resolves a position's file by a glob (or directory) listing, then opens the path;
// if the name moved to another file in between (a rotation at that moment), track fails, the
// entry is skipped with a warning, and the next look finds the file as new and reads it from
// its start: the whole file again. (TestRotationUnderHeavyWrites/rename-unpaced fails now and
// then for this reason: "record 19500 is 20000...", duplicates counted as progress.) Here the
// names of two fully read files are swapped continuously while the source restarts.
func TestOpenRaceForgetsPosition(t *testing.T) {
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log"), filepath.Join(dir, "c.log")
	appendFile(t, a, "a1\na2\n")
	appendFile(t, b, "b1\nb2\n")
	tl := newTailer(t, Config{Patterns: []string{filepath.Join(dir, "*.log")}, Poll: 5 * time.Millisecond})
	tl.until(4)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			os.Rename(a, c)
			os.Rename(b, a)
			os.Rename(c, b)
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for len(tl.got) == 4 && time.Now().Before(deadline) {
		tl.restart()
		tl.read(20 * time.Millisecond)
	}
	close(stop)
	<-done
	if len(tl.got) != 4 {
		t.Fatalf("fully read files delivered again: %q", tl.values())
	}
}

// A bug of the first version, fixed: a line of exactly MaxLine bytes ending in "\r\n" is delivered whole when
// read at once, but when the "\r" is read before the "\n" it is cut into a piece marked "more"
// plus an empty record.
func TestCRLFSplitAtMaxLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, "aaaaaaaaaa\r")
	tl := newTailer(t, Config{Patterns: []string{path}, Poll: time.Hour, MaxLine: 10})
	tl.read(30 * time.Millisecond)
	appendFile(t, path, "\n")
	tl.read(30 * time.Millisecond)
	if got := strings.Join(tl.values(), "|"); got != "aaaaaaaaaa" || tl.got[0].Headers[HeaderSplit] != "" {
		t.Fatalf("got %q (headers %v), want one record \"aaaaaaaaaa\"", got, tl.got[0].Headers)
	}
}
