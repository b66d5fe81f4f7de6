package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/weirhq/weir/storage/vfs"
)

// Log is one partition's log: a directory of segments that is at the same time a record log
// addressed by offset and a raft log addressed by index (see the package doc).
//
// A Log is safe for concurrent use: appends, truncation and deletion are serialised by a lock,
// and reads run concurrently with each other. Its one goroutine, the flusher of SyncInterval, is
// stopped and waited for by Close.
type Log struct {
	dir string
	cfg Config
	fs  vfs.FS
	log *slog.Logger

	mu         sync.RWMutex
	segs       []*segment // by offset; the last is the active segment
	state      persistedState
	stateDirty bool   // state differs from the state file only in its commit index
	applied    uint64 // highest raft index the owner has applied; retention stays below it
	unsynced   bool   // the active segment holds data not yet fsynced
	lastSync   time.Time
	failed     error
	closed     bool
	scratch    []byte

	stop chan struct{}
	done chan struct{}
}

// Open opens the log in dir, creating it if needed, and recovers it: torn tails are cut, missing
// or damaged indexes rebuilt, and damage that is not a torn tail reported as a *CorruptError.
func Open(dir string, cfg Config) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Log{dir: dir, cfg: cfg, fs: cfg.FS, log: cfg.Logger.With("log", dir)}
	if err := l.fs.MkdirAll(dir); err != nil {
		return nil, fmt.Errorf("open log %s: %w", dir, err)
	}
	if err := l.recover(); err != nil {
		l.closeFiles()
		return nil, fmt.Errorf("open log %s: %w", dir, err)
	}
	l.lastSync = cfg.Now()
	if cfg.Sync == SyncInterval {
		l.stop, l.done = make(chan struct{}), make(chan struct{})
		go l.flusher()
	}
	return l, nil
}

func (l *Log) recover() error {
	st, err := l.readState()
	if err != nil {
		return err
	}
	l.state = *st
	names, err := l.fs.List(l.dir)
	if err != nil {
		return err
	}
	var bases []int64
	indexes := map[string]bool{}
	for _, name := range names {
		switch {
		case strings.HasSuffix(name, tmpSuffix):
			// A write by rename that a crash interrupted; the old file (or none) stands.
			if err := l.fs.Remove(filepath.Join(l.dir, name)); err != nil {
				return err
			}
		case strings.HasSuffix(name, indexSuffix), strings.HasSuffix(name, timeIndexSuffix):
			indexes[name] = true
		default:
			if base, ok := parseSegmentName(name); ok {
				bases = append(bases, base)
			}
		}
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	for i, base := range bases {
		last := i == len(bases)-1
		s, err := l.openSegment(base, last)
		if err != nil {
			return err
		}
		if s == nil { // an empty last segment whose header a crash tore: it held nothing
			continue
		}
		l.segs = append(l.segs, s)
	}
	if err := l.dropBeforeSnapshot(); err != nil {
		return err
	}
	prevIndex, prevOffset, prevTerm := l.state.SnapIndex+1, l.state.SnapOffset, l.state.SnapTerm
	for i, s := range l.segs {
		if s.baseIndex != prevIndex || s.baseOffset != prevOffset {
			return s.corrupt(0, prevOffset, prevIndex, fmt.Sprintf(
				"segment starts at index %d offset %d, but the log before it ends at index %d offset %d",
				s.baseIndex, s.baseOffset, prevIndex, prevOffset))
		}
		if i == len(l.segs)-1 {
			err = l.recoverActive(s, prevTerm)
		} else {
			err = l.loadSealed(s, prevTerm, indexes)
		}
		if err != nil {
			return err
		}
		if !s.empty() {
			prevTerm = s.lastTerm
		}
		prevIndex, prevOffset = s.nextIndex, s.nextOffset
	}
	if len(l.segs) == 0 {
		s, err := l.createSegment(l.state.SnapOffset, l.state.SnapIndex+1)
		if err != nil {
			return err
		}
		l.segs = append(l.segs, s)
	}
	// Indexes of the active segment are kept in memory; a file left from when it was sealed
	// (before a truncation made it active again, or a crash during a roll) is stale.
	for _, suffix := range []string{indexSuffix, timeIndexSuffix} {
		name := segmentPath(l.dir, l.active().baseOffset, suffix)
		if indexes[filepath.Base(name)] {
			if err := l.fs.Remove(name); err != nil {
				return err
			}
		}
	}
	if l.state.StartOffset < l.segs[0].baseOffset {
		l.state.StartOffset = l.segs[0].baseOffset
	}
	if end := l.active().nextOffset; l.state.StartOffset > end {
		l.state.StartOffset = end
	}
	if last := l.lastIndex(); l.state.Commit > last {
		// Only possible when the tail was not fsynced (SyncNever or SyncInterval) and a machine
		// crash took it: raft must not believe entries are committed here that are gone.
		l.log.Warn("commit index beyond the recovered log; lowering it", "commit", l.state.Commit, "last_index", last)
		l.state.Commit = last
		if err := l.writeState(); err != nil {
			return err
		}
	}
	l.applied = l.state.SnapIndex
	return nil
}

// openSegment opens a segment file and reads its header. A last segment too short to hold its
// header is the trace of a roll that a crash cut short: it held no data and is removed.
func (l *Log) openSegment(base int64, last bool) (*segment, error) {
	path := segmentPath(l.dir, base, logSuffix)
	f, err := l.fs.OpenAppend(path)
	if err != nil {
		return nil, err
	}
	size, err := f.Size()
	if err != nil {
		f.Close()
		return nil, err
	}
	hb := make([]byte, segmentHeaderSize)
	n, _ := f.ReadAt(hb, 0)
	baseOffset, baseIndex, herr := decodeSegmentHeader(hb[:n])
	if herr != nil {
		if last && size <= segmentHeaderSize {
			l.log.Warn("removing a segment whose header a crash left incomplete", "file", path, "bytes", size)
			f.Close()
			return nil, l.fs.Remove(path)
		}
		f.Close()
		return nil, &CorruptError{File: path, Reason: herr.Error()}
	}
	if baseOffset != base {
		f.Close()
		return nil, &CorruptError{File: path, Reason: fmt.Sprintf("header says base offset %d", baseOffset)}
	}
	return newSegmentState(path, f, baseOffset, baseIndex), nil
}

// dropBeforeSnapshot removes segments wholly covered by the snapshot: the trace of a compaction
// or of installing a snapshot that a crash interrupted after the state file was written.
func (l *Log) dropBeforeSnapshot() error {
	snap := l.state.SnapIndex
	for len(l.segs) > 1 && l.segs[1].baseIndex <= snap+1 {
		if err := l.removeSegment(l.segs[0]); err != nil {
			return err
		}
		l.segs = l.segs[1:]
	}
	if len(l.segs) > 0 && l.segs[0].baseIndex != snap+1 && l.segs[0].baseIndex <= snap {
		// The first segment straddles the snapshot. Installing a snapshot writes the state file
		// before removing the old log, so these entries belong to the history the snapshot
		// replaced: start afresh after it.
		l.log.Warn("log straddles the snapshot; starting after the snapshot", "snapshot_index", snap, "segment", l.segs[0].path)
		for _, s := range l.segs {
			if err := l.removeSegment(s); err != nil {
				return err
			}
		}
		l.segs = nil
	}
	return nil
}

// loadSealed loads a sealed segment's indexes, or rebuilds them when missing or damaged, and
// verifies the batches after the last index entry.
func (l *Log) loadSealed(s *segment, prevTerm uint64, indexes map[string]bool) error {
	s.sealed = true
	size, err := s.f.Size()
	if err != nil {
		return err
	}
	s.size = size
	w := &window{f: s.f}
	if err := l.readIndexes(s, size, indexes); err != nil {
		l.log.Warn("rebuilding segment index", "file", s.path, "reason", err)
		s.index, s.times = nil, nil
	}
	pos, idx, off := s.entryAt(len(s.index) - 1)
	if len(s.index) > 0 {
		h, err := s.headerAt(w, pos)
		if err != nil || h.Index != idx || h.BaseOffset != off {
			l.log.Warn("rebuilding segment index", "file", s.path, "reason", "last entry does not match the segment")
			s.index, s.times = nil, nil
			pos, idx, off = segmentHeaderSize, s.baseIndex, s.baseOffset
		} else {
			prevTerm = h.Term
		}
	}
	rebuild := len(s.index) == 0
	if !rebuild {
		if t := s.times; len(t) > 0 {
			s.maxTS = t[len(t)-1].ts
		}
		s.indexedAt = pos
	}
	// The tail scan re-tracks the batch at pos, which is already indexed: keep indexedAt there so
	// it adds no second entry for it.
	s.index, s.times = s.index[:len(s.index):len(s.index)], s.times[:len(s.times):len(s.times)]
	res, err := s.scan(w, pos, idx, off, prevTerm, true, true, l.cfg.IndexIntervalBytes)
	if err != nil {
		return err
	}
	if res.bad {
		return s.corrupt(res.end, s.nextOffset, s.nextIndex, res.reason)
	}
	if s.empty() {
		return s.corrupt(segmentHeaderSize, s.baseOffset, s.baseIndex, "sealed segment holds no entries")
	}
	if rebuild {
		return l.writeIndexes(s)
	}
	return nil
}

func (l *Log) readIndexes(s *segment, size int64, present map[string]bool) error {
	var data [2][]byte
	for i, suffix := range []string{indexSuffix, timeIndexSuffix} {
		name := segmentPath(l.dir, s.baseOffset, suffix)
		if !present[filepath.Base(name)] {
			return fmt.Errorf("%s is missing", filepath.Base(name))
		}
		f, err := l.fs.Open(name)
		if err != nil {
			return err
		}
		n, err := f.Size()
		if err == nil {
			data[i] = make([]byte, n)
			_, err = f.ReadAt(data[i], 0)
		}
		f.Close()
		if err != nil {
			return err
		}
	}
	idx, times, err := decodeIndexes(data[0], data[1], size)
	if err != nil {
		return err
	}
	s.index, s.times = idx, times
	return nil
}

// writeIndexes writes a sealed segment's indexes, each by way of a temporary file and rename.
func (l *Log) writeIndexes(s *segment) error {
	if err := l.writeFileAtomic(segmentPath(l.dir, s.baseOffset, indexSuffix), encodeIndex(s.index)); err != nil {
		return err
	}
	return l.writeFileAtomic(segmentPath(l.dir, s.baseOffset, timeIndexSuffix), encodeTimeIndex(s.times))
}

// recoverActive scans the whole active segment, checking every checksum, rebuilding its indexes
// in memory and cutting a torn tail. Damage followed by a good batch is corruption, not a torn
// tail, and is reported rather than cut: cutting would silently drop the good data after it.
func (l *Log) recoverActive(s *segment, prevTerm uint64) error {
	w := &window{f: s.f}
	res, err := s.scan(w, segmentHeaderSize, s.baseIndex, s.baseOffset, prevTerm, true, true, l.cfg.IndexIntervalBytes)
	if err != nil {
		return err
	}
	if !res.bad {
		return nil
	}
	if !res.torn {
		if hb, err := w.bytes(res.end, HeaderSize); err == nil {
			if h, err := ParseHeader(hb); err == nil && validAt(w, res.end+int64(h.Size()), s.nextIndex+1) {
				return s.corrupt(res.end, s.nextOffset, s.nextIndex, res.reason)
			}
		}
	}
	size, _ := s.f.Size()
	l.log.Warn("truncating torn tail", "file", s.path, "at", res.end, "dropped_bytes", size-res.end, "reason", res.reason)
	if err := s.f.Truncate(res.end); err != nil {
		return err
	}
	if err := s.f.Sync(); err != nil {
		return err
	}
	s.size = res.end
	return nil
}

// createSegment creates a new segment file with its header, durable before it is used.
func (l *Log) createSegment(baseOffset int64, baseIndex uint64) (*segment, error) {
	path := segmentPath(l.dir, baseOffset, logSuffix)
	f, err := l.fs.Create(path)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(encodeSegmentHeader(baseOffset, baseIndex)); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		f.Close()
		return nil, err
	}
	return newSegmentState(path, f, baseOffset, baseIndex), nil
}

// removeSegment closes and deletes a segment and its indexes.
func (l *Log) removeSegment(s *segment) error {
	s.f.Close()
	for _, suffix := range []string{logSuffix, indexSuffix, timeIndexSuffix} {
		if err := l.fs.Remove(segmentPath(l.dir, s.baseOffset, suffix)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

func (l *Log) active() *segment  { return l.segs[len(l.segs)-1] }
func (l *Log) lastIndex() uint64 { return l.active().nextIndex - 1 }

// lastTerm is the term of the last entry, or of the snapshot when the log holds no entry.
func (l *Log) lastTerm() uint64 {
	for i := len(l.segs) - 1; i >= 0; i-- {
		if !l.segs[i].empty() {
			return l.segs[i].lastTerm
		}
	}
	return l.state.SnapTerm
}

// fail records a write-path failure: from now on the log refuses writes until reopened.
func (l *Log) fail(err error) error {
	if l.failed == nil {
		l.failed = err
		l.log.Error("log failed", "err", err)
	}
	return err
}

func (l *Log) writable() error {
	if l.closed {
		return ErrClosed
	}
	if l.failed != nil {
		return fmt.Errorf("%w: %v", ErrFailed, l.failed)
	}
	return nil
}

// Append appends a records batch built by BatchBuilder (or any valid batch) as the next entry,
// with the term of the last entry, and returns the offset of its first record. Its placement
// fields are assigned by the log; the caller's slice is not modified. This is the path of a log
// used without raft; a raft group uses SaveEntries.
func (l *Log) Append(batch []byte) (int64, error) {
	h, err := ParseBatch(batch)
	if err != nil {
		return 0, err
	}
	if h.Kind != KindRecords {
		return 0, fmt.Errorf("%w: Append takes records batches, not %s", ErrBadBatch, h.Kind)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writable(); err != nil {
		return 0, err
	}
	base := l.active().nextOffset
	idx := l.active().nextIndex
	if err := l.appendFrame(batch[:h.Size()], h, l.lastTerm(), idx); err != nil {
		return 0, err
	}
	l.applied = idx
	if err := l.syncPolicy(); err != nil {
		return 0, err
	}
	return base, nil
}

// appendFrame writes one batch as raft entry (term, idx) at the end of the log, rolling first
// if the active segment is full. The caller holds l.mu and calls syncPolicy afterwards.
func (l *Log) appendFrame(batch []byte, h Header, term, idx uint64) error {
	if err := l.maybeRoll(len(batch)); err != nil {
		return err
	}
	s := l.active()
	h.BaseOffset, h.Term, h.Index = s.nextOffset, term, idx
	if s.nextOffset > math.MaxInt64-int64(h.Count) {
		return fmt.Errorf("%w: offsets exhausted", ErrBadBatch)
	}
	// Copy small batches into one buffer for a single write; write large ones as header and body,
	// which saves copying a large body for one extra system call.
	var hdr [HeaderSize]byte
	copy(hdr[:], batch[:HeaderSize])
	putPlacement(hdr[:], h.BaseOffset, term, idx)
	pos := s.size
	var err error
	if len(batch) <= 64<<10 {
		l.scratch = append(append(l.scratch[:0], hdr[:]...), batch[HeaderSize:]...)
		_, err = s.f.Write(l.scratch)
	} else if _, err = s.f.Write(hdr[:]); err == nil {
		_, err = s.f.Write(batch[HeaderSize:])
	}
	if err != nil {
		return l.fail(fmt.Errorf("append to %s: %w", s.path, err))
	}
	s.track(pos, h, l.cfg.IndexIntervalBytes)
	l.unsynced = true
	return nil
}

// maybeRoll seals the active segment and starts a new one when the next batch would overflow it
// or it has grown old. A segment is only rolled once it holds a record, so that every segment has
// its own base offset (and file name).
func (l *Log) maybeRoll(next int) error {
	s := l.active()
	if !s.hasRecords() {
		return nil
	}
	full := s.size+int64(next) > l.cfg.SegmentBytes
	old := l.cfg.SegmentAge > 0 && s.firstTS != noTimestamp &&
		l.cfg.Now().Sub(time.UnixMilli(s.firstTS)) >= l.cfg.SegmentAge
	if !full && !old {
		return nil
	}
	return l.roll()
}

// roll seals the active segment (fsync, indexes written) and creates the next one.
func (l *Log) roll() error {
	s := l.active()
	if err := s.f.Sync(); err != nil {
		return l.fail(fmt.Errorf("sync %s: %w", s.path, err))
	}
	if err := l.writeIndexes(s); err != nil {
		return l.fail(fmt.Errorf("write indexes of %s: %w", s.path, err))
	}
	next, err := l.createSegment(s.nextOffset, s.nextIndex)
	if err != nil {
		return l.fail(fmt.Errorf("roll segment: %w", err))
	}
	s.sealed = true
	l.segs = append(l.segs, next)
	l.unsynced = false
	l.lastSync = l.cfg.Now()
	l.log.Debug("rolled segment", "sealed", s.path, "next", next.path)
	return nil
}

// syncPolicy fsyncs after an append as the policy says. The caller holds l.mu.
func (l *Log) syncPolicy() error {
	switch l.cfg.Sync {
	case SyncAlways:
		return l.syncLocked()
	case SyncInterval:
		if l.cfg.Now().Sub(l.lastSync) >= l.cfg.SyncInterval {
			return l.syncLocked()
		}
	}
	return nil
}

func (l *Log) syncLocked() error {
	if l.unsynced {
		s := l.active()
		if err := s.f.Sync(); err != nil {
			// After a failed fsync the kernel may have dropped the dirty pages: nothing written
			// since the last good fsync can be trusted, so the log stops taking writes.
			return l.fail(fmt.Errorf("sync %s: %w", s.path, err))
		}
		l.unsynced = false
	}
	l.lastSync = l.cfg.Now()
	if l.stateDirty {
		return l.writeState()
	}
	return nil
}

// Sync makes everything appended so far durable, whatever the policy.
func (l *Log) Sync() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writable(); err != nil {
		return err
	}
	return l.syncLocked()
}

func (l *Log) flusher() {
	defer close(l.done)
	t := time.NewTicker(l.cfg.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.mu.Lock()
			if l.writable() == nil && l.unsynced && l.cfg.Now().Sub(l.lastSync) >= l.cfg.SyncInterval/2 {
				_ = l.syncLocked() // a failure is recorded in l.failed and returned by the next write
			}
			l.mu.Unlock()
		}
	}
}

// Close syncs (unless the log failed) and closes the log. Its goroutine is stopped first.
func (l *Log) Close() error {
	if l.stop != nil {
		close(l.stop)
		<-l.done
		l.stop = nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	var err error
	if l.failed == nil {
		err = l.syncLocked()
	}
	l.closed = true
	if cerr := l.closeFiles(); err == nil {
		err = cerr
	}
	return err
}

func (l *Log) closeFiles() error {
	var err error
	for _, s := range l.segs {
		if cerr := s.f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// StartOffset is the offset of the first record that can be read.
func (l *Log) StartOffset() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.state.StartOffset
}

// EndOffset is the offset the next record will get (the log end offset).
func (l *Log) EndOffset() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.active().nextOffset
}

// Size is the log's size on disk in bytes, segments only.
func (l *Log) Size() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var n int64
	for _, s := range l.segs {
		n += s.size
	}
	return n
}

// Segments is the number of segment files.
func (l *Log) Segments() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.segs)
}

// segmentForOffset returns the segment holding offset off (start <= off < end).
func (l *Log) segmentForOffset(off int64) *segment {
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].baseOffset > off })
	// Several segments can share a base offset only if the earlier ones hold no records; the last
	// of them is the one with the record.
	return l.segs[max(i-1, 0)]
}

// Read returns whole batches as they lie on disk, starting with the batch that holds offset
// from, up to about maxBytes (at least one batch, whatever its size), and none whose first
// record is at or after end: pass EndOffset() for everything appended, or a raft group's high
// watermark for committed records only. The bytes are appended to dst, which may be nil.
//
// The batches are not decoded: they may begin with records before from, and may include batches
// of other kinds than KindRecords (raft entries), which hold no records; a consumer skips both.
// Reads stay within one segment; the next read continues in the next. A read at end returns no
// bytes; one outside [StartOffset, EndOffset] returns ErrOffsetOutOfRange.
func (l *Log) Read(dst []byte, from int64, maxBytes int, end int64) ([]byte, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return dst, ErrClosed
	}
	logEnd := l.active().nextOffset
	if from < l.state.StartOffset || from > logEnd {
		return dst, fmt.Errorf("%w: %d not in [%d, %d]", ErrOffsetOutOfRange, from, l.state.StartOffset, logEnd)
	}
	end = min(end, logEnd)
	if from >= end {
		return dst, nil
	}
	s := l.segmentForOffset(from)
	w := &window{f: s.f, chunk: 2 * HeaderSize}
	pos, h, err := s.seekOffset(w, from)
	if err != nil {
		return dst, err
	}
	// Read maxBytes (or the first batch, if larger) in one go, then cut at the last whole batch.
	want := max(int64(maxBytes), int64(h.Size()))
	want = min(want, s.size-pos)
	start := len(dst)
	dst = growLen(dst, int(want))
	buf := dst[start:]
	if _, err := s.f.ReadAt(buf, pos); err != nil {
		return dst[:start], fmt.Errorf("read %s at %d: %w", s.path, pos, err)
	}
	n := 0
	for n+HeaderSize <= len(buf) {
		h, err := ParseHeader(buf[n:])
		if err != nil {
			return dst[:start], s.corrupt(pos+int64(n), 0, 0, err.Error())
		}
		if n+h.Size() > len(buf) || (h.Count > 0 && h.BaseOffset >= end) {
			break
		}
		if l.cfg.VerifyReads {
			if err := CheckCRC(buf[n:], h); err != nil {
				return dst[:start], s.corrupt(pos+int64(n), h.BaseOffset, h.Index, err.Error())
			}
		}
		n += h.Size()
		if h.NextOffset() >= end {
			break
		}
	}
	return dst[:start+n], nil
}

func growLen(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b[:len(b)+n]
	}
	nb := make([]byte, len(b)+n)
	copy(nb, b)
	return nb
}

// OffsetForTime returns the offset of the first record whose timestamp is at least ts. When no
// record is that new, it returns EndOffset() and false.
func (l *Log) OffsetForTime(ts int64) (int64, bool, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return 0, false, ErrClosed
	}
	for _, s := range l.segs {
		if s.maxTS < ts || s.nextOffset <= l.state.StartOffset {
			continue
		}
		w := &window{f: s.f}
		pos := s.startForTime(ts)
		for pos < s.size {
			h, err := s.headerAt(w, pos)
			if err != nil {
				return 0, false, err
			}
			if h.Count > 0 && h.MaxTimestamp >= ts && h.NextOffset() > l.state.StartOffset {
				b, err := w.bytes(pos, h.Size())
				if err != nil {
					return 0, false, s.corrupt(pos, h.BaseOffset, h.Index, err.Error())
				}
				found := int64(-1)
				_, err = DecodeBatch(b, func(off int64, r Record) error {
					if found < 0 && r.Timestamp >= ts && off >= l.state.StartOffset {
						found = off
					}
					return nil
				})
				if err != nil {
					return 0, false, s.corrupt(pos, h.BaseOffset, h.Index, err.Error())
				}
				if found >= 0 {
					return found, true, nil
				}
			}
			pos += int64(h.Size())
		}
	}
	return l.active().nextOffset, false, nil
}

// TruncateTo removes every batch at or after record offset off, which must be the first offset of
// a batch or the end offset; raft entries without records that follow the last kept batch go too.
// This is how a diverged replica cuts its log back to what the leader holds.
func (l *Log) TruncateTo(off int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writable(); err != nil {
		return err
	}
	end := l.active().nextOffset
	if off == end {
		return nil
	}
	if off < l.segs[0].baseOffset || off > end {
		return fmt.Errorf("%w: truncate to %d, log holds [%d, %d]", ErrOffsetOutOfRange, off, l.segs[0].baseOffset, end)
	}
	s := l.segmentForOffset(off)
	_, h, err := s.seekOffset(&window{f: s.f, chunk: 2 * HeaderSize}, off)
	if err != nil {
		return err
	}
	if h.BaseOffset != off {
		return fmt.Errorf("%w: %d is inside the batch at %d", ErrNotBoundary, off, h.BaseOffset)
	}
	return l.truncateIndex(h.Index)
}

// truncateIndex removes raft entries from idx on; idx must be within the log.
func (l *Log) truncateIndex(idx uint64) error {
	for len(l.segs) > 1 && l.active().baseIndex >= idx {
		s := l.active()
		if err := l.removeSegment(s); err != nil {
			return l.fail(fmt.Errorf("truncate: %w", err))
		}
		l.segs = l.segs[:len(l.segs)-1]
	}
	s := l.active()
	if idx >= s.nextIndex {
		return nil
	}
	w := &window{f: s.f}
	pos := int64(segmentHeaderSize)
	if idx > s.baseIndex {
		p, _, err := s.seekIndex(w, idx)
		if err != nil {
			return err
		}
		pos = p
	}
	if err := s.f.Truncate(pos); err != nil {
		return l.fail(fmt.Errorf("truncate %s: %w", s.path, err))
	}
	if err := s.f.Sync(); err != nil {
		return l.fail(fmt.Errorf("sync %s: %w", s.path, err))
	}
	if s.sealed {
		s.sealed = false
		for _, suffix := range []string{indexSuffix, timeIndexSuffix} {
			if err := l.fs.Remove(segmentPath(l.dir, s.baseOffset, suffix)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return l.fail(err)
			}
		}
	}
	// Recompute the segment's end state by rescanning from its last remaining index entry.
	s.dropIndexFrom(pos)
	from, fromIdx, fromOff := s.entryAt(len(s.index) - 1)
	s.nextIndex, s.nextOffset, s.size = fromIdx, fromOff, from
	s.maxTS, s.firstTS = noTimestamp, noTimestamp
	if t := s.times; len(t) > 0 {
		s.maxTS = t[len(t)-1].ts
	}
	if len(s.index) > 0 {
		s.indexedAt = from
	}
	prevTerm := l.state.SnapTerm
	if len(l.segs) > 1 {
		prevTerm = l.segs[len(l.segs)-2].lastTerm
	}
	s.lastTerm = 0
	res, err := s.scan(w, from, fromIdx, fromOff, prevTerm, false, true, l.cfg.IndexIntervalBytes)
	if err != nil {
		return l.fail(err)
	}
	if res.bad || s.nextIndex != idx {
		return l.fail(s.corrupt(res.end, s.nextOffset, s.nextIndex, "rescan after truncation: "+res.reason))
	}
	if s.empty() {
		s.lastTerm = 0
	}
	if l.state.StartOffset > s.nextOffset {
		l.state.StartOffset = s.nextOffset
	}
	if l.state.Commit >= idx {
		l.state.Commit = idx - 1
	}
	l.unsynced = false
	return nil
}

// DeleteBefore makes off the log start: records before it can no longer be read, and whole
// segments before it are deleted. Segments holding raft entries the owner has not applied stay.
func (l *Log) DeleteBefore(off int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writable(); err != nil {
		return err
	}
	if end := l.active().nextOffset; off > end {
		return fmt.Errorf("%w: delete before %d, log ends at %d", ErrOffsetOutOfRange, off, end)
	}
	if off <= l.state.StartOffset {
		return nil
	}
	l.state.StartOffset = off
	if err := l.writeState(); err != nil {
		return err
	}
	_, err := l.compact(func(s *segment) bool { return s.nextOffset <= off })
	return err
}

// ApplyRetention deletes the oldest sealed segments while the log exceeds RetentionBytes or
// their newest record is older than RetentionAge, never beyond what the owner has applied.
// It returns how many segments it deleted. The owner calls it periodically.
func (l *Log) ApplyRetention() (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writable(); err != nil {
		return 0, err
	}
	var total int64
	for _, s := range l.segs {
		total += s.size
	}
	now := l.cfg.Now()
	return l.compact(func(s *segment) bool {
		expired := l.cfg.RetentionAge > 0 && s.maxTS != noTimestamp && now.Sub(time.UnixMilli(s.maxTS)) > l.cfg.RetentionAge
		oversize := l.cfg.RetentionBytes > 0 && total > l.cfg.RetentionBytes
		if expired || oversize {
			total -= s.size
			return true
		}
		return false
	})
}

// compact deletes sealed segments from the front while drop says so and their entries are
// applied, recording the new log start in the state file before any file goes.
func (l *Log) compact(drop func(*segment) bool) (int, error) {
	n := 0
	for n < len(l.segs)-1 && l.segs[n].nextIndex-1 <= l.applied && drop(l.segs[n]) {
		n++
	}
	if n == 0 {
		return 0, nil
	}
	gone, keep := l.segs[:n], l.segs[n]
	last := gone[len(gone)-1]
	l.state.SnapIndex, l.state.SnapTerm, l.state.SnapOffset = keep.baseIndex-1, last.lastTerm, keep.baseOffset
	if l.state.StartOffset < keep.baseOffset {
		l.state.StartOffset = keep.baseOffset
	}
	l.pruneConfStates()
	if err := l.writeState(); err != nil {
		return 0, err
	}
	for _, s := range gone {
		if err := l.removeSegment(s); err != nil {
			return 0, l.fail(fmt.Errorf("delete segment: %w", err))
		}
		l.log.Info("deleted segment", "file", s.path)
	}
	l.segs = append([]*segment(nil), l.segs[n:]...)
	return n, nil
}
