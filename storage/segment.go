package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

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
// Beside a sealed segment lie two sparse indexes, written once when the segment is sealed (the
// active segment's indexes live in memory and are rebuilt by the recovery scan on open):
//   - NAME.index: 12-byte entries (raft index - base index u32, record offset - base offset u32,
//     position u32), one for a batch at least IndexIntervalBytes after the previous entry.
//   - NAME.timeindex: 12-byte entries (timestamp i64, position u32): at an index point where the
//     segment's largest timestamp so far grew, that largest timestamp and the batch's position.
const (
	segmentMagic      uint32 = 0x57534547 // "WSEG"
	segmentVersion    uint16 = 1
	segmentHeaderSize        = 32
	indexEntrySize           = 12
	timeEntrySize            = 12

	logSuffix       = ".log"
	indexSuffix     = ".index"
	timeIndexSuffix = ".timeindex"
	tmpSuffix       = ".tmp"
	nameDigits      = 20
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
		return 0, 0, fmt.Errorf("segment header: version %d, want %d", v, segmentVersion)
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
}

const noTimestamp = -1 << 63

func newSegmentState(path string, f vfs.File, baseOffset int64, baseIndex uint64) *segment {
	return &segment{
		path: path, f: f,
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

// startForIndex returns where to start scanning for raft index idx: the last index entry at or
// before it (or the first batch) with the index and offset of the batch there.
func (s *segment) startForIndex(idx uint64) (pos int64, index uint64, offset int64) {
	i := sort.Search(len(s.index), func(i int) bool { return s.baseIndex+uint64(s.index[i].relIndex) > idx })
	return s.entryAt(i - 1)
}

// startForOffset is startForIndex for the batch holding record offset off.
func (s *segment) startForOffset(off int64) (pos int64, index uint64, offset int64) {
	i := sort.Search(len(s.index), func(i int) bool { return s.baseOffset+int64(s.index[i].relOffset) > off })
	return s.entryAt(i - 1)
}

func (s *segment) entryAt(i int) (int64, uint64, int64) {
	if i < 0 {
		return segmentHeaderSize, s.baseIndex, s.baseOffset
	}
	e := s.index[i]
	return int64(e.pos), s.baseIndex + uint64(e.relIndex), s.baseOffset + int64(e.relOffset)
}

// startForTime returns where to start scanning for the first batch whose max timestamp is at
// least ts: after the last time entry below ts every earlier batch is older.
func (s *segment) startForTime(ts int64) int64 {
	i := sort.Search(len(s.times), func(i int) bool { return s.times[i].ts >= ts })
	if i == 0 {
		return segmentHeaderSize
	}
	return int64(s.times[i-1].pos)
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
	b := make([]byte, len(entries)*indexEntrySize)
	for i, e := range entries {
		p := b[i*indexEntrySize:]
		binary.BigEndian.PutUint32(p[0:], e.relIndex)
		binary.BigEndian.PutUint32(p[4:], e.relOffset)
		binary.BigEndian.PutUint32(p[8:], e.pos)
	}
	return b
}

func encodeTimeIndex(entries []timeEntry) []byte {
	b := make([]byte, len(entries)*timeEntrySize)
	for i, e := range entries {
		p := b[i*timeEntrySize:]
		binary.BigEndian.PutUint64(p[0:], uint64(e.ts))
		binary.BigEndian.PutUint32(p[8:], e.pos)
	}
	return b
}

// decodeIndexes parses and sanity-checks both index files of a segment of the given size. Any
// inconsistency is an error, upon which the caller rebuilds the indexes from the segment.
func decodeIndexes(ib, tb []byte, size int64) ([]indexEntry, []timeEntry, error) {
	if len(ib)%indexEntrySize != 0 || len(tb)%timeEntrySize != 0 {
		return nil, nil, errors.New("index file length is not a whole number of entries")
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

// validAt reports whether a whole, checksum-valid batch with raft index idx starts at pos: the
// test that tells corruption in the middle of a log (good data follows) from a torn tail.
func validAt(w *window, pos int64, idx uint64) bool {
	hb, err := w.bytes(pos, HeaderSize)
	if err != nil {
		return false
	}
	h, err := ParseHeader(hb)
	if err != nil || h.Index != idx {
		return false
	}
	b, err := w.bytes(pos, h.Size())
	return err == nil && CheckCRC(b, h) == nil
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

// seekIndex finds the position of the batch with raft index idx, which must be in the segment.
func (s *segment) seekIndex(w *window, idx uint64) (int64, Header, error) {
	pos, _, _ := s.startForIndex(idx)
	for pos < s.size {
		h, err := s.headerAt(w, pos)
		if err != nil {
			return 0, h, err
		}
		if h.Index == idx {
			return pos, h, nil
		}
		if h.Index > idx {
			break
		}
		pos += int64(h.Size())
	}
	return 0, Header{}, s.corrupt(pos, 0, idx, "raft index not found where the index says")
}

// seekOffset finds the position of the batch holding record offset off (the first batch with
// a record at or after off), which must be below s.nextOffset.
func (s *segment) seekOffset(w *window, off int64) (int64, Header, error) {
	pos, _, _ := s.startForOffset(off)
	for pos < s.size {
		h, err := s.headerAt(w, pos)
		if err != nil {
			return 0, h, err
		}
		if h.NextOffset() > off {
			return pos, h, nil
		}
		pos += int64(h.Size())
	}
	return 0, Header{}, s.corrupt(pos, off, 0, "record offset not found where the index says")
}

func (s *segment) corrupt(pos, off int64, idx uint64, reason string) error {
	return &CorruptError{File: s.path, Pos: pos, Offset: off, Index: idx, Reason: reason}
}
