// Package taildir is a source that tails the files matching glob patterns, as Flume's TAILDIR
// source: one record per line (or per multi-line record), files followed across rotation by
// their inode, and a position that is committed only after the topic acknowledged the lines
// before it.
//
// # Files
//
// Config.Patterns are filepath.Match globs ("/var/log/app/*.log"); they are evaluated again
// every Config.Poll, so files that appear later are picked up and read from their start. A file
// is known by its device and inode, not its name:
//
//   - Renamed within the patterns (app.log to app.log.1 with the pattern "app.log*"), it is read
//     on under its new name.
//   - Renamed out of the patterns or deleted (rotation by rename: app.log to app.log.1 with the
//     pattern "app.log"), it is read to its end through its descriptor (reopened by inode in
//     its directory if it was closed for idleness), and for Config.RotateWait after its last
//     growth (a writer may go on writing to it until it reopens its log), then dropped. Its
//     lines come before those of the file that now has its name. A file rotated away twice
//     before the source first saw it (the source down, or a rotation faster than Config.Poll)
//     is never read: make the patterns match the rotated names ("app.log*") where that can
//     happen.
//   - Truncated (rotation by copytruncate, detected when the file is shorter than what was read
//     or its first bytes changed), it is read again from its start. The bytes it held that were
//     not yet read are looked for in a copy in the same directory, recognised by the same first
//     bytes (up to 1 KiB) and at least as long; the copy's unread part is read first. If no copy
//     is found (it was compressed at once, or written elsewhere), the complete lines already
//     read into memory are still delivered, the rest is lost, and the source logs it (with how
//     many bytes, when it knows). copytruncate itself loses what the writer writes between the copy and
//     the truncation, and a writer must open its log with O_APPEND or it leaves a hole of zeros.
//     With copytruncate, the patterns must not match the copies, or they are read as new files
//     (their lines twice).
//
// A line is delivered once it ends with "\n" ("\r\n" is stripped too); a last line without one
// waits for the writer to finish it, except in a file that was rotated away, where it is
// delivered when the file is dropped. A line longer than Config.MaxLine bytes is delivered in
// pieces of MaxLine bytes; every piece but the last carries the header HeaderSplit.
//
// # Multi-line records
//
// With Config.Multiline, consecutive lines are joined (with "\n") into one record: either every
// line that matches Start begins a record and the lines that do not are joined to it (log lines
// that begin with a timestamp, followed by a stack trace), or every line that matches Continue is
// joined to the record before it (continuation lines that begin with white space). A record ends
// at the next record's first line, at Multiline.MaxLines lines, before a line that would make it
// longer than MaxLine bytes (that line begins the next record), when no line joined it for
// Multiline.Timeout (the last record of a quiet file), or when its file, rotated away, has been
// read to its end.
//
// # Position and delivery
//
// The position lists, for every file tracked, its device, inode, the offset after the last
// record returned, a checksum of its first bytes and its last name. On Open each file is found
// again by device and inode among the files matching the patterns, or, if it was rotated out of
// them while the source was down, among the files of its directory; a file whose first bytes
// changed (its inode reused by another file) is read from its start, unless it was found only by
// inode outside the patterns (then it is another file, and is not read). A line is thus never lost
// across a crash while its file can still be found, and read twice only within the one batch in
// flight. A file that was deleted (or moved to another directory) while the source was down loses
// its unread lines; the source logs it.
//
// The first start (no position) reads every matching file from its start, or with
// Config.StartAtEnd from its end (files that appear later are always read from their start).
// With StartAtEnd the first Read returns that position with no records, for the runner to
// commit; a crash before it is committed starts at the end again, losing what was written in
// that moment.
//
// Descriptors of files that have not grown for Config.IdleClose are closed and reopened when they
// grow.
package taildir

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"syscall"
	"time"

	"github.com/weirhq/weir/storage"
)

// HeaderSplit is set (to "more") on every piece of an overlong line but its last.
const HeaderSplit = "taildir.split"

// headBytes is how many first bytes of a file are checksummed to recognise it.
const headBytes = 1024

// Multiline joins lines into records; exactly one of Start and Continue is set.
type Multiline struct {
	// Start matches the first line of a record; lines that do not match are joined to the record
	// before them.
	Start *regexp.Regexp
	// Continue matches a line that is joined to the record before it; other lines begin records.
	Continue *regexp.Regexp
	// MaxLines ends a record at this many lines (default 500); the next line begins another.
	MaxLines int
	// Timeout ends a record that no line joined for this long (default 1 s).
	Timeout time.Duration
}

// Config configures a Source.
type Config struct {
	// Patterns are the globs (filepath.Match syntax) of the files to tail.
	Patterns []string
	// PathHeader, if set, is the header that carries the path of the file a record came from.
	PathHeader string
	// Multiline, if set, joins lines into records.
	Multiline *Multiline
	// MaxLine is the longest line, in bytes, delivered whole (default 1 MiB).
	MaxLine int
	// Batch is the most records one Read returns (default 2,000), BatchBytes about the most
	// bytes (default 1 MiB).
	Batch      int
	BatchBytes int
	// Poll is how often the patterns are evaluated again and files that reached their end are
	// looked at again (default 250 ms).
	Poll time.Duration
	// RotateWait is how long a file renamed away or deleted is read after it last grew
	// (default 5 s).
	RotateWait time.Duration
	// IdleClose closes a file's descriptor after it has not grown for this long (default 1 min).
	IdleClose time.Duration
	// StartAtEnd starts files found at the first start at their end.
	StartAtEnd bool
	// Logger receives rotations, truncations and files lost; discarded by default.
	Logger *slog.Logger
}

// fileKey tells files apart: device and inode.
type fileKey struct{ dev, ino uint64 }

// file is one tracked file.
type file struct {
	key  fileKey
	path string
	f    *os.File // nil while closed for idleness

	commit int64  // offset after the last record returned: the position
	off    int64  // offset of buf[0]: where the next line starts
	buf    []byte // bytes read and not yet scanned into lines
	head   []byte // the file's first bytes (up to headBytes), as read

	// The multi-line record being joined: its bytes, line count, the offset after its last
	// line, and when its last line joined.
	ml      []byte
	mlOn    bool
	mlLines int
	mlEnd   int64
	mlLast  time.Time

	size    int64     // size at the last look
	grew    time.Time // when it last grew (or was first seen)
	rotated bool      // no longer under a matching name: read to the end, then dropped
	inPiece bool      // the line being read is overlong: it goes out in pieces
	headers map[string]string
}

func (fl *file) read() int64 { return fl.off + int64(len(fl.buf)) }

// Source tails files. It is a connectors.Source.
type Source struct {
	cfg   Config
	files []*file // in the order they were found; rotated ones are read first
	byKey map[fileKey]*file

	lastLook time.Time
	rr       int
	// announce: started at the end of the files with no position; the first Read returns that
	// position with no records, so that it is committed and a crash does not start at the
	// (later) end again.
	announce bool
	// unresolved are the position's files not found (or not opened) by Open: when a look
	// finds one of them, it resumes at its committed offset rather than at 0.
	unresolved map[fileKey]entry
	chunk      []byte
}

// New checks cfg and returns a Source.
func New(cfg Config) (*Source, error) {
	if len(cfg.Patterns) == 0 {
		return nil, errors.New("taildir source: no file patterns")
	}
	for _, p := range cfg.Patterns {
		if _, err := filepath.Match(p, ""); err != nil {
			return nil, fmt.Errorf("taildir source: pattern %q: %w", p, err)
		}
	}
	if m := cfg.Multiline; m != nil {
		if (m.Start == nil) == (m.Continue == nil) {
			return nil, errors.New("taildir source: Multiline needs exactly one of Start and Continue")
		}
		mc := *m
		if mc.MaxLines <= 0 {
			mc.MaxLines = 500
		}
		if mc.Timeout <= 0 {
			mc.Timeout = time.Second
		}
		cfg.Multiline = &mc
	}
	if cfg.MaxLine <= 0 {
		cfg.MaxLine = 1 << 20
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 2000
	}
	if cfg.BatchBytes <= 0 {
		cfg.BatchBytes = 1 << 20
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 250 * time.Millisecond
	}
	if cfg.RotateWait <= 0 {
		cfg.RotateWait = 5 * time.Second
	}
	if cfg.IdleClose <= 0 {
		cfg.IdleClose = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Source{cfg: cfg}, nil
}

// entry is one file of a position.
type entry struct {
	key     fileKey
	commit  int64
	headLen int
	headSum uint32
	path    string
}

// positionVersion starts every position, so that a later format can tell this one apart.
const positionVersion = 1

// encodePosition writes the version, the file count, then per file: device, inode, offset,
// head length (uvarints), head checksum (4 bytes), and the path (uvarint length, bytes).
func encodePosition(es []entry) []byte {
	b := []byte{positionVersion}
	b = binary.AppendUvarint(b, uint64(len(es)))
	for _, e := range es {
		b = binary.AppendUvarint(b, e.key.dev)
		b = binary.AppendUvarint(b, e.key.ino)
		b = binary.AppendUvarint(b, uint64(e.commit))
		b = binary.AppendUvarint(b, uint64(e.headLen))
		b = binary.BigEndian.AppendUint32(b, e.headSum)
		b = binary.AppendUvarint(b, uint64(len(e.path)))
		b = append(b, e.path...)
	}
	return b
}

func decodePosition(p []byte) ([]entry, error) {
	bad := func(what string) ([]entry, error) {
		return nil, fmt.Errorf("taildir source: position of %d bytes is corrupt: %s", len(p), what)
	}
	if len(p) == 0 || p[0] != positionVersion {
		return bad("unknown version")
	}
	r := p[1:]
	uv := func() (uint64, bool) {
		v, n := binary.Uvarint(r)
		if n <= 0 {
			return 0, false
		}
		r = r[n:]
		return v, true
	}
	n, ok := uv()
	if !ok || n > uint64(len(r)) {
		return bad("file count")
	}
	es := make([]entry, 0, n)
	for i := uint64(0); i < n; i++ {
		var e entry
		var commit, headLen, pathLen uint64
		var ok1, ok2, ok3, ok4, ok5 bool
		e.key.dev, ok1 = uv()
		e.key.ino, ok2 = uv()
		commit, ok3 = uv()
		headLen, ok4 = uv()
		if !(ok1 && ok2 && ok3 && ok4) || commit > 1<<62 || headLen > headBytes || len(r) < 4 {
			return bad(fmt.Sprintf("file %d", i))
		}
		e.commit, e.headLen = int64(commit), int(headLen)
		e.headSum = binary.BigEndian.Uint32(r)
		r = r[4:]
		pathLen, ok5 = uv()
		if !ok5 || pathLen == 0 || pathLen > uint64(len(r)) {
			return bad(fmt.Sprintf("path of file %d", i))
		}
		e.path = string(r[:pathLen])
		r = r[pathLen:]
		es = append(es, e)
	}
	if len(r) != 0 {
		return bad(fmt.Sprintf("%d bytes after the last file", len(r)))
	}
	return es, nil
}

func keyOf(fi os.FileInfo) fileKey {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fileKey{uint64(st.Dev), st.Ino}
	}
	return fileKey{}
}

// matches evaluates the patterns: every regular file matching one, by key, with its path and
// size (the first path found for a file with several).
func (s *Source) matches() map[fileKey]found {
	out := map[fileKey]found{}
	for _, p := range s.cfg.Patterns {
		names, _ := filepath.Glob(p) // the only error is a bad pattern, refused by New
		for _, n := range names {
			fi, err := os.Stat(n)
			if err != nil || !fi.Mode().IsRegular() {
				continue
			}
			k := keyOf(fi)
			if _, dup := out[k]; !dup {
				out[k] = found{n, fi.Size()}
			}
		}
	}
	return out
}

type found struct {
	path string
	size int64
}

// Open resumes at position: every file it lists, found again, at its offset.
func (s *Source) Open(_ context.Context, position []byte) error {
	s.closeAll()
	var es []entry
	if len(position) > 0 {
		var err error
		if es, err = decodePosition(position); err != nil {
			return err
		}
	}
	now := time.Now()
	m := s.matches()
	s.unresolved = map[fileKey]entry{}
	for _, e := range es {
		path, rotated := "", false
		if f, ok := m[e.key]; ok {
			path = f.path
		} else if p := findByKey(filepath.Dir(e.path), e.key); p != "" {
			path, rotated = p, true
			s.cfg.Logger.Info("taildir source: file was rotated while the source was down; reading the rest of it", "file", e.path, "now", p)
		} else {
			s.cfg.Logger.Warn("taildir source: file is gone; lines after the committed offset, if any, are lost", "file", e.path, "offset", e.commit)
			s.unresolved[e.key] = e
			continue
		}
		fl, err := s.track(path, e.key, 0, now)
		if err != nil && !rotated {
			// Renamed between the listing and the open (a rotation at this moment): look for
			// it in its directory under its new name.
			if p := findByKey(filepath.Dir(path), e.key); p != "" {
				path, rotated = p, true
				fl, err = s.track(path, e.key, 0, now)
			}
		}
		if err != nil {
			s.cfg.Logger.Warn("taildir source: cannot reopen file", "file", path, "err", err)
			s.unresolved[e.key] = e
			continue
		}
		fl.rotated = rotated
		fl.commit, fl.off = e.commit, e.commit
		h := fl.readHead(e.headLen)
		if len(h) == e.headLen && crc32.ChecksumIEEE(h) == e.headSum && fl.size >= e.commit {
			fl.head = h
			continue
		}
		if rotated { // found outside the patterns by inode, with other bytes: another file now
			s.cfg.Logger.Warn("taildir source: rotated file is gone (its inode belongs to another file); lines after the committed offset, if any, are lost", "file", e.path, "offset", e.commit)
			s.drop(fl)
			continue
		}
		// Truncated, or its first bytes changed: rotated by copytruncate while the source was
		// down (its unread rest may be in a copy), or another file reusing the inode.
		s.truncated(fl, e.headLen, e.headSum, -1, nil, now)
	}
	// Files not in the position: new since, or all of them on a first start.
	keys := make([]fileKey, 0, len(m))
	for k := range m {
		if s.byKey[k] == nil {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]].path < m[keys[j]].path })
	for _, k := range keys {
		if _, ok := s.unresolved[k]; ok {
			continue // the race that made it unresolved: the next look takes it up
		}
		at := int64(0)
		if len(position) == 0 && s.cfg.StartAtEnd {
			at = m[k].size
		}
		s.add(m[k].path, k, at, now)
	}
	s.lastLook = now
	s.announce = len(position) == 0 && s.cfg.StartAtEnd
	return nil
}

// findByKey looks in dir for the file with key (a file rotated out of the patterns).
func findByKey(dir string, k fileKey) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		if fi, err := e.Info(); err == nil && keyOf(fi) == k {
			return filepath.Join(dir, e.Name())
		}
	}
	return ""
}

// track opens path, checks it is still the file with key k, and tracks it at offset at.
func (s *Source) track(path string, k fileKey, at int64, now time.Time) (*file, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if keyOf(fi) != k {
		f.Close()
		return nil, fmt.Errorf("%s was replaced while it was opened", path)
	}
	fl := &file{key: k, path: path, f: f, commit: at, off: at, size: fi.Size(), grew: now}
	fl.head = fl.readHead(int(min(fi.Size(), headBytes)))
	if s.byKey == nil {
		s.byKey = map[fileKey]*file{}
	}
	s.byKey[k] = fl
	s.files = append(s.files, fl)
	return fl, nil
}

// add tracks a newly found file, logging a failure to open it (it is tried again at the next
// look).
func (s *Source) add(path string, k fileKey, at int64, now time.Time) {
	fl, err := s.track(path, k, at, now)
	if err != nil {
		s.cfg.Logger.Warn("taildir source: cannot open file", "file", path, "err", err)
		return
	}
	if e, ok := s.unresolved[k]; ok { // in the position after all: resume it there
		delete(s.unresolved, k)
		if h := fl.readHead(e.headLen); len(h) == e.headLen && crc32.ChecksumIEEE(h) == e.headSum && fl.size >= e.commit {
			fl.commit, fl.off, fl.head = e.commit, e.commit, h
		}
	}
}

// readHead reads the file's first n bytes (fewer if it is shorter).
func (fl *file) readHead(n int) []byte {
	h := make([]byte, n)
	m, _ := fl.f.ReadAt(h, 0)
	return h[:m]
}

// drop stops tracking fl.
func (s *Source) drop(fl *file) {
	if fl.f != nil {
		fl.f.Close()
	}
	delete(s.byKey, fl.key)
	for i, g := range s.files {
		if g == fl {
			s.files = append(s.files[:i], s.files[i+1:]...)
			break
		}
	}
}

// truncated handles a file found truncated (shorter than what was read of it, or with other
// first bytes): the unread rest, from its committed offset, is looked for in a copy (a file of
// its directory with the same first headLen bytes, checksum headSum), and the file is read again
// from its start. had is the most of the file known to have been there (-1: unknown).
func (s *Source) truncated(fl *file, headLen int, headSum uint32, had int64, b *batch, now time.Time) (copied bool) {
	from := fl.commit
	s.cfg.Logger.Info("taildir source: file was truncated or rewritten; reading it from its start", "file", fl.path, "offset", from)
	var cp *file
	if headLen > 0 {
		if cp = s.findCopy(fl, headLen, headSum, from); cp != nil {
			s.cfg.Logger.Info("taildir source: reading the rest of the truncated file from its copy", "file", fl.path, "copy", cp.path, "from", from)
			had = -1
		}
	}
	if cp == nil && b != nil { // no copy: at least deliver the complete lines already read
		buf := fl.buf
		for {
			i := bytes.IndexByte(buf, '\n')
			if i < 0 {
				break
			}
			end := fl.off + int64(i) + 1
			line := bytes.TrimSuffix(buf[:i], []byte("\r"))
			for len(line) > s.cfg.MaxLine {
				s.piece(fl, b, line[:s.cfg.MaxLine])
				line = line[s.cfg.MaxLine:]
			}
			s.line(fl, b, line, end, now)
			fl.off, buf = end, buf[i+1:]
		}
		s.flush(fl, b)
		from = fl.commit
	}
	if had > from {
		s.cfg.Logger.Warn("taildir source: file was truncated before it was read to its end, and no copy of it was found in its directory: its unread bytes are lost",
			"file", fl.path, "lost_bytes", had-from)
	}
	fl.commit, fl.off, fl.buf, fl.head = 0, 0, fl.buf[:0], nil
	fl.ml, fl.mlOn, fl.mlLines = fl.ml[:0], false, 0
	fl.size = 0
	return cp != nil
}

// headSum is the length and checksum of the first bytes of fl read (perhaps more than its
// committed offset: they identify the file, they are not its position).
func (fl *file) headSum() (int, uint32) {
	return len(fl.head), crc32.ChecksumIEEE(fl.head)
}

// findCopy looks in fl's directory for a copy of it: a file not tracked, at least from bytes
// long, whose first headLen bytes have checksum sum. It is tracked as rotated from offset from.
func (s *Source) findCopy(fl *file, headLen int, sum uint32, from int64) *file {
	dir := filepath.Dir(fl.path)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var best string
	var bestKey fileKey
	var bestMod time.Time
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil || fi.Size() < from || s.byKey[keyOf(fi)] != nil {
			continue
		}
		p := filepath.Join(dir, e.Name())
		h, err := readFileHead(p, headLen)
		if err != nil || crc32.ChecksumIEEE(h) != sum {
			continue
		}
		if best == "" || fi.ModTime().After(bestMod) {
			best, bestKey, bestMod = p, keyOf(fi), fi.ModTime()
		}
	}
	if best == "" {
		return nil
	}
	cp, err := s.track(best, bestKey, from, time.Now())
	if err != nil {
		return nil
	}
	cp.rotated = true
	cp.head, _ = readFileHead(best, headLen)
	return cp
}

func readFileHead(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := make([]byte, n)
	m, err := f.ReadAt(h, 0)
	if m == n {
		return h, nil
	}
	return nil, err
}

// look evaluates the patterns again: renames, rotations, truncations and new files.
func (s *Source) look(now time.Time, b *batch) {
	s.lastLook = now
	m := s.matches()
	for _, fl := range append([]*file(nil), s.files...) {
		f, ok := m[fl.key]
		if !ok {
			if !fl.rotated {
				fl.rotated = true
				fl.grew = now // RotateWait counts from here, or from a later growth
				s.cfg.Logger.Info("taildir source: file was renamed away or deleted; reading it to its end", "file", fl.path)
			}
			if fl.f == nil { // closed while idle: find it in its directory, or wait for it to come back
				if p := findByKey(filepath.Dir(fl.path), fl.key); p != "" {
					if f2, err := os.Open(p); err == nil {
						if fi, err := f2.Stat(); err == nil && keyOf(fi) == fl.key {
							fl.f, fl.path = f2, p
						} else {
							f2.Close()
						}
					}
				}
				if fl.f == nil {
					continue // idle drops it after RotateWait
				}
			}
			fi, err := fl.f.Stat()
			if err != nil {
				continue
			}
			f.size = fi.Size()
		} else {
			fl.path, fl.rotated = f.path, false
		}
		if f.size < fl.read() {
			n, sum := fl.headSum()
			s.truncated(fl, n, sum, fl.size, b, now)
			continue
		}
		if f.size != fl.size {
			fl.size, fl.grew = f.size, now
			if fl.f == nil {
				f2, err := os.Open(fl.path)
				if err != nil {
					continue
				}
				if fi, err := f2.Stat(); err != nil || keyOf(fi) != fl.key {
					f2.Close()
					continue
				}
				fl.f = f2
			}
		}
	}
	var keys []fileKey
	for k := range m {
		if s.byKey[k] == nil {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]].path < m[keys[j]].path })
	for _, k := range keys {
		s.add(m[k].path, k, 0, now)
	}
}

// batch collects one Read's records, their values in shared arenas.
type batch struct {
	recs  []storage.Record
	bytes int
	arena []byte
	now   int64
}

func (b *batch) add(v []byte, h map[string]string) {
	if len(b.arena)+len(v) > cap(b.arena) {
		b.arena = make([]byte, 0, max(256<<10, len(v)))
	}
	at := len(b.arena)
	b.arena = append(b.arena, v...)
	b.recs = append(b.recs, storage.Record{Value: b.arena[at:len(b.arena):len(b.arena)], Headers: h, Timestamp: b.now})
	b.bytes += len(v)
}

func (s *Source) full(b *batch) bool {
	return len(b.recs) >= s.cfg.Batch || b.bytes >= s.cfg.BatchBytes
}

// Read returns the next records and the position after them; it waits for lines until ctx is
// done.
func (s *Source) Read(ctx context.Context) ([]storage.Record, []byte, error) {
	if s.announce {
		s.announce = false
		return nil, s.position(), nil
	}
	for {
		now := time.Now()
		b := &batch{now: now.UnixMilli()}
		if now.Sub(s.lastLook) >= s.cfg.Poll {
			s.look(now, b)
		}
		// Rotated files first: their lines came before those of the file now under their name.
		order := make([]*file, 0, len(s.files))
		for _, fl := range s.files {
			if fl.rotated {
				order = append(order, fl)
			}
		}
		live := len(order)
		for _, fl := range s.files {
			if !fl.rotated {
				order = append(order, fl)
			}
		}
		if n := len(order) - live; n > 0 { // the others round robin, so that none starves
			s.rr = (s.rr + 1) % n
			rest := order[live:]
			order = append(order[:live:live], append(rest[s.rr:], rest[:s.rr]...)...)
		}
		var err error
		for _, fl := range order {
			if err = s.readFile(fl, b, now); err != nil || s.full(b) {
				break
			}
			if fl.rotated && fl.mlOn && len(fl.buf) == 0 && fl.read() >= fl.size {
				s.flush(fl, b)
			}
		}
		for _, fl := range order {
			s.idle(fl, b, now)
		}
		if err != nil && len(b.recs) == 0 {
			return nil, nil, err
		}
		if len(b.recs) > 0 {
			return b.recs, s.position(), nil
		}
		select {
		case <-ctx.Done():
			return nil, nil, nil
		case <-time.After(s.cfg.Poll):
		}
	}
}

// position is the committed offset of every tracked file.
func (s *Source) position() []byte {
	es := make([]entry, 0, len(s.files))
	for _, fl := range s.files {
		n, sum := fl.headSum()
		es = append(es, entry{key: fl.key, commit: fl.commit, headLen: n, headSum: sum, path: fl.path})
	}
	return encodePosition(es)
}

// readFile reads fl's lines into b until its end or a full batch. Bytes are read into the
// source's one chunk buffer; what is left of a line not yet complete goes back to fl.buf.
func (s *Source) readFile(fl *file, b *batch, now time.Time) error {
	if fl.f == nil {
		return nil
	}
	base := s.chunk
	if cap(base) < len(fl.buf)+minRead {
		base = make([]byte, 0, max(chunkSize, len(fl.buf)+minRead))
	}
	buf := append(base[:0], fl.buf...)
	var err error
	for !s.full(b) {
		if i := bytes.IndexByte(buf, '\n'); i >= 0 && i <= s.cfg.MaxLine+1 {
			line := buf[:i]
			if len(line) > 0 && line[len(line)-1] == '\r' {
				line = line[:len(line)-1]
			}
			if len(line) <= s.cfg.MaxLine {
				fl.inPiece = false
				s.line(fl, b, line, fl.off+int64(i)+1, now)
				buf = buf[i+1:]
				fl.off += int64(i) + 1
				continue
			}
		}
		if len(buf) > s.cfg.MaxLine && !(len(buf) == s.cfg.MaxLine+1 && buf[s.cfg.MaxLine] == '\r') { // no line end within MaxLine bytes (a last "\r" may be a "\r\n" not yet read whole)
			s.piece(fl, b, buf[:s.cfg.MaxLine])
			buf = buf[s.cfg.MaxLine:]
			continue
		}
		// Read more, after what is left, moved to the front.
		if cap(base)-len(buf) < minRead {
			base = make([]byte, 0, max(2*cap(base), len(buf)+minRead))
		}
		buf = base[:copy(base[:len(buf)], buf)]
		at := fl.off + int64(len(buf))
		n, rerr := fl.f.ReadAt(base[len(buf):cap(base)], at)
		if n > 0 && len(fl.head) > 0 && at >= int64(len(fl.head)) {
			// Still the file whose first bytes were read? A copytruncate followed by enough
			// writes to pass the old offset is caught here, before any of the bytes is used.
			if h := fl.readHead(len(fl.head)); !bytes.Equal(h, fl.head) {
				hn, sum := fl.headSum()
				fl.buf = fl.buf[:0] // already scanned into buf, which holds no complete line
				copied := s.truncated(fl, hn, sum, fl.size, b, now)
				buf = base[:0]
				if copied {
					break // the copy's rest is read first, at the next Read
				}
				continue
			}
		}
		if n > 0 && at < headBytes && int64(len(fl.head)) == at {
			fl.head = append(fl.head, base[len(buf):len(buf)+min(n, headBytes-int(at))]...)
		}
		buf = base[:len(buf)+n]
		if n > 0 && at+int64(n) > fl.size {
			fl.size, fl.grew = at+int64(n), now
		}
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			err = fmt.Errorf("taildir source: read %s at byte %d: %w", fl.path, at, rerr)
			break
		}
		if n == 0 {
			break
		}
	}
	s.chunk = base[:0]
	if cap(fl.buf) > chunkSize && len(buf) < cap(fl.buf)/4 {
		fl.buf = nil // a long line passed: do not keep its room
	}
	fl.buf = append(fl.buf[:0], buf...)
	return err
}

// Read sizes: the chunk one file is read with, and the least room left for a read.
const (
	chunkSize = 256 << 10
	minRead   = 64 << 10
)

// piece delivers the first MaxLine bytes of an overlong line as a record of their own.
func (s *Source) piece(fl *file, b *batch, piece []byte) {
	s.flush(fl, b)
	if !fl.inPiece {
		s.cfg.Logger.Warn(fmt.Sprintf("taildir source: a line longer than %d bytes (MaxLine) is delivered in pieces, marked with header %s", s.cfg.MaxLine, HeaderSplit),
			"file", fl.path, "offset", fl.off)
		fl.inPiece = true
	}
	h := map[string]string{HeaderSplit: "more"}
	if s.cfg.PathHeader != "" {
		h[s.cfg.PathHeader] = fl.path
	}
	b.add(piece, h)
	fl.off += int64(len(piece))
	fl.commit = fl.off
}

// line handles one complete line of fl, which ends at offset end.
func (s *Source) line(fl *file, b *batch, line []byte, end int64, now time.Time) {
	ml := s.cfg.Multiline
	if ml == nil {
		b.add(line, s.headersOf(fl))
		fl.commit = end
		return
	}
	join := fl.mlOn && fl.mlLines < ml.MaxLines && len(fl.ml)+1+len(line) <= s.cfg.MaxLine
	if join {
		if ml.Start != nil {
			join = !ml.Start.Match(line)
		} else {
			join = ml.Continue.Match(line)
		}
	}
	if !join {
		s.flush(fl, b)
		fl.mlOn = true
		fl.ml = append(fl.ml[:0], line...)
		fl.mlLines = 1
	} else {
		fl.ml = append(append(fl.ml, '\n'), line...)
		fl.mlLines++
	}
	fl.mlEnd, fl.mlLast = end, now
}

// flush delivers fl's pending multi-line record, if any.
func (s *Source) flush(fl *file, b *batch) {
	if !fl.mlOn {
		return
	}
	b.add(fl.ml, s.headersOf(fl))
	fl.commit = fl.mlEnd
	fl.ml, fl.mlOn, fl.mlLines = fl.ml[:0], false, 0
}

func (s *Source) headersOf(fl *file) map[string]string {
	if s.cfg.PathHeader == "" {
		return nil
	}
	if fl.headers == nil || fl.headers[s.cfg.PathHeader] != fl.path {
		fl.headers = map[string]string{s.cfg.PathHeader: fl.path}
	}
	return fl.headers
}

// idle ends what waits on time: a multi-line record no line joined for Timeout, a rotated file
// done (its last unfinished line delivered), an idle descriptor closed.
func (s *Source) idle(fl *file, b *batch, now time.Time) {
	if fl.mlOn && len(fl.buf) == 0 && now.Sub(fl.mlLast) >= s.cfg.Multiline.Timeout && !s.full(b) {
		s.flush(fl, b)
	}
	quiet := now.Sub(fl.grew)
	atEnd := fl.f == nil || fl.read() >= fl.size
	switch {
	case fl.rotated && atEnd && quiet >= s.cfg.RotateWait && !s.full(b):
		if fl.f != nil { // anything written since the last look
			if fi, err := fl.f.Stat(); err == nil && fi.Size() > fl.read() {
				fl.size, fl.grew = fi.Size(), now
				return
			}
		}
		if fl.f != nil && len(fl.buf) > 0 { // a last line the writer never finished
			s.line(fl, b, fl.buf, fl.read(), now)
			fl.off, fl.buf = fl.read(), fl.buf[:0]
		}
		s.flush(fl, b)
		// Dropped now, with its last records in b: the position committed before b still
		// names the file, so a crash before b is acknowledged reads them again.
		s.cfg.Logger.Info("taildir source: done with rotated file", "file", fl.path)
		s.drop(fl)
	case !fl.rotated && fl.f != nil && atEnd && !fl.mlOn && quiet >= s.cfg.IdleClose:
		fl.f.Close()
		fl.f, fl.buf = nil, nil
	}
}

func (s *Source) closeAll() {
	for _, fl := range s.files {
		if fl.f != nil {
			fl.f.Close()
		}
	}
	s.files, s.byKey, s.lastLook = nil, nil, time.Time{}
}

// Close closes every file.
func (s *Source) Close() error {
	s.closeAll()
	return nil
}
