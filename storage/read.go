package storage

import (
	"fmt"
	"sort"

	"github.com/weirhq/weir/storage/vfs"
)

// readAheadBytes is how far ahead of a read of an uncached segment the kernel is asked to read.
const readAheadBytes = 8 << 20

// readAheadFor returns the range [off, off+n) to ask the kernel to read ahead of a read of s that
// ended at end: up to readAheadBytes past end, but only from where the last request ended if that
// lies in between, and nothing (n = 0) while at least half of readAheadBytes past end was asked
// for already. So a reader going through a segment asks once per half window, for the half not
// asked for yet, instead of asking for the whole window at every read (each request walks the
// page cache over its whole range: on this VM about a fifth of the CPU time of a consumer
// catching up, when every read asked for 8 MiB). A reader elsewhere (another group, behind or
// ahead) asks for its own whole window and moves the mark there: two readers of one segment then
// ask as often as before, never less.
func (s *segment) readAheadFor(end int64) (off, n int64) {
	to := s.readAheadTo.Load()
	if to > end && to-end <= readAheadBytes {
		if to-end >= readAheadBytes/2 {
			return 0, 0
		}
		off = to
	} else {
		off = end
	}
	s.readAheadTo.Store(end + readAheadBytes)
	return off, end + readAheadBytes - off
}

// segmentForOffset returns the segment holding offset off (start <= off < end).
func (l *Log) segmentForOffset(off int64) *segment {
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].baseOffset > off })
	// Base offsets are unique: a segment is rolled only once it holds a record (maybeRoll).
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
	out, ahead, err := l.read(dst, from, maxBytes, end)
	if ahead.f != nil {
		// Outside the lock: the advice takes up to a few milliseconds, which appends would
		// otherwise wait for. The segment may be closed meanwhile; the advice then fails.
		_ = vfs.Prefetch(ahead.f, ahead.off, ahead.n)
	}
	return out, err
}

// readAhead is where Read asks the kernel to read ahead after a read of an uncached segment.
type readAhead struct {
	f      vfs.File
	off, n int64
}

func (l *Log) read(dst []byte, from int64, maxBytes int, end int64) (_ []byte, ahead readAhead, _ error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return dst, ahead, ErrClosed
	}
	logEnd := l.active().nextOffset
	if from < l.state.StartOffset || from > logEnd {
		return dst, ahead, fmt.Errorf("%w: %d not in [%d, %d]", ErrOffsetOutOfRange, from, l.state.StartOffset, logEnd)
	}
	end = min(end, logEnd)
	if from >= end {
		return dst, ahead, nil
	}
	s := l.segmentForOffset(from)
	w := &window{f: s.f, chunk: 2 * HeaderSize}
	pos, h, err := s.seekOffset(w, from)
	if err != nil {
		return dst, ahead, err
	}
	// Read maxBytes (or the first batch, if larger) in one go, then cut at the last whole batch.
	want := max(int64(maxBytes), int64(h.Size()))
	want = min(want, s.size-pos)
	start := len(dst)
	dst = growLen(dst, int(want))
	buf := dst[start:]
	if _, err := s.f.ReadAt(buf, pos); err != nil {
		return dst[:start], ahead, fmt.Errorf("read %s at %d: %w", s.path, pos, err)
	}
	if s.uncached || pos < s.evictedTo {
		// A segment dropped from the page cache (DropCache) is read by a consumer catching up:
		// have the kernel read ahead of it, so that its next reads find the data cached.
		if off, n := s.readAheadFor(pos + int64(len(buf))); n > 0 {
			ahead = readAhead{s.f, off, n}
		}
	}
	// Every batch must continue the one before: the first is the one seekOffset checked.
	n := 0
	next, nextIdx := h.BaseOffset, h.Index
	for n+HeaderSize <= len(buf) {
		h, err := ParseHeader(buf[n:])
		if err != nil {
			return dst[:start], ahead, s.corrupt(pos+int64(n), next, nextIdx, err.Error())
		}
		if h.BaseOffset != next || h.Index != nextIdx {
			return dst[:start], ahead, s.corrupt(pos+int64(n), next, nextIdx, fmt.Sprintf("batch says index %d offset %d", h.Index, h.BaseOffset))
		}
		if n+h.Size() > len(buf) || (h.Count > 0 && h.BaseOffset >= end) {
			break
		}
		if l.cfg.VerifyReads {
			if err := CheckCRC(buf[n:], h); err != nil {
				return dst[:start], ahead, s.corrupt(pos+int64(n), h.BaseOffset, h.Index, err.Error())
			}
		}
		n += h.Size()
		next, nextIdx = h.NextOffset(), h.Index+1
		if next >= end {
			break
		}
	}
	if n == 0 {
		// from is below end, so the batch seekOffset found holds records the caller may read:
		// not finding it whole where the segment says it lies is damage, and an empty answer
		// would have the caller poll forever.
		return dst[:start], ahead, s.corrupt(pos, from, h.Index, fmt.Sprintf("the batch of %d bytes holding offset %d does not fit in the segment", h.Size(), from))
	}
	return dst[:start+n], ahead, nil
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
		found := int64(-1)
		_, _, _, err := s.walk(w, s.entryForTime(ts), func(pos int64, h Header) (bool, error) {
			if h.Count == 0 || h.MaxTimestamp < ts || h.NextOffset() <= l.state.StartOffset {
				return false, nil
			}
			b, err := w.bytes(pos, h.Size())
			if err != nil {
				return false, s.corrupt(pos, h.BaseOffset, h.Index, err.Error())
			}
			_, err = DecodeBatch(b, func(off int64, r Record) error {
				if found < 0 && r.Timestamp >= ts && off >= l.state.StartOffset {
					found = off
				}
				return nil
			})
			if err != nil {
				return false, s.corrupt(pos, h.BaseOffset, h.Index, err.Error())
			}
			return found >= 0, nil
		})
		if err != nil {
			return 0, false, err
		}
		if found >= 0 {
			return found, true, nil
		}
	}
	return l.active().nextOffset, false, nil
}

// TailHeaders calls visit with the header of each batch, in log order, from the first batch of
// the oldest of the newest segments that together hold at least tailBytes (every segment if they
// hold less) to the end of the log, until visit returns false. Headers are checked; bodies are
// neither read nor checked. It holds the log's read lock throughout, so appends wait: it is
// meant for a replica that is starting (to rebuild what it keeps about recent batches).
func (l *Log) TailHeaders(tailBytes int64, visit func(Header) bool) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	i := len(l.segs) - 1
	for held := l.segs[i].size; i > 0 && held < tailBytes; {
		i--
		held += l.segs[i].size
	}
	for _, s := range l.segs[i:] {
		w := &window{f: s.f}
		_, _, stopped, err := s.walk(w, -1, func(_ int64, h Header) (bool, error) { return !visit(h), nil })
		if err != nil || stopped {
			return err
		}
	}
	return nil
}
