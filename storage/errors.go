package storage

import (
	"errors"
	"fmt"
)

var (
	// ErrCorrupt is wrapped by CorruptError: data on disk that failed a check and cannot be a torn
	// tail. The log refuses to guess what it should have held.
	ErrCorrupt = errors.New("log corrupted")
	// ErrOffsetOutOfRange: the offset is before the log start or after its end.
	ErrOffsetOutOfRange = errors.New("offset out of range")
	// ErrNotBoundary: a truncation point falls inside a batch.
	ErrNotBoundary = errors.New("offset is not a batch boundary")
	// ErrClosed: the log was closed.
	ErrClosed = errors.New("log closed")
	// ErrFailed: an earlier write or fsync failed, so what the log holds in memory may differ from
	// the disk. Reopen the log to recover from what the disk holds.
	ErrFailed = errors.New("log failed; reopen it")
	// ErrEntryMismatch: raft entries handed to SaveEntries do not continue the log.
	ErrEntryMismatch = errors.New("entries do not continue the log")
)

// CorruptError names the file and position of damaged data and the offset or raft index the
// log expected there.
type CorruptError struct {
	File   string
	Pos    int64  // byte position in File
	Offset int64  // record offset expected at Pos
	Index  uint64 // raft index expected at Pos
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%v: %s at byte %d (offset %d, index %d): %s", ErrCorrupt, e.File, e.Pos, e.Offset, e.Index, e.Reason)
}

func (e *CorruptError) Unwrap() error { return ErrCorrupt }
