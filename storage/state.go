package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"path/filepath"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/weirhq/weir/storage/vfs"
)

// The state file, named "state", holds what a raft group must keep beside its log and what the
// log keeps about its own start:
//
//	offset size field
//	 0     4    magic    "WSTA" (0x57535441)
//	 4     2    version  stateVersion
//	 6     2    reserved zero
//	 8     4    length   of the msgpack body
//	12     4    crc      CRC32C of the body
//	16     -    body     msgpack of persistedState
//
// It is replaced whole: written to state.tmp, fsynced, renamed over state, and the directory
// fsynced, so a crash leaves either the old or the new file. It changes rarely: on a new raft term
// or vote, a snapshot, a conf change, DeleteBefore, compaction by retention, and when Sync or Close
// records the latest commit index.
const (
	stateMagic      uint32 = 0x57535441 // "WSTA"
	stateVersion    uint16 = 1
	stateHeaderSize        = 16
	stateFile              = "state"
)

type persistedState struct {
	Term   uint64 `msgpack:"term"`
	Vote   uint64 `msgpack:"vote"`
	Commit uint64 `msgpack:"commit"`
	// Snapshot: entries up to SnapIndex are gone; SnapTerm is the term of entry SnapIndex and
	// SnapOffset the record offset of the first record after it.
	SnapIndex  uint64 `msgpack:"snap_index"`
	SnapTerm   uint64 `msgpack:"snap_term"`
	SnapOffset int64  `msgpack:"snap_offset"`
	// StartOffset is the log start: records before it are deleted, even if their segment remains.
	StartOffset int64 `msgpack:"start_offset"`
	// ConfStates are raft ConfStates (protobuf bytes) with the index at which each took effect,
	// oldest first; the newest at or below SnapIndex is the snapshot's.
	ConfStates []confAt `msgpack:"conf_states"`
}

type confAt struct {
	Index uint64 `msgpack:"index"`
	Data  []byte `msgpack:"data"`
}

func encodeState(st *persistedState) ([]byte, error) {
	body, err := msgpack.Marshal(st)
	if err != nil {
		return nil, err
	}
	b := make([]byte, stateHeaderSize+len(body))
	binary.BigEndian.PutUint32(b[0:], stateMagic)
	binary.BigEndian.PutUint16(b[4:], stateVersion)
	binary.BigEndian.PutUint32(b[8:], uint32(len(body)))
	binary.BigEndian.PutUint32(b[12:], crc32.Checksum(body, castagnoli))
	copy(b[stateHeaderSize:], body)
	return b, nil
}

func decodeState(b []byte) (*persistedState, error) {
	if len(b) < stateHeaderSize {
		return nil, fmt.Errorf("%d bytes, shorter than the %d-byte header", len(b), stateHeaderSize)
	}
	if m := binary.BigEndian.Uint32(b[0:]); m != stateMagic {
		return nil, fmt.Errorf("magic %#08x, want %#08x", m, stateMagic)
	}
	if v := binary.BigEndian.Uint16(b[4:]); v != stateVersion {
		return nil, fmt.Errorf("version %d, want %d", v, stateVersion)
	}
	n := binary.BigEndian.Uint32(b[8:])
	if int64(n) != int64(len(b)-stateHeaderSize) {
		return nil, fmt.Errorf("length %d, but %d body bytes", n, len(b)-stateHeaderSize)
	}
	body := b[stateHeaderSize:]
	if got, want := crc32.Checksum(body, castagnoli), binary.BigEndian.Uint32(b[12:]); got != want {
		return nil, fmt.Errorf("crc %#08x, stored %#08x", got, want)
	}
	st := &persistedState{}
	if err := msgpack.Unmarshal(body, st); err != nil {
		return nil, fmt.Errorf("body: %v", err)
	}
	if st.StartOffset < st.SnapOffset || st.SnapOffset < 0 {
		return nil, fmt.Errorf("start offset %d before snapshot offset %d", st.StartOffset, st.SnapOffset)
	}
	return st, nil
}

// readState loads the state file; a missing file is an empty state.
func (l *Log) readState() (*persistedState, error) {
	name := filepath.Join(l.dir, stateFile)
	b, err := vfs.ReadFile(l.fs, name)
	if errors.Is(err, fs.ErrNotExist) {
		return &persistedState{}, nil
	}
	if err != nil {
		return nil, err
	}
	st, err := decodeState(b)
	if err != nil {
		// The file is only ever replaced by rename after an fsync, so a damaged one is not a torn
		// write: it is corruption, and guessing a raft term or vote could break raft's safety.
		return nil, &CorruptError{File: name, Reason: err.Error()}
	}
	return st, nil
}

// writeState replaces the state file with l.state. The caller holds l.mu.
func (l *Log) writeState() error {
	b, err := encodeState(&l.state)
	if err != nil {
		return err
	}
	if err := l.writeFileAtomic(filepath.Join(l.dir, stateFile), b); err != nil {
		return l.fail(fmt.Errorf("write state: %w", err))
	}
	l.stateDirty = false
	return nil
}

// writeFileAtomic replaces a file of the log (see vfs.WriteFileAtomic); it syncs the directory,
// which makes earlier removals durable too.
func (l *Log) writeFileAtomic(name string, data []byte) error {
	if err := vfs.WriteFileAtomic(l.fs, name, data); err != nil {
		return err
	}
	l.dirDirty = false
	return nil
}
