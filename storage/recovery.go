package storage

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"

	"github.com/weirhq/weir/storage/vfs"
)

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
			if err := l.removeFile(filepath.Join(l.dir, name)); err != nil {
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
	// indexedFrom[i]: a segment from bases[i] on has index files (was synced; see below).
	indexedFrom := make([]bool, len(bases)+1)
	for i := len(bases) - 1; i >= 0; i-- {
		indexedFrom[i] = indexedFrom[i+1] || l.indexed(bases[i], indexes)
	}
	for i, base := range bases {
		last := i == len(bases)-1
		// Under SyncInterval and SyncNever a roll leaves the new segment's header to the syncer,
		// which makes it durable before it writes the index files of the segment before it. So
		// a segment after one without index files, with none from it on, may have lost its
		// header in a machine crash: it and the segments after it hold nothing that was synced.
		lazy := i > 0 && !l.indexed(bases[i-1], indexes) && !indexedFrom[i]
		s, err := l.openSegment(base, last, lazy)
		if errors.Is(err, errTornRoll) {
			if err := l.removeTornRolls(bases[i:]); err != nil {
				return err
			}
			break
		}
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
	// Removals so far must be durable before recovery changes any file: a torn tail cut while a
	// removed segment could come back would leave a log with a hole.
	if err := l.syncDir(); err != nil {
		return err
	}
	// The syncer writes a sealed segment's index files after its fsync, oldest segment first, so
	// a sealed segment with index files, or before one with them, is synced. Only the sealed
	// segments after the last one with index files may hold data a machine crash lost.
	synced := make([]bool, len(l.segs))
	for i, later := len(l.segs)-2, false; i >= 0; i-- {
		later = later || l.hasIndexFiles(l.segs[i], indexes)
		synced[i] = later
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
			var tornAt int64
			tornAt, err = l.loadSealed(s, prevTerm, indexes, synced[i])
			if next := l.segs[i+1]; err == nil && tornAt == 0 && !synced[i] {
				if next.baseIndex != s.nextIndex || next.baseOffset != s.nextOffset {
					// A crash tore this unsynced segment exactly at a batch boundary: it ends
					// short of where the next one starts.
					tornAt = s.size
				} else if err = s.f.Sync(); err == nil {
					// Whole: sync it and write the index files that say so, after the next
					// segment's header and entry (see syncSealed).
					if _, err = l.syncHeaders([]*segment{next}); err == nil {
						err = l.writeIndexes(s)
					}
				}
			}
			if err == nil && tornAt > 0 {
				if err := l.cutUnsyncedSealed(i, tornAt); err != nil {
					return err
				}
				break // s is the active segment now; the ones after it are gone
			}
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
		s, err := l.createSegment(l.state.SnapOffset, l.state.SnapIndex+1, false)
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
			// Gone already if dropBeforeSnapshot removed the segment this one replaces.
			if err := l.removeFile(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	if err := l.syncDir(); err != nil {
		return err
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
	if cs := l.state.ConfStates; len(cs) > 0 && cs[len(cs)-1].Index > l.lastIndex() {
		// The same: configurations whose entries the crash took are not in force; raft applies
		// them again when the entries come back.
		keep := len(cs)
		for keep > 0 && cs[keep-1].Index > l.lastIndex() {
			keep--
		}
		l.log.Warn("configuration beyond the recovered log; dropping it", "dropped", len(cs)-keep, "last_index", l.lastIndex())
		l.state.ConfStates = cs[:keep]
		if err := l.writeState(); err != nil {
			return err
		}
	}
	l.applied = l.state.SnapIndex
	return nil
}

// errTornRoll is openSegment's answer for a segment whose header a machine crash lost after a
// roll that left the header unsynced.
var errTornRoll = errors.New("segment header lost in a crash after a roll")

// removeTornRolls removes the segments at bases, whose first one's header a crash lost before
// the syncer made it durable (see recover): nothing in them was synced.
func (l *Log) removeTornRolls(bases []int64) error {
	for _, base := range bases {
		path := segmentPath(l.dir, base, logSuffix)
		size, _ := l.fs.Stat(path)
		l.log.Warn("removing a segment whose header a crash lost before it was synced, and the segments after it",
			"file", path, "dropped_bytes", size)
		for _, suffix := range []string{logSuffix, indexSuffix, timeIndexSuffix} {
			if err := l.removeFile(segmentPath(l.dir, base, suffix)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// indexed reports whether either index file of the segment at base was present when recovery
// listed the directory.
func (l *Log) indexed(base int64, present map[string]bool) bool {
	return present[filepath.Base(segmentPath(l.dir, base, indexSuffix))] ||
		present[filepath.Base(segmentPath(l.dir, base, timeIndexSuffix))]
}

// openSegment opens a segment file and reads its header. A last segment too short to hold its
// header is the trace of a roll that a crash cut short: it held no data and is removed. With
// lazy (the header may never have been synced), a header missing or all zeros is errTornRoll.
func (l *Log) openSegment(base int64, last, lazy bool) (*segment, error) {
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
		if lazy && (n < segmentHeaderSize || bytes.Count(hb, []byte{0}) == len(hb)) {
			// What a lost write leaves: nothing, or zeros. Other damage is corruption.
			f.Close()
			return nil, errTornRoll
		}
		if last && size <= segmentHeaderSize {
			l.log.Warn("removing a segment whose header a crash left incomplete", "file", path, "bytes", size)
			f.Close()
			return nil, l.removeFile(path)
		}
		f.Close()
		return nil, &CorruptError{File: path, Reason: herr.Error()}
	}
	if baseOffset != base {
		f.Close()
		return nil, &CorruptError{File: path, Reason: fmt.Sprintf("header says base offset %d", baseOffset)}
	}
	return newSegmentState(path, f, baseOffset, baseIndex, l.log), nil
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
	if len(l.segs) > 0 && (l.segs[0].baseIndex <= snap || l.replacedBySnapshot(l.segs[0])) {
		// The first segment straddles the snapshot, or starts right after it but does not
		// continue it. Installing a snapshot writes the state file before removing the old log,
		// so these entries belong to the history the snapshot replaced: start afresh after it.
		l.log.Warn("log does not continue the snapshot; starting after the snapshot", "snapshot_index", snap, "segment", l.segs[0].path)
		for _, s := range l.segs {
			if err := l.removeSegment(s); err != nil {
				return err
			}
		}
		l.segs = nil
	}
	return nil
}

// replacedBySnapshot reports whether s, a segment that starts right after the snapshot, holds
// history that an installed snapshot replaced: the log's own continuation (a segment compaction
// kept, or one written after the snapshot) starts at the snapshot's offset, with entries no older
// than the snapshot's term.
func (l *Log) replacedBySnapshot(s *segment) bool {
	if s.baseIndex != l.state.SnapIndex+1 {
		return false
	}
	if s.baseOffset != l.state.SnapOffset {
		return true
	}
	h, err := s.headerAt(&window{f: s.f, chunk: HeaderSize}, segmentHeaderSize)
	return err == nil && h.Term < l.state.SnapTerm // an empty or damaged segment is left to the scan
}

// loadSealed loads a sealed segment's indexes, or rebuilds them when missing or damaged, and
// verifies the batches after the last index entry.
//
// A sealed segment without index files may never have been fsynced: under SyncInterval and
// SyncNever the syncer writes them only after the segment's fsync, and a machine crash can come
// first. In such a segment a bad batch with nothing valid after it is a torn write, as in the
// active segment: loadSealed returns its position (tornAt > 0) for the caller to cut the log there.
// With index files, any damage is corruption.
func (l *Log) loadSealed(s *segment, prevTerm uint64, indexes map[string]bool, synced bool) (tornAt int64, err error) {
	s.sealed = true
	s.uncached = true
	size, err := s.f.Size()
	if err != nil {
		return 0, err
	}
	s.size = size
	w := &window{f: s.f}
	if err := l.readIndexes(s, size, indexes); err != nil {
		if synced {
			l.log.Warn("rebuilding segment index", "file", s.path, "reason", err)
		}
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
		return 0, err
	}
	if res.bad && !synced {
		if err := s.checkTorn(w, res, size); err != nil {
			return 0, err
		}
		return res.end, nil
	}
	if res.bad {
		return 0, s.corrupt(res.end, s.nextOffset, s.nextIndex, res.reason)
	}
	if s.empty() && !synced {
		return segmentHeaderSize, nil // a crash kept the header and none of the data
	}
	if s.empty() {
		return 0, s.corrupt(segmentHeaderSize, s.baseOffset, s.baseIndex, "sealed segment holds no entries")
	}
	if rebuild && synced { // an unsynced segment's indexes are the caller's to write, once it is known whole
		// Index files say the data is synced: make it so before writing them.
		if err := s.f.Sync(); err != nil {
			return 0, err
		}
		return 0, l.writeIndexes(s)
	}
	return 0, nil
}

// cutUnsyncedSealed handles a torn write at byte at of l.segs[i], a sealed segment whose fsync a
// machine crash prevented: everything written after the tear is gone or untrustworthy, so the
// segments after it are removed and the segment is cut there and becomes the active one.
func (l *Log) cutUnsyncedSealed(i int, at int64) error {
	s := l.segs[i]
	size, err := s.f.Size()
	if err != nil {
		return err
	}
	l.log.Warn("truncating torn tail of a sealed segment that was never synced, and the segments after it",
		"file", s.path, "at", at, "dropped_bytes", size-at, "dropped_segments", len(l.segs)-1-i)
	for j := len(l.segs) - 1; j > i; j-- {
		if err := l.removeSegment(l.segs[j]); err != nil {
			return err
		}
	}
	l.segs = l.segs[:i+1]
	// The removals must be durable before the cut (see truncateIndex).
	if err := l.syncDir(); err != nil {
		return err
	}
	s.sealed = false
	return s.cutTail(at)
}

// checkTorn tells a torn write from corruption at the bad batch a scan of s stopped at: with a
// whole, valid batch anywhere after it (up to size) it is damage to written data, reported as a
// *CorruptError, since cutting would silently drop the good data after it, which was written
// before the damaged batch and so, under any sync policy, synced with it or earlier.
func (s *segment) checkTorn(w *window, res scanResult, size int64) error {
	at, h, found, err := s.findValidBatch(w, res.end, size, s.nextIndex)
	if err != nil {
		return err
	}
	if found {
		return s.corrupt(res.end, s.nextOffset, s.nextIndex, fmt.Sprintf(
			"%s; a valid batch (index %d, offset %d) follows at byte %d, so this is damage to written data, not a torn write",
			res.reason, h.Index, h.BaseOffset, at))
	}
	return nil
}

// cutTail truncates s to at bytes, a torn write cut off, and syncs the cut.
func (s *segment) cutTail(at int64) error {
	if err := s.f.Truncate(at); err != nil {
		return err
	}
	if err := s.f.Sync(); err != nil {
		return err
	}
	s.size = at
	return nil
}

// hasIndexFiles reports whether either index file of s was present when recovery listed the
// directory.
func (l *Log) hasIndexFiles(s *segment, present map[string]bool) bool {
	return l.indexed(s.baseOffset, present)
}

func (l *Log) readIndexes(s *segment, size int64, present map[string]bool) error {
	var data [2][]byte
	for i, suffix := range []string{indexSuffix, timeIndexSuffix} {
		name := segmentPath(l.dir, s.baseOffset, suffix)
		if !present[filepath.Base(name)] {
			return fmt.Errorf("%s is missing", filepath.Base(name))
		}
		b, err := vfs.ReadFile(l.fs, name)
		if err != nil {
			return err
		}
		data[i] = b
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
// in memory and cutting a torn tail (see checkTorn for what is not one).
func (l *Log) recoverActive(s *segment, prevTerm uint64) error {
	w := &window{f: s.f}
	res, err := s.scan(w, segmentHeaderSize, s.baseIndex, s.baseOffset, prevTerm, true, true, l.cfg.IndexIntervalBytes)
	if err != nil || !res.bad {
		return err
	}
	size, err := s.f.Size()
	if err != nil {
		return err
	}
	if err := s.checkTorn(w, res, size); err != nil {
		return err
	}
	l.log.Warn("truncating torn tail", "file", s.path, "at", res.end, "dropped_bytes", size-res.end, "reason", res.reason)
	return s.cutTail(res.end)
}
