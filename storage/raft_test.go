package storage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/weirhq/weir/storage/vfs"
)

// Tests of the log as the raft.Storage of a RawNode: a contract test against raft's own
// MemoryStorage, then RawNodes driven by hand (one voter across restarts and crashes, three
// voters through a partition, a fourth added by snapshot), and the hard state across reopens.

// raftLogConfig is the log config of the raft tests: 4 KiB segments, so that a few entries roll
// a segment and truncation and compaction cross segment files; an fsync per SaveEntries, as raft
// needs; and a fixed clock, because control batches carry the time they were written and the
// replicas must write byte-identical batches for the tests to compare them.
func raftLogConfig(fs vfs.FS) Config {
	c := DefaultConfig()
	c.FS = fs
	c.SegmentBytes = 4096
	c.IndexIntervalBytes = 256
	c.Sync = SyncAlways
	c.Now = func() time.Time { return time.UnixMilli(1_700_000_000_000) }
	return c
}

// recordsBatch builds a records batch with one record per value. Each value is padded to about
// pad bytes so that a few batches fill a segment.
func recordsBatch(t testing.TB, pad int, values ...string) []byte {
	t.Helper()
	recs := make([]Record, len(values))
	for i, v := range values {
		val := v
		if n := pad - len(v); n > 0 {
			val += "|" + strings.Repeat(".", n)
		}
		recs[i] = Record{Key: []byte("k"), Value: []byte(val), Timestamp: 1_700_000_000_000 + int64(i)}
	}
	b, err := EncodeBatch(recs)
	if err != nil {
		t.Fatalf("encode batch: %v", err)
	}
	return b
}

// recordValue is the value a recordsBatch record was made from, without its padding.
func recordValue(r Record) string {
	v, _, _ := strings.Cut(string(r.Value), "|")
	return v
}

func entry(index, term uint64, typ pb.EntryType, data []byte) *pb.Entry {
	// The type is set explicitly: raft leaves it unset on proposals, while the log returns it set,
	// which makes an entry's encoded size, and so the size limit of Entries, differ by 2 bytes.
	return &pb.Entry{Index: proto.Uint64(index), Term: proto.Uint64(term), Type: typ.Enum(), Data: data}
}

func confChangeEntry(t testing.TB, index, term, node uint64) *pb.Entry {
	t.Helper()
	data, err := proto.Marshal(&pb.ConfChange{Type: pb.ConfChangeAddNode.Enum(), NodeId: proto.Uint64(node)})
	if err != nil {
		t.Fatal(err)
	}
	return entry(index, term, pb.EntryConfChange, data)
}

func snapshotAt(index, term uint64, offset int64, voters ...uint64) *pb.Snapshot {
	return &pb.Snapshot{
		Data: encodeSnapshotData(offset),
		Metadata: &pb.SnapshotMetadata{
			Index:     proto.Uint64(index),
			Term:      proto.Uint64(term),
			ConfState: &pb.ConfState{Voters: voters},
		},
	}
}

func hardState(term, vote, commit uint64) *pb.HardState {
	return &pb.HardState{Term: proto.Uint64(term), Vote: proto.Uint64(vote), Commit: proto.Uint64(commit)}
}

func describeHS(hs *pb.HardState) string {
	return fmt.Sprintf("{term %d vote %d commit %d}", hs.GetTerm(), hs.GetVote(), hs.GetCommit())
}

// sameConf compares conf states by value: an unset field and its zero value are the same to raft.
func sameConf(a, b *pb.ConfState) bool {
	return slices.Equal(a.GetVoters(), b.GetVoters()) && slices.Equal(a.GetLearners(), b.GetLearners()) &&
		slices.Equal(a.GetVotersOutgoing(), b.GetVotersOutgoing()) && slices.Equal(a.GetLearnersNext(), b.GetLearnersNext()) &&
		a.GetAutoLeave() == b.GetAutoLeave()
}

// sameError reports whether the log's error got matches MemoryStorage's want: both nil, or got
// wraps want.
func sameError(got, want error) bool {
	if want == nil {
		return got == nil
	}
	return errors.Is(got, want)
}

// contractStep is one operation of the Storage contract test. Exactly one of its operation
// fields is set.
type contractStep struct {
	name string

	ents    []*pb.Entry   // SaveEntries; MemoryStorage.Append
	compact uint64        // compact the log up to at most this index (see compactTo)
	snap    *pb.Snapshot  // ApplySnapshot on both
	hs      *pb.HardState // SetHardState on both
	conf    *pb.ConfState // SetConfState(confAt, conf), on the log only: MemoryStorage has none
	confAt  uint64

	wantErr error                           // the error both storages return
	onlyLog bool                            // MemoryStorage differs here (the step says how): skip it
	check   func(*testing.T, *contractPair) // extra checks after the step
}

// contractPair is a MemoryStorage and a Log that have seen the same operations, with a model of
// what only the log knows: the record offsets and the conf states it records.
type contractPair struct {
	mem *raft.MemoryStorage
	log *Log
	cfg Config

	next       map[uint64]int64 // offset after the entry at each index: CommittedOffset
	snapOffset int64
	commit     uint64        // commit index the log reports
	confs      []confAtModel // conf states recorded, oldest first
	conf       *pb.ConfState // what InitialState returns
}

type confAtModel struct {
	index uint64
	cs    *pb.ConfState
}

func (p *contractPair) reopen(t *testing.T) {
	t.Helper()
	if err := p.log.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	l, err := Open("/log", p.cfg)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	p.log = l
}

func (p *contractPair) do(t *testing.T, s contractStep) {
	t.Helper()
	var memErr, logErr error
	switch {
	case s.ents != nil:
		logErr = p.log.SaveEntries(s.ents)
		if !s.onlyLog {
			memErr = p.mem.Append(s.ents)
		}
		if logErr == nil {
			first := s.ents[0].GetIndex()
			if p.commit >= first {
				p.commit = first - 1
			}
			for _, e := range s.ents {
				n := int64(0)
				if len(e.Data) > 0 && e.GetType() == pb.EntryNormal {
					h, err := ParseHeader(e.Data)
					if err != nil {
						t.Fatal(err)
					}
					n = int64(h.Count)
				}
				p.next[e.GetIndex()] = p.next[e.GetIndex()-1] + n
			}
		}
	case s.compact != 0:
		p.compactTo(t, s.compact)
		return
	case s.snap != nil:
		logErr = p.log.ApplySnapshot(s.snap)
		if !s.onlyLog {
			memErr = p.mem.ApplySnapshot(s.snap)
		}
		if logErr == nil {
			md := s.snap.GetMetadata()
			off, _ := decodeSnapshotData(s.snap.GetData())
			p.next = map[uint64]int64{md.GetIndex(): off}
			p.snapOffset = off
			p.commit = max(p.commit, md.GetIndex())
			p.confs = append(p.confs, confAtModel{md.GetIndex(), md.GetConfState()})
			p.conf = md.GetConfState()
		}
	case s.hs != nil:
		logErr = p.log.SetHardState(s.hs)
		memErr = p.mem.SetHardState(s.hs)
		if logErr == nil {
			p.commit = s.hs.GetCommit()
		}
	case s.conf != nil:
		logErr = p.log.SetConfState(s.confAt, s.conf)
		if logErr == nil {
			p.confs = append(p.confs, confAtModel{s.confAt, s.conf})
			p.conf = s.conf
		}
	default:
		t.Fatalf("step %q has no operation", s.name)
	}
	if !sameError(logErr, s.wantErr) {
		t.Fatalf("log: error %v, want %v", logErr, s.wantErr)
	}
	if !s.onlyLog && !sameError(memErr, s.wantErr) {
		t.Fatalf("MemoryStorage: error %v, want %v", memErr, s.wantErr)
	}
}

// compactTo compacts the log as an owner does, by moving its start to the offset after entry
// index once that entry is applied. Our compaction deletes whole segments only, so the log's
// snapshot lands on the last segment boundary at or before index, not on index itself: the
// MemoryStorage is then compacted to wherever the log's snapshot landed, with the conf state the
// log should report for it.
func (p *contractPair) compactTo(t *testing.T, index uint64) {
	t.Helper()
	firstBefore, _ := p.log.FirstIndex()
	p.log.SetApplied(index)
	if err := p.log.DeleteBefore(p.next[index]); err != nil {
		t.Fatalf("DeleteBefore(%d): %v", p.next[index], err)
	}
	first, _ := p.log.FirstIndex()
	snap := first - 1
	if first <= firstBefore || snap > index {
		t.Fatalf("compaction to index %d moved the first index from %d to %d, want a segment boundary in (%d, %d]",
			index, firstBefore, first, firstBefore, index+1)
	}
	var cs *pb.ConfState
	for _, c := range p.confs {
		if c.index <= snap {
			cs = c.cs
		}
	}
	ls, err := p.log.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.mem.CreateSnapshot(snap, cs, ls.GetData()); err != nil {
		t.Fatalf("MemoryStorage.CreateSnapshot(%d): %v", snap, err)
	}
	if err := p.mem.Compact(snap); err != nil {
		t.Fatalf("MemoryStorage.Compact(%d): %v", snap, err)
	}
	for i := range p.next {
		if i < snap {
			delete(p.next, i)
		}
	}
	p.snapOffset = p.next[snap]
}

// compare checks every read of the Storage interface on both storages, errors included.
func (p *contractPair) compare(t *testing.T) {
	t.Helper()
	memFirst, _ := p.mem.FirstIndex()
	memLast, _ := p.mem.LastIndex()
	first, err := p.log.FirstIndex()
	if err != nil || first != memFirst {
		t.Fatalf("FirstIndex = %d, %v; MemoryStorage says %d", first, err, memFirst)
	}
	last, err := p.log.LastIndex()
	if err != nil || last != memLast {
		t.Fatalf("LastIndex = %d, %v; MemoryStorage says %d", last, err, memLast)
	}

	// Term over the whole range and one beyond each end: ErrCompacted before the snapshot, the
	// snapshot's term at it, ErrUnavailable after the last entry.
	for i := max(first, 2) - 2; i <= last+2; i++ {
		mt, merr := p.mem.Term(i)
		lt, lerr := p.log.Term(i)
		if lt != mt || !sameError(lerr, merr) {
			t.Fatalf("Term(%d) = %d, %v; MemoryStorage says %d, %v", i, lt, lerr, mt, merr)
		}
	}

	// Entries over every non-empty range in [first-1, last+1], with size limits at and around
	// every cumulative entry size.
	for lo := first - 1; lo <= last; lo++ {
		for hi := lo + 1; hi <= last+1; hi++ {
			limits := []uint64{0, math.MaxUint64}
			if all, err := p.mem.Entries(lo, hi, math.MaxUint64); err == nil {
				var sum uint64
				for _, e := range all {
					sum += uint64(proto.Size(e))
					limits = append(limits, sum-1, sum, sum+1)
				}
			}
			for _, limit := range limits {
				p.compareEntries(t, lo, hi, limit)
			}
		}
	}

	// Where MemoryStorage panics (hi past the last index, lo after hi), the log returns
	// ErrUnavailable: raft never asks, but a corrupt request must not take the process down.
	if _, err := p.log.Entries(first, last+2, math.MaxUint64); !errors.Is(err, raft.ErrUnavailable) {
		t.Fatalf("Entries(%d, %d) past the last index %d: error %v, want ErrUnavailable", first, last+2, last, err)
	}
	if _, err := p.log.Entries(first+1, first, math.MaxUint64); first <= last && !errors.Is(err, raft.ErrUnavailable) {
		t.Fatalf("Entries(%d, %d) with lo > hi: error %v, want ErrUnavailable", first+1, first, err)
	}

	// InitialState. The log raises its commit index to an installed snapshot (a snapshot is
	// committed by definition) and records conf states as the owner applies them, so InitialState
	// returns the newest; MemoryStorage only knows the conf state of its snapshot and leaves both
	// to the application. Term and vote are the same.
	mhs, _, err := p.mem.InitialState()
	if err != nil {
		t.Fatal(err)
	}
	hs, cs, err := p.log.InitialState()
	if err != nil {
		t.Fatalf("InitialState: %v", err)
	}
	if hs.GetTerm() != mhs.GetTerm() || hs.GetVote() != mhs.GetVote() || hs.GetCommit() != p.commit {
		t.Fatalf("InitialState hard state %s, want term %d vote %d (as MemoryStorage) and commit %d",
			describeHS(hs), mhs.GetTerm(), mhs.GetVote(), p.commit)
	}
	if want := p.conf; !sameConf(cs, want) {
		t.Fatalf("InitialState conf state %v, want %v", cs, want)
	}
	if hs.GetCommit() > last {
		t.Fatalf("InitialState commit %d is beyond the last index %d: raft would panic", hs.GetCommit(), last)
	}

	// Snapshot: same position and conf state; the data is the record offset after it.
	msnap, _ := p.mem.Snapshot()
	snap, err := p.log.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if md, mmd := snap.GetMetadata(), msnap.GetMetadata(); md.GetIndex() != mmd.GetIndex() || md.GetTerm() != mmd.GetTerm() ||
		!sameConf(md.GetConfState(), mmd.GetConfState()) {
		t.Fatalf("Snapshot metadata %v; MemoryStorage says %v", md, mmd)
	}
	if off, err := decodeSnapshotData(snap.GetData()); err != nil || off != p.snapOffset {
		t.Fatalf("Snapshot data holds offset %d, %v; want %d", off, err, p.snapOffset)
	}

	// CommittedOffset, which MemoryStorage does not have: the offset after each entry, from the
	// snapshot's on.
	for i := first - 1; i <= last; i++ {
		if got, err := p.log.CommittedOffset(i); err != nil || got != p.next[i] {
			t.Fatalf("CommittedOffset(%d) = %d, %v; want %d", i, got, err, p.next[i])
		}
	}
	if _, err := p.log.CommittedOffset(last + 1); !errors.Is(err, raft.ErrUnavailable) {
		t.Fatalf("CommittedOffset(%d) after the last index: error %v, want ErrUnavailable", last+1, err)
	}
	if got := p.log.EndOffset(); got != p.next[last] {
		t.Fatalf("EndOffset = %d, want %d", got, p.next[last])
	}
}

func (p *contractPair) compareEntries(t *testing.T, lo, hi, limit uint64) {
	t.Helper()
	want, werr := p.mem.Entries(lo, hi, limit)
	got, err := p.log.Entries(lo, hi, limit)
	if !sameError(err, werr) || len(got) != len(want) {
		t.Fatalf("Entries(%d, %d, %d): %d entries, %v; MemoryStorage: %d entries, %v", lo, hi, limit, len(got), err, len(want), werr)
	}
	for k, w := range want {
		g := got[k]
		if g.GetIndex() != w.GetIndex() || g.GetTerm() != w.GetTerm() || g.GetType() != w.GetType() {
			t.Fatalf("Entries(%d, %d)[%d] is index %d term %d %v; want index %d term %d %v",
				lo, hi, k, g.GetIndex(), g.GetTerm(), g.GetType(), w.GetIndex(), w.GetTerm(), w.GetType())
		}
		if proto.Size(g) != proto.Size(w) {
			t.Fatalf("entry %d encodes to %d bytes, MemoryStorage's to %d: size limits would differ", w.GetIndex(), proto.Size(g), proto.Size(w))
		}
		if w.GetType() != pb.EntryNormal || len(w.Data) == 0 {
			if !bytes.Equal(g.Data, w.Data) {
				t.Fatalf("entry %d data %x, want %x", w.GetIndex(), g.Data, w.Data)
			}
			continue
		}
		// A records entry comes back as the batch the log stored: the proposal's bytes with the
		// placement the log assigned (offset, term, index), sealed by the header crc.
		h, err := ParseBatch(g.Data)
		if err != nil {
			t.Fatalf("entry %d: %v", w.GetIndex(), err)
		}
		if h.Index != w.GetIndex() || h.Term != w.GetTerm() || h.NextOffset() != p.next[w.GetIndex()] {
			t.Fatalf("entry %d: batch placed at index %d term %d offset %d, want index %d term %d offset %d",
				w.GetIndex(), h.Index, h.Term, h.BaseOffset, w.GetIndex(), w.GetTerm(), p.next[w.GetIndex()]-int64(h.Count))
		}
		// SaveEntries writes the placement into the saved entry's data (shared here with
		// MemoryStorage) in place; either way, placing the saved bytes must give what was read.
		placed := bytes.Clone(w.Data)
		putPlacement(placed, h.BaseOffset, h.Term, h.Index)
		if !bytes.Equal(g.Data, placed) {
			t.Fatalf("entry %d: the batch read back differs from the one saved beyond its placement", w.GetIndex())
		}
	}
}

// TestStorageContract drives raft's MemoryStorage and the log through the same operations and
// compares everything raft can read from them after each step, errors at the boundaries
// included. The reopen variant closes and reopens the log after every step, so it also checks
// that each step's effect is on disk.
func TestStorageContract(t *testing.T) {
	const pad = 1000 // one to three batches per 4 KiB segment
	rec := func(index, term uint64, tag string, n int) *pb.Entry {
		vals := make([]string, n)
		for i := range vals {
			vals[i] = fmt.Sprintf("%s-%d", tag, i)
		}
		return entry(index, term, pb.EntryNormal, recordsBatch(t, pad, vals...))
	}
	noop := func(index, term uint64) *pb.Entry { return entry(index, term, pb.EntryNormal, nil) }
	voters123 := &pb.ConfState{Voters: []uint64{1, 2, 3}}

	steps := []contractStep{
		{name: "append to an empty log", ents: []*pb.Entry{confChangeEntry(t, 1, 1, 1), rec(2, 1, "a2", 2), rec(3, 1, "a3", 1)}},
		{name: "conf state applied at 1", conf: voters123, confAt: 1},
		{name: "append a new term", ents: []*pb.Entry{noop(4, 2), rec(5, 2, "b5", 2), rec(6, 2, "b6", 1), rec(7, 2, "b7", 2), rec(8, 2, "b8", 2)}},
		{name: "overwrite a conflicting suffix of whole segments", ents: []*pb.Entry{rec(5, 3, "c5", 1), rec(6, 3, "c6", 2)}},
		{name: "append after the overwrite", ents: []*pb.Entry{rec(7, 3, "c7", 1), noop(8, 3), rec(9, 3, "c9", 1), rec(10, 3, "c10", 2)}},
		{name: "hard state", hs: hardState(3, 2, 6)},
		{name: "overwrite a conflicting suffix inside a segment", ents: []*pb.Entry{rec(8, 4, "d8", 1), rec(9, 4, "d9", 1)}},
		{name: "overwrite the last entry", ents: []*pb.Entry{rec(9, 5, "e9", 1), rec(10, 5, "e10", 2), rec(11, 5, "e11", 1), rec(12, 5, "e12", 2)}},
		{name: "hard state in a new term", hs: hardState(5, 2, 10)},
		{
			// MemoryStorage panics on a gap; the log refuses it and stays usable.
			name: "a gap is refused", ents: []*pb.Entry{rec(14, 5, "gap", 1)}, onlyLog: true, wantErr: ErrEntryMismatch,
		},
		{name: "compact", compact: 10},
		{
			// MemoryStorage drops the part of an append that its snapshot covers and appends the
			// rest; the log refuses such entries. Raft never hands them out: the entries of a
			// Ready follow its snapshot.
			name: "entries at the snapshot are refused", onlyLog: true, wantErr: ErrEntryMismatch,
			ents: []*pb.Entry{rec(1, 5, "old", 1), rec(2, 5, "old", 1)},
		},
		{name: "overwrite after the compaction", ents: []*pb.Entry{rec(11, 6, "f11", 2), rec(12, 6, "f12", 1)}},
		{name: "hard state after the overwrite", hs: hardState(6, 1, 11)},
		{name: "snapshot behind the log's is out of date", snap: snapshotAt(1, 1, 0, 1, 2, 3), wantErr: raft.ErrSnapOutOfDate},
		{name: "apply a snapshot ahead of the log", snap: snapshotAt(20, 7, 500, 1, 2, 3, 4)},
		{name: "the same snapshot again is out of date", snap: snapshotAt(20, 7, 500, 1, 2, 3, 4), wantErr: raft.ErrSnapOutOfDate},
		{name: "append after the snapshot", ents: []*pb.Entry{noop(21, 7), rec(22, 7, "g22", 2), rec(23, 8, "g23", 1), rec(24, 8, "g24", 2)}},
		{
			name: "conf state applied after the snapshot", conf: &pb.ConfState{Voters: []uint64{1, 2, 3, 4, 5}}, confAt: 21,
			check: func(t *testing.T, p *contractPair) {
				// Raft's snapshot carries the conf state of its index, not the newest.
				snap, _ := p.log.Snapshot()
				if got := snap.GetMetadata().GetConfState().GetVoters(); !slices.Equal(got, []uint64{1, 2, 3, 4}) {
					t.Fatalf("snapshot at 20 carries voters %v, want [1 2 3 4]", got)
				}
			},
		},
		{
			// A snapshot inside the log wipes it, as on MemoryStorage: raft only hands one out
			// when the log does not hold the snapshot's entry.
			name: "apply a snapshot inside the log", snap: snapshotAt(23, 8, 900, 1, 2, 3, 4, 5),
		},
		{name: "append after the second snapshot", ents: []*pb.Entry{rec(24, 8, "h24", 1), rec(25, 9, "h25", 2)}},
		{name: "hard state after the snapshot", hs: hardState(9, 3, 25)},
	}

	for _, reopen := range []bool{false, true} {
		t.Run(fmt.Sprintf("reopen=%v", reopen), func(t *testing.T) {
			fs := vfs.NewMem()
			cfg := raftLogConfig(fs)
			l, err := Open("/log", cfg)
			if err != nil {
				t.Fatal(err)
			}
			p := &contractPair{mem: raft.NewMemoryStorage(), log: l, cfg: cfg, next: map[uint64]int64{0: 0}}
			t.Cleanup(func() { p.log.Close() })
			p.compare(t) // both empty
			for _, s := range steps {
				ok := t.Run(s.name, func(t *testing.T) {
					p.do(t, s)
					if reopen {
						p.reopen(t)
					}
					p.compare(t)
					if s.check != nil {
						s.check(t, p)
					}
				})
				if !ok {
					return // the later steps build on this one
				}
			}
		})
	}
}

// TestStorageContractEdges covers what the table cannot mirror on MemoryStorage.
func TestStorageContractEdges(t *testing.T) {
	t.Run("a snapshot at index 0 is out of date", func(t *testing.T) {
		// MemoryStorage accepts a snapshot at index 0 (etcd bootstraps a conf state that way);
		// the log's snapshot position is index 0 from the start, so one there is not newer.
		l := mustOpen(t, "/log", raftLogConfig(vfs.NewMem()))
		if err := l.ApplySnapshot(snapshotAt(0, 0, 0, 1)); !errors.Is(err, raft.ErrSnapOutOfDate) {
			t.Fatalf("ApplySnapshot at 0: %v, want ErrSnapOutOfDate", err)
		}
	})
	t.Run("a snapshot without an offset is refused", func(t *testing.T) {
		// MemoryStorage takes any data; the log's snapshot is the offset where it resumes.
		l := mustOpen(t, "/log", raftLogConfig(vfs.NewMem()))
		snap := snapshotAt(5, 1, 0, 1)
		snap.Data = []byte("etcd state")
		if err := l.ApplySnapshot(snap); err == nil {
			t.Fatal("ApplySnapshot with foreign data succeeded")
		}
		if first, _ := l.FirstIndex(); first != 1 {
			t.Fatalf("a refused snapshot moved the first index to %d", first)
		}
	})
	t.Run("a normal entry must carry one records batch", func(t *testing.T) {
		l := mustOpen(t, "/log", raftLogConfig(vfs.NewMem()))
		for _, data := range [][]byte{[]byte("not a batch"), append(recordsBatch(t, 0, "x"), 0)} {
			if err := l.SaveEntries([]*pb.Entry{entry(1, 1, pb.EntryNormal, data)}); !errors.Is(err, ErrBadBatch) {
				t.Fatalf("SaveEntries(%q...): %v, want ErrBadBatch", data[:8], err)
			}
		}
		if err := l.SaveEntries([]*pb.Entry{entry(1, 1, pb.EntryNormal, recordsBatch(t, 0, "x"))}); err != nil {
			t.Fatalf("a refused entry left the log unusable: %v", err)
		}
	})
	t.Run("entries must be consecutive", func(t *testing.T) {
		l := mustOpen(t, "/log", raftLogConfig(vfs.NewMem()))
		err := l.SaveEntries([]*pb.Entry{entry(1, 1, pb.EntryNormal, nil), entry(3, 1, pb.EntryNormal, nil)})
		if !errors.Is(err, ErrEntryMismatch) {
			t.Fatalf("SaveEntries 1, 3: %v, want ErrEntryMismatch", err)
		}
		if last, _ := l.LastIndex(); last != 0 {
			t.Fatalf("refused entries left the last index at %d", last)
		}
	})
	t.Run("entries with a lower term than the log's are refused", func(t *testing.T) {
		fs := vfs.NewMem()
		l := mustOpen(t, "/log", raftLogConfig(fs))
		if err := l.SaveEntries([]*pb.Entry{entry(1, 2, pb.EntryNormal, nil), entry(2, 2, pb.EntryNormal, nil)}); err != nil {
			t.Fatal(err)
		}
		if err := l.SaveEntries([]*pb.Entry{entry(3, 1, pb.EntryNormal, nil)}); !errors.Is(err, ErrEntryMismatch) {
			t.Fatalf("SaveEntries of term 1 after term 2: %v, want ErrEntryMismatch", err)
		}
		l.Close()
		l = mustOpen(t, "/log", raftLogConfig(fs))
		if last, _ := l.LastIndex(); last != 2 {
			t.Fatalf("after the refused entry and a reopen: last index %d, want 2", last)
		}
	})
	t.Run("the slice returned is the caller's to append to", func(t *testing.T) {
		// raft's contract: the caller owns the slice and may append to it, but must not change
		// the entries in it (the log hands out its cached entries).
		for _, cached := range []bool{true, false} {
			fs := vfs.NewMem()
			l := mustOpen(t, "/log", raftLogConfig(fs))
			if err := l.SaveEntries([]*pb.Entry{entry(1, 1, pb.EntryNormal, recordsBatch(t, 0, "x")), entry(2, 1, pb.EntryNormal, recordsBatch(t, 0, "y"))}); err != nil {
				t.Fatal(err)
			}
			if !cached {
				l.Close()
				l = mustOpen(t, "/log", raftLogConfig(fs))
			}
			a, _ := l.Entries(1, 3, math.MaxUint64)
			_ = append(a[:1], entry(9, 9, pb.EntryNormal, nil))
			b, _ := l.Entries(1, 3, math.MaxUint64)
			if _, err := ParseBatch(b[0].Data); err != nil || b[1].GetIndex() != 2 {
				t.Fatalf("cached %v: appending to returned entries changed the log: %v, second entry %d", cached, err, b[1].GetIndex())
			}
			l.Close()
		}
	})
}

// raftTestLogger passes raft's warnings and errors to the test log, printed when a test fails,
// and drops the rest of its chatter. Its Panic methods panic, as raft expects.
type raftTestLogger struct {
	*raft.DefaultLogger
	t testing.TB
}

func newRaftTestLogger(t testing.TB) raftTestLogger {
	return raftTestLogger{DefaultLogger: &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)}, t: t}
}

func (l raftTestLogger) Warning(v ...any)                 { l.t.Log(append([]any{"raft:"}, v...)...) }
func (l raftTestLogger) Warningf(format string, v ...any) { l.t.Logf("raft: "+format, v...) }
func (l raftTestLogger) Error(v ...any)                   { l.t.Log(append([]any{"raft:"}, v...)...) }
func (l raftTestLogger) Errorf(format string, v ...any)   { l.t.Logf("raft: "+format, v...) }

// testNode is one raft replica on a Log, driven by hand the way the replica actor drives it.
type testNode struct {
	t       testing.TB
	id      uint64
	dir     string
	cfg     Config
	log     *Log
	rn      *raft.RawNode
	applied uint64
	snaps   int // snapshots installed
}

// openNode opens the log in dir and starts a RawNode on it, bootstrapping peers when the log is
// empty.
func openNode(t testing.TB, id uint64, cfg Config, dir string, peers ...uint64) *testNode {
	t.Helper()
	n := &testNode{t: t, id: id, dir: dir, cfg: cfg}
	l, err := Open(dir, cfg)
	if err != nil {
		t.Fatalf("node %d: open: %v", id, err)
	}
	n.log = l
	t.Cleanup(func() { n.log.Close() })
	n.startRaft(peers)
	return n
}

// startRaft starts a RawNode on n.log as the replica actor does: raft's applied index is the
// persisted commit index, since the log is the state machine and committed entries need no
// replay.
func (n *testNode) startRaft(peers []uint64) {
	n.t.Helper()
	hs, _, err := n.log.InitialState()
	if err != nil {
		n.t.Fatalf("node %d: InitialState: %v", n.id, err)
	}
	first, _ := n.log.FirstIndex()
	n.applied = max(hs.GetCommit(), first-1)
	rn, err := raft.NewRawNode(&raft.Config{
		ID:              n.id,
		ElectionTick:    10,
		HeartbeatTick:   1,
		Storage:         n.log,
		Applied:         n.applied,
		MaxSizePerMsg:   8 << 10,
		MaxInflightMsgs: 64,
		Logger:          newRaftTestLogger(n.t),
	})
	if err != nil {
		n.t.Fatalf("node %d: NewRawNode: %v", n.id, err)
	}
	n.rn = rn
	if last, _ := n.log.LastIndex(); last == 0 && len(peers) > 0 {
		ps := make([]raft.Peer, len(peers))
		for i, id := range peers {
			ps[i] = raft.Peer{ID: id}
		}
		if err := rn.Bootstrap(ps); err != nil {
			n.t.Fatalf("node %d: bootstrap: %v", n.id, err)
		}
	}
}

// restart closes the log, opens it again on fs (the same filesystem, or what a crash left of
// it) and starts a new RawNode on it.
func (n *testNode) restart(fs vfs.FS) {
	n.t.Helper()
	n.log.Close()
	n.cfg.FS = fs
	l, err := Open(n.dir, n.cfg)
	if err != nil {
		n.t.Fatalf("node %d: reopen: %v", n.id, err)
	}
	n.log = l
	n.startRaft(nil)
}

// ready handles every pending Ready as the replica actor does: it installs the snapshot, saves
// the entries and the hard state, then applies the committed entries, and returns the messages
// to send, which the saving made safe to send.
func (n *testNode) ready() []*pb.Message {
	n.t.Helper()
	var out []*pb.Message
	for n.rn.HasReady() {
		rd := n.rn.Ready()
		if !raft.IsEmptySnap(rd.Snapshot) {
			if err := n.log.ApplySnapshot(rd.Snapshot); err != nil {
				n.t.Fatalf("node %d: ApplySnapshot: %v", n.id, err)
			}
			n.applied = rd.Snapshot.GetMetadata().GetIndex()
			n.snaps++
		}
		if err := n.log.SaveEntries(rd.Entries); err != nil {
			n.t.Fatalf("node %d: SaveEntries: %v", n.id, err)
		}
		if !raft.IsEmptyHardState(rd.HardState) {
			if err := n.log.SetHardState(rd.HardState); err != nil {
				n.t.Fatalf("node %d: SetHardState: %v", n.id, err)
			}
		}
		out = append(out, rd.Messages...)
		for _, e := range rd.CommittedEntries {
			n.apply(e)
		}
		n.log.SetApplied(n.applied)
		n.rn.Advance(rd)
	}
	return out
}

func (n *testNode) apply(e *pb.Entry) {
	n.t.Helper()
	idx := e.GetIndex()
	switch e.GetType() {
	case pb.EntryConfChange:
		var cc pb.ConfChange
		if err := proto.Unmarshal(e.Data, &cc); err != nil {
			n.t.Fatalf("node %d: conf change %d: %v", n.id, idx, err)
		}
		if err := n.log.SetConfState(idx, n.rn.ApplyConfChange(&cc)); err != nil {
			n.t.Fatalf("node %d: SetConfState(%d): %v", n.id, idx, err)
		}
	case pb.EntryConfChangeV2:
		var cc pb.ConfChangeV2
		if err := proto.Unmarshal(e.Data, &cc); err != nil {
			n.t.Fatalf("node %d: conf change %d: %v", n.id, idx, err)
		}
		if err := n.log.SetConfState(idx, n.rn.ApplyConfChange(&cc)); err != nil {
			n.t.Fatalf("node %d: SetConfState(%d): %v", n.id, idx, err)
		}
	case pb.EntryNormal:
		if len(e.Data) == 0 {
			break
		}
		// The committed entry may come from raft's memory (the proposal's bytes) or from the log;
		// either way its record count is the gap between the offsets after it and before it.
		h, err := ParseBatch(e.Data)
		if err != nil {
			n.t.Fatalf("node %d: committed entry %d: %v", n.id, idx, err)
		}
		prev, err1 := n.log.CommittedOffset(idx - 1)
		next, err2 := n.log.CommittedOffset(idx)
		if err1 != nil || err2 != nil || next-prev != int64(h.Count) {
			n.t.Fatalf("node %d: committed entry %d of %d records spans offsets [%d, %d) (%v, %v)",
				n.id, idx, h.Count, prev, next, err1, err2)
		}
	}
	n.applied = idx
}

func (n *testNode) status() raft.BasicStatus { return n.rn.BasicStatus() }

// propose proposes one records batch of the given values.
func (n *testNode) propose(values ...string) {
	n.t.Helper()
	if err := n.rn.Propose(recordsBatch(n.t, 600, values...)); err != nil {
		n.t.Fatalf("node %d: propose: %v", n.id, err)
	}
}

// cluster connects testNodes by a network the test controls: settle delivers every message
// unless drop says otherwise, each as bytes, as a transport would.
type cluster struct {
	t     testing.TB
	nodes map[uint64]*testNode
	drop  func(m *pb.Message) bool
	snaps map[uint64]int // MsgSnap delivered, by recipient
}

func newCluster(t testing.TB, nodes ...*testNode) *cluster {
	c := &cluster{t: t, nodes: map[uint64]*testNode{}, snaps: map[uint64]int{}}
	for _, n := range nodes {
		c.nodes[n.id] = n
	}
	return c
}

func (c *cluster) ids() []uint64 {
	ids := make([]uint64, 0, len(c.nodes))
	for id := range c.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// settle runs every node's Ready loop and delivers the messages until no node has work left.
// Nothing ticks, so a settled cluster stays settled.
func (c *cluster) settle() {
	c.t.Helper()
	for range 10000 {
		var msgs []*pb.Message
		for _, id := range c.ids() {
			msgs = append(msgs, c.nodes[id].ready()...)
		}
		if len(msgs) == 0 {
			return
		}
		for _, m := range msgs {
			c.deliver(m)
		}
	}
	c.t.Fatal("the cluster did not settle")
}

func (c *cluster) deliver(m *pb.Message) {
	c.t.Helper()
	to := c.nodes[m.GetTo()]
	if to == nil || (c.drop != nil && c.drop(m)) {
		return
	}
	b, err := proto.Marshal(m)
	if err != nil {
		c.t.Fatal(err)
	}
	var cp pb.Message
	if err := proto.Unmarshal(b, &cp); err != nil {
		c.t.Fatal(err)
	}
	if err := to.rn.Step(&cp); err != nil && !errors.Is(err, raft.ErrStepPeerNotFound) {
		c.t.Fatalf("node %d: step %v from %d: %v", to.id, m.GetType(), m.GetFrom(), err)
	}
	if m.GetType() == pb.MsgSnap {
		c.snaps[m.GetTo()]++
		// The transport reports a delivered snapshot, as raft asks of a MsgSnap's sender.
		c.nodes[m.GetFrom()].rn.ReportSnapshot(m.GetTo(), raft.SnapshotFinish)
	}
}

// elect makes id campaign and checks that it wins.
func (c *cluster) elect(id uint64) {
	c.t.Helper()
	c.settle() // raft refuses to campaign with committed conf changes unapplied
	if err := c.nodes[id].rn.Campaign(); err != nil {
		c.t.Fatalf("node %d: campaign: %v", id, err)
	}
	c.settle()
	if st := c.nodes[id].status(); st.RaftState != raft.StateLeader {
		c.t.Fatalf("node %d is %v in term %d after campaigning, want leader", id, st.RaftState, st.HardState.GetTerm())
	}
}

// heartbeat ticks the leader (only it, so that no follower starts an election) and settles.
func (c *cluster) heartbeat(leader uint64) {
	c.t.Helper()
	for range 3 {
		c.nodes[leader].rn.Tick()
		c.settle()
	}
}

// fetchAll reads the batches holding offsets [from, end) the way a consumer fetches them.
func fetchAll(t testing.TB, l *Log, from, end int64) []byte {
	t.Helper()
	var out []byte
	for off := from; off < end; {
		b, err := l.Read(nil, off, 16<<10, end)
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		if len(b) == 0 {
			t.Fatalf("read at %d returned nothing before %d", off, end)
		}
		out = append(out, b...)
		for p := b; len(p) > 0; {
			h, err := ParseHeader(p)
			if err != nil {
				t.Fatalf("read at %d: %v", off, err)
			}
			off = max(off, h.NextOffset())
			p = p[h.Size():]
		}
	}
	return out
}

// recordsByOffset decodes the records of fetched batches by offset, from from on.
func recordsByOffset(t testing.TB, batches []byte, from int64) map[int64]string {
	t.Helper()
	out := map[int64]string{}
	for p := batches; len(p) > 0; {
		h, err := DecodeBatch(p, func(off int64, r Record) error {
			if off >= from {
				out[off] = recordValue(r)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("decode fetched batch: %v", err)
		}
		p = p[h.Size():]
	}
	return out
}

// requireSameLogs checks that the nodes' logs hold the same entries from index from to the
// first node's last index, at the same offsets, with byte-identical batches.
func requireSameLogs(t testing.TB, from uint64, nodes ...*testNode) {
	t.Helper()
	ref := nodes[0]
	last, _ := ref.log.LastIndex()
	want, err := ref.log.Entries(from, last+1, math.MaxUint64)
	if err != nil {
		t.Fatalf("node %d: Entries(%d, %d): %v", ref.id, from, last+1, err)
	}
	startOff, _ := ref.log.CommittedOffset(from - 1)
	for _, n := range nodes[1:] {
		if l, _ := n.log.LastIndex(); l != last {
			t.Fatalf("node %d ends at index %d, node %d at %d", n.id, l, ref.id, last)
		}
		got, err := n.log.Entries(from, last+1, math.MaxUint64)
		if err != nil {
			t.Fatalf("node %d: Entries(%d, %d): %v", n.id, from, last+1, err)
		}
		for k, w := range want {
			g := got[k]
			if g.GetTerm() != w.GetTerm() || g.GetType() != w.GetType() || !bytes.Equal(g.Data, w.Data) {
				t.Fatalf("entry %d: node %d holds term %d %v (%d bytes), node %d term %d %v (%d bytes)",
					w.GetIndex(), n.id, g.GetTerm(), g.GetType(), len(g.Data), ref.id, w.GetTerm(), w.GetType(), len(w.Data))
			}
		}
		for i := from - 1; i <= last; i++ {
			a, _ := ref.log.CommittedOffset(i)
			b, err := n.log.CommittedOffset(i)
			if err != nil || a != b {
				t.Fatalf("CommittedOffset(%d): node %d says %d (%v), node %d says %d", i, n.id, b, err, ref.id, a)
			}
		}
		if a, b := ref.log.EndOffset(), n.log.EndOffset(); a != b {
			t.Fatalf("end offset: node %d %d, node %d %d", n.id, b, ref.id, a)
		}
		if a, b := fetchAll(t, ref.log, startOff, ref.log.EndOffset()), fetchAll(t, n.log, startOff, n.log.EndOffset()); !bytes.Equal(a, b) {
			t.Fatalf("batches from offset %d differ: node %d has %d bytes, node %d %d", startOff, n.id, len(b), ref.id, len(a))
		}
	}
}

// TestRawNodeSingleVoterRestart runs a single-voter RawNode on the log, stops it by a clean close,
// a process crash or a machine crash, restarts it and checks that the hard state, the entries,
// the committed records and their offsets survive and that new proposals continue after them.
func TestRawNodeSingleVoterRestart(t *testing.T) {
	type restartCase struct {
		name string
		fs   func(t *testing.T) (vfs.FS, string)
		sync SyncMode
		// crash returns the filesystem the restarted node sees; nil restarts on the same one
		// after a clean Close.
		crash func(fs vfs.FS) vfs.FS
		// lossy: the stop may lose an unsynced tail of the log (a machine crash under SyncNever).
		lossy bool
	}
	onDisk := func(t *testing.T) (vfs.FS, string) { return vfs.OS, t.TempDir() }
	inMemory := func(*testing.T) (vfs.FS, string) { return vfs.NewMem(), "/p" }
	cases := []restartCase{
		{name: "os close and reopen", fs: onDisk, sync: SyncAlways},
		{
			// The page cache survives, but a new commit index alone is only in the log's memory.
			name: "mem process crash with SyncNever", fs: inMemory, sync: SyncNever,
			crash: func(fs vfs.FS) vfs.FS { return fs.(*vfs.Mem).Clone() },
		},
		{
			name: "mem machine crash with SyncAlways", fs: inMemory, sync: SyncAlways,
			crash: func(fs vfs.FS) vfs.FS { return fs.(*vfs.Mem).Crash(nil) },
		},
	}
	for seed := range uint64(6) {
		cases = append(cases, restartCase{
			name: fmt.Sprintf("mem machine crash with SyncNever seed %d", seed), fs: inMemory, sync: SyncNever, lossy: true,
			crash: func(fs vfs.FS) vfs.FS { return fs.(*vfs.Mem).Crash(rand.New(rand.NewPCG(seed, 7))) },
		})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fs, dir := tc.fs(t)
			cfg := raftLogConfig(fs)
			cfg.Sync = tc.sync
			n := openNode(t, 1, cfg, dir, 1)
			c := newCluster(t, n)
			c.elect(1)

			// Propose batches of 1 to 3 records; a single voter commits each at once, and the
			// records take dense offsets from 0 in proposal order.
			want := map[int64]string{}
			var off int64
			for i := range 12 {
				vals := make([]string, i%3+1)
				for j := range vals {
					vals[j] = fmt.Sprintf("p%d-%d", i, j)
					want[off] = vals[j]
					off++
				}
				n.propose(vals...)
				c.settle()
			}
			before := n.status()
			last, _ := n.log.LastIndex()
			if before.HardState.GetCommit() != last || n.log.Segments() < 3 {
				t.Fatalf("before the stop: commit %d, last index %d, %d segments; want all committed over several segments",
					before.HardState.GetCommit(), last, n.log.Segments())
			}
			if hw, err := n.log.CommittedOffset(last); err != nil || hw != off {
				t.Fatalf("CommittedOffset(%d) = %d, %v; want %d", last, hw, err, off)
			}
			if got := recordsByOffset(t, fetchAll(t, n.log, 0, off), 0); !maps.Equal(got, want) {
				t.Fatalf("committed records before the stop: %v, want %v", got, want)
			}
			ents, err := n.log.Entries(1, last+1, math.MaxUint64)
			if err != nil {
				t.Fatal(err)
			}
			offsets := make([]int64, last+1)
			for i := range offsets {
				offsets[i], _ = n.log.CommittedOffset(uint64(i))
			}

			if tc.crash == nil {
				n.restart(fs)
			} else {
				n.restart(tc.crash(fs))
			}

			hs, cs, err := n.log.InitialState()
			if err != nil {
				t.Fatal(err)
			}
			gotLast, _ := n.log.LastIndex()
			switch {
			case hs.GetTerm() != before.HardState.GetTerm() || hs.GetVote() != 1:
				// Term and vote are fsynced under every sync policy.
				t.Fatalf("after restart: hard state %s, want term %d vote 1", describeHS(hs), before.HardState.GetTerm())
			case !slices.Equal(cs.GetVoters(), []uint64{1}):
				t.Fatalf("after restart: voters %v, want [1]", cs.GetVoters())
			case !tc.lossy && gotLast != last:
				t.Fatalf("after restart: last index %d, want %d", gotLast, last)
			case gotLast > last || hs.GetCommit() > gotLast:
				t.Fatalf("after restart: last index %d commit %d; before: last index %d", gotLast, hs.GetCommit(), last)
			case tc.crash == nil && hs.GetCommit() != before.HardState.GetCommit():
				t.Fatalf("after a clean close: commit %d, want %d", hs.GetCommit(), before.HardState.GetCommit())
			}
			// What survived is a prefix of what was written, at the same offsets.
			if gotLast > 0 {
				got, err := n.log.Entries(1, gotLast+1, math.MaxUint64)
				if err != nil {
					t.Fatal(err)
				}
				for k, g := range got {
					if w := ents[k]; g.GetTerm() != w.GetTerm() || g.GetType() != w.GetType() || !bytes.Equal(g.Data, w.Data) {
						t.Fatalf("after restart: entry %d differs from the one written", w.GetIndex())
					}
				}
			}
			for i := uint64(0); i <= gotLast; i++ {
				if o, err := n.log.CommittedOffset(i); err != nil || o != offsets[i] {
					t.Fatalf("after restart: CommittedOffset(%d) = %d, %v; want %d", i, o, err, offsets[i])
				}
			}
			end := n.log.EndOffset()
			if end != offsets[gotLast] {
				t.Fatalf("after restart: end offset %d, want %d", end, offsets[gotLast])
			}

			// The restarted voter leads again in a new term, commits what it holds and places
			// new proposals after it: a noop first, then the batches at the offsets that follow.
			c.elect(1)
			after := n.status()
			if after.HardState.GetTerm() <= before.HardState.GetTerm() || after.HardState.GetCommit() != gotLast+1 {
				t.Fatalf("re-elected: term %d commit %d; want a term after %d and commit %d (the new leader's noop)",
					after.HardState.GetTerm(), after.HardState.GetCommit(), before.HardState.GetTerm(), gotLast+1)
			}
			for o := end; o < off; o++ {
				delete(want, o) // lost in the crash
			}
			for i := range 3 {
				vals := []string{fmt.Sprintf("q%d-0", i), fmt.Sprintf("q%d-1", i)}
				n.propose(vals...)
				c.settle()
				idx := gotLast + 2 + uint64(i)
				if l, _ := n.log.LastIndex(); l != idx || n.status().HardState.GetCommit() != idx {
					t.Fatalf("proposal %d after restart: last index %d commit %d, want %d", i, l, n.status().HardState.GetCommit(), idx)
				}
				base := end + int64(2*i)
				if o, err := n.log.CommittedOffset(idx); err != nil || o != base+2 {
					t.Fatalf("proposal %d after restart: CommittedOffset(%d) = %d, %v; want %d", i, idx, o, err, base+2)
				}
				want[base], want[base+1] = vals[0], vals[1]
			}
			if got := recordsByOffset(t, fetchAll(t, n.log, 0, n.log.EndOffset()), 0); !maps.Equal(got, want) {
				t.Fatalf("records after restart: %v\nwant %v", got, want)
			}
		})
	}
}

// memNode opens a node on its own in-memory filesystem.
func memNode(t testing.TB, id uint64, peers ...uint64) *testNode {
	t.Helper()
	return openNode(t, id, raftLogConfig(vfs.NewMem()), fmt.Sprintf("/n%d", id), peers...)
}

// TestRawNodePartitionedLeaderTruncates partitions a leader that goes on appending proposals
// that cannot commit, lets the majority elect a new leader and commit other entries, heals the
// partition and checks that the old leader cut its divergent suffix, also on disk, and holds the
// same entries, offsets and batch bytes as the others.
func TestRawNodePartitionedLeaderTruncates(t *testing.T) {
	cases := []struct {
		name      string
		common    int  // batches committed before the partition
		records   int  // records in each of the old leader's divergent batches
		atSegment bool // the divergent suffix starts a segment: truncation deletes whole segments
	}{
		{name: "divergent suffix in segments of its own", common: 5, records: 3, atSegment: true},
		{name: "divergent suffix inside a segment", common: 4, records: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n1, n2, n3 := memNode(t, 1, 1, 2, 3), memNode(t, 2, 1, 2, 3), memNode(t, 3, 1, 2, 3)
			c := newCluster(t, n1, n2, n3)
			c.elect(1)
			for i := range tc.common {
				n1.propose(fmt.Sprintf("a%d-0", i), fmt.Sprintf("a%d-1", i))
			}
			c.settle()
			requireSameLogs(t, 1, n1, n2, n3)
			commonLast, _ := n1.log.LastIndex()
			commonEnd := n1.log.EndOffset()
			oldTerm := n1.status().HardState.GetTerm()
			if n2.status().HardState.GetCommit() != commonLast {
				t.Fatalf("before the partition: node 2 commit %d, want %d", n2.status().HardState.GetCommit(), commonLast)
			}

			// The partitioned leader appends proposals that never commit.
			c.drop = func(m *pb.Message) bool { return m.GetFrom() == 1 || m.GetTo() == 1 }
			for i := range 6 {
				vals := make([]string, tc.records)
				for j := range vals {
					vals[j] = fmt.Sprintf("divergent%d-%d", i, j)
				}
				n1.propose(vals...)
			}
			c.settle()
			if got := slices.Contains(segmentBases(n1.log), commonLast+1); got != tc.atSegment {
				t.Fatalf("the divergent suffix starts a segment: %v, want %v (segments start at %v)", got, tc.atSegment, segmentBases(n1.log))
			}
			divergentLast, _ := n1.log.LastIndex()
			if divergentLast != commonLast+6 || n1.status().HardState.GetCommit() != commonLast {
				t.Fatalf("partitioned leader: last index %d commit %d, want %d and %d", divergentLast, n1.status().HardState.GetCommit(), commonLast+6, commonLast)
			}
			if want := commonEnd + int64(6*tc.records); n1.log.EndOffset() != want {
				t.Fatalf("partitioned leader: end offset %d, want %d", n1.log.EndOffset(), want)
			}

			// The majority elects node 2, which commits entries of its own at the same indexes.
			c.elect(2)
			for i := range 4 {
				n2.propose(fmt.Sprintf("b%d-0", i))
			}
			c.settle()
			newTerm := n2.status().HardState.GetTerm()
			if last, _ := n2.log.LastIndex(); n2.status().HardState.GetCommit() != last || last != commonLast+5 {
				t.Fatalf("new leader: last index %d commit %d, want %d committed", last, n2.status().HardState.GetCommit(), commonLast+5)
			}
			requireSameLogs(t, 1, n2, n3)

			// Heal: the new leader's heartbeats reach the old one, which steps down and takes the new
			// leader's log, cutting its own suffix.
			c.drop = nil
			c.heartbeat(2)
			if st := n1.status(); st.RaftState != raft.StateFollower || st.Lead != 2 || st.HardState.GetCommit() != n2.status().HardState.GetCommit() {
				t.Fatalf("old leader after healing: %v led by %d with commit %d; want a follower of 2 with commit %d",
					st.RaftState, st.Lead, st.HardState.GetCommit(), n2.status().HardState.GetCommit())
			}
			checkHealed := func(when string) {
				t.Helper()
				requireSameLogs(t, 1, n2, n1, n3)
				last, _ := n1.log.LastIndex()
				for i := commonLast + 1; i <= last; i++ {
					if term, err := n1.log.Term(i); err != nil || term != newTerm {
						t.Fatalf("%s: old leader's entry %d has term %d (%v), want the new leader's %d (its own was %d)", when, i, term, err, newTerm, oldTerm)
					}
				}
				for off, v := range recordsByOffset(t, fetchAll(t, n1.log, 0, n1.log.EndOffset()), 0) {
					if strings.HasPrefix(v, "divergent") {
						t.Fatalf("%s: the old leader still serves its uncommitted record %q at offset %d", when, v, off)
					}
				}
				if hs, _, _ := n1.log.InitialState(); hs.GetCommit() > last {
					t.Fatalf("%s: old leader's commit %d is beyond its last index %d", when, hs.GetCommit(), last)
				}
			}
			checkHealed("after healing")

			// The truncation is on disk: a machine crash of the old leader keeps the healed log.
			n1.restart(n1.cfg.FS.(*vfs.Mem).Crash(nil))
			checkHealed("after a machine crash of the old leader")

			// And replication goes on from there.
			for i := range 3 {
				n2.propose(fmt.Sprintf("c%d-0", i), fmt.Sprintf("c%d-1", i))
			}
			c.settle()
			c.heartbeat(2)
			checkHealed("after more proposals")
			if got, want := n1.status().HardState.GetCommit(), n2.status().HardState.GetCommit(); got != want {
				t.Fatalf("old leader's commit %d, leader's %d", got, want)
			}
		})
	}
}

// TestRawNodeSnapshotToNewVoter adds a fourth voter with an empty log to a group whose leader has
// compacted its log: the new voter must get a MsgSnap, install it with ApplySnapshot, catch up
// with entries and place the records after the snapshot at the leader's offsets.
func TestRawNodeSnapshotToNewVoter(t *testing.T) {
	// The leader keeps about two segments when it applies retention.
	cfg1 := raftLogConfig(vfs.NewMem())
	cfg1.RetentionBytes = 8 << 10
	n1 := openNode(t, 1, cfg1, "/n1", 1, 2, 3)
	n2, n3 := memNode(t, 2, 1, 2, 3), memNode(t, 3, 1, 2, 3)
	c := newCluster(t, n1, n2, n3)
	c.elect(1)
	for i := range 8 {
		n1.propose(fmt.Sprintf("a%d-0", i), fmt.Sprintf("a%d-1", i))
	}
	c.settle()

	// Add node 4 before compacting past the change: raft drops a snapshot whose conf state lacks
	// the recipient, and the log's snapshot carries the conf state at its index.
	if err := n1.rn.ProposeConfChange(&pb.ConfChange{Type: pb.ConfChangeAddNode.Enum(), NodeId: proto.Uint64(4)}); err != nil {
		t.Fatal(err)
	}
	c.settle()
	ccIndex, _ := n1.log.LastIndex()
	if e, err := n1.log.Entries(ccIndex, ccIndex+1, math.MaxUint64); err != nil || e[0].GetType() != pb.EntryConfChange {
		t.Fatalf("the last entry %d is not the conf change: %v %v", ccIndex, e, err)
	}
	for _, n := range []*testNode{n1, n2, n3} {
		if _, cs, _ := n.log.InitialState(); !slices.Equal(cs.GetVoters(), []uint64{1, 2, 3, 4}) {
			t.Fatalf("node %d: voters %v after the conf change, want [1 2 3 4]", n.id, cs.GetVoters())
		}
	}
	for i := range 14 {
		n1.propose(fmt.Sprintf("b%d-0", i), fmt.Sprintf("b%d-1", i))
	}
	c.settle() // node 4 does not exist yet: its messages go nowhere, and the rest is a quorum

	// Retention on the leader deletes its oldest segments, all applied (the Ready loop calls
	// SetApplied), which compacts its raft log.
	if deleted, err := n1.log.ApplyRetention(); err != nil || deleted == 0 {
		t.Fatalf("ApplyRetention: %d segments deleted, %v", deleted, err)
	}
	first, _ := n1.log.FirstIndex()
	snapIndex := first - 1
	if snapIndex <= ccIndex {
		t.Fatalf("compaction left the first index at %d, want it past the conf change at %d", first, ccIndex)
	}
	leaderSnap, err := n1.log.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	snapOffset, _ := decodeSnapshotData(leaderSnap.GetData())
	if md := leaderSnap.GetMetadata(); md.GetIndex() != snapIndex || !slices.Equal(md.GetConfState().GetVoters(), []uint64{1, 2, 3, 4}) {
		t.Fatalf("leader's snapshot: %v, want index %d with voters [1 2 3 4]", md, snapIndex)
	}
	if want, _ := n1.log.CommittedOffset(snapIndex); snapOffset != want {
		t.Fatalf("leader's snapshot resumes at offset %d, want %d", snapOffset, want)
	}

	// Node 4 starts empty, without bootstrapping: it learns the group from the snapshot.
	n4 := memNode(t, 4)
	c.nodes[4] = n4
	c.heartbeat(1)
	if c.snaps[4] != 1 || n4.snaps != 1 {
		t.Fatalf("node 4 was sent %d snapshots and installed %d, want 1", c.snaps[4], n4.snaps)
	}
	checkNew := func(when string) {
		t.Helper()
		if f, _ := n4.log.FirstIndex(); f != first {
			t.Fatalf("%s: node 4 starts at index %d, want the leader's %d", when, f, first)
		}
		snap, _ := n4.log.Snapshot()
		if md := snap.GetMetadata(); md.GetIndex() != snapIndex || md.GetTerm() != leaderSnap.GetMetadata().GetTerm() {
			t.Fatalf("%s: node 4's snapshot is at index %d term %d, want %d term %d",
				when, md.GetIndex(), md.GetTerm(), snapIndex, leaderSnap.GetMetadata().GetTerm())
		}
		if got := n4.log.StartOffset(); got != snapOffset {
			t.Fatalf("%s: node 4 starts at offset %d, want the snapshot's %d", when, got, snapOffset)
		}
		hs, cs, _ := n4.log.InitialState()
		if !slices.Equal(cs.GetVoters(), []uint64{1, 2, 3, 4}) || hs.GetCommit() != n1.status().HardState.GetCommit() {
			t.Fatalf("%s: node 4 has voters %v and commit %d, want [1 2 3 4] and %d", when, cs.GetVoters(), hs.GetCommit(), n1.status().HardState.GetCommit())
		}
		if got := n1.log.StartOffset(); got != snapOffset {
			t.Fatalf("%s: the leader starts at offset %d, want its snapshot's %d", when, got, snapOffset)
		}
		requireSameLogs(t, first, n1, n4, n2, n3)
	}
	checkNew("after the snapshot")

	// Node 4 catches up with entries from here on, and survives a restart.
	for i := range 4 {
		n1.propose(fmt.Sprintf("c%d-0", i), fmt.Sprintf("c%d-1", i), fmt.Sprintf("c%d-2", i))
	}
	c.settle()
	checkNew("after more proposals")
	n4.restart(n4.cfg.FS)
	checkNew("after node 4 restarts")
	n1.propose("d0")
	c.settle()
	c.heartbeat(1)
	checkNew("after a proposal to the restarted node")
	if c.snaps[4] != 1 {
		t.Fatalf("node 4 was sent %d snapshots, want 1", c.snaps[4])
	}
}

// TestHardStateReopen checks what InitialState returns after SetHardState and a close or a
// machine crash: term and vote are durable at once, a new commit index alone at the next sync,
// and a commit index beyond the recovered log is lowered to its last index (raft panics on a
// commit index it cannot find).
func TestHardStateReopen(t *testing.T) {
	cases := []struct {
		name    string
		sync    SyncMode
		entries int             // entries saved before the hard states
		states  []*pb.HardState // SetHardState calls, in order
		more    int             // entries saved after them
		crash   bool            // Mem.Crash(nil) instead of Close
		want    *pb.HardState
	}{
		{name: "term, vote and commit survive a close", entries: 5, states: []*pb.HardState{hardState(3, 2, 4)}, want: hardState(3, 2, 4)},
		{name: "a commit beyond the last index is clamped", entries: 5, states: []*pb.HardState{hardState(3, 2, 9)}, want: hardState(3, 2, 5)},
		{name: "a commit in an empty log is clamped to 0", states: []*pb.HardState{hardState(1, 1, 3)}, want: hardState(1, 1, 0)},
		{name: "a new commit alone is written by Close", entries: 5, states: []*pb.HardState{hardState(3, 2, 2), hardState(3, 2, 4)}, want: hardState(3, 2, 4)},
		{
			// Raft tolerates a stale commit index: it learns the commit again from the leader.
			name: "a new commit alone is lost in a crash before the next sync", entries: 5, crash: true,
			states: []*pb.HardState{hardState(3, 2, 2), hardState(3, 2, 4)}, want: hardState(3, 2, 2),
		},
		{
			name: "a new commit alone is written by the next SaveEntries", entries: 5, more: 1, crash: true,
			states: []*pb.HardState{hardState(3, 2, 2), hardState(3, 2, 4)}, want: hardState(3, 2, 4),
		},
		{
			name: "term and vote survive a crash", entries: 5, crash: true,
			states: []*pb.HardState{hardState(3, 2, 2), hardState(4, 3, 2)}, want: hardState(4, 3, 2),
		},
		{
			// Without fsyncs the entries are lost in the crash, but the hard state, fsynced for
			// its new term, remembers committing them.
			name: "a commit past entries a crash lost is clamped", sync: SyncNever, entries: 5, crash: true,
			states: []*pb.HardState{hardState(2, 1, 5)}, want: hardState(2, 1, 0),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fs := vfs.NewMem()
			cfg := raftLogConfig(fs)
			cfg.Sync = tc.sync
			l, err := Open("/log", cfg)
			if err != nil {
				t.Fatal(err)
			}
			save := func(from, n int) {
				for i := from; i < from+n; i++ {
					if err := l.SaveEntries([]*pb.Entry{entry(uint64(i), 1, pb.EntryNormal, recordsBatch(t, 0, fmt.Sprint(i)))}); err != nil {
						t.Fatal(err)
					}
				}
			}
			save(1, tc.entries)
			for _, hs := range tc.states {
				if err := l.SetHardState(hs); err != nil {
					t.Fatalf("SetHardState(%s): %v", describeHS(hs), err)
				}
			}
			save(tc.entries+1, tc.more)
			after := fs
			if tc.crash {
				after = fs.Crash(nil)
				defer l.Close()
			} else if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			cfg.FS = after
			l2 := mustOpen(t, "/log", cfg)
			hs, _, err := l2.InitialState()
			if err != nil {
				t.Fatal(err)
			}
			if describeHS(hs) != describeHS(tc.want) {
				t.Fatalf("InitialState after reopening: %s, want %s", describeHS(hs), describeHS(tc.want))
			}
			// Raft starts on it and takes the hard state as it is.
			rn, err := raft.NewRawNode(&raft.Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: l2, MaxInflightMsgs: 1, Logger: newRaftTestLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			if got := rn.BasicStatus().HardState; describeHS(got) != describeHS(tc.want) {
				t.Fatalf("raft started with hard state %s, want %s", describeHS(got), describeHS(tc.want))
			}
		})
	}
}

// saveRecords saves entries first..last of term, each a records batch of two 600-byte records,
// so that three entries fill a 4 KiB segment.
func saveRecords(t testing.TB, l *Log, first, last, term uint64) {
	t.Helper()
	for i := first; i <= last; i++ {
		b := recordsBatch(t, 600, fmt.Sprintf("i%d-0", i), fmt.Sprintf("i%d-1", i))
		if err := l.SaveEntries([]*pb.Entry{entry(i, term, pb.EntryNormal, b)}); err != nil {
			t.Fatalf("SaveEntries(%d): %v", i, err)
		}
	}
}

// segmentBases returns the raft index each segment of l starts at.
func segmentBases(l *Log) []uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var out []uint64
	for _, s := range l.segs {
		out = append(out, s.baseIndex)
	}
	return out
}

// TestTruncateToKeepsStateInRange truncates a log with a commit index and a log start beyond
// the truncation point, once inside a segment and once at a segment boundary, where truncation
// deletes whole segments: either way the commit index and the log start must come back within
// the log, or raft panics on the commit index and reads at the end fail.
func TestTruncateToKeepsStateInRange(t *testing.T) {
	for _, atBoundary := range []bool{false, true} {
		t.Run(fmt.Sprintf("at a segment boundary=%v", atBoundary), func(t *testing.T) {
			l := mustOpen(t, "/log", raftLogConfig(vfs.NewMem()))
			saveRecords(t, l, 1, 8, 1)
			if err := l.SetHardState(hardState(1, 1, 8)); err != nil {
				t.Fatal(err)
			}
			// Nothing is applied, so this moves the log start without deleting a segment.
			if err := l.DeleteBefore(l.EndOffset() - 1); err != nil {
				t.Fatal(err)
			}
			bases := segmentBases(l)
			if len(bases) < 3 || bases[2]-bases[1] < 2 {
				t.Fatalf("segments start at indexes %v; the test wants a segment of two entries or more after the first", bases)
			}
			idx := bases[1]
			if !atBoundary {
				idx++
			}
			off, _ := l.CommittedOffset(idx - 1)
			if err := l.TruncateTo(off); err != nil {
				t.Fatalf("TruncateTo(%d): %v", off, err)
			}
			last, _ := l.LastIndex()
			hs, _, _ := l.InitialState()
			switch {
			case last != idx-1:
				t.Fatalf("truncated at index %d: last index %d", idx, last)
			case hs.GetCommit() != last:
				t.Fatalf("truncated at index %d: commit %d, want it lowered to the last index %d", idx, hs.GetCommit(), last)
			case l.StartOffset() > l.EndOffset():
				t.Fatalf("truncated at offset %d: log start %d after the log end %d", off, l.StartOffset(), l.EndOffset())
			}
			if _, err := l.Read(nil, l.EndOffset(), 1024, l.EndOffset()); err != nil {
				t.Fatalf("read at the end after truncating: %v", err)
			}
			if _, err := raft.NewRawNode(&raft.Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: l, MaxInflightMsgs: 1, Logger: newRaftTestLogger(t)}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestApplySnapshotInterrupted interrupts ApplySnapshot after it wrote the state file, by failing
// the removal of the old segments at each step, and reopens the log as a restart after a crash
// there would: the log must open and start after the snapshot, whatever of the old log is left.
func TestApplySnapshotInterrupted(t *testing.T) {
	// The old log: entries 1 to 8 of term 1, two records each, in segments that start at the
	// indexes and offsets that segmentBases reports.
	cases := []struct {
		name  string
		index func(bases []uint64) uint64 // the snapshot's index
		// sameOffset: the snapshot resumes at the offset the old log had after its index, so
		// only the terms tell the old entries from the snapshot's history.
		sameOffset bool
	}{
		{name: "snapshot inside a segment", index: func(b []uint64) uint64 { return b[1] }},
		{name: "snapshot beyond the old log", index: func([]uint64) uint64 { return 20 }},
		{name: "an old segment starts after the snapshot", index: func(b []uint64) uint64 { return b[1] - 1 }},
		{name: "an old segment starts after the snapshot at its offset", index: func(b []uint64) uint64 { return b[1] - 1 }, sameOffset: true},
		{name: "the last old segment starts after the snapshot", index: func(b []uint64) uint64 { return b[len(b)-1] - 1 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for removes := 0; ; removes++ {
				mem := vfs.NewMem()
				faults := vfs.FailAfter(removes, nil, vfs.OpRemove)
				l, err := Open("/log", raftLogConfig(vfs.NewFaulty(mem, faults)))
				if err != nil {
					t.Fatal(err)
				}
				saveRecords(t, l, 1, 8, 1)
				bases := segmentBases(l)
				if len(bases) < 3 {
					t.Fatalf("segments start at indexes %v, want three or more", bases)
				}
				index := tc.index(bases)
				offset := int64(1000)
				if tc.sameOffset {
					offset, _ = l.CommittedOffset(index)
				}
				applyErr := l.ApplySnapshot(snapshotAt(index, 2, offset, 1, 2, 3))
				l.Close()
				if applyErr == nil && !faults.Fired() {
					break // every removal went through: all interruption points are covered
				}

				l2, err := Open("/log", raftLogConfig(mem))
				if err != nil {
					t.Fatalf("after %d removals: reopen: %v", removes, err)
				}
				first, _ := l2.FirstIndex()
				last, _ := l2.LastIndex()
				term, _ := l2.Term(index)
				hs, cs, _ := l2.InitialState()
				switch {
				case first != index+1 || last != index:
					t.Fatalf("after %d removals: log holds indexes [%d, %d], want none after the snapshot at %d", removes, first, last, index)
				case term != 2:
					t.Fatalf("after %d removals: Term(%d) = %d, want the snapshot's 2", removes, index, term)
				case l2.StartOffset() != offset || l2.EndOffset() != offset:
					t.Fatalf("after %d removals: offsets [%d, %d), want to start at the snapshot's %d", removes, l2.StartOffset(), l2.EndOffset(), offset)
				case hs.GetCommit() != index || !slices.Equal(cs.GetVoters(), []uint64{1, 2, 3}):
					t.Fatalf("after %d removals: commit %d voters %v, want %d and [1 2 3]", removes, hs.GetCommit(), cs.GetVoters(), index)
				}
				saveRecords(t, l2, index+1, index+2, 2)
				if got, _ := l2.CommittedOffset(index + 2); got != offset+4 {
					t.Fatalf("after %d removals: entries after the snapshot end at offset %d, want %d", removes, got, offset+4)
				}
				l2.Close()
			}
		})
	}
}
