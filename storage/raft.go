package storage

import (
	"fmt"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// The raft side of the log. A raft entry is stored as one batch: an EntryNormal with data is the
// records batch it carries, placed as is; any other entry is a batch of another Kind whose body
// is the entry's data. Record offsets are a function of the log's prefix (each batch's base offset
// is the previous batch's next offset), so every replica computes the same offsets, and they
// become visible to consumers when the raft group commits the entry (CommittedOffset).

var _ raft.Storage = (*Log)(nil)

// InitialState implements raft.Storage.
func (l *Log) InitialState() (*pb.HardState, *pb.ConfState, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	hs := &pb.HardState{Term: proto.Uint64(l.state.Term), Vote: proto.Uint64(l.state.Vote), Commit: proto.Uint64(l.state.Commit)}
	cs := &pb.ConfState{}
	if n := len(l.state.ConfStates); n > 0 {
		if err := proto.Unmarshal(l.state.ConfStates[n-1].Data, cs); err != nil {
			return nil, nil, fmt.Errorf("conf state: %w", err)
		}
	}
	return hs, cs, nil
}

// FirstIndex implements raft.Storage.
func (l *Log) FirstIndex() (uint64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.state.SnapIndex + 1, nil
}

// LastIndex implements raft.Storage.
func (l *Log) LastIndex() (uint64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.lastIndex(), nil
}

// Term implements raft.Storage.
func (l *Log) Term(i uint64) (uint64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.term(i)
}

// term is Term for a caller that holds l.mu.
func (l *Log) term(i uint64) (uint64, error) {
	switch {
	case i == l.state.SnapIndex:
		return l.state.SnapTerm, nil
	case i < l.state.SnapIndex:
		return 0, raft.ErrCompacted
	case i > l.lastIndex():
		return 0, raft.ErrUnavailable
	}
	s := l.segmentForIndex(i)
	if i == s.nextIndex-1 {
		return s.lastTerm, nil
	}
	_, h, err := s.seekIndex(&window{f: s.f, chunk: 2 * HeaderSize}, i)
	if err != nil {
		return 0, err
	}
	return h.Term, nil
}

// segmentForIndex returns the segment holding raft index i, which must be in the log.
func (l *Log) segmentForIndex(i uint64) *segment {
	lo, hi := 0, len(l.segs)
	for lo < hi {
		m := (lo + hi) / 2
		if l.segs[m].baseIndex > i {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return l.segs[max(lo-1, 0)]
}

// Entries implements raft.Storage: entries [lo, hi), at most maxSize bytes but at least one.
func (l *Log) Entries(lo, hi, maxSize uint64) ([]*pb.Entry, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if lo <= l.state.SnapIndex {
		return nil, raft.ErrCompacted
	}
	if hi > l.lastIndex()+1 || lo > hi {
		return nil, raft.ErrUnavailable
	}
	if ents, ok := l.cache.get(lo, hi); ok {
		return limitSize(ents, maxSize), nil
	}
	var out []*pb.Entry
	var size uint64
	for idx := lo; idx < hi; {
		s := l.segmentForIndex(idx)
		w := &window{f: s.f}
		pos, _, err := s.seekIndex(w, idx)
		if err != nil {
			return nil, err
		}
		for ; idx < hi && idx < s.nextIndex; idx++ {
			hb, err := w.bytes(pos, HeaderSize)
			if err != nil {
				return nil, s.corrupt(pos, 0, idx, err.Error())
			}
			h, err := ParseHeader(hb)
			if err != nil {
				return nil, s.corrupt(pos, 0, idx, err.Error())
			}
			if h.Index != idx {
				return nil, s.corrupt(pos, 0, idx, fmt.Sprintf("batch says index %d", h.Index))
			}
			b, err := w.bytes(pos, h.Size())
			if err != nil {
				return nil, s.corrupt(pos, h.BaseOffset, idx, err.Error())
			}
			if err := CheckCRC(b, h); err != nil {
				return nil, s.corrupt(pos, h.BaseOffset, idx, err.Error())
			}
			e := entryFromBatch(b, h)
			size += uint64(proto.Size(e))
			if len(out) > 0 && size > maxSize {
				return out, nil
			}
			out = append(out, e)
			pos += int64(h.Size())
		}
	}
	return out, nil
}

// limitSize cuts ents to the longest prefix of at most maxSize bytes, but at least one entry.
func limitSize(ents []*pb.Entry, maxSize uint64) []*pb.Entry {
	var size uint64
	for i, e := range ents {
		size += uint64(proto.Size(e))
		if i > 0 && size > maxSize {
			return ents[:i]
		}
	}
	return ents
}

func entryFromBatch(b []byte, h Header) *pb.Entry {
	e := &pb.Entry{Term: proto.Uint64(h.Term), Index: proto.Uint64(h.Index)}
	switch h.Kind {
	case KindRecords:
		e.Type = pb.EntryType_EntryNormal.Enum()
		e.Data = append([]byte(nil), b...)
	case KindNoop:
		e.Type = pb.EntryType_EntryNormal.Enum()
	case KindConfChange:
		e.Type = pb.EntryType_EntryConfChange.Enum()
		e.Data = append([]byte(nil), b[HeaderSize:]...)
	case KindConfChangeV2:
		e.Type = pb.EntryType_EntryConfChangeV2.Enum()
		e.Data = append([]byte(nil), b[HeaderSize:]...)
	}
	return e
}

// batchForEntry returns the batch that stores e. The data of a normal entry must be a records
// batch; the others are wrapped.
func (l *Log) batchForEntry(e *pb.Entry) ([]byte, Header, error) {
	var b []byte
	switch e.GetType() {
	case pb.EntryType_EntryNormal:
		if len(e.Data) == 0 {
			b = controlBatch(KindNoop, nil, l.cfg.Now().UnixMilli())
			break
		}
		h, err := ParseBatch(e.Data)
		if err != nil {
			return nil, h, fmt.Errorf("entry %d: %w", e.GetIndex(), err)
		}
		if h.Kind != KindRecords || h.Size() != len(e.Data) {
			return nil, h, fmt.Errorf("entry %d: %w: normal entries carry exactly one records batch", e.GetIndex(), ErrBadBatch)
		}
		return e.Data, h, nil
	case pb.EntryType_EntryConfChange:
		b = controlBatch(KindConfChange, e.Data, l.cfg.Now().UnixMilli())
	case pb.EntryType_EntryConfChangeV2:
		b = controlBatch(KindConfChangeV2, e.Data, l.cfg.Now().UnixMilli())
	default:
		return nil, Header{}, fmt.Errorf("entry %d: unknown entry type %v", e.GetIndex(), e.GetType())
	}
	h, err := ParseHeader(b)
	return b, h, err
}

// SaveEntries persists entries handed out by raft's Ready. Entries that overlap the log replace
// its suffix from the first of them on (raft has found the follower's log diverged); the rest are
// appended. The placement of a records entry (base offset, term, index, header crc) is written
// into its Data in place, so that the entry is what Entries returns for it later; the entries
// are kept until applied (SetApplied). So the log owns the Data of entries given to it: the
// caller must not modify or reuse it, and two entries must not share it (raft's own entries
// never do: it copies each proposal). It syncs as the policy says: with SyncAlways the entries are durable on return, which
// raft requires before the messages of the same Ready are sent.
//
// It is all or nothing as far as it can be: every entry is checked before anything is truncated
// or written, so bad entries leave the log as it was; a write that fails part way through fails
// the log (ErrFailed), and recovery on reopen keeps what reached the disk.
func (l *Log) SaveEntries(ents []*pb.Entry) error {
	if len(ents) == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writable(); err != nil {
		return err
	}
	first := ents[0].GetIndex()
	for i, e := range ents {
		if e.GetIndex() != first+uint64(i) {
			return fmt.Errorf("%w: entry %d follows entry %d", ErrEntryMismatch, e.GetIndex(), first+uint64(i)-1)
		}
	}
	if first <= l.state.SnapIndex {
		return fmt.Errorf("%w: entry %d is at or before the snapshot at %d", ErrEntryMismatch, first, l.state.SnapIndex)
	}
	last := l.lastIndex()
	if first > last+1 {
		return fmt.Errorf("%w: entry %d leaves a gap after %d", ErrEntryMismatch, first, last)
	}
	prevTerm, err := l.term(first - 1)
	if err != nil {
		return err
	}
	type frame struct {
		b []byte
		h Header
	}
	frames := make([]frame, len(ents))
	for i, e := range ents {
		if e.GetTerm() < prevTerm {
			return fmt.Errorf("%w: entry %d has term %d after term %d", ErrEntryMismatch, e.GetIndex(), e.GetTerm(), prevTerm)
		}
		b, h, err := l.batchForEntry(e)
		if err != nil {
			return err
		}
		frames[i] = frame{b, h}
		prevTerm = e.GetTerm()
	}
	if first <= last {
		if err := l.truncateIndex(first); err != nil {
			return err
		}
	}
	for i, e := range ents {
		if err := l.appendFrame(frames[i].b, frames[i].h, e.GetTerm(), e.GetIndex(), true); err != nil {
			l.cache.clear()
			return l.fail(err)
		}
	}
	l.cache.add(ents)
	return l.syncPolicy()
}

// SetHardState records raft's hard state. A new term or vote is written to the state file and
// fsynced before returning (raft's safety depends on never voting twice in a term); a new commit
// index alone is kept in memory and written with the next sync, since raft tolerates a stale
// commit index after a restart. An empty hard state (nil or all zero), which raft hands out when
// nothing changed, is ignored.
func (l *Log) SetHardState(hs *pb.HardState) error {
	if hs.GetTerm() == 0 && hs.GetVote() == 0 && hs.GetCommit() == 0 {
		return nil // raft's empty hard state: nothing changed, and it must not reset term and vote
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writable(); err != nil {
		return err
	}
	changed := hs.GetTerm() != l.state.Term || hs.GetVote() != l.state.Vote
	if !changed && hs.GetCommit() == l.state.Commit {
		return nil
	}
	l.state.Term, l.state.Vote, l.state.Commit = hs.GetTerm(), hs.GetVote(), hs.GetCommit()
	if changed {
		return l.writeState()
	}
	l.stateDirty = true
	return nil
}

// SetConfState records the configuration that took effect when the entry at index was applied.
func (l *Log) SetConfState(index uint64, cs *pb.ConfState) error {
	data, err := proto.Marshal(cs)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writable(); err != nil {
		return err
	}
	l.state.ConfStates = append(l.state.ConfStates, confAt{Index: index, Data: data})
	l.pruneConfStates()
	return l.writeState()
}

// pruneConfStates keeps the newest conf state at or below the snapshot and every later one.
func (l *Log) pruneConfStates() {
	cs := l.state.ConfStates
	keep := 0
	for i := range cs {
		if cs[i].Index <= l.state.SnapIndex {
			keep = i
		}
	}
	l.state.ConfStates = append([]confAt(nil), cs[keep:]...)
}

// SetApplied tells the log the highest raft index its owner has applied: retention and
// DeleteBefore never delete entries beyond it, so raft can always serve what it has not applied.
// Append advances it by itself.
func (l *Log) SetApplied(index uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.applied = max(l.applied, index)
	l.cache.dropThrough(l.applied)
}

// Snapshot implements raft.Storage. A partition's state machine is its log, so a snapshot is
// only a position: the follower that installs it starts its log there (see ApplySnapshot), and
// the records before it are gone, as after retention.
func (l *Log) Snapshot() (*pb.Snapshot, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	cs := &pb.ConfState{}
	for i := len(l.state.ConfStates) - 1; i >= 0; i-- {
		if c := l.state.ConfStates[i]; c.Index <= l.state.SnapIndex {
			if err := proto.Unmarshal(c.Data, cs); err != nil {
				return nil, fmt.Errorf("conf state: %w", err)
			}
			break
		}
	}
	return &pb.Snapshot{
		Data: encodeSnapshotData(l.state.SnapOffset),
		Metadata: &pb.SnapshotMetadata{
			ConfState: cs,
			Index:     proto.Uint64(l.state.SnapIndex),
			Term:      proto.Uint64(l.state.SnapTerm),
		},
	}, nil
}

// ApplySnapshot installs a snapshot from the leader: the log is emptied and restarts after the
// snapshot's index, at the record offset the snapshot carries.
func (l *Log) ApplySnapshot(snap *pb.Snapshot) error {
	md := snap.GetMetadata()
	off, err := decodeSnapshotData(snap.GetData())
	if err != nil {
		return err
	}
	cs, err := proto.Marshal(md.GetConfState())
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writable(); err != nil {
		return err
	}
	if md.GetIndex() <= l.state.SnapIndex {
		return raft.ErrSnapOutOfDate
	}
	// State first, then the old segments newest first: after a crash in between, recovery finds
	// the new snapshot and a prefix of the old log, which precedes or straddles the snapshot or
	// starts right after it without continuing it, and drops it (see dropBeforeSnapshot).
	l.state.SnapIndex, l.state.SnapTerm, l.state.SnapOffset = md.GetIndex(), md.GetTerm(), off
	l.state.StartOffset = off
	l.state.Commit = max(l.state.Commit, md.GetIndex())
	l.state.ConfStates = append(l.state.ConfStates, confAt{Index: md.GetIndex(), Data: cs})
	l.pruneConfStates()
	if err := l.writeState(); err != nil {
		return err
	}
	for i := len(l.segs) - 1; i >= 0; i-- {
		if err := l.removeSegment(l.segs[i]); err != nil {
			return l.fail(fmt.Errorf("apply snapshot: %w", err))
		}
	}
	l.segs = nil
	l.cache.clear()
	s, err := l.createSegment(off, md.GetIndex()+1, false)
	if err != nil {
		return l.fail(fmt.Errorf("apply snapshot: %w", err))
	}
	l.segs = []*segment{s}
	l.applied = md.GetIndex()
	l.unsynced = false
	return nil
}

// CommittedOffset returns the record offset after the entry at raft index idx: with idx the
// commit index, the high watermark up to which consumers may read. Like Term, it knows the
// snapshot's index but none before it (raft.ErrCompacted).
func (l *Log) CommittedOffset(idx uint64) (int64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	switch {
	case idx == l.state.SnapIndex:
		return l.state.SnapOffset, nil
	case idx < l.state.SnapIndex:
		return 0, raft.ErrCompacted
	case idx > l.lastIndex():
		return 0, raft.ErrUnavailable
	}
	s := l.segmentForIndex(idx)
	if idx == s.nextIndex-1 {
		return s.nextOffset, nil
	}
	_, h, err := s.seekIndex(&window{f: s.f, chunk: 2 * HeaderSize}, idx)
	if err != nil {
		return 0, err
	}
	return h.NextOffset(), nil
}

func encodeSnapshotData(off int64) []byte {
	b := make([]byte, 9)
	b[0] = 1 // version
	for i := 0; i < 8; i++ {
		b[1+i] = byte(uint64(off) >> (56 - 8*i))
	}
	return b
}

func decodeSnapshotData(b []byte) (int64, error) {
	if len(b) != 9 || b[0] != 1 {
		return 0, fmt.Errorf("snapshot data: %d bytes, want a version-1 offset of 9 bytes", len(b))
	}
	var v uint64
	for i := 0; i < 8; i++ {
		v = v<<8 | uint64(b[1+i])
	}
	if int64(v) < 0 {
		return 0, fmt.Errorf("snapshot data: negative offset")
	}
	return int64(v), nil
}
