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
// replays from the committed offset: the records between that offset and the last one written
// come again. The sink removes that repeat itself, so every record lands in the directory
// exactly once:
//
//   - Write is durable when it returns: the files it appended to are fsynced, and then the
//     manifest, a small file that says for every partition the last offset written and the
//     length of its in-progress file, is replaced atomically (written to a temporary name,
//     fsynced, renamed, directory fsynced).
//   - Write skips every record at or below its partition's last written offset: those are the
//     replay.
//   - Open reads the manifest and puts the directory back in the state it describes: an
//     in-progress file is cut to its recorded length (bytes after it were written by a Write
//     that did not finish, so their offsets were not committed and will be replayed), and
//     in-progress files the manifest does not know are removed.
//   - A roll goes through the manifest too: the file is fsynced and closed, the manifest records
//     the rename it is about to make, and the rename follows. Open completes a recorded rename
//     that a crash interrupted, so a record is never both in a final file and replayed.
//
// The manifest is the sink's only memory: a directory belongs to one sink at a time and to one
// incarnation of its topics. Open locks the directory (a lock file, flock on Linux, held until
// Close or the process's end), so a second sink on it fails to open instead of corrupting the
// first one's files; a topic deleted and
// created again restarts its offsets at zero, and its records at or below the old last offset
// would be skipped: give the new topic (or a new group) a new directory. In a group of several
// sinks, each with its own directory, exactly once holds per directory for the partitions a sink
// keeps; when a rebalance moves a partition to another sink, the records between its committed
// offset and what the old sink wrote land in both directories (the runtime's at-least-once
// bound: at most one fetch).
//
// # Layout
//
//	<dir>/<topic>-<partition>-<first offset>-<last offset><suffix>  a finished file
//	<dir>/.<topic>-<partition>-<first offset>.inprogress           the file being written
//	<dir>/.lock                                                    the lock of the sink that has the directory open
//	<dir>/.manifest                                                the sink's state, JSON
//	<dir>/.manifest.tmp                                            a manifest being replaced
//
// The manifest (version 1) is {"version":1,"partitions":[...],"renames":[...]}: per partition
// its topic, partition, last (the last offset written, -1 for none) and, while a file is in
// progress, file (its name), first (its first offset), size (its synced length), opened (its
// creation, Unix milliseconds), count (its records) and touched (when it last got a record, Unix
// milliseconds); renames lists the rolls made right after the manifest was written, as from/to
// names. count and touched came after the first release and are optional: a manifest without them
// (written by an older sink) is read with count last-first+1 (the most the file can hold) and
// touched equal to opened, and an older sink reading a newer manifest ignores them.
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
// so that with RollCount n and no other trigger, between an Open and a Close, the finished files
// of a partition the sink keeps hold n records each, but the last (Close rolls every file, so
// each run leaves one short file per partition; and a partition given to another member and back
// resumes its file after a gap in offsets, which its name's range then spans); and once it is RollInterval old or has had no
// record for IdleTimeout: at the next Write, or at the latest when the sink's timer next checks
// (every quarter of the shorter of RollInterval and IdleTimeout, at most every second and at
// least every 10 ms). Close rolls every file, so a stopped flow leaves only finished files. Every
// roll goes through the manifest as described above, whichever trigger fired it.
//
// IdleTimeout 0 means no roll by idleness, unlike the HDFS sink, whose default is 30 s: there a
// roll is what makes records durable, here each Write is durable and a roll only gives the file
// its final name, so a quiet partition loses nothing by keeping its file in progress, and the
// sink behaves as it did before IdleTimeout existed. A negative IdleTimeout also means never, as
// in the HDFS sink's configuration.
//
// # Concurrency
//
// The runner calls Open, Write and Close from one goroutine at a time. The sink runs one timer
// goroutine while it is open (none if neither RollInterval nor IdleTimeout is set), which Close
// stops and waits for; one mutex serialises it with the runner's calls.
package file

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/storage/vfs"
)

// On-disk names and versions.
const (
	lockName         = ".lock"
	manifestName     = ".manifest"
	manifestTemp     = manifestName + vfs.TmpSuffix
	manifestVersion  = 1
	inProgressSuffix = ".inprogress"
	lengthPrefix     = 4 // bytes of the length before a value in LengthPrefixed
)

// Format is the layout of records in a file.
type Format int

// The formats.
const (
	Lines          Format = iota // value, '\n'
	LengthPrefixed               // length (uint32, big endian), value
)

// ErrBroken is returned (wrapped) by Write after a failed Write or roll: the sink's memory no
// longer matches its directory until it is closed and opened again, which the runner does by
// restarting the flow's actor.
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
	case c.Format != Lines && c.Format != LengthPrefixed:
		return fmt.Errorf("file sink: unknown format %d", c.Format)
	case strings.ContainsAny(c.Suffix, `/\`):
		return fmt.Errorf("file sink: suffix %q holds a path separator", c.Suffix)
	}
	return nil
}

// Sink writes records to rolling files.
type Sink struct {
	cfg Config

	mu     sync.Mutex
	open   bool
	broken error           // why the last Write or roll failed; cleared by Open
	parts  map[tpKey]*part // every partition the manifest knows
	unlock func() error    // releases the directory's lock; nil while not open
	stop   chan struct{}   // closed by Close to stop the timer
	done   chan struct{}   // closed when the timer returns
}

type tpKey struct {
	topic     string
	partition int32
}

// part is the state of one partition's files.
type part struct {
	tpKey
	fileTopic string // the topic as it appears in file names
	last      int64  // last offset written, durable once the manifest is; -1: none

	// The file in progress; f is nil when there is none.
	f       vfs.File
	name    string // in-progress name, in Dir
	first   int64  // offset of its first record
	size    int64  // its length, pending bytes included
	count   int    // its records, pending ones included
	opened  int64  // when it was created, Unix milliseconds
	touched int64  // when it last got a record, Unix milliseconds
	pending []byte // encoded records not yet written to f
}

// manifest is the JSON content of the manifest file.
type manifest struct {
	Version    int              `json:"version"`
	Partitions []manifestPart   `json:"partitions"`
	Renames    []manifestRename `json:"renames,omitempty"` // rolls to complete on Open
}

type manifestPart struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Last      int64  `json:"last"`
	File      string `json:"file,omitempty"` // in-progress file, if any
	First     int64  `json:"first,omitempty"`
	Size      int64  `json:"size,omitempty"`
	Opened    int64  `json:"opened,omitempty"`
	Count     int    `json:"count,omitempty"`   // 0 in a manifest of an older sink
	Touched   int64  `json:"touched,omitempty"` // 0 in a manifest of an older sink
}

type manifestRename struct {
	From string `json:"from"`
	To   string `json:"to"`
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
	if cfg.FS == nil {
		cfg.FS = vfs.OS
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Sink{cfg: cfg}, nil
}

// Open implements connectors.Sink: it creates the directory if needed, recovers it to the state
// its manifest describes (see the package doc) and writes the manifest again, which also proves
// that the directory is writable.
func (s *Sink) Open(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open {
		return errors.New("file sink: Open of an open sink")
	}
	if err := s.cfg.FS.MkdirAll(s.cfg.Dir); err != nil {
		return fmt.Errorf("file sink: open %s: %w", s.cfg.Dir, err)
	}
	unlock, err := vfs.Lock(s.cfg.FS, filepath.Join(s.cfg.Dir, lockName))
	if err != nil {
		if errors.Is(err, vfs.ErrLocked) {
			return fmt.Errorf("file sink: open %s: the directory is in use by another sink: %w", s.cfg.Dir, err)
		}
		return fmt.Errorf("file sink: open %s: %w", s.cfg.Dir, err)
	}
	if err := s.recover(); err != nil {
		s.closeFiles()
		_ = unlock()
		return fmt.Errorf("file sink: open %s: %w", s.cfg.Dir, err)
	}
	s.unlock = unlock
	s.open, s.broken = true, nil
	if every := s.checkEvery(); every > 0 {
		s.stop, s.done = make(chan struct{}), make(chan struct{})
		go s.timer(s.stop, s.done, every)
	}
	return nil
}

// checkEvery is the period of the timer's checks: a quarter of the shorter of RollInterval and
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

// recover runs in Open, which has created the directory.
func (s *Sink) recover() error {
	s.parts = map[tpKey]*part{}
	m, err := s.readManifest()
	if err != nil {
		return err
	}
	dirty := false
	for _, r := range m.Renames {
		done, err := s.redoRename(r)
		if err != nil {
			return err
		}
		dirty = dirty || done
	}
	known := map[string]bool{}
	for _, mp := range m.Partitions {
		p := &part{tpKey: tpKey{mp.Topic, mp.Partition}, last: mp.Last}
		if _, dup := s.parts[p.tpKey]; dup {
			return fmt.Errorf("manifest: %s/%d twice", mp.Topic, mp.Partition)
		}
		s.parts[p.tpKey] = p
		if mp.Last < -1 || mp.Size < 0 || mp.Count < 0 {
			return fmt.Errorf("manifest: %s/%d at offset %d with %d bytes, %d records", mp.Topic, mp.Partition, mp.Last, mp.Size, mp.Count)
		}
		if err := p.setFileTopic(); err != nil {
			return fmt.Errorf("manifest: %w", err)
		}
		if mp.File == "" {
			continue
		}
		if mp.File != p.inProgressName(mp.First) || mp.First < 0 || mp.First > mp.Last {
			return fmt.Errorf("manifest names the file %q for %s/%d from %d to %d", mp.File, mp.Topic, mp.Partition, mp.First, mp.Last)
		}
		known[mp.File] = true
		f, err := s.cfg.FS.OpenAppend(s.path(mp.File))
		if err != nil {
			return fmt.Errorf("in-progress file of %s/%d: %w", mp.Topic, mp.Partition, err)
		}
		p.f, p.name, p.first, p.size, p.opened = f, mp.File, mp.First, mp.Size, mp.Opened
		p.count, p.touched = mp.Count, mp.Touched
		if p.count <= 0 { // an older sink's manifest: at most one record per offset
			p.count = int(min(mp.Last-mp.First+1, math.MaxInt))
		}
		if p.touched == 0 {
			p.touched = p.opened
		}
		size, err := f.Size()
		if err != nil {
			return err
		}
		switch {
		case size < mp.Size:
			return fmt.Errorf("%s is %d bytes, shorter than the %d the manifest says were synced", mp.File, size, mp.Size)
		case size > mp.Size:
			// The tail of a Write that did not finish: not committed, it will be replayed.
			if err := f.Truncate(mp.Size); err != nil {
				return err
			}
		}
		// Sync even when the length is right: an earlier Open may have cut the tail and died (or
		// failed its fsync) before the cut was durable, and a machine crash would bring the tail
		// back into a file this sink goes on to finish and name. TestCrashAnywhere found it
		// (seed 1178 of 5000: a finished file named for 1 record holding 6).
		if err := f.Sync(); err != nil {
			return err
		}
	}
	names, err := s.cfg.FS.List(s.cfg.Dir)
	if err != nil {
		return err
	}
	for _, name := range names {
		if name == manifestTemp || (strings.HasPrefix(name, ".") && strings.HasSuffix(name, inProgressSuffix) && !known[name]) {
			// A manifest never renamed into place, or a file no manifest ever recorded: both
			// hold only what Writes that did not return wrote.
			if err := s.cfg.FS.Remove(s.path(name)); err != nil {
				return err
			}
			dirty = true
		}
	}
	if dirty {
		if err := s.cfg.FS.SyncDir(s.cfg.Dir); err != nil {
			return err
		}
	}
	return s.writeManifest(nil)
}

// redoRename completes a recorded roll; it reports whether it had to.
func (s *Sink) redoRename(r manifestRename) (bool, error) {
	if err := checkName(r.From); err != nil {
		return false, err
	}
	if err := checkName(r.To); err != nil {
		return false, err
	}
	if !strings.HasPrefix(r.From, ".") || !strings.HasSuffix(r.From, inProgressSuffix) || strings.HasPrefix(r.To, ".") {
		return false, fmt.Errorf("manifest renames %q to %q", r.From, r.To)
	}
	_, ferr := s.cfg.FS.Stat(s.path(r.From))
	_, terr := s.cfg.FS.Stat(s.path(r.To))
	if ferr != nil && !errors.Is(ferr, fs.ErrNotExist) {
		return false, ferr
	}
	if terr != nil && !errors.Is(terr, fs.ErrNotExist) {
		return false, terr
	}
	fromExists, toExists := ferr == nil, terr == nil
	switch {
	case fromExists && !toExists:
		return true, s.cfg.FS.Rename(s.path(r.From), s.path(r.To))
	case !fromExists && toExists:
		return false, nil // renamed before the crash
	case fromExists:
		return false, fmt.Errorf("both %s and %s exist", r.From, r.To)
	}
	return false, fmt.Errorf("%s is gone and was never renamed to %s", r.From, r.To)
}

// Write implements connectors.Sink: when it returns nil, msgs are in fsynced files and the
// manifest records them. Records at or below their partition's last written offset are skipped.
func (s *Sink) Write(_ context.Context, msgs []connectors.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	if err := s.write(msgs); err != nil {
		s.broken = err
		return fmt.Errorf("file sink: %w", err)
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

func (s *Sink) write(msgs []connectors.Message) error {
	now := s.cfg.Now()
	var renames []manifestRename
	touched := map[*part]bool{}
	created := false
	for _, m := range msgs {
		p, err := s.part(m.Topic, m.Partition)
		if err != nil {
			return err
		}
		if m.Offset <= p.last {
			continue // written before a crash or a failed commit: the replay
		}
		n := s.encodedSize(m.Value)
		if p.f != nil && (p.size+n > s.cfg.RollSize || s.full(p) || s.due(p, now)) {
			r, err := s.seal(p)
			if err != nil {
				return err
			}
			renames = append(renames, r)
		}
		if p.f == nil {
			if err := s.create(p, m.Offset, now); err != nil {
				return err
			}
			created = true
		}
		touched[p] = true
		p.pending = s.appendEncoded(p.pending, m.Value)
		p.size += n
		p.count++
		p.touched = now.UnixMilli()
		p.last = m.Offset
		if s.full(p) {
			// Full: nothing more can go into it, so it need not wait for the next record.
			r, err := s.seal(p)
			if err != nil {
				return err
			}
			renames = append(renames, r)
		}
	}
	for p := range touched {
		if err := s.flush(p); err != nil {
			return err
		}
	}
	if created {
		// The new in-progress names must survive before the manifest points at them.
		if err := s.cfg.FS.SyncDir(s.cfg.Dir); err != nil {
			return err
		}
	}
	if len(touched) == 0 { // every record was a replay (a roll always comes with a record)
		return nil
	}
	return s.commit(renames)
}

func (s *Sink) part(topic string, partition int32) (*part, error) {
	k := tpKey{topic, partition}
	p, ok := s.parts[k]
	if !ok {
		p = &part{tpKey: k, last: -1}
		if err := p.setFileTopic(); err != nil {
			return nil, err
		}
		s.parts[k] = p
	}
	return p, nil
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
	p.touched = p.opened
	return nil
}

// flush writes p's pending bytes and fsyncs its file. Without pending bytes there is nothing to
// do: every other write to the file was synced by the flush that made it.
func (s *Sink) flush(p *part) error {
	if len(p.pending) == 0 {
		return nil
	}
	if _, err := p.f.Write(p.pending); err != nil {
		return err
	}
	p.pending = p.pending[:0]
	return p.f.Sync()
}

// seal finishes p's in-progress file: flushed, fsynced and closed. It returns the rename that
// puts it in place, which commit records in the manifest before making it.
func (s *Sink) seal(p *part) (manifestRename, error) {
	r := manifestRename{From: p.name, To: p.finishedName(s.cfg.Suffix)}
	if err := s.flush(p); err != nil {
		return r, err
	}
	// Never replace a finished file: it would mean another sink shares the directory, or the
	// topic was created anew (see the package doc).
	if _, err := s.cfg.FS.Stat(s.path(r.To)); err == nil {
		return r, fmt.Errorf("%s already exists", r.To)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return r, err
	}
	err := p.f.Close()
	p.f, p.pending = nil, nil
	return r, err
}

// commit makes the state durable: it replaces the manifest, then makes the renames it records.
func (s *Sink) commit(renames []manifestRename) error {
	if err := s.writeManifest(renames); err != nil {
		return err
	}
	for _, r := range renames {
		if err := s.cfg.FS.Rename(s.path(r.From), s.path(r.To)); err != nil {
			return err
		}
	}
	if len(renames) > 0 {
		return s.cfg.FS.SyncDir(s.cfg.Dir)
	}
	return nil
}

// rollDue rolls every file that is RollInterval old or has been idle for IdleTimeout. The
// sink's timer calls it; tests with a fake clock call it to roll at a time of their choosing.
func (s *Sink) rollDue() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	now := s.cfg.Now()
	return s.roll(func(p *part) bool { return s.due(p, now) })
}

// roll seals the files of the parts that which selects and commits.
func (s *Sink) roll(which func(*part) bool) error {
	var renames []manifestRename
	for _, p := range s.sortedParts() {
		if p.f == nil || !which(p) {
			continue
		}
		r, err := s.seal(p)
		if err != nil {
			s.broken = err
			return fmt.Errorf("file sink: roll: %w", err)
		}
		renames = append(renames, r)
	}
	if len(renames) == 0 {
		return nil
	}
	if err := s.commit(renames); err != nil {
		s.broken = err
		return fmt.Errorf("file sink: roll: %w", err)
	}
	return nil
}

func (s *Sink) timer(stop <-chan struct{}, done chan<- struct{}, every time.Duration) {
	defer close(done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if err := s.rollDue(); err != nil && !errors.Is(err, ErrBroken) {
				s.cfg.Logger.Warn("file sink: roll by time failed", "dir", s.cfg.Dir, "err", err)
			}
		}
	}
}

// Close implements connectors.Sink: it stops the timer and rolls every file in progress. After a
// failed Write it only releases the files; the next Open recovers the directory.
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
	var err error
	if s.broken == nil {
		err = s.roll(func(*part) bool { return true })
	}
	s.closeFiles()
	s.parts = nil
	if s.unlock != nil {
		if uerr := s.unlock(); err == nil {
			err = uerr
		}
		s.unlock = nil
	}
	return err
}

func (s *Sink) closeFiles() {
	for _, p := range s.parts {
		if p.f != nil {
			p.f.Close() // nothing written since the last sync matters: Open recovers
			p.f = nil
		}
	}
}

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

// writeManifest replaces the manifest with the current state (what was flushed) and renames.
func (s *Sink) writeManifest(renames []manifestRename) error {
	m := manifest{Version: manifestVersion, Partitions: []manifestPart{}, Renames: renames}
	for _, p := range s.sortedParts() {
		mp := manifestPart{Topic: p.topic, Partition: p.partition, Last: p.last}
		if p.f != nil {
			mp.File, mp.First, mp.Size, mp.Opened = p.name, p.first, p.size, p.opened
			mp.Count, mp.Touched = p.count, p.touched
		}
		m.Partitions = append(m.Partitions, mp)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return vfs.WriteFileAtomic(s.cfg.FS, s.path(manifestName), b)
}

// readManifest returns the manifest, or an empty one in a directory that has none.
func (s *Sink) readManifest() (manifest, error) {
	var m manifest
	b, err := vfs.ReadFile(s.cfg.FS, s.path(manifestName))
	if errors.Is(err, fs.ErrNotExist) {
		return manifest{Version: manifestVersion}, nil
	}
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("manifest is corrupt: %w", err)
	}
	if m.Version != manifestVersion {
		return m, fmt.Errorf("manifest version %d, want %d", m.Version, manifestVersion)
	}
	return m, nil
}

func (s *Sink) path(name string) string { return filepath.Join(s.cfg.Dir, name) }

// checkName refuses a manifest name that would reach outside the directory.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) {
		return fmt.Errorf("manifest names the file %q", name)
	}
	return nil
}
