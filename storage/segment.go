package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/weirhq/weir/storage/vfs"
)

// Segment files. A segment is named by the offset of its first record, zero-padded to 20 digits
// (Kafka's convention, so names sort by offset): 00000000000000000000.log. Its file starts with a
// segment header, big-endian:
//
//	offset size field
//	 0     4    magic        "WSEG" (0x57534547)
//	 4     2    version      segmentVersion
//	 6     2    reserved     zero
//	 8     8    base offset  offset of the segment's first record
//	16     8    base index   raft index of the segment's first entry
//	24     4    reserved     zero
//	28     4    crc          CRC32C of bytes [0, 28)
//
// and then batches, back to back. The header makes an empty segment self-describing: a segment
// rolled just before a crash still says where the log goes on.
//
// Beside a sealed segment lie two sparse indexes, written once its data is fsynced: when it is
// sealed under SyncAlways, by the log's syncer soon after under SyncInterval and SyncNever (the
// active segment's indexes live in memory and are rebuilt by the recovery scan on open):
//   - NAME.index: 12-byte entries (raft index - base index u32, record offset - base offset u32,
//     position u32), one for a batch at least IndexIntervalBytes after the previous entry.
//   - NAME.timeindex: 12-byte entries (timestamp i64, position u32): at an index point where the
//     segment's largest timestamp so far grew, that largest timestamp and the batch's position.
//
// Each index file ends with a 4-byte CRC32C of its entries; a file that fails it is rebuilt from
// the segment. Lookups check the batch an index entry leads to all the same, and ignore an entry
// that leads elsewhere.
//
// Version 2 of the segment format holds batches of BatchVersion 2 (with a header crc) and index
// files with a checksum; version 1 had neither, and Open reports a version 1 segment as an error
// rather than guess.
const (
	segmentMagic      uint32 = 0x57534547 // "WSEG"
	segmentVersion    uint16 = 2
	segmentHeaderSize        = 32
	indexEntrySize           = 12
	timeEntrySize            = 12
	indexCRCSize             = 4

	logSuffix       = ".log"
	indexSuffix     = ".index"
	timeIndexSuffix = ".timeindex"
	tmpSuffix       = vfs.TmpSuffix
	// sealingSuffix marks an index file the syncer wrote and has not yet renamed into place.
	sealingSuffix = ".sealing" + tmpSuffix
	nameDigits    = 20
)

func segmentPath(dir string, baseOffset int64, suffix string) string {
	return filepath.Join(dir, fmt.Sprintf("%0*d%s", nameDigits, baseOffset, suffix))
}

// parseSegmentName returns the base offset of a NAME.log file name.
func parseSegmentName(name string) (int64, bool) {
	stem, ok := strings.CutSuffix(name, logSuffix)
	if !ok || len(stem) != nameDigits {
		return 0, false
	}
	n, err := strconv.ParseInt(stem, 10, 64)
	return n, err == nil && n >= 0
}

func encodeSegmentHeader(baseOffset int64, baseIndex uint64) []byte {
	b := make([]byte, segmentHeaderSize)
	binary.BigEndian.PutUint32(b[0:], segmentMagic)
	binary.BigEndian.PutUint16(b[4:], segmentVersion)
	binary.BigEndian.PutUint64(b[8:], uint64(baseOffset))
	binary.BigEndian.PutUint64(b[16:], baseIndex)
	binary.BigEndian.PutUint32(b[28:], crc32.Checksum(b[:28], castagnoli))
	return b
}

func decodeSegmentHeader(b []byte) (baseOffset int64, baseIndex uint64, err error) {
	if len(b) < segmentHeaderSize {
		return 0, 0, fmt.Errorf("segment header: %d bytes, want %d", len(b), segmentHeaderSize)
	}
	if m := binary.BigEndian.Uint32(b[0:]); m != segmentMagic {
		return 0, 0, fmt.Errorf("segment header: magic %#08x, want %#08x", m, segmentMagic)
	}
	if v := binary.BigEndian.Uint16(b[4:]); v != segmentVersion {
		return 0, 0, fmt.Errorf("segment header: format version %d; this build reads version %d only", v, segmentVersion)
	}
	if got, want := crc32.Checksum(b[:28], castagnoli), binary.BigEndian.Uint32(b[28:]); got != want {
		return 0, 0, fmt.Errorf("segment header: crc %#08x, stored %#08x", got, want)
	}
	return int64(binary.BigEndian.Uint64(b[8:])), binary.BigEndian.Uint64(b[16:]), nil
}

type indexEntry struct{ relIndex, relOffset, pos uint32 }

type timeEntry struct {
	ts  int64
	pos uint32
}

// segment is one file of the log with its in-memory state. The log's lock guards it.
type segment struct {
	path       string
	f          vfs.File
	baseOffset int64
	baseIndex  uint64
	nextOffset int64  // offset after the last record
	nextIndex  uint64 // raft index after the last entry
	lastTerm   uint64 // term of the last entry; 0 when empty
	size       int64  // bytes, header included
	maxTS      int64  // largest record timestamp; minInt64 when it holds no records
	firstTS    int64  // max timestamp of the first records batch, for rolling by age
	index      []indexEntry
	times      []timeEntry
	indexedAt  int64 // position of the last index entry (segmentHeaderSize if none)
	sealed     bool
	// syncPending: sealed, and its data not yet fsynced by the syncer (Log.pending holds it).
	syncPending bool
	sealGen     uint64 // counts the segment's seals, so a syncer tells this seal from a later one
	removed     bool   // deleted from the log; a syncer still holding it must leave it alone
	// headerUnsynced: created by a roll under SyncInterval or SyncNever, and neither its header
	// nor its directory entry fsynced yet (the syncer's syncHeaders does that).
	headerUnsynced bool
	// uncached: its pages were dropped from the page cache (DropCache), or it was sealed when the
	// log was opened (what is cached of it then is what readers brought in).
	uncached bool
	// evictedTo: the data before this position (a multiple of EvictStep) was written back and
	// dropped from the page cache while the segment was active (DropCache); 0 if none.
	evictedTo int64
	// truncations counts the cuts of the segment, so that an eviction that ran meanwhile does not
	// record an end beyond data written since.
	truncations uint64
	// readAheadTo: where the range the kernel was last asked to read ahead ends (readAheadFor);
	// atomic, as reads hold only the log's read lock.
	readAheadTo atomic.Int64
	log         *slog.Logger // warnings about damage lookups work around; may be nil
}

const noTimestamp = -1 << 63

func newSegmentState(path string, f vfs.File, baseOffset int64, baseIndex uint64, log *slog.Logger) *segment {
	return &segment{
		path: path, f: f, log: log,
		baseOffset: baseOffset, baseIndex: baseIndex,
		nextOffset: baseOffset, nextIndex: baseIndex,
		size: segmentHeaderSize, maxTS: noTimestamp, firstTS: noTimestamp,
		indexedAt: segmentHeaderSize,
	}
}

func (s *segment) hasRecords() bool { return s.nextOffset > s.baseOffset }
func (s *segment) empty() bool      { return s.nextIndex == s.baseIndex }

// track updates the segment's state for a batch just placed at pos, adding index entries every
// interval bytes.
func (s *segment) track(pos int64, h Header, interval int) {
	s.nextOffset = h.NextOffset()
	s.nextIndex = h.Index + 1
	s.lastTerm = h.Term
	s.size = pos + int64(h.Size())
	if h.Kind == KindRecords && h.Count > 0 {
		if s.firstTS == noTimestamp {
			s.firstTS = h.MaxTimestamp
		}
		if h.MaxTimestamp > s.maxTS {
			s.maxTS = h.MaxTimestamp
		}
	}
	if pos-s.indexedAt >= int64(interval) {
		s.index = append(s.index, indexEntry{
			relIndex:  uint32(h.Index - s.baseIndex),
			relOffset: uint32(h.BaseOffset - s.baseOffset),
			pos:       uint32(pos),
		})
		s.indexedAt = pos
		if s.maxTS != noTimestamp && (len(s.times) == 0 || s.maxTS > s.times[len(s.times)-1].ts) {
			s.times = append(s.times, timeEntry{ts: s.maxTS, pos: uint32(pos)})
		}
	}
}

// entryForIndex returns the number of the last index entry at or before raft index idx, or -1
// for the segment's first batch.
func (s *segment) entryForIndex(idx uint64) int {
	return sort.Search(len(s.index), func(i int) bool { return s.baseIndex+uint64(s.index[i].relIndex) > idx }) - 1
}

// entryForOffset is entryForIndex for the batch holding record offset off.
func (s *segment) entryForOffset(off int64) int {
	return sort.Search(len(s.index), func(i int) bool { return s.baseOffset+int64(s.index[i].relOffset) > off }) - 1
}

// entryForTime returns the index entry to start from for the first batch whose max timestamp is
// at least ts: the one at the last time entry below ts, since every batch before that one is
// older. Time entries lie at index entries; -1 (the first batch) if there is none.
func (s *segment) entryForTime(ts int64) int {
	t := sort.Search(len(s.times), func(i int) bool { return s.times[i].ts >= ts }) - 1
	if t < 0 {
		return -1
	}
	pos := s.times[t].pos
	i := sort.Search(len(s.index), func(i int) bool { return s.index[i].pos >= pos })
	if i == len(s.index) || s.index[i].pos != pos {
		return -1
	}
	return i
}

// entryAt returns the position, raft index and record offset of index entry i, or of the first
// batch when i < 0.
func (s *segment) entryAt(i int) (int64, uint64, int64) {
	if i < 0 {
		return segmentHeaderSize, s.baseIndex, s.baseOffset
	}
	e := s.index[i]
	return int64(e.pos), s.baseIndex + uint64(e.relIndex), s.baseOffset + int64(e.relOffset)
}

// dropIndexFrom removes index entries at or after pos, after a truncation.
func (s *segment) dropIndexFrom(pos int64) {
	i := sort.Search(len(s.index), func(i int) bool { return int64(s.index[i].pos) >= pos })
	s.index = s.index[:i]
	j := sort.Search(len(s.times), func(j int) bool { return int64(s.times[j].pos) >= pos })
	s.times = s.times[:j]
	s.indexedAt = segmentHeaderSize
	if i > 0 {
		s.indexedAt = int64(s.index[i-1].pos)
	}
}

func encodeIndex(entries []indexEntry) []byte {
	b := make([]byte, len(entries)*indexEntrySize+indexCRCSize)
	for i, e := range entries {
		p := b[i*indexEntrySize:]
		binary.BigEndian.PutUint32(p[0:], e.relIndex)
		binary.BigEndian.PutUint32(p[4:], e.relOffset)
		binary.BigEndian.PutUint32(p[8:], e.pos)
	}
	sealIndexFile(b)
	return b
}

func encodeTimeIndex(entries []timeEntry) []byte {
	b := make([]byte, len(entries)*timeEntrySize+indexCRCSize)
	for i, e := range entries {
		p := b[i*timeEntrySize:]
		binary.BigEndian.PutUint64(p[0:], uint64(e.ts))
		binary.BigEndian.PutUint32(p[8:], e.pos)
	}
	sealIndexFile(b)
	return b
}

// sealIndexFile writes the checksum of an index file's entries into its last 4 bytes.
func sealIndexFile(b []byte) {
	n := len(b) - indexCRCSize
	binary.BigEndian.PutUint32(b[n:], crc32.Checksum(b[:n], castagnoli))
}

// indexFileEntries checks an index file's checksum and returns its entries, a whole number of
// entries of size bytes.
func indexFileEntries(b []byte, size int, what string) ([]byte, error) {
	if len(b) < indexCRCSize || (len(b)-indexCRCSize)%size != 0 {
		return nil, fmt.Errorf("%s file of %d bytes is not whole entries and a checksum", what, len(b))
	}
	n := len(b) - indexCRCSize
	if got, want := crc32.Checksum(b[:n], castagnoli), binary.BigEndian.Uint32(b[n:]); got != want {
		return nil, fmt.Errorf("%s file crc %#08x, stored %#08x", what, got, want)
	}
	return b[:n], nil
}

// decodeIndexes parses and checks both index files of a segment of the given size. Any
// inconsistency is an error, upon which the caller rebuilds the indexes from the segment.
func decodeIndexes(ib, tb []byte, size int64) ([]indexEntry, []timeEntry, error) {
	ib, err := indexFileEntries(ib, indexEntrySize, "index")
	if err != nil {
		return nil, nil, err
	}
	tb, err = indexFileEntries(tb, timeEntrySize, "time index")
	if err != nil {
		return nil, nil, err
	}
	idx := make([]indexEntry, len(ib)/indexEntrySize)
	for i := range idx {
		p := ib[i*indexEntrySize:]
		e := indexEntry{binary.BigEndian.Uint32(p[0:]), binary.BigEndian.Uint32(p[4:]), binary.BigEndian.Uint32(p[8:])}
		if int64(e.pos) < segmentHeaderSize || int64(e.pos) >= size {
			return nil, nil, fmt.Errorf("index entry %d points at byte %d, outside the segment", i, e.pos)
		}
		if i > 0 {
			prev := idx[i-1]
			if e.pos <= prev.pos || e.relIndex <= prev.relIndex || e.relOffset < prev.relOffset {
				return nil, nil, fmt.Errorf("index entry %d does not follow entry %d", i, i-1)
			}
		}
		idx[i] = e
	}
	times := make([]timeEntry, len(tb)/timeEntrySize)
	for i := range times {
		p := tb[i*timeEntrySize:]
		e := timeEntry{int64(binary.BigEndian.Uint64(p[0:])), binary.BigEndian.Uint32(p[8:])}
		if int64(e.pos) < segmentHeaderSize || int64(e.pos) >= size {
			return nil, nil, fmt.Errorf("time index entry %d points at byte %d, outside the segment", i, e.pos)
		}
		if i > 0 && (e.pos <= times[i-1].pos || e.ts <= times[i-1].ts) {
			return nil, nil, fmt.Errorf("time index entry %d does not follow entry %d", i, i-1)
		}
		times[i] = e
	}
	return idx, times, nil
}

// window reads a file through a reusable buffer, so that walking batch headers costs one read
// per window rather than one per header.
type window struct {
	f     vfs.File
	chunk int // bytes read at a time; windowSize if 0
	buf   []byte
	at    int64 // file position of buf[0]
	n     int   // valid bytes in buf
}

const windowSize = 64 << 10

// bytes returns n bytes at pos, or io.ErrUnexpectedEOF (with what there was) if the file ends first.
func (w *window) bytes(pos int64, n int) ([]byte, error) {
	if pos >= w.at && pos+int64(n) <= w.at+int64(w.n) {
		s := pos - w.at
		return w.buf[s : s+int64(n)], nil
	}
	chunk := w.chunk
	if chunk == 0 {
		chunk = windowSize
	}
	size := max(n, chunk)
	if cap(w.buf) < size {
		w.buf = make([]byte, size)
	}
	w.buf = w.buf[:cap(w.buf)]
	m, err := w.f.ReadAt(w.buf, pos)
	w.at, w.n = pos, m
	if m >= n {
		return w.buf[:n], nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return w.buf[:m], err
}

// scanResult is where a scan stopped and why.
type scanResult struct {
	end    int64  // position after the last good batch
	bad    bool   // stopped at a bad batch rather than at the end of the file
	reason string // why the batch at end is bad
	torn   bool   // the bad batch runs past the end of the file
}

// scan walks the batches of s from pos (which must hold raft index idx and record offset off) to
// the end of the file, checking structure and, with crc, checksums. It calls s.track for each
// good batch when track is set, and stops at the first bad one.
func (s *segment) scan(w *window, pos int64, idx uint64, off int64, prevTerm uint64, crc, track bool, interval int) (scanResult, error) {
	size, err := s.f.Size()
	if err != nil {
		return scanResult{}, err
	}
	for pos < size {
		bad := func(reason string, torn bool) (scanResult, error) {
			return scanResult{end: pos, bad: true, reason: reason, torn: torn}, nil
		}
		if size-pos < HeaderSize {
			return bad(fmt.Sprintf("%d trailing bytes, less than a batch header", size-pos), true)
		}
		hb, err := w.bytes(pos, HeaderSize)
		if err != nil {
			return scanResult{}, err
		}
		h, err := ParseHeader(hb)
		if err != nil {
			return bad(err.Error(), false)
		}
		if pos+int64(h.Size()) > size {
			return bad(fmt.Sprintf("batch of %d bytes runs past the end of the file", h.Size()), true)
		}
		if h.Index != idx || h.BaseOffset != off {
			return bad(fmt.Sprintf("batch says index %d offset %d", h.Index, h.BaseOffset), false)
		}
		if h.Term < prevTerm {
			return bad(fmt.Sprintf("term %d after term %d", h.Term, prevTerm), false)
		}
		if crc {
			b, err := w.bytes(pos, h.Size())
			if err != nil {
				return scanResult{}, err
			}
			if err := CheckCRC(b, h); err != nil {
				return bad(err.Error(), false)
			}
		}
		if track {
			s.track(pos, h, interval)
		}
		pos += int64(h.Size())
		idx, off, prevTerm = h.Index+1, h.NextOffset(), h.Term
	}
	return scanResult{end: pos}, nil
}

// headerAt reads and parses the batch header at pos.
func (s *segment) headerAt(w *window, pos int64) (Header, error) {
	hb, err := w.bytes(pos, HeaderSize)
	if err != nil {
		return Header{}, s.corrupt(pos, 0, 0, fmt.Sprintf("reading a batch header: %v", err))
	}
	h, err := ParseHeader(hb)
	if err != nil {
		return Header{}, s.corrupt(pos, 0, 0, err.Error())
	}
	return h, nil
}

// walk visits the batches of s from index entry i (the first batch when i < 0) until visit says
// it is done, and returns the position and header of that batch; found is false when the segment
// ended first. Every header is checked (ParseHeader verifies its checksum) and must continue the
// one before it. An index entry is not trusted either: if the batch it points at is not the one
// it names, the entry is damaged, and walk starts again from the entry before it, so that a bad
// index costs time but never gives a wrong answer.
func (s *segment) walk(w *window, i int, visit func(pos int64, h Header) (bool, error)) (pos int64, h Header, found bool, err error) {
	for {
		pos, idx, off := s.entryAt(i)
		pos, h, found, landed, err := s.walkFrom(w, pos, idx, off, visit)
		if landed || i < 0 {
			return pos, h, found, err
		}
		if s.log != nil {
			s.log.Warn("index entry does not match the segment; ignoring it", "file", s.path, "entry", i, "reason", err)
		}
		i--
	}
}

// walkFrom is walk from position pos, which should hold raft index idx and record offset off.
// landed reports whether it did.
func (s *segment) walkFrom(w *window, pos int64, idx uint64, off int64, visit func(int64, Header) (bool, error)) (int64, Header, bool, bool, error) {
	landed := false
	for pos < s.size {
		h, err := s.headerAt(w, pos)
		if err == nil && (h.Index != idx || h.BaseOffset != off) {
			err = s.corrupt(pos, off, idx, fmt.Sprintf("batch says index %d offset %d", h.Index, h.BaseOffset))
		}
		if err != nil {
			return 0, h, false, landed, err
		}
		landed = true
		done, err := visit(pos, h)
		if done || err != nil {
			return pos, h, done, true, err
		}
		pos += int64(h.Size())
		idx, off = h.Index+1, h.NextOffset()
	}
	if !landed && (pos != s.size || idx != s.nextIndex || off != s.nextOffset) {
		return pos, Header{}, false, false, s.corrupt(pos, off, idx, "index entry points past the end of the segment")
	}
	return pos, Header{}, false, true, nil
}

// seekIndex finds the position of the batch with raft index idx, which must be in the segment.
func (s *segment) seekIndex(w *window, idx uint64) (int64, Header, error) {
	pos, h, found, err := s.walk(w, s.entryForIndex(idx), func(_ int64, h Header) (bool, error) {
		return h.Index == idx, nil
	})
	if err == nil && !found {
		err = s.corrupt(pos, 0, idx, "raft index not found in the segment")
	}
	return pos, h, err
}

// seekOffset finds the position of the batch holding record offset off (the first batch with
// a record at or after off), which must be below s.nextOffset.
func (s *segment) seekOffset(w *window, off int64) (int64, Header, error) {
	pos, h, found, err := s.walk(w, s.entryForOffset(off), func(_ int64, h Header) (bool, error) {
		return h.NextOffset() > off, nil
	})
	if err == nil && !found {
		err = s.corrupt(pos, off, 0, "record offset not found in the segment")
	}
	return pos, h, err
}

// findValidBatch looks for a whole, checksum-valid batch at or after the bad batch at pos, the
// test that tells damage to written data (good data follows) from a torn tail. Any valid batch
// counts at pos itself (a torn write cannot leave one there), and after it one with a raft index
// of at least minIndex: what the log would hold next. A header that passes its checksum can be
// trusted for its length, so the search skips the extent of such a batch when its body is bad
// (a record may well hold bytes that look like a batch) and stops at one that runs past the end
// of the file (the torn last write).
func (s *segment) findValidBatch(w *window, pos, size int64, minIndex uint64) (int64, Header, bool, error) {
	magic := binary.BigEndian.AppendUint32(nil, BatchMagic)
	check := func(p int64) (next int64, h Header, ok bool, err error) {
		hb, err := w.bytes(p, HeaderSize)
		if err != nil {
			return size, h, false, nil
		}
		if h, err = ParseHeader(hb); err != nil {
			return p + 1, h, false, nil
		}
		next = p + int64(h.Size())
		if next > size {
			return size, h, false, nil
		}
		b, err := w.bytes(p, h.Size())
		if err != nil {
			return 0, h, false, err
		}
		return next, h, CheckCRC(b, h) == nil, nil
	}
	next, h, ok, err := check(pos)
	if ok || err != nil {
		return pos, h, ok, err
	}
	for p := next; size-p >= HeaderSize; {
		chunk, err := w.bytes(p, int(min(windowSize, size-p)))
		if err != nil {
			return 0, Header{}, false, err
		}
		i := bytes.Index(chunk, magic)
		if i < 0 {
			p += int64(len(chunk) - len(magic) + 1) // a magic may straddle the chunk's end
			continue
		}
		at := p + int64(i)
		next, h, ok, err := check(at)
		if err != nil {
			return 0, h, false, err
		}
		if ok && h.Index >= minIndex {
			return at, h, true, nil
		}
		p = next
	}
	return 0, Header{}, false, nil
}

func (s *segment) corrupt(pos, off int64, idx uint64, reason string) error {
	return &CorruptError{File: s.path, Pos: pos, Offset: off, Index: idx, Reason: reason}
}
