package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"time"
)

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
	l.cache.truncate(idx)
	for len(l.segs) > 1 && l.active().baseIndex >= idx {
		s := l.active()
		if err := l.removeSegment(s); err != nil {
			return l.fail(fmt.Errorf("truncate: %w", err))
		}
		l.segs = l.segs[:len(l.segs)-1]
	}
	s := l.active()
	if s.sealed {
		// The segment is active again; its indexes live in memory from now on.
		s.sealed = false
		if s.uncached {
			s.evictedTo = s.size / EvictStep * EvictStep // cut below by the truncation, if any
		}
		s.uncached = false
		s.truncations++
		if s.syncPending {
			l.unpend(s)
			l.unsynced = true // the syncer had not synced it: the next sync must
		}
		for _, suffix := range []string{indexSuffix, timeIndexSuffix} {
			if err := l.removeFile(segmentPath(l.dir, s.baseOffset, suffix)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return l.fail(err)
			}
		}
	}
	if idx >= s.nextIndex {
		// Whole segments went: the log now ends where the active one does.
		if err := l.syncDir(); err != nil {
			return l.fail(fmt.Errorf("truncate: %w", err))
		}
		l.clampToEnd(idx)
		return nil
	}
	w := &window{f: s.f}
	pos := int64(segmentHeaderSize)
	if idx > s.baseIndex {
		p, _, err := s.seekIndex(w, idx)
		if err != nil {
			return l.fail(err) // segments after this one may be gone already
		}
		pos = p
	}
	// The segments after this one must stay gone before it is cut: a crash that kept the cut but
	// not the removals would leave a log with a hole in it.
	if err := l.syncDir(); err != nil {
		return l.fail(fmt.Errorf("truncate: %w", err))
	}
	if err := s.f.Truncate(pos); err != nil {
		return l.fail(fmt.Errorf("truncate %s: %w", s.path, err))
	}
	s.evictedTo = min(s.evictedTo, pos/EvictStep*EvictStep)
	s.truncations++ // an eviction running now must not record its end
	if err := s.f.Sync(); err != nil {
		return l.fail(fmt.Errorf("sync %s: %w", s.path, err))
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
	l.clampToEnd(idx)
	l.unsynced = false
	return nil
}

// clampToEnd keeps the log start and the commit index within a log just truncated before idx.
func (l *Log) clampToEnd(idx uint64) {
	if end := l.active().nextOffset; l.state.StartOffset > end {
		l.state.StartOffset = end
	}
	if l.state.Commit >= idx {
		l.state.Commit = idx - 1
	}
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
	// Recovery forgives a lost header only in a segment after another (see recover): the one
	// that becomes the first must have a durable header before the ones before it go.
	if keep.headerUnsynced {
		if _, err := l.syncHeaders([]*segment{keep}); err != nil {
			return 0, l.fail(err)
		}
		keep.headerUnsynced = false
	}
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
	if err := l.syncDir(); err != nil {
		return 0, l.fail(fmt.Errorf("delete segment: %w", err))
	}
	return n, nil
}
