// Package file is a rolling file sink: it writes the values of the records it is given to files
// in a directory, one sequence of files per topic partition, and rolls to a new file by size, by
// record count, by age and after a time without records. Readers of the directory only ever see
// whole files: a file is written under a hidden in-progress name and renamed to its final name,
// after an fsync, when it rolls or the sink closes (what Flume's HDFS sink does with its in-use
// suffix).
//
// # Exactly once
//
// The sink runner commits a partition's offset only after Write returned, and after a crash
// or a rebalance reads on from the committed offset: the records between that offset and the
// last one written come again, to whichever member of the consumer group has the partition
// now. The sink removes that repeat itself, so every record lands in the directory exactly
// once, however many members share it:
//
//   - The sink's memory is per partition: a state log (see Layout) whose last record says the
//     last offset made durable, the in-progress file and its synced length, and the renames of
//     a roll being made. A sink holds a partition while it has the partition's lock (a lock
//     file, flock on Unix, held until Reset, Close or the process's end), and only the holder
//     writes the partition's files and state.
//   - Write appends to the files without an fsync. A partition is made durable (synced) once
//     SyncSize bytes were appended to it since its last sync, or SyncInterval after the first of
//     them, at a roll, and at Reset and Close: its file is fsynced, and then a record of its
//     state is appended to its state log and fsynced (a torn record, from a crash in the
//     append, is cut when the partition is next taken: the record before it is the state).
//     Durable reports, per partition, the last offset its durable state records; the runner
//     commits no more. Syncs run in the sink's goroutine while Writes go on appending (see
//     Concurrency); a roll in a Write is made durable before the Write returns.
//   - A Write that brings a record of a partition the sink does not hold takes it first: it
//     takes the partition's lock, reads its state (and writes the state log anew, holding that
//     state only: its last record may have survived a process crash, or a failed fsync,
//     without being durable, and must be before it is acted on) and puts its files back in the
//     state it describes: the in-progress file is cut to its
//     recorded length (bytes after it were appended but never made durable, so their offsets
//     were not committed and will be replayed), in-progress files of the partition the state does not know are removed, and
//     the recorded renames are completed. If another sink holds the lock (a member that has
//     not yet noticed that it lost the partition), the Write writes nothing and returns an
//     error wrapping connectors.ErrReplay: the runner backs off and reads again from the
//     committed offsets. Locks are taken without waiting, so a member never blocks on another.
//   - Write skips every record at or below its partition's last written offset: those are the
//     replay, whoever wrote them.
//   - A roll goes through the state log too: the file is fsynced and closed, the state records
//     the rename it is about to make, and the rename follows. The next take completes a
//     recorded rename that a crash interrupted, so a record is never both in a final file and
//     replayed.
//
// The sink is a connectors.StagingSink: Durable reports, for each partition it holds, the offset
// after the last record made durable, and the sink's goroutine tells the runner when that moved
// (connectors.DurableNotifier); Reset, which the runner calls before every (re)join of the group
// and after an ErrReplay, rolls every file in progress (which makes what was appended durable
// rather than dropping it) and lets go of every partition. Rolling there, rather than leaving the file for the next owner
// to resume, means that no file stays in progress for a partition nobody writes any more, that
// every file in progress has a holder whose timer rolls it by age, and that a stopped flow
// leaves only finished files; the price is one short file per partition and rebalance. Open
// takes every partition with a state (log or JSON file) that no other sink holds, so that what a crash left
// is recovered (and rolled by the Close or Reset that follows) even for partitions that get no
// more records; Close rolls every file in progress and lets go of everything.
//
// The state files are the sink's only memory: a directory belongs to one incarnation of its
// topics and one consumer group. A topic deleted and created again restarts its offsets at
// zero, and its records at or below the old last offset would be skipped: give the new topic
// (or a new group) a new directory.
//
// Where the members run: the lock is what keeps two writers off a partition, so exactly once
// holds among the sinks that share a directory through one filesystem whose flock they all
// see. On one node (the members of `weir sink file --members N`, or any members placed on the
// same machine) a local directory is enough. In a cluster whose members move between nodes,
// either every node mounts one shared filesystem that supports flock across machines (Linux
// NFS clients emulate it with POSIX record locks, which exclude other machines but not other
// sinks of the same process, so run one member per process there; a lock of a node that dies
// is released only when the server notices, and its partitions get ErrReplay, and wait, until
// then), and exactly once holds across the cluster (this was not tested on NFS);
// or each node has a directory of its own, and exactly once holds within each directory only:
// a partition that moves to another node is read there from its committed offset, so the
// records of a Write that was durable but not committed land in both nodes' directories
// (at least once across nodes: never lost, never twice in one directory).
//
// A sink-group member (package connectors/sink/group, which takes no staging sink) gets the
// sink through Member: Open, Write and Close only, and each Write is made durable before it
// returns, since the group commits what Write returned. Nothing then tells the sink that it lost a
// partition, so it keeps every partition it takes until Close: give it a directory of its own.
//
// # Layout
//
//	<dir>/<topic>-<partition>-<first offset>-<last offset><suffix>  a finished file
//	<dir>/.<topic>-<partition>-<first offset>.inprogress           the file being written
//	<dir>/.manifest                                                the layout marker, {"version":3}
//	<dir>/.lock                                                    taken by Open while it checks the layout
//	<dir>/.state/<topic>-<partition>.state                         the partition's state log
//	<dir>/.state/<topic>-<partition>.state.tmp                     a state log being replaced
//	<dir>/.state/<topic>-<partition>.json                          {"version":3} (a version 2 state before migration)
//	<dir>/.state/<topic>-<partition>.json.tmp                      a JSON state being replaced
//	<dir>/.state/<topic>-<partition>.lock                          the lock of the partition's holder
//
// A state log (version 3) is the 8 bytes "weirfs\x00\x03" and then records, each its length
// and the CRC-32C (Castagnoli) of its body, 4 bytes big endian each, and the body: JSON,
// {"version":3,"topic":...,"partition":...,"last":...,"renames":[...]} with, while a file is in
// progress, file (its name), first (its first offset), size (its synced length), opened (its
// creation, Unix milliseconds), count (its records) and touched (when it last got a record,
// Unix milliseconds); last is the last offset made durable (-1 for none); renames lists the
// rolls of the partition made right after the record was written, as from/to names, until the
// next record. The last whole record is the state. A record that does not read (short, or its
// checksum wrong) is a torn append if nothing but zeros follows it and no whole record starts
// after it (only the last record can be torn), and is cut; otherwise the log is corrupt and the
// partition is not taken (a missing log, where the JSON state says {"version":3}, as well). A sync appends a record and fsyncs the log; a
// log longer than 64 KiB is replaced by one holding the new record only (temporary name,
// fsync, rename, directory fsync), as a log is written anew at every take (a new partition's
// when it is first taken, before any of its files exists).
//
// Version 2 of the sink replaced a JSON state file, <topic>-<partition>.json, holding what a
// record holds with "version":2, after every Write. Its marker was {"version":2}: Open replaces
// it with {"version":3} (a version 2 sink then refuses to open the directory), and each
// partition's JSON state is migrated when the partition is next taken, under its lock (a
// version 2 sink still running may hold it until then): the state log is written from it, and
// then the JSON file is replaced by {"version":3}, which a version 2 sink refuses too, so that
// one still running cannot mistake the partition for a new one. A crash in between migrates
// again, to the same log. A new partition gets {"version":3} as well.
//
// Version 1 of the sink kept one manifest, <dir>/.manifest, {"version":1,"partitions":[...],
// "renames":[...]}, with an entry per partition as in a state (count and touched optional:
// without them count is last-first+1, the most the file can hold, and touched is opened), and
// held <dir>/.lock while open. Open migrates it under <dir>/.lock: it completes the recorded
// renames, removes the in-progress files the manifest does not know, writes a version 2 JSON
// state per partition (migrated on as above), and then replaces the manifest with the marker
// (a crash before that migrates again, to the same state files). A version 1 sink refuses the
// marker's version, so it cannot open a migrated directory; one that has the directory open
// holds .lock, and Open then fails after 5 s saying so. A new directory gets the marker on its
// first Open.
//
// Offsets in names are zero-padded to 20 digits, so names sort by partition and offset. Topic
// names are those the node accepts (letters, digits, '.', '_' and '-'; a record of any other topic
// fails the Write); a topic whose name starts with '.' has a '+' put before it in file names, so
// that its finished files are not hidden. A file holds the records'
// values in offset order, in one of two formats: Lines, each value followed by '\n' (a value
// holding '\n' reads back as several lines: use LengthPrefixed for binary values), or
// LengthPrefixed, each value after its length as 4 bytes big endian. Keys, headers and
// timestamps are not written.
//
// # Rolling
//
// A file rolls before a record that would take it past RollSize (a record bigger than RollSize
// gets a file of its own); as soon as it holds RollCount records (in the Write that filled it),
// so that with RollCount n and no other trigger, while a sink holds a partition, its finished
// files hold n records each, but the last (Close and Reset roll every file, so each run and
// each rebalance leaves one short file per partition); and once it is RollInterval old or has
// had no record for IdleTimeout: at the next Write, or at the latest when the sink's timer next
// checks (every quarter of the shorter of RollInterval and IdleTimeout, at most every second and
// at least every 10 ms). Close rolls every file, so a stopped flow leaves only finished files.
// Every roll goes through the partition's state log as described above, whichever trigger
// fired it.
//
// IdleTimeout 0 means no roll by idleness, unlike the HDFS sink, whose default is 30 s: there a
// roll is what makes records durable, here records are made durable within SyncInterval and a
// roll only gives the file its final name, so a quiet partition loses nothing by keeping its
// file in progress, and the sink behaves as it did before IdleTimeout existed. A negative IdleTimeout also means never, as
// in the HDFS sink's configuration.
//
// # Concurrency
//
// The runner calls Open, Write, Durable, Reset and Close from one goroutine at a time. The sink
// runs one goroutine while it is open, which Close stops and waits for: at every tick (half of
// SyncInterval, or the roll checks' period if shorter) and when a Write found a partition due,
// it rolls the files due by time and syncs the partitions due. A sync takes a snapshot of the
// partition under the sink's mutex, does its fsyncs, state record and renames outside it, and
// takes the mutex again to make Durable report the snapshot; meanwhile Writes append to the
// partition (fsync covers at least what was written before it was called), and whatever else
// would touch its file or state log (a seal, Reset, Close) waits for the sync. A failed sync
// breaks the sink (ErrBroken) as a failed Write does. Sinks sharing a directory, in one process
// or several, coordinate only through the files and locks described above.
package file

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/storage/vfs"
)

// Format is the layout of records in a file.
type Format int

// The formats.
const (
	Lines          Format = iota // value, '\n'
	LengthPrefixed               // length (uint32, big endian), value
)

// ErrBroken is returned (wrapped) by Write and Durable after a failed Write or roll: the sink's
// memory no longer matches its directory until it is closed and opened again, which the runner
// does by restarting the flow's actor, or until Reset lets go of every partition.
var ErrBroken = errors.New("file sink: a previous write failed; close and reopen")

// Config configures a file sink.
type Config struct {
	// Dir holds the files; it is created if missing.
	Dir string
	// Format is the layout of the files (default Lines).
	Format Format
	// RollSize is the most bytes in a file, unless its only record is bigger. Required.
	RollSize int64
	// RollCount is the most records in a file (0: no limit).
	RollCount int
	// RollInterval is the age at which a file rolls (0: never by age).
	RollInterval time.Duration
	// IdleTimeout rolls a file that has had no record for so long (0 or negative: never; see
	// the package doc for why 0 is not 30 s as in the HDFS sink).
	IdleTimeout time.Duration
	// SyncSize is how many bytes a partition's Writes may append to its file before the sink
	// makes them durable, in its goroutine (default 4 MiB; 1: after every Write). Member's
	// Writes are durable when they return, whatever it is.
	SyncSize int64
	// SyncInterval is how long an appended record may wait before the sink makes it durable,
	// at the next Write or the timer's next check (default 50 ms).
	SyncInterval time.Duration
	// Suffix ends the names of finished files (default ".txt" for Lines, ".bin" for
	// LengthPrefixed).
	Suffix string
	// FS is the filesystem (default vfs.OS).
	FS vfs.FS
	// Now is the clock that ages files (default time.Now).
	Now func() time.Time
	// Logger receives errors of the timer's rolls (default: discarded).
	Logger *slog.Logger
}

// The defaults of SyncSize and SyncInterval: with 6 partitions written at 300 MB/s, a
// partition is made durable every 50 ms or so, and each time costs 2 fsyncs (its file, its state)
// and a commit of the group's offsets, where making every 1 MiB Write durable cost 6.
const (
	DefaultSyncSize     = 4 << 20
	DefaultSyncInterval = 50 * time.Millisecond
)

// DefaultConfig returns a configuration for dir: lines, 128 MiB or 5 minutes per file.
func DefaultConfig(dir string) Config {
	return Config{Dir: dir, Format: Lines, RollSize: 128 << 20, RollInterval: 5 * time.Minute}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("file sink: no directory")
	case c.RollSize <= 0:
		return fmt.Errorf("file sink: RollSize %d, want more than 0 bytes", c.RollSize)
	case c.RollCount < 0:
		return fmt.Errorf("file sink: negative RollCount %d", c.RollCount)
	case c.RollInterval < 0:
		return fmt.Errorf("file sink: negative RollInterval %v", c.RollInterval)
	case c.SyncSize < 0:
		return fmt.Errorf("file sink: negative SyncSize %d", c.SyncSize)
	case c.SyncInterval < 0:
		return fmt.Errorf("file sink: negative SyncInterval %v", c.SyncInterval)
	case c.Format != Lines && c.Format != LengthPrefixed:
		return fmt.Errorf("file sink: unknown format %d", c.Format)
	case strings.ContainsAny(c.Suffix, `/\`):
		return fmt.Errorf("file sink: suffix %q holds a path separator", c.Suffix)
	}
	return nil
}

// Sink writes records to rolling files. It is a connectors.StagingSink: Write appends, and the
// sink makes a partition durable (fsyncs its file, then records it in its state) every SyncSize
// bytes or SyncInterval, at a roll, and at Reset and Close; Durable reports what was made
// durable, and the timer's syncs are announced through connectors.DurableNotifier. Member gives
// a view of it for a sink group (package connectors/sink/group), which takes no staging sink:
// there every Write is durable when it returns.
type Sink struct {
	cfg Config

	mu     sync.Mutex
	open   bool
	broken error           // why the last Write or roll failed; cleared by Open and Reset
	parts  map[tpKey]*part // the partitions the sink holds (their locks are its)
	notify func()          // from NotifyDurable: called after the timer made records durable
	stop   chan struct{}   // closed by Close to stop the background goroutine
	done   chan struct{}   // closed when the background goroutine returns

	// Syncs run in the background (see sync.go).
	idle     *sync.Cond    // on mu: a background sync finished
	inflight int           // partitions whose background sync is running, outside mu
	busy     bool          // a Write or Reset is running; it may wait on idle, and the background starts nothing then
	wake     chan struct{} // a Write found a sync due
	manual   bool          // tests: no background goroutine; they call tick or the sync steps themselves

	manualJobs []*syncJob // a manual sink's syncs started and not finished
}

var _ connectors.DurableNotifier = (*Sink)(nil)

type tpKey struct {
	topic     string
	partition int32
}

// part is the state of one partition's files, held by the sink.
type part struct {
	tpKey
	fileTopic string       // the topic as it appears in file names
	last      int64        // last offset written (appended to a file); -1: none
	durable   int64        // last offset the durable state records; what Durable reports
	unlock    func() error // releases the partition's lock
	renamed   bool         // its state log records renames (completed or not)
	state     vfs.File     // the state log, open for appending
	stateSize int64        // its length

	// The file in progress; f is nil when there is none.
	f       vfs.File
	name    string // in-progress name, in Dir
	first   int64  // offset of its first record
	size    int64  // its length, pending bytes included
	count   int    // its records, pending ones included
	opened  int64  // when it was created, Unix milliseconds
	touched int64  // when it last got a record, Unix milliseconds
	pending []byte // encoded records not yet written to f

	// What is not durable yet, made so by sync.
	renames    []manifestRename // files sealed (fsynced and closed) whose renames no state records yet
	created    bool             // f was created since the last sync: its name is not durable
	dirty      bool             // f holds bytes written since its last fsync
	unsynced   int64            // bytes appended since the last sync
	dirtySince time.Time        // when the first of them was appended
	want       bool             // a sync is due: the background goroutine starts it
	syncing    bool             // its sync runs in the background: f, state and renames are the sync's
}

// New returns a sink; it touches the directory only in Open.
func New(cfg Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Suffix == "" {
		cfg.Suffix = ".txt"
		if cfg.Format == LengthPrefixed {
			cfg.Suffix = ".bin"
		}
	}
	if cfg.SyncSize == 0 {
		cfg.SyncSize = DefaultSyncSize
	}
	if cfg.SyncInterval == 0 {
		cfg.SyncInterval = DefaultSyncInterval
	}
	if cfg.FS == nil {
		cfg.FS = vfs.OS
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	sk := &Sink{cfg: cfg, wake: make(chan struct{}, 1)}
	sk.idle = sync.NewCond(&sk.mu)
	return sk, nil
}

// Open implements connectors.Sink: it creates the directory if needed, checks its layout
// (migrating a version 1 manifest, see the package doc) and takes every partition no other sink
// holds, recovering its files to the state its state log describes.
func (s *Sink) Open(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open {
		return errors.New("file sink: Open of an open sink")
	}
	if err := s.cfg.FS.MkdirAll(filepath.Join(s.cfg.Dir, stateDir)); err != nil {
		return fmt.Errorf("file sink: open %s: %w", s.cfg.Dir, err)
	}
	if err := s.checkLayout(ctx); err != nil {
		return fmt.Errorf("file sink: open %s: %w", s.cfg.Dir, err)
	}
	s.parts = map[tpKey]*part{}
	if err := s.adoptFree(); err != nil {
		s.release()
		return fmt.Errorf("file sink: open %s: %w", s.cfg.Dir, err)
	}
	s.open, s.broken = true, nil
	if !s.manual {
		s.stop, s.done = make(chan struct{}), make(chan struct{})
		go s.background(s.stop, s.done, s.tickEvery())
	}
	return nil
}

// tickEvery is the period of the timer: the shorter of checkEvery (if it rolls by time) and half
// of SyncInterval (at least 1 ms, at most 1 s).
func (s *Sink) tickEvery() time.Duration {
	every := min(max(s.cfg.SyncInterval/2, time.Millisecond), time.Second)
	if roll := s.checkEvery(); roll > 0 {
		every = min(every, roll)
	}
	return every
}

// checkEvery is the period of the timer's roll checks: a quarter of the shorter of RollInterval and
// IdleTimeout, within [10 ms, 1 s]; 0 when neither is set (no timer).
func (s *Sink) checkEvery() time.Duration {
	shortest := s.cfg.RollInterval
	if t := s.cfg.IdleTimeout; t > 0 && (shortest == 0 || t < shortest) {
		shortest = t
	}
	if shortest <= 0 {
		return 0
	}
	return min(max(shortest/4, 10*time.Millisecond), time.Second)
}

// Write implements connectors.Sink: it appends msgs to their partitions' files, and makes
// durable each partition that has SyncSize bytes not yet durable, whose oldest is SyncInterval
// old, or that rolled (see Durable). A partition the sink does not hold is taken first (see the
// package doc); if another sink holds it, Write writes nothing and returns an error wrapping
// connectors.ErrReplay. Records at or below their partition's last written offset are skipped.
func (s *Sink) Write(_ context.Context, msgs []connectors.Message) error {
	return s.writeAll(msgs, false)
}

// BorrowsMessages implements connectors.Borrower: Write copies what it keeps (the encoded
// values, in each partition's pending bytes) and nothing else of msgs.
func (s *Sink) BorrowsMessages() {}

// writeAll is Write; with all, every partition written is made durable before it returns.
func (s *Sink) writeAll(msgs []connectors.Message, all bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	for _, m := range msgs {
		if _, ok := s.parts[tpKey{m.Topic, m.Partition}]; ok {
			continue
		}
		// Nothing is written before every partition is held: a Write that meets a partition
		// another sink holds changes nothing, and the runner reads it again.
		if _, err := s.take(tpKey{m.Topic, m.Partition}); err != nil {
			return fmt.Errorf("file sink: %w", err)
		}
	}
	s.busy = true
	err := s.write(msgs, all)
	s.busy = false
	if err != nil {
		s.broken = err
		return fmt.Errorf("file sink: %w", err)
	}
	for _, p := range s.parts {
		if p.want {
			select {
			case s.wake <- struct{}{}:
			default:
			}
			break
		}
	}
	return nil
}

func (s *Sink) usable() error {
	if !s.open {
		return errors.New("file sink: not open")
	}
	if s.broken != nil {
		return fmt.Errorf("%w: %v", ErrBroken, s.broken)
	}
	return nil
}

func (s *Sink) write(msgs []connectors.Message, all bool) error {
	now := s.cfg.Now()
	touched := map[*part]bool{}
	for _, m := range msgs {
		p := s.parts[tpKey{m.Topic, m.Partition}] // taken by Write
		if m.Offset <= p.last {
			continue // written before a crash, a failed commit or a Reset: the replay
		}
		n := s.encodedSize(m.Value)
		if p.f != nil && (p.size+n > s.cfg.RollSize || s.full(p) || s.due(p, now)) {
			if err := s.seal(p); err != nil {
				return err
			}
		}
		if p.f == nil {
			if err := s.create(p, m.Offset, now); err != nil {
				return err
			}
		}
		touched[p] = true
		p.pending = s.appendEncoded(p.pending, m.Value)
		p.size += n
		p.count++
		p.touched = now.UnixMilli()
		p.last = m.Offset
		if p.unsynced == 0 {
			p.dirtySince = now
		}
		p.unsynced += n
		if s.full(p) {
			// Full: nothing more can go into it, so it need not wait for the next record.
			if err := s.seal(p); err != nil {
				return err
			}
		}
	}
	// Every record may have been a replay: then nothing changed (a roll always comes with a
	// record).
	for _, p := range s.sortedParts() {
		if !touched[p] {
			continue
		}
		if err := s.flush(p); err != nil {
			return err
		}
		switch {
		case all || len(p.renames) > 0:
			// A member's Write, or a roll: the finished file gets its name before Write returns
			// (rolls are rare enough that waiting for them costs little).
			if err := s.sync(p); err != nil {
				return err
			}
		case s.syncDue(p, now):
			p.want = true
		}
	}
	return nil
}

// setFileTopic sets the topic as it appears in p's file names (see the package doc): the
// mapping is one to one, since '+' is not in a topic name.
func (p *part) setFileTopic() error {
	for _, c := range []byte(p.topic) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("topic %q cannot name files: letters, digits, '.', '_' and '-' only", p.topic)
		}
	}
	switch {
	case p.topic == "":
		return errors.New("empty topic name")
	case p.topic[0] == '.':
		p.fileTopic = "+" + p.topic
	default:
		p.fileTopic = p.topic
	}
	return nil
}

func (p *part) inProgressName(first int64) string {
	return fmt.Sprintf(".%s-%d-%020d%s", p.fileTopic, p.partition, first, inProgressSuffix)
}

func (p *part) finishedName(suffix string) string {
	return fmt.Sprintf("%s-%d-%020d-%020d%s", p.fileTopic, p.partition, p.first, p.last, suffix)
}

// encodedSize is the size of a value in a file.
func (s *Sink) encodedSize(v []byte) int64 {
	if s.cfg.Format == LengthPrefixed {
		return lengthPrefix + int64(len(v))
	}
	return int64(len(v)) + 1
}

// appendEncoded appends a value as the file format lays it out.
func (s *Sink) appendEncoded(b, v []byte) []byte {
	if s.cfg.Format == LengthPrefixed {
		return append(binary.BigEndian.AppendUint32(b, uint32(len(v))), v...)
	}
	return append(append(b, v...), '\n')
}

// full reports whether p's file holds RollCount records.
func (s *Sink) full(p *part) bool {
	return s.cfg.RollCount > 0 && p.count >= s.cfg.RollCount
}

// due reports whether p's file rolls by time at now: it is RollInterval old, or has had no
// record for IdleTimeout.
func (s *Sink) due(p *part, now time.Time) bool {
	ms := now.UnixMilli()
	return s.cfg.RollInterval > 0 && ms-p.opened >= s.cfg.RollInterval.Milliseconds() ||
		s.cfg.IdleTimeout > 0 && ms-p.touched >= s.cfg.IdleTimeout.Milliseconds()
}

// create starts p's in-progress file at offset first.
func (s *Sink) create(p *part, first int64, now time.Time) error {
	name := p.inProgressName(first)
	f, err := s.cfg.FS.Create(s.path(name))
	if err != nil {
		return err
	}
	p.f, p.name, p.first, p.size, p.count, p.opened = f, name, first, 0, 0, now.UnixMilli()
	p.touched, p.created = p.opened, true
	return nil
}

// flush writes p's pending bytes to its file, without an fsync.
func (s *Sink) flush(p *part) error {
	if len(p.pending) == 0 {
		return nil
	}
	if _, err := p.f.Write(p.pending); err != nil {
		return err
	}
	p.pending, p.dirty = p.pending[:0], true
	return nil
}

// seal finishes p's in-progress file: flushed, fsynced and closed. The rename that puts it in
// place waits in p.renames for sync, which records it in the partition's state before making it.
func (s *Sink) seal(p *part) error {
	r := manifestRename{From: p.name, To: p.finishedName(s.cfg.Suffix)}
	if err := s.waitIdle(p); err != nil { // its background sync may be fsyncing f
		return err
	}
	if err := s.flush(p); err != nil {
		return err
	}
	if p.dirty {
		if err := p.f.Sync(); err != nil {
			return err
		}
		p.dirty = false
	}
	// Never replace a finished file: it would mean a sink wrote the partition without its lock
	// (a directory shared through a filesystem whose flock does not span its clients), or the
	// topic was created anew (see the package doc).
	if _, err := s.cfg.FS.Stat(s.path(r.To)); err == nil {
		return fmt.Errorf("%s already exists", r.To)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	err := p.f.Close()
	p.f, p.pending = nil, nil
	p.renames = append(p.renames, r)
	return err
}

// rollDue rolls every file that is RollInterval old or has been idle for IdleTimeout. The
// sink's timer calls it; tests with a fake clock call it to roll at a time of their choosing.
func (s *Sink) rollDue() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.rollDueLocked()
	return err
}

func (s *Sink) rollDueLocked() (bool, error) {
	if err := s.usable(); err != nil {
		return false, err
	}
	now := s.cfg.Now()
	return s.roll(func(p *part) bool { return s.due(p, now) })
}

// roll seals the files of the parts that which selects and makes the parts durable. It reports
// whether it rolled.
func (s *Sink) roll(which func(*part) bool) (bool, error) {
	rolled := false
	for _, p := range s.sortedParts() {
		switch {
		case p.f != nil && which(p):
			if err := s.seal(p); err != nil {
				s.broken = err
				return rolled, fmt.Errorf("file sink: roll: %w", err)
			}
		case len(p.renames) == 0:
			continue
		}
		// Also a seal whose sync has not run (none outlives a Write, but no rename is left
		// behind unrecorded).
		if err := s.sync(p); err != nil {
			s.broken = err
			return rolled, fmt.Errorf("file sink: roll: %w", err)
		}
		rolled = true
	}
	return rolled, nil
}

// NotifyDurable implements connectors.DurableNotifier: the timer calls notify after it made
// records durable (or failed to), so that the runner commits them without waiting for its tick.
func (s *Sink) NotifyDurable(notify func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notify = notify
}

// Close implements connectors.Sink: it stops the timer, rolls every file in progress (which
// makes everything written durable) and lets go of every partition. After a failed Write it
// only releases the files and locks; the next owner of each partition recovers it.
func (s *Sink) Close() error {
	s.mu.Lock()
	stop, done := s.stop, s.done
	s.stop, s.done = nil, nil
	s.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.open {
		return nil
	}
	s.open = false
	return s.letGo()
}

// Durable implements connectors.StagingSink: for each partition the sink holds, the offset after
// the last record its durable state records (written by this sink or, for a partition taken, by
// its former owners). Records appended since are not included: a crash would cut them off.
func (s *Sink) Durable() ([]connectors.PartitionOffset, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return nil, err
	}
	var out []connectors.PartitionOffset
	for _, p := range s.sortedParts() {
		if p.durable >= 0 {
			out = append(out, connectors.PartitionOffset{Topic: p.topic, Partition: p.partition, Offset: p.durable + 1})
		}
	}
	return out, nil
}

// Reset implements connectors.StagingSink: the runner calls it before every (re)join, when the
// sink may lose partitions to other members. Reset rolls every file in progress, which makes
// what was appended durable rather than dropping it (a partition's next owner then starts a file
// of its own, skips what is durable, and a file is never left in progress by a partition nobody
// writes any more), and lets go of every partition, which the next Write of its records takes
// again. A failed roll is reported, but the partitions are let go all the same and the sink is
// usable: their next owners recover them, cutting what was not durable.
func (s *Sink) Reset() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.open {
		return nil
	}
	s.busy = true // it may wait for syncs: the background starts no more meanwhile
	err := s.letGo()
	s.busy = false
	s.parts, s.broken = map[tpKey]*part{}, nil
	return err
}

// letGo rolls every file (unless a Write failed), clears the renames the state files record,
// and releases the partitions.
func (s *Sink) letGo() error {
	_ = s.waitAll() // a failed sync breaks the sink
	if s.broken != nil {
		// The memory is ahead of the directory: no state is written from it.
		return s.release()
	}
	_, err := s.roll(func(*part) bool { return true })
	if err == nil {
		for _, p := range s.sortedParts() {
			if !p.renamed {
				continue
			}
			// The renames are done: a rename recorded for ever would fail the next take once
			// a reader has removed the finished file.
			if err = s.writeState(p, nil); err != nil {
				err = fmt.Errorf("file sink: %w", err)
				break
			}
		}
	}
	if rerr := s.release(); err == nil {
		err = rerr
	}
	return err
}

// release closes the files and releases the locks of every partition the sink holds, and
// forgets them. Nothing written since a partition's last sync matters: the next owner recovers
// it to its durable state.
func (s *Sink) release() error {
	var err error
	for k, p := range s.parts {
		if p.f != nil {
			p.f.Close()
			p.f = nil
		}
		if p.state != nil {
			p.state.Close()
			p.state = nil
		}
		if uerr := p.unlock(); uerr != nil && err == nil {
			err = fmt.Errorf("file sink: release %s/%d: %w", k.topic, k.partition, uerr)
		}
	}
	s.parts = nil
	return err
}

// Member returns the sink as a member of a sink group (connectors/sink/group), which refuses
// staging sinks: Open, Write and Close only, and every Write is durable when it returns. Nothing tells a member that it lost a partition,
// so it keeps every partition it takes until Close: give it a directory that no other member of
// its consumer group writes, as with a version 1 sink.
func (s *Sink) Member() connectors.Sink { return member{s} }

type member struct{ s *Sink }

func (m member) Open(ctx context.Context) error { return m.s.Open(ctx) }
func (m member) Write(_ context.Context, msgs []connectors.Message) error {
	return m.s.writeAll(msgs, true) // the group commits what Write returned
}
func (m member) Close() error { return m.s.Close() }

func (s *Sink) sortedParts() []*part {
	ps := make([]*part, 0, len(s.parts))
	for _, p := range s.parts {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].topic != ps[j].topic {
			return ps[i].topic < ps[j].topic
		}
		return ps[i].partition < ps[j].partition
	})
	return ps
}
