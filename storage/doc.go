// Package storage owns Weir's partition log: the files of one partition, which are at the same time
// its record log, read by offset, and the log of its raft group, read by raft index.
//
// # Records and batches
//
// A record is a key, a value, string headers and a timestamp. Records are written, stored,
// replicated and fetched in batches; a batch is a fixed header and a msgpack body (batch.go has
// the byte layout). The batch is the unit on disk and on the wire: a fetch returns batches as they
// lie in the file, never decoded and re-encoded.
//
// # One log, two addresses
//
// Every batch is one raft entry. Its header carries the entry's raft term and index and the offset
// of its first record. Records batches carry records; raft entries without records (a new
// leader's empty entry, configuration changes) are stored as batches of other kinds with no
// records, which readers skip, as Kafka consumers skip control batches. Record offsets are dense
// and follow from the log's prefix (a batch's base offset is the previous batch's next offset), so
// replicas that hold the same entries hold the same offsets. A raft group exposes records up to
// the offset after its commit index (CommittedOffset): that is the high watermark.
//
// Log implements go.etcd.io/raft/v3's Storage interface and persists what raft's Ready hands out
// (SaveEntries, SetHardState, ApplySnapshot). Used without raft, Append places a batch as the next
// entry itself.
//
// # Files
//
// A log is a directory:
//
//	00000000000000000000.log        segment: header, then batches (segment.go)
//	00000000000000000000.index      sparse index of a sealed segment: raft index, offset, position
//	00000000000000000000.timeindex  sparse time index of a sealed segment: timestamp, position
//	00000000000000012345.log        next segment, named by the offset of its first record
//	state                           raft hard state, snapshot position, log start (state.go)
//
// The active (last) segment's indexes live in memory. Lookups by offset, by raft index and by time
// binary-search a sparse index and then read at most about IndexIntervalBytes of headers, so
// neither address needs a scan of the log.
//
// # Durability and recovery
//
// Config.Sync chooses when appended data reaches the disk: SyncAlways (fsync before Append or
// SaveEntries returns; nothing acknowledged is lost in a machine crash, at the price of an fsync
// per call), SyncInterval (fsync at most every SyncInterval; a machine crash loses at most that
// window) or SyncNever (the kernel writes back when it likes; for replicated logs, where the other
// replicas hold what a crashed machine lost). A process crash loses nothing under any policy:
// what was written is in the page cache. Under SyncAlways rolling a segment fsyncs it and writes
// its indexes before the append returns; under SyncInterval and SyncNever the log's syncer
// goroutine does that in the background, oldest segment first, so that no append waits for a
// whole segment's writeback. A sealed segment's index files appear only once its data is synced.
//
// Open recovers: sealed segments have their indexes loaded (rebuilt when missing or damaged) and
// the batches after the last index entry verified; the active segment is scanned whole with
// checksums. A bad batch at the end of the active segment, with nothing valid after it, is a torn
// write and is cut off; so is one at the end of a sealed segment without index files after the
// last one with them (one a crash caught before the syncer had synced it), and the segments after
// it are removed. A bad batch with a valid one anywhere after it (found by searching the rest
// of the file) is corruption: Open returns a *CorruptError naming the file, position and expected
// offset, and leaves the files as they are. Lookups check what an index entry leads to, and every
// batch header carries a checksum over its placement (offset, term, raft index).
// After a failed write or fsync the Log refuses further writes (ErrFailed) until it is reopened,
// because after a failed fsync the kernel may have dropped pages the log believes written.
//
// # Concurrency
//
// A Log is safe for concurrent use. Writes are serialised; reads share a read lock and read with
// positional reads. All file access goes through package vfs, so tests inject faults and crashes.
package storage
