package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/weirhq/weir/storage/vfs"
)

// Log is one partition's log: a directory of segments that is at the same time a record log
// addressed by offset and a raft log addressed by index (see the package doc).
//
// A Log is safe for concurrent use: appends, truncation and deletion are serialised by a lock,
// and reads run concurrently with each other. Under SyncInterval and SyncNever, and with
// DropCache, it runs one goroutine, the syncer, which fsyncs sealed segments and rolled segments'
// headers off the write path (and the active segment every interval under SyncInterval), and
// evicts the active segment's older data from the page cache; Close stops it and waits for it.
type Log struct {
	dir string
	cfg Config
	fs  vfs.FS
	log *slog.Logger

	mu         sync.RWMutex
	segs       []*segment // by offset; the last is the active segment
	state      persistedState
	stateDirty bool   // state differs from the state file only in its commit index
	dirDirty   bool   // files were removed or renamed since the directory was last synced
	applied    uint64 // highest raft index the owner has applied; retention stays below it
	unsynced   bool   // the active segment holds data not yet fsynced
	lastSync   time.Time
	failed     error
	closed     bool
	scratch    []byte
	cache      entryCache // entries saved and not yet applied, for Entries
	// pending are the sealed segments, oldest first, whose data the syncer has not yet fsynced
	// (SyncInterval and SyncNever only). Their index files are written after the fsync, so a
	// sealed segment without index files may hold unsynced data (see recover).
	pending []*segment

	kick    chan struct{} // wakes the syncer when a segment is sealed, or to evict
	noEvict bool          // the filesystem cannot evict (vfs.Evict said unsupported)
	// headersUnsynced: a segment may have headerUnsynced set (a lazy roll since the syncer last
	// made the headers durable); saves scanning the segments on every sync.
	headersUnsynced bool
	stop            chan struct{}
	done            chan struct{}
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
	if cfg.Sync != SyncAlways || cfg.DropCache {
		l.kick, l.stop, l.done = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
		go l.syncer()
	}
	return l, nil
}

// createSegment creates a new segment file with its header, durable before it is used; or, with
// lazy, leaves the header and the directory entry for the syncer to make durable (syncHeaders).
func (l *Log) createSegment(baseOffset int64, baseIndex uint64, lazy bool) (*segment, error) {
	path := segmentPath(l.dir, baseOffset, logSuffix)
	f, err := l.fs.Create(path)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(encodeSegmentHeader(baseOffset, baseIndex)); err != nil {
		f.Close()
		return nil, err
	}
	if lazy {
		s := newSegmentState(path, f, baseOffset, baseIndex, l.log)
		s.headerUnsynced = true
		return s, nil
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		f.Close()
		return nil, err
	}
	l.dirDirty = false
	return newSegmentState(path, f, baseOffset, baseIndex, l.log), nil
}

// removeSegment closes and deletes a segment and its indexes. The removal is durable after the
// next syncDir.
func (l *Log) removeSegment(s *segment) error {
	s.f.Close()
	s.removed = true
	l.unpend(s)
	for _, suffix := range []string{logSuffix, indexSuffix, timeIndexSuffix} {
		if err := l.removeFile(segmentPath(l.dir, s.baseOffset, suffix)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// removeFile removes a file of the log. The removal is durable after the next syncDir.
func (l *Log) removeFile(name string) error {
	if err := l.fs.Remove(name); err != nil {
		return err
	}
	l.dirDirty = true
	return nil
}

// syncDir makes the removals since the directory was last synced durable. Callers sync before
// they change a file whose new content relies on a removal (a segment truncated after the
// segments following it went), and before they return.
func (l *Log) syncDir() error {
	if !l.dirDirty {
		return nil
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return err
	}
	l.dirDirty = false
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
	if err := l.appendFrame(batch[:h.Size()], h, l.lastTerm(), idx, false); err != nil {
		return 0, err
	}
	l.applied = idx
	if err := l.syncPolicy(); err != nil {
		return 0, err
	}
	return base, nil
}

// appendFrame writes one batch as raft entry (term, idx) at the end of the log, rolling first
// if the active segment is full. With own, the placement is written into batch's header and
// batch written as it is; otherwise batch is not modified. The caller holds l.mu and calls
// syncPolicy afterwards.
func (l *Log) appendFrame(batch []byte, h Header, term, idx uint64, own bool) error {
	if err := l.maybeRoll(len(batch)); err != nil {
		return err
	}
	s := l.active()
	h.BaseOffset, h.Term, h.Index = s.nextOffset, term, idx
	if s.nextOffset > math.MaxInt64-int64(h.Count) {
		return fmt.Errorf("%w: offsets exhausted", ErrBadBatch)
	}
	pos := s.size
	var err error
	switch {
	case own:
		putPlacement(batch[:HeaderSize], h.BaseOffset, term, idx)
		_, err = s.f.Write(batch)
	case len(batch) <= 64<<10:
		// Copy a small batch behind its placed header for a single write; write a large one as
		// header and body, which saves copying a large body for one extra system call.
		l.scratch = append(l.scratch[:0], batch...)
		putPlacement(l.scratch[:HeaderSize], h.BaseOffset, term, idx)
		_, err = s.f.Write(l.scratch)
	default:
		var hdr [HeaderSize]byte
		copy(hdr[:], batch[:HeaderSize])
		putPlacement(hdr[:], h.BaseOffset, term, idx)
		if _, err = s.f.Write(hdr[:]); err == nil {
			_, err = s.f.Write(batch[HeaderSize:])
		}
	}
	if err != nil {
		return l.fail(fmt.Errorf("append to %s: %w", s.path, err))
	}
	s.track(pos, h, l.cfg.IndexIntervalBytes)
	l.unsynced = true
	if l.cfg.DropCache && !l.noEvict && evictTarget(s) > s.evictedTo {
		l.wakeSyncer() // to evict the data behind the cached tail
	}
	return nil
}

// wakeSyncer wakes the syncer unless a wake-up is pending already.
func (l *Log) wakeSyncer() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
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

// roll seals the active segment and creates the next one. Under SyncAlways the sealed segment is
// fsynced and its indexes written here; under SyncInterval and SyncNever that is left to the
// syncer, so that the append that rolls does not wait for a whole segment's writeback (tens of
// milliseconds for 128 MiB), and so is the fsync of the new segment's header and of the
// directory: on the benchmark VM those took up to 27 ms while other partitions' segments were
// being synced, and every partition rolls at about the same moment under an even load.
func (l *Log) roll() error {
	s := l.active()
	if l.cfg.Sync == SyncAlways {
		if err := s.f.Sync(); err != nil {
			return l.fail(fmt.Errorf("sync %s: %w", s.path, err))
		}
		if err := l.writeIndexes(s); err != nil {
			return l.fail(fmt.Errorf("write indexes of %s: %w", s.path, err))
		}
	}
	next, err := l.createSegment(s.nextOffset, s.nextIndex, l.cfg.Sync != SyncAlways)
	if err != nil {
		return l.fail(fmt.Errorf("roll segment: %w", err))
	}
	s.sealed = true
	l.segs = append(l.segs, next)
	if l.cfg.Sync == SyncAlways {
		l.unsynced = false
		l.lastSync = l.cfg.Now()
		l.dropCache(l.uncacheable()) // a few ms for 128 MiB, next to the fsync's tens
	} else {
		s.syncPending = true
		s.sealGen++
		l.pending = append(l.pending, s)
		l.unsynced = false // the new active segment holds only its header, which the syncer syncs
		l.headersUnsynced = l.headersUnsynced || next.headerUnsynced
		l.wakeSyncer()
	}
	l.log.Debug("rolled segment", "sealed", s.path, "next", next.path)
	return nil
}

// unpend forgets s as a segment awaiting its fsync: it was synced, removed or made active again.
func (l *Log) unpend(s *segment) {
	if !s.syncPending {
		return
	}
	s.syncPending = false
	for i, p := range l.pending {
		if p == s {
			l.pending = append(l.pending[:i:i], l.pending[i+1:]...)
			return
		}
	}
}

// unsyncedHeaders returns the segments whose header and directory entry a roll left to the
// syncer. The caller holds l.mu.
func (l *Log) unsyncedHeaders() []*segment {
	if !l.headersUnsynced {
		return nil
	}
	var segs []*segment
	for _, s := range l.segs {
		if s.headerUnsynced {
			segs = append(segs, s)
		}
	}
	l.headersUnsynced = len(segs) > 0
	return segs
}

// syncHeaders fsyncs the segments (their headers, and whatever data follows) and then the log's
// directory, which makes the new segments' entries durable. On failure it returns the segment
// whose fsync failed, or nil if the directory's did.
func (l *Log) syncHeaders(segs []*segment) (*segment, error) {
	for _, s := range segs {
		if err := s.f.Sync(); err != nil {
			return s, fmt.Errorf("sync %s: %w", s.path, err)
		}
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return nil, fmt.Errorf("sync directory %s: %w", l.dir, err)
	}
	return nil, nil
}

// syncPendingLocked fsyncs the sealed segments still awaiting it and writes their indexes, oldest
// first. The caller holds l.mu; this is the path of Sync and Close, the syncer's is syncSealed.
// New segments' headers go first: recovery relies on a sealed segment with index files being
// followed by a segment whose header is durable.
func (l *Log) syncPendingLocked() error {
	if segs := l.unsyncedHeaders(); len(segs) > 0 {
		if _, err := l.syncHeaders(segs); err != nil {
			return l.fail(err)
		}
		for _, s := range segs {
			s.headerUnsynced = false
		}
	}
	for len(l.pending) > 0 {
		s := l.pending[0]
		if err := s.f.Sync(); err != nil {
			return l.fail(fmt.Errorf("sync %s: %w", s.path, err))
		}
		if err := l.writeIndexes(s); err != nil {
			return l.fail(fmt.Errorf("write indexes of %s: %w", s.path, err))
		}
		l.unpend(s)
	}
	return nil
}

// syncSealed is the syncer's work on sealed segments: for each one pending, oldest first, it
// fsyncs the data and writes the index files to temporary names without holding the lock, then,
// under the lock, renames them into place unless the segment was removed or truncated meanwhile.
// Appends and reads go on during the fsync. The index files are what tells recovery that a sealed
// segment's data was synced, so they appear only after the fsync returned; and only once the
// headers of the segments rolled since are durable (syncHeaders), so that a sealed segment with
// index files is always followed by a segment with a durable header.
func (l *Log) syncSealed() {
	for {
		l.mu.Lock()
		if l.writable() != nil {
			l.mu.Unlock()
			return
		}
		if segs := l.unsyncedHeaders(); len(segs) > 0 {
			l.mu.Unlock()
			bad, err := l.syncHeaders(segs)
			l.mu.Lock()
			if err != nil {
				if bad != nil && bad.removed {
					// Removed meanwhile (a truncation): its fsync failing on the closed file
					// loses nothing. Look again.
					l.mu.Unlock()
					continue
				}
				l.fail(err) // pages may be lost
				l.mu.Unlock()
				return
			}
			for _, s := range segs {
				s.headerUnsynced = false
			}
			l.mu.Unlock()
			continue
		}
		if len(l.pending) == 0 {
			l.mu.Unlock()
			return
		}
		s, gen := l.pending[0], l.pending[0].sealGen
		files := [2]struct {
			name string
			data []byte
		}{
			{segmentPath(l.dir, s.baseOffset, indexSuffix), encodeIndex(s.index)},
			{segmentPath(l.dir, s.baseOffset, timeIndexSuffix), encodeTimeIndex(s.times)},
		}
		l.mu.Unlock()

		err := s.f.Sync()
		for i := 0; i < len(files) && err == nil; i++ {
			err = vfs.WriteFileSynced(l.fs, files[i].name+sealingSuffix, files[i].data)
		}

		l.mu.Lock()
		if s.removed || !s.syncPending || s.sealGen != gen {
			// Removed, or made active again (and perhaps sealed again) while it was being
			// synced: these indexes are not wanted. A failed fsync still fails the log unless
			// the file is gone: the pages it lost may be in the part a truncation kept.
			for _, f := range files {
				_ = l.fs.Remove(f.name + sealingSuffix)
			}
			if err != nil && !s.removed {
				l.fail(fmt.Errorf("sync sealed segment %s: %w", s.path, err))
				l.mu.Unlock()
				return
			}
			l.mu.Unlock()
			continue
		}
		if err == nil {
			for i := 0; i < len(files) && err == nil; i++ {
				err = l.fs.Rename(files[i].name+sealingSuffix, files[i].name)
			}
		}
		if err != nil {
			l.fail(fmt.Errorf("sync sealed segment %s: %w", s.path, err))
			l.mu.Unlock()
			return
		}
		// The renames become durable with the next directory sync; until then a crash may lose
		// them, and recovery treats the segment as unsynced, which is safe.
		l.dirDirty = true
		l.unpend(s)
		drop := l.uncacheable()
		l.mu.Unlock()
		l.dropCache(drop)
	}
}

// evictBehind writes back and drops from the page cache the active segment's data older than its
// newest CachedTailBytes, in whole EvictSteps, without holding the lock: appends and reads go on
// meanwhile. On this VM a page cache that keeps growing makes every write costlier (docs/
// benchmarks.md, "DropCache"), and dirty pages left for the kernel's writeback get writers
// throttled once there are gigabytes of them; sealed segments are dropped once fsynced, but a
// node with many partitions held up to a segment's worth of each in its active segment. The
// writeback makes nothing durable and the syncer is the only goroutine that waits for it.
//
// A writeback error is a failed fsync: sync_file_range reports it through the same open file,
// so the segment's next fsync would not (Linux reports each writeback error once per open
// file), and the pages it could not write are lost. The log fails, as after a failed fsync.
func (l *Log) evictBehind() {
	for {
		l.mu.Lock()
		if l.writable() != nil || !l.cfg.DropCache || l.noEvict {
			l.mu.Unlock()
			return
		}
		s := l.active()
		from, target := s.evictedTo, evictTarget(s)
		if target <= from {
			l.mu.Unlock()
			return
		}
		to := min(target, from+maxEvictSteps*EvictStep) // a large backlog (a segment found at Open) in parts
		f, cuts := s.f, s.truncations
		l.mu.Unlock()

		err := vfs.Evict(f, from, to-from)

		l.mu.Lock()
		switch {
		case s.removed:
		case errors.Is(err, errors.ErrUnsupported):
			l.noEvict = true
			l.log.Warn("the filesystem cannot write back and drop segment data early: the active segment stays in the page cache",
				"path", s.path, "err", err)
		case err != nil:
			l.fail(fmt.Errorf("write back %s: %w", s.path, err))
		case s.truncations == cuts:
			s.evictedTo = max(s.evictedTo, to)
		}
		if err == nil && s.readAheadTo.Load() > from {
			// A reader's read-ahead may have been dropped with the rest: its next read asks
			// again (readAheadFor).
			s.readAheadTo.Store(from)
		}
		l.mu.Unlock()
		if err != nil || s.removed || to < target {
			return // a bounded pass: the next append's wake-up goes on from here
		}
	}
}

// maxEvictSteps bounds one pass of evictBehind: the syncer's other work waits for it.
const maxEvictSteps = 16

// evictTarget is where the eviction of s should have reached: the start of its cached tail,
// in whole EvictSteps.
func evictTarget(s *segment) int64 {
	return max(s.size-CachedTailBytes, 0) / EvictStep * EvictStep
}

// uncacheable marks as uncached, and returns, the synced sealed segments beyond the newest
// CachedSealedSegments whose pages are still cached (with DropCache). The caller holds l.mu.
func (l *Log) uncacheable() []*segment {
	if !l.cfg.DropCache {
		return nil
	}
	var segs []*segment
	sealed := l.segs[:len(l.segs)-1]
	for _, s := range sealed[:max(len(sealed)-CachedSealedSegments, 0)] {
		if !s.uncached && !s.syncPending && !s.removed {
			s.uncached = true
			segs = append(segs, s)
		}
	}
	return segs
}

// dropCache asks the FS to drop the segments' pages from the page cache. It is advice: a failure
// (the file was removed meanwhile, say) costs nothing but the cache. What readers had asked to
// be read ahead goes too: their next reads ask again (readAheadFor). The mark is lowered after
// the drop, not when the segment is marked uncached: the syncer drops outside the log's lock,
// and a read in between (of a segment already uncached) asks for a read-ahead that the drop
// then discards.
func (l *Log) dropCache(segs []*segment) {
	for _, s := range segs {
		if err := vfs.DropCache(l.fs, s.path); err != nil {
			l.log.Debug("drop segment from the page cache", "path", s.path, "err", err)
		}
		s.readAheadTo.Store(0)
	}
}

// syncPolicy fsyncs after an append as the policy says. The caller holds l.mu.
func (l *Log) syncPolicy() error {
	switch l.cfg.Sync {
	case SyncAlways:
		return l.syncLocked()
	case SyncInterval:
		// While sealed segments await the syncer, leave the flush to it: syncing here would
		// fsync them inline first, the stall the syncer exists to avoid.
		if len(l.pending) == 0 && l.cfg.Now().Sub(l.lastSync) >= l.cfg.SyncInterval {
			return l.syncLocked()
		}
	}
	return nil
}

func (l *Log) syncLocked() error {
	// Sealed segments first: data must never become durable before the data written ahead of it.
	if err := l.syncPendingLocked(); err != nil {
		return err
	}
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

// syncer is the log's goroutine under SyncInterval and SyncNever, and with DropCache: it syncs
// sealed segments as they are sealed, under SyncInterval the active segment when the appenders
// have not for half an interval, and with DropCache evicts the active segment's data behind its
// cached tail.
func (l *Log) syncer() {
	defer close(l.done)
	var tick <-chan time.Time
	if l.cfg.Sync == SyncInterval {
		t := time.NewTicker(l.cfg.SyncInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-l.stop:
			return
		case <-l.kick:
			l.syncSealed()
			l.evictBehind()
		case <-tick:
			l.syncSealed()
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
