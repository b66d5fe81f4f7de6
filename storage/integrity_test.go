package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/weirhq/weir/storage/vfs"
)

// Tests of what the log does with damaged files: damage that is not a torn tail, damaged placement
// fields and index files, and the invariants of the write path (atomic SaveEntries, durable
// directory changes).

// batchPositions returns the position of every batch in a segment file, walking the headers.
func batchPositions(t testing.TB, b []byte) []int64 {
	t.Helper()
	var out []int64
	for pos := int64(segmentHeaderSize); pos < int64(len(b)); {
		h, err := ParseHeader(b[pos:])
		if err != nil {
			t.Fatalf("batch at %d: %v", pos, err)
		}
		out = append(out, pos)
		pos += int64(h.Size())
	}
	return out
}

// TestRecoveryDamageBeforeGoodBatches damages batches in the middle of the active segment in ways
// the header parser rejects, or two batches in a row: the batches after the damage are intact and
// were synced, so Open must report corruption at the damage rather than cut them off as a torn
// tail. Damage with nothing valid after it is still a torn tail and is cut.
func TestRecoveryDamageBeforeGoodBatches(t *testing.T) {
	const batches, victim = 20, 10
	cases := []struct {
		name string
		mod  func(b []byte, pos []int64)
		want int64 // records left after a cut; -1: Open must fail with corruption at pos[victim]
	}{
		{"header garbage", func(b []byte, pos []int64) {
			copy(b[pos[victim]:], bytes.Repeat([]byte{0xa5}, HeaderSize))
		}, -1},
		{"magic broken", func(b []byte, pos []int64) { b[pos[victim]] ^= 0xff }, -1},
		{"impossible length", func(b []byte, pos []int64) {
			binary.BigEndian.PutUint32(b[pos[victim]+offLength:], 1<<30)
		}, -1},
		{"length past the end of the file", func(b []byte, pos []int64) {
			binary.BigEndian.PutUint32(b[pos[victim]+offLength:], uint32(int64(len(b))-pos[victim]))
		}, -1},
		{"two batches damaged", func(b []byte, pos []int64) {
			b[pos[victim]+HeaderSize+2] ^= 0x10
			b[pos[victim+1]+HeaderSize+2] ^= 0x10
		}, -1},
		{"header zeroed, next body damaged", func(b []byte, pos []int64) {
			clear(b[pos[victim] : pos[victim]+HeaderSize])
			b[pos[victim+1]+HeaderSize+2] ^= 0x10
		}, -1},
		{"last two batches damaged", func(b []byte, pos []int64) {
			b[pos[batches-2]+HeaderSize+2] ^= 0x10
			b[pos[batches-1]+HeaderSize+2] ^= 0x10
		}, 2 * (batches - 2)},
		{"last header garbage", func(b []byte, pos []int64) {
			copy(b[pos[batches-1]:], bytes.Repeat([]byte{0xa5}, HeaderSize))
		}, 2 * (batches - 1)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := testConfig()
			cfg.SegmentBytes = 1 << 20
			l := mustOpen(t, dir, cfg)
			appendN(t, l, batches, 2, 0)
			l.Close()
			p := activeSegment(t, dir)
			b, _ := os.ReadFile(p)
			pos := batchPositions(t, b)
			if len(pos) != batches {
				t.Fatalf("%d batches in the segment, want %d", len(pos), batches)
			}
			c.mod(b, pos)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			l, err := Open(dir, cfg)
			if c.want >= 0 {
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				defer l.Close()
				if n := readAll(t, l, 0); n != c.want || l.EndOffset() != c.want {
					t.Fatalf("read %d records to end %d, want %d", n, l.EndOffset(), c.want)
				}
				return
			}
			if err == nil {
				end := l.EndOffset()
				l.Close()
				t.Fatalf("open succeeded with the log cut to %d records; want a *CorruptError", end)
			}
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("open: %v, want a *CorruptError", err)
			}
			if ce.File != p || ce.Pos != pos[victim] {
				t.Fatalf("error names %s at %d, want %s at %d", ce.File, ce.Pos, p, pos[victim])
			}
			if msg := err.Error(); !strings.Contains(msg, filepath.Base(p)) || !strings.Contains(msg, fmt.Sprint(pos[victim])) {
				t.Fatalf("message does not name the file and position: %v", err)
			}
			if after, _ := os.ReadFile(p); !bytes.Equal(after, b) {
				t.Fatal("open changed a corrupted file")
			}
		})
	}
}

// TestRecoveryTornCrashesOpen crashes a log many times with torn unsynced writes: every crash
// leaves a torn tail, never something recovery mistakes for corruption, and what was synced stays.
func TestRecoveryTornCrashesOpen(t *testing.T) {
	for seed := uint64(0); seed < 40; seed++ {
		mem := vfs.NewMem()
		cfg := testConfig()
		cfg.FS, cfg.SegmentBytes = mem, 1<<20
		l := mustOpen(t, "/log", cfg)
		appendN(t, l, 10, 3, 0)
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
		appendN(t, l, 5, 3, 0) // not synced
		crashed := mem.Crash(rand.New(rand.NewPCG(seed, 1)))
		l.Close()
		cfg.FS = crashed
		l2, err := Open("/log", cfg)
		if err != nil {
			t.Fatalf("seed %d: open after a crash: %v", seed, err)
		}
		if end := l2.EndOffset(); end < 30 || end%3 != 0 {
			t.Fatalf("seed %d: log ends at %d", seed, end)
		}
		readAll(t, l2, 0)
		l2.Close()
	}
}

// TestPlacementFieldsChecked flips bits in the fields that place a batch (base offset, term, raft
// index, record count) of a batch that Open does not verify: lookups and reads that meet it must
// report corruption instead of returning a wrong term, offset or entry.
func TestPlacementFieldsChecked(t *testing.T) {
	for _, field := range []struct {
		name string
		off  int
	}{{"base offset", offBaseOffset}, {"term", offTerm}, {"index", offIndex}, {"count", offCount}} {
		t.Run(field.name, func(t *testing.T) {
			mem := vfs.NewMem()
			cfg := raftLogConfig(mem)
			l := mustOpen(t, "/log", cfg)
			saveRecords(t, l, 1, 9, 3)
			l.Close()
			// The second batch of the first segment lies before its last index entry, where
			// Open does not look.
			name := segmentPath("/log", 0, logSuffix)
			b, _ := mem.ReadFile(name)
			pos := batchPositions(t, b)
			if len(pos) < 3 {
				t.Fatalf("%d batches in the first segment", len(pos))
			}
			at := pos[1] + int64(field.off) + 7 // the low byte of the big-endian field
			if field.off == offCount {
				at = pos[1] + int64(field.off) + 3
			}
			if err := mem.Corrupt(name, at, []byte{b[at] ^ 0x02}); err != nil {
				t.Fatal(err)
			}
			// Open does not read the damaged batch; every lookup that does must report it.
			l = mustOpen(t, "/log", cfg)
			if term, err := l.Term(2); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Term(2) = %d, %v; want a corruption error", term, err)
			}
			if ents, err := l.Entries(1, 4, 1<<30); err == nil {
				for i, e := range ents {
					if e.GetIndex() != uint64(i+1) || e.GetTerm() != 3 {
						t.Fatalf("Entries returned index %d term %d at %d with no error", e.GetIndex(), e.GetTerm(), i)
					}
				}
			}
			buf, err := l.Read(nil, 0, 1<<20, l.EndOffset())
			if err == nil {
				next := int64(0)
				for p := buf; len(p) > 0; {
					h, err := ParseBatch(p)
					if err != nil {
						t.Fatalf("read handed out a bad batch: %v", err)
					}
					if h.BaseOffset != next {
						t.Fatalf("read returned a batch at offset %d after offset %d, with no error", h.BaseOffset, next)
					}
					next = h.NextOffset()
					p = p[h.Size():]
				}
			}
			if _, err := l.CommittedOffset(2); err == nil {
				if off, _ := l.CommittedOffset(2); off != 4 {
					t.Fatalf("CommittedOffset(2) = %d with no error, want 4", off)
				}
			}
		})
	}
}

// TestSeekVerifiesIndexEntry points an in-memory index entry at the wrong batch, as a damaged
// index file would: lookups must not trust it and still find the right batch.
func TestSeekVerifiesIndexEntry(t *testing.T) {
	l := mustOpen(t, t.TempDir(), testConfig())
	appendN(t, l, 150, 3, 0)
	s := l.segs[0]
	if len(s.index) < 3 {
		t.Fatalf("the first segment has %d index entries", len(s.index))
	}
	// Entry 1 now points at the batch of entry 2, which holds later offsets and indexes.
	wrong := s.index[1]
	wrong.pos = s.index[2].pos
	s.index[1] = wrong
	_, _, firstOff := s.entryAt(1)
	if n := readAll(t, l, firstOff); n != 450-firstOff {
		t.Fatalf("read %d records from %d", n, firstOff)
	}
	idx := s.baseIndex + uint64(s.index[1].relIndex)
	if term, err := l.Term(idx); err != nil || term != 0 {
		t.Fatalf("Term(%d) = %d, %v", idx, term, err)
	}
	if off, err := l.CommittedOffset(idx); err != nil || off != firstOff+3 {
		t.Fatalf("CommittedOffset(%d) = %d, %v; want %d", idx, off, err, firstOff+3)
	}
	if err := l.TruncateTo(firstOff + 3); err != nil {
		t.Fatalf("TruncateTo(%d): %v", firstOff+3, err)
	}
	if l.EndOffset() != firstOff+3 {
		t.Fatalf("end %d after truncating to %d", l.EndOffset(), firstOff+3)
	}
}

// TestIndexFileDamageDetected damages an entry in the middle of sealed index files in a way their
// order checks cannot see: Open must notice and rebuild them, so that lookups stay right.
func TestIndexFileDamageDetected(t *testing.T) {
	for _, which := range []string{indexSuffix, timeIndexSuffix} {
		t.Run(which, func(t *testing.T) {
			dir := t.TempDir()
			l := mustOpen(t, dir, testConfig())
			appendN(t, l, 150, 3, 0)
			l.Close()
			seg := segmentFiles(t, dir, logSuffix)[0]
			sb, _ := os.ReadFile(seg)
			bpos := batchPositions(t, sb)
			p := strings.TrimSuffix(seg, logSuffix) + which
			b, _ := os.ReadFile(p)
			if which == indexSuffix {
				// Move entry 1 to the next batch boundary, keeping the entries in order.
				e := b[indexEntrySize:]
				at := int64(binary.BigEndian.Uint32(e[8:]))
				for i, bp := range bpos {
					if bp == at {
						binary.BigEndian.PutUint32(e[8:], uint32(bpos[i+1]))
						break
					}
				}
			} else {
				// Lower the timestamp of entry 2 to just above entry 1's, keeping them in order:
				// a lookup between the two would start too late.
				ts1 := int64(binary.BigEndian.Uint64(b[timeEntrySize:]))
				binary.BigEndian.PutUint64(b[2*timeEntrySize:], uint64(ts1+1))
			}
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			l = mustOpen(t, dir, testConfig())
			for from := int64(0); from < 60; from++ {
				if n := readAll(t, l, from); n != 450-from {
					t.Fatalf("from %d read %d", from, n)
				}
			}
			for ts := int64(0); ts < 60; ts++ {
				if got, ok, err := l.OffsetForTime(ts); got != ts || !ok || err != nil {
					t.Fatalf("OffsetForTime(%d) = %d %v %v", ts, got, ok, err)
				}
			}
		})
	}
}

// TestReadNothingBeforeEndIsCorruption: a read below the end that finds no whole batch where
// the log says one lies must be an error, not an empty answer a consumer would poll forever.
func TestReadNothingBeforeEndIsCorruption(t *testing.T) {
	l := mustOpen(t, t.TempDir(), testConfig())
	appendN(t, l, 150, 3, 0)
	s := l.segs[0]
	w := &window{f: s.f}
	last, h, err := s.seekOffset(w, s.nextOffset-1)
	if err != nil {
		t.Fatal(err)
	}
	s.size = last + HeaderSize + 1 // the segment now seems to end inside its last batch
	buf, err := l.Read(nil, h.BaseOffset, 1<<20, l.EndOffset())
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read returned %d bytes and %v, want ErrCorrupt", len(buf), err)
	}
}

// TestParseHeaderRejectsImpossibleCount: a header must not claim more records than its body can
// hold (each takes at least 5 bytes), whether or not its body is decoded.
func TestParseHeaderRejectsImpossibleCount(t *testing.T) {
	b := make([]byte, HeaderSize+5)
	copy(b[HeaderSize:], []byte{0x94, 0, 0xc0, 0xc0, 0xc0})
	fillHeader(b, KindRecords, 2, 0, 0, -1, -1)
	if _, err := ParseHeader(b); !errors.Is(err, ErrBadBatch) || !strings.Contains(err.Error(), "cannot fit") {
		t.Fatalf("ParseHeader: %v, want an ErrBadBatch saying the records cannot fit", err)
	}
	fillHeader(b, KindRecords, 1, 0, 0, -1, -1)
	if _, err := ParseBatch(b); err != nil {
		t.Fatalf("one record of five bytes: %v", err)
	}
	l := mustOpen(t, t.TempDir(), testConfig())
	fillHeader(b, KindRecords, 1<<31, 0, 0, -1, -1)
	if _, err := l.Append(b); !errors.Is(err, ErrBadBatch) {
		t.Fatalf("append of a batch claiming 2^31 records: %v", err)
	}
	if l.EndOffset() != 0 {
		t.Fatalf("end offset %d", l.EndOffset())
	}
}

// TestSaveEntriesAtomic hands SaveEntries a list that replaces part of the log and is bad further
// on: the log must be left as it was, and still take writes.
func TestSaveEntriesAtomic(t *testing.T) {
	cases := []struct {
		name string
		ents func(t *testing.T) []*pb.Entry
	}{
		{"bad data", func(t *testing.T) []*pb.Entry {
			return []*pb.Entry{
				entry(6, 2, pb.EntryNormal, recordsBatch(t, 10, "new6")),
				entry(7, 2, pb.EntryNormal, []byte("not a batch")),
			}
		}},
		{"term goes down", func(t *testing.T) []*pb.Entry {
			return []*pb.Entry{
				entry(6, 3, pb.EntryNormal, recordsBatch(t, 10, "new6")),
				entry(7, 2, pb.EntryNormal, recordsBatch(t, 10, "new7")),
			}
		}},
		{"term below the kept log", func(t *testing.T) []*pb.Entry {
			return []*pb.Entry{entry(6, 1, pb.EntryNormal, recordsBatch(t, 10, "new6"))}
		}},
		{"unknown type", func(t *testing.T) []*pb.Entry {
			return []*pb.Entry{
				entry(6, 2, pb.EntryNormal, recordsBatch(t, 10, "new6")),
				entry(7, 2, pb.EntryType(99), nil),
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := mustOpen(t, "/log", raftLogConfig(vfs.NewMem()))
			saveRecords(t, l, 1, 4, 1)
			saveRecords(t, l, 5, 9, 2)
			want, err := l.Entries(1, 10, 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			end := l.EndOffset()
			if err := l.SaveEntries(c.ents(t)); err == nil {
				t.Fatal("SaveEntries accepted bad entries")
			}
			if last, _ := l.LastIndex(); last != 9 || l.EndOffset() != end {
				t.Fatalf("after a rejected SaveEntries: last index %d, end %d; want 9, %d", last, l.EndOffset(), end)
			}
			got, err := l.Entries(1, 10, 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			for i := range want {
				if got[i].GetTerm() != want[i].GetTerm() || !bytes.Equal(got[i].Data, want[i].Data) {
					t.Fatalf("entry %d changed", i+1)
				}
			}
			// Nothing was written, so the log still takes writes.
			saveRecords(t, l, 10, 10, 2)
		})
	}
}

// TestSaveEntriesPartialWriteFails: a write that fails halfway through the entries leaves the log
// failed, so that nothing is appended after a hole.
func TestSaveEntriesPartialWriteFails(t *testing.T) {
	mem := vfs.NewMem()
	failing := 0
	inj := vfs.InjectorFunc(func(op vfs.Op, name string) error {
		if op == vfs.OpWrite && failing > 0 {
			if failing--; failing == 0 {
				return vfs.ErrInjected
			}
		}
		return nil
	})
	l := mustOpen(t, "/log", raftLogConfig(vfs.NewFaulty(mem, inj)))
	saveRecords(t, l, 1, 2, 1)
	failing = 2
	ents := []*pb.Entry{
		entry(3, 1, pb.EntryNormal, recordsBatch(t, 10, "a")),
		entry(4, 1, pb.EntryNormal, recordsBatch(t, 10, "b")),
	}
	if err := l.SaveEntries(ents); err == nil {
		t.Fatal("SaveEntries succeeded although a write failed")
	}
	if err := l.SaveEntries(ents[1:]); !errors.Is(err, ErrFailed) {
		t.Fatalf("SaveEntries after a partial write: %v, want ErrFailed", err)
	}
}

// dirSyncChecker is an Injector that checks that directory changes are made durable: removing a
// file must be followed by a SyncDir before any file is truncated (a truncation that outlives a
// crash while the removal does not leaves a log with a hole), and before the Log method returns.
type dirSyncChecker struct {
	pending string // a removal not yet followed by SyncDir
	errs    []string
}

func (c *dirSyncChecker) Inject(op vfs.Op, name string) error {
	switch op {
	case vfs.OpRemove:
		if c.pending == "" {
			c.pending = name
		}
	case vfs.OpSyncDir:
		c.pending = ""
	case vfs.OpTruncate:
		if c.pending != "" {
			c.errs = append(c.errs, fmt.Sprintf("%s truncated before the removal of %s was synced", name, c.pending))
		}
	}
	return nil
}

func (c *dirSyncChecker) done(t *testing.T, what string) {
	t.Helper()
	if c.pending != "" {
		c.errs = append(c.errs, fmt.Sprintf("%s returned before the removal of %s was synced", what, c.pending))
	}
	if len(c.errs) > 0 {
		t.Fatalf("%s: %s", what, strings.Join(c.errs, "; "))
	}
}

func TestDirectorySyncedAfterRemovals(t *testing.T) {
	mem := vfs.NewMem()
	chk := &dirSyncChecker{}
	cfg := raftLogConfig(vfs.NewFaulty(mem, chk))
	l := mustOpen(t, "/log", cfg)
	saveRecords(t, l, 1, 12, 1)
	chk.done(t, "SaveEntries")
	if len(segmentBases(l)) < 4 {
		t.Fatalf("segments %v; the test wants several", segmentBases(l))
	}
	// Replacing entries from 5 on removes whole segments and truncates another.
	saveRecords(t, l, 5, 5, 2)
	chk.done(t, "SaveEntries over the log")
	saveRecords(t, l, 6, 12, 2)
	off, _ := l.CommittedOffset(6)
	if err := l.TruncateTo(off); err != nil {
		t.Fatal(err)
	}
	chk.done(t, "TruncateTo")
	saveRecords(t, l, 7, 12, 2)
	l.SetApplied(9)
	if err := l.DeleteBefore(10); err != nil {
		t.Fatal(err)
	}
	chk.done(t, "DeleteBefore")
	if err := l.ApplySnapshot(snapshotAt(20, 3, 100, 1)); err != nil {
		t.Fatal(err)
	}
	chk.done(t, "ApplySnapshot")
	l.Close()
	// Recovery removes leftover temporary files before it changes anything else.
	if err := mem.WriteFile("/log/state.tmp", []byte("x")); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, "/log", cfg)
	chk.done(t, "Open")
	l.Close()
}

// TestCommittedOffsetCompacted: an index before the snapshot is compacted, as for Term.
func TestCommittedOffsetCompacted(t *testing.T) {
	l := mustOpen(t, "/log", raftLogConfig(vfs.NewMem()))
	if err := l.ApplySnapshot(snapshotAt(10, 2, 50, 1)); err != nil {
		t.Fatal(err)
	}
	if off, err := l.CommittedOffset(10); err != nil || off != 50 {
		t.Fatalf("CommittedOffset(10) = %d, %v; want 50", off, err)
	}
	if _, err := l.CommittedOffset(9); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("CommittedOffset(9): %v, want ErrCompacted", err)
	}
}

// TestSetHardStateIgnoresEmpty: raft hands out an empty hard state when nothing changed; it must
// not reset the term and vote.
func TestSetHardStateIgnoresEmpty(t *testing.T) {
	l := mustOpen(t, "/log", raftLogConfig(vfs.NewMem()))
	saveRecords(t, l, 1, 3, 4)
	if err := l.SetHardState(hardState(4, 2, 3)); err != nil {
		t.Fatal(err)
	}
	if err := l.SetHardState(&pb.HardState{}); err != nil {
		t.Fatal(err)
	}
	hs, _, _ := l.InitialState()
	if hs.GetTerm() != 4 || hs.GetVote() != 2 || hs.GetCommit() != 3 {
		t.Fatalf("hard state %s after an empty one, want {term 4 vote 2 commit 3}", describeHS(hs))
	}
}

// TestOldFormatIsAnError: a segment of format version 1 (batches without a header checksum) is
// reported, not read as damage and cut.
func TestOldFormatIsAnError(t *testing.T) {
	mem := vfs.NewMem()
	cfg := testConfig()
	cfg.FS = mem
	l := mustOpen(t, "/log", cfg)
	appendN(t, l, 3, 2, 0)
	l.Close()
	name := segmentPath("/log", 0, logSuffix)
	hdr := encodeSegmentHeader(0, 1)
	binary.BigEndian.PutUint16(hdr[4:], 1)
	binary.BigEndian.PutUint32(hdr[28:], crc32.Checksum(hdr[:28], castagnoli))
	if err := mem.Corrupt(name, 0, hdr); err != nil {
		t.Fatal(err)
	}
	before, _ := mem.ReadFile(name)
	_, err := Open("/log", cfg)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "format version 1") {
		t.Fatalf("open: %v, want an error about format version 1", err)
	}
	if after, _ := mem.ReadFile(name); !bytes.Equal(after, before) {
		t.Fatal("open changed the segment")
	}
}
