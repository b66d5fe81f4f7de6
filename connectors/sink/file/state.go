package file

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/storage/vfs"
)

// This file holds the sink's memory on disk: the directory's manifest (a marker of the layout,
// or a version 1 manifest to migrate) and the state of each partition, which one sink at a time
// holds by the partition's lock.

// On-disk names and versions (see the package doc's Layout).
const (
	lockName         = ".lock"     // taken by Open while it checks the layout (held for life by a version 1 sink)
	manifestName     = ".manifest" // the layout marker, {"version":2}; a version 1 manifest before migration
	manifestTemp     = manifestName + vfs.TmpSuffix
	manifestVersion  = 3 // the layout this sink writes: a state log per partition under stateDir
	jsonVersion      = 2 // a state per partition in a JSON file, migrated at the partition's take
	oldVersion       = 1 // one manifest for the whole directory, migrated by Open
	stateDir         = ".state"
	stateSuffix      = ".json"  // <stateDir>/<file topic>-<partition>.json: a version 2 state, or {"version":3}
	logSuffix        = ".state" // <stateDir>/<file topic>-<partition>.state: a partition's state log
	partLockSuffix   = ".lock"  // <stateDir>/<file topic>-<partition>.lock: its owner's lock
	inProgressSuffix = ".inprogress"
	lengthPrefix     = 4 // bytes of the length before a value in LengthPrefixed

	// The state log: logMagic, then records, each its length and CRC-32C (Castagnoli) as 4
	// bytes big endian, then that many bytes of JSON, a partState. The last whole record is
	// the state. A log longer than logCompactAt is replaced by one holding its last record.
	logMagic     = "weirfs\x00\x03"
	logHeader    = 8
	logMaxRecord = 16 << 20
	logCompactAt = 64 << 10

	// layoutWait bounds how long Open waits for the directory's lock, which other sinks of this
	// version hold for a moment only: longer, and a sink of version 1 has the directory.
	layoutWait = 5 * time.Second
)

// manifest is the JSON content of the directory's manifest: version 1 (the state of every
// partition) or version 2 (no more than the version: the state is per partition).
type manifest struct {
	Version    int              `json:"version"`
	Partitions []manifestPart   `json:"partitions,omitempty"`
	Renames    []manifestRename `json:"renames,omitempty"` // rolls to complete (version 1)
}

// manifestPart is what the sink knows of one partition: an entry of a version 1 manifest, and
// the body of a partition's state file.
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

// partState is the JSON content of a partition's state file.
type partState struct {
	Version int `json:"version"`
	manifestPart
	Renames []manifestRename `json:"renames,omitempty"` // rolls of this partition to complete
}

type manifestRename struct {
	From string `json:"from"`
	To   string `json:"to"`
}

func (s *Sink) path(name string) string      { return filepath.Join(s.cfg.Dir, name) }
func (s *Sink) statePath(name string) string { return filepath.Join(s.cfg.Dir, stateDir, name) }

// stateName is the name of p's JSON state file in stateDir, logName that of its state log,
// partLockName that of its lock.
func (p *part) stateName() string {
	return fmt.Sprintf("%s-%d%s", p.fileTopic, p.partition, stateSuffix)
}
func (p *part) logName() string {
	return fmt.Sprintf("%s-%d%s", p.fileTopic, p.partition, logSuffix)
}
func (p *part) partLockName() string {
	return fmt.Sprintf("%s-%d%s", p.fileTopic, p.partition, partLockSuffix)
}

// checkLayout runs in Open: under the directory's lock it writes the layout marker in a new
// directory, migrates a version 1 manifest, or finds the marker. The lock is released before
// it returns; a version 1 sink, which holds it while open, makes Open fail after layoutWait.
func (s *Sink) checkLayout(ctx context.Context) error {
	if m, err := s.readManifest(); err == nil && m.Version == manifestVersion {
		return nil // migrated or created before; a version 1 sink refuses the marker
	}
	wait, cancel := context.WithTimeout(ctx, layoutWait)
	defer cancel()
	var unlock func() error
	for {
		var err error
		unlock, err = vfs.Lock(s.cfg.FS, s.path(lockName))
		if err == nil {
			break
		}
		if !errors.Is(err, vfs.ErrLocked) {
			return err
		}
		select {
		case <-wait.Done():
			return fmt.Errorf("the directory is in use by a sink of an older version (one manifest for the whole directory, held while it is open); "+
				"stop it, then open this one: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	defer unlock()
	m, err := s.readManifest()
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	case m.Version == manifestVersion:
		return nil
	case m.Version == jsonVersion:
		// The state files are migrated one by one, each when its partition is next taken
		// (under its lock: a version 2 sink may still hold it).
	case m.Version == oldVersion:
		if err := s.migrate(m); err != nil {
			return fmt.Errorf("migrate the version 1 manifest: %w", err)
		}
	default:
		return fmt.Errorf("manifest version %d, want %d (or %d or %d, which are migrated)", m.Version, manifestVersion, jsonVersion, oldVersion)
	}
	b, _ := json.Marshal(manifest{Version: manifestVersion})
	return vfs.WriteFileAtomic(s.cfg.FS, s.path(manifestName), b)
}

// readManifest reads the directory's manifest; fs.ErrNotExist when there is none.
func (s *Sink) readManifest() (manifest, error) {
	var m manifest
	b, err := vfs.ReadFile(s.cfg.FS, s.path(manifestName))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("manifest is corrupt: %w", err)
	}
	return m, nil
}

// migrate turns a version 1 manifest into state files, under the directory's lock: it
// completes the recorded renames, removes the in-progress files the manifest does not know
// (as a version 1 Open did) and writes each partition's state as the manifest has it. The
// in-progress files are cut to their recorded lengths when their partitions are taken. A crash
// before the caller replaces the manifest with the marker leaves the version 1 manifest, and the
// next Open migrates again: the same state files, written again.
func (s *Sink) migrate(m manifest) error {
	dirty := false
	for _, r := range m.Renames {
		if _, err := s.redoRename(r); err != nil {
			return err
		}
		dirty = true // found done or not, as in load: the state files written below do not record it
	}
	known := map[string]bool{}
	var states []partState
	seen := map[tpKey]bool{}
	for _, mp := range m.Partitions {
		p := &part{tpKey: tpKey{mp.Topic, mp.Partition}}
		if seen[p.tpKey] {
			return fmt.Errorf("manifest: %s/%d twice", mp.Topic, mp.Partition)
		}
		seen[p.tpKey] = true
		if err := checkPart(p, mp); err != nil {
			return err
		}
		if mp.File != "" {
			known[mp.File] = true
		}
		states = append(states, partState{Version: jsonVersion, manifestPart: mp})
	}
	names, err := s.cfg.FS.List(s.cfg.Dir)
	if err != nil {
		return err
	}
	for _, name := range names {
		if name == manifestTemp || (strings.HasPrefix(name, ".") && strings.HasSuffix(name, inProgressSuffix) && !known[name]) {
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
	for _, st := range states {
		p := &part{tpKey: tpKey{st.Topic, st.Partition}}
		if err := p.setFileTopic(); err != nil {
			return err
		}
		b, err := json.Marshal(st)
		if err != nil {
			return err
		}
		if err := vfs.WriteFileAtomic(s.cfg.FS, s.statePath(p.stateName()), b); err != nil {
			return err
		}
	}
	return nil
}

// checkPart checks what a manifest or state file says of p, and sets p's file topic.
func checkPart(p *part, mp manifestPart) error {
	if mp.Last < -1 || mp.Size < 0 || mp.Count < 0 {
		return fmt.Errorf("manifest: %s/%d at offset %d with %d bytes, %d records", mp.Topic, mp.Partition, mp.Last, mp.Size, mp.Count)
	}
	if err := p.setFileTopic(); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	if mp.File != "" && (mp.File != p.inProgressName(mp.First) || mp.First < 0 || mp.First > mp.Last) {
		return fmt.Errorf("manifest names the file %q for %s/%d from %d to %d", mp.File, mp.Topic, mp.Partition, mp.First, mp.Last)
	}
	return nil
}

// adoptFree runs in Open: it takes every partition with a state file whose lock no other sink
// holds, so that a directory a crash left is recovered at once (and its in-progress files
// finished by the Close or Reset that follows), as a version 1 Open recovered the whole
// directory.
func (s *Sink) adoptFree() error {
	names, err := s.cfg.FS.List(filepath.Join(s.cfg.Dir, stateDir))
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		k, ok := stateKey(name)
		if _, held := s.parts[k]; !ok || held {
			continue // a lock, a temporary file, or the other state file of a partition taken
		}
		if _, err := s.take(k); err != nil && !errors.Is(err, connectors.ErrReplay) {
			return err
		}
	}
	return nil
}

// stateKey is the partition a state file's name (a JSON state or a state log) is of.
func stateKey(name string) (tpKey, bool) {
	base, ok := strings.CutSuffix(name, stateSuffix)
	if !ok {
		base, ok = strings.CutSuffix(name, logSuffix)
	}
	i := strings.LastIndexByte(base, '-')
	if !ok || i <= 0 {
		return tpKey{}, false
	}
	n, err := strconv.ParseInt(base[i+1:], 10, 32)
	if err != nil || n < 0 {
		return tpKey{}, false
	}
	return tpKey{strings.TrimPrefix(base[:i], "+"), int32(n)}, true
}

// take makes the sink the owner of a partition: it takes the partition's lock, reads its state
// and puts its files back in the state it describes. The error wraps connectors.ErrReplay when
// another sink holds the lock.
func (s *Sink) take(k tpKey) (*part, error) {
	p := &part{tpKey: k, last: -1}
	if err := p.setFileTopic(); err != nil {
		return nil, err
	}
	unlock, err := vfs.Lock(s.cfg.FS, s.statePath(p.partLockName()))
	if err != nil {
		if errors.Is(err, vfs.ErrLocked) {
			// Its former owner has not let it go yet (it has not noticed the rebalance): read
			// again later, when it has.
			return nil, fmt.Errorf("%s/%d is held by another sink: %w (%w)", k.topic, k.partition, connectors.ErrReplay, err)
		}
		return nil, err
	}
	if err := s.load(p); err != nil {
		if p.f != nil {
			p.f.Close()
		}
		if p.state != nil {
			p.state.Close()
		}
		_ = unlock()
		return nil, fmt.Errorf("%s/%d: %w", k.topic, k.partition, err)
	}
	p.unlock = unlock
	s.parts[k] = p
	return p, nil
}

// load reads p's state and recovers its files; p's lock is held. A partition without a state
// gets one at once, before any of its files exists, so that Open's adoptFree finds every
// partition that may have files.
//
// A partition's state is its state log (version 3). Its JSON state file holds {"version":3},
// which a version 2 sink refuses, so that one still running cannot take the partition and
// mistake it for a new one; or, not yet migrated, the version 2 state, which is then the state:
// load writes it as a new state log, then replaces the JSON state with {"version":3}. A crash in
// between migrates again, to the same log (nothing is appended to it before the JSON is
// replaced).
func (s *Sink) load(p *part) error {
	st, fresh, noJSON, err := s.readState(p)
	if err != nil {
		return err
	}
	if err := checkPart(p, st.manifestPart); err != nil {
		return err
	}
	p.last, p.durable = st.Last, st.Last
	// The log is written anew, holding st, before st is acted on (its renames made, files cut
	// to it, Durable reporting it): a new partition's or a migrated one's log is written whole;
	// an existing log's last state may be one whose fsync never came (a process crash keeps it
	// in the page cache; TestCrashAnywhere found it, seed 179) or failed, and on Linux a failed
	// fsync leaves its pages clean, so that an fsync of the log again would make nothing
	// durable (TestTakeRewritesAStateWhoseFsyncFailed); and the log may be the rename of a
	// compaction, or of a take, that died before its directory fsync (TestTakeSyncsTheStateDirectory).
	// The rewrite (temporary file, fsync, rename, directory fsync) covers them all.
	if err := s.createLog(p, st); err != nil {
		return err
	}
	if fresh || noJSON {
		if err := vfs.WriteFileAtomic(s.cfg.FS, s.statePath(p.stateName()), []byte(tombstone)); err != nil {
			return err
		}
	}
	dirty := false
	for _, r := range st.Renames {
		if !p.owns(r.From) {
			return fmt.Errorf("state of %s renames %q, a file of another partition", s.statePath(p.logName()), r.From)
		}
		if _, err := s.redoRename(r); err != nil {
			return err
		}
		// Synced even when the rename was found done: the process that made it may have died
		// before its directory fsync, and a machine crash would undo it once the state below
		// no longer records it (TestTakeSyncsARenameItFoundDone).
		dirty = true
	}
	if st.File != "" {
		if err := s.resume(p, st.manifestPart); err != nil {
			return err
		}
	}
	names, err := s.cfg.FS.List(s.cfg.Dir)
	if err != nil {
		return err
	}
	for _, name := range names {
		if p.owns(name) && name != p.name {
			// A file no state ever recorded: it holds only what Writes that did not become
			// durable wrote.
			if err := s.cfg.FS.Remove(s.path(name)); err != nil {
				return err
			}
			dirty = true
		}
	}
	removed := false
	for _, tmp := range []string{p.stateName() + vfs.TmpSuffix, p.logName() + vfs.TmpSuffix} {
		if _, err := s.cfg.FS.Stat(s.statePath(tmp)); err == nil {
			// A state never renamed into place, or a compaction that did not finish.
			if err := s.cfg.FS.Remove(s.statePath(tmp)); err != nil {
				return err
			}
			removed = true
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if removed {
		if err := s.cfg.FS.SyncDir(filepath.Join(s.cfg.Dir, stateDir)); err != nil {
			return err
		}
	}
	if dirty {
		if err := s.cfg.FS.SyncDir(s.cfg.Dir); err != nil {
			return err
		}
	}
	if len(st.Renames) > 0 {
		// Done: a rename recorded for ever would fail a later take once a reader has removed
		// the finished file.
		return s.writeState(p, nil)
	}
	return nil
}

// tombstone is the JSON state file of a partition whose state is its log: a version 2 sink
// refuses its version.
const tombstone = `{"version":3}`

// readState returns p's state: from its JSON state file if that is of version 2, else from its
// state log, else that of a new partition. fresh says that the log is to be written from it,
// noJSON that there is no JSON state file (a new partition, or a take that died before it wrote
// one): the caller writes {"version":3} there.
func (s *Sink) readState(p *part) (st partState, fresh, noJSON bool, err error) {
	b, err := vfs.ReadFile(s.cfg.FS, s.statePath(p.stateName()))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		noJSON = true
	case err != nil:
		return st, false, false, err
	default:
		if err := json.Unmarshal(b, &st); err != nil {
			return st, false, false, fmt.Errorf("state %s is corrupt: %w", s.statePath(p.stateName()), err)
		}
		switch st.Version {
		case manifestVersion:
		case jsonVersion:
			if st.Topic != p.topic || st.Partition != p.partition {
				return st, false, false, fmt.Errorf("state %s is of %s/%d", s.statePath(p.stateName()), st.Topic, st.Partition)
			}
			return st, true, false, nil
		default:
			return st, false, false, fmt.Errorf("state %s: version %d, want %d or %d", s.statePath(p.stateName()), st.Version, manifestVersion, jsonVersion)
		}
	}
	f, err := s.cfg.FS.Open(s.statePath(p.logName()))
	if errors.Is(err, fs.ErrNotExist) && !noJSON {
		// {"version":3} is written only once the log is in place (TestMissingStateLogIsNotANewPartition):
		// taken as new, the partition would lose its in-progress file.
		return st, false, false, fmt.Errorf("state %s is missing, and %s says the partition has one", s.statePath(p.logName()), p.stateName())
	}
	if errors.Is(err, fs.ErrNotExist) {
		// New (or created by a take that died before its log was in place).
		return partState{Version: manifestVersion, manifestPart: manifestPart{Topic: p.topic, Partition: p.partition, Last: -1}}, true, noJSON, nil
	}
	if err != nil {
		return st, false, false, err
	}
	defer f.Close()
	st, _, _, err = readLog(f)
	if err == nil && (st.Topic != p.topic || st.Partition != p.partition) {
		err = fmt.Errorf("is of %s/%d", st.Topic, st.Partition)
	}
	if err != nil {
		return st, false, false, fmt.Errorf("state %s: %w", s.statePath(p.logName()), err)
	}
	// load writes the log anew from st (a torn tail is dropped with it) before acting on it.
	return st, false, noJSON, nil
}

// readLog returns the last whole state of a state log, the length of the log up to its end, and
// the length of the file. A torn last record (short, or whose checksum fails, with nothing but
// zeros after it if it is whole) is ignored; anything else that does not read is corruption.
func readLog(f vfs.File) (partState, int64, int64, error) {
	var st partState
	size, err := f.Size()
	if err != nil {
		return st, 0, 0, err
	}
	b := make([]byte, size)
	if n, err := f.ReadAt(b, 0); int64(n) < size {
		return st, 0, 0, fmt.Errorf("read: %w", err)
	}
	if len(b) < len(logMagic) || string(b[:len(logMagic)]) != logMagic {
		return st, 0, 0, errors.New("not a state log")
	}
	var last []byte
	off := len(logMagic)
	for off < len(b) {
		rest := b[off:]
		if len(rest) < logHeader {
			break // torn
		}
		n, ok := wholeRecord(rest)
		if !ok {
			if logHeader+n < len(rest) && n > 0 && n <= logMaxRecord && !allZero(rest[logHeader+n:]) {
				return st, 0, 0, fmt.Errorf("corrupt record at %d, followed by more", off)
			}
			// Only the last record can be torn: each is fsynced before the next is appended.
			// A whole record after it means that this one was damaged (its length, say), and
			// cutting here would drop later states (TestReadLogCorruptLengthBeforeMore).
			for i := 1; i+logHeader <= len(rest); i++ {
				if _, ok := wholeRecord(rest[i:]); ok {
					return st, 0, 0, fmt.Errorf("corrupt record at %d, followed by a whole one at %d", off, off+i)
				}
			}
			break // torn: the last record, never synced
		}
		last = rest[logHeader : logHeader+n]
		off += logHeader + n
	}
	if last == nil {
		return st, 0, 0, errors.New("no whole state") // a log is created whole, with one
	}
	if err := json.Unmarshal(last, &st); err != nil {
		return st, 0, 0, fmt.Errorf("corrupt state: %w", err)
	}
	if st.Version != manifestVersion {
		return st, 0, 0, fmt.Errorf("version %d, want %d", st.Version, manifestVersion)
	}
	return st, int64(off), size, nil
}

// wholeRecord reports whether b starts with a whole record of a state log, and the length its
// header gives.
func wholeRecord(b []byte) (int, bool) {
	if len(b) < logHeader {
		return 0, false
	}
	n := int(binary.BigEndian.Uint32(b))
	return n, n > 0 && n <= logMaxRecord && logHeader+n <= len(b) &&
		crc32.Checksum(b[logHeader:logHeader+n], castagnoli) == binary.BigEndian.Uint32(b[4:])
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// logRecord encodes st as a record of a state log.
func logRecord(st partState) ([]byte, error) {
	js, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	if len(js) > logMaxRecord {
		return nil, fmt.Errorf("state of %d bytes, more than %d", len(js), logMaxRecord)
	}
	b := binary.BigEndian.AppendUint32(make([]byte, 0, logHeader+len(js)), uint32(len(js)))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(js, castagnoli))
	return append(b, js...), nil
}

// createLog replaces p's state log with one holding st (atomically: it is never seen without
// a whole state) and opens it for appending.
func (s *Sink) createLog(p *part, st partState) error {
	if p.state != nil {
		p.state.Close()
		p.state = nil
	}
	st.Version = manifestVersion
	rec, err := logRecord(st)
	if err != nil {
		return err
	}
	name := s.statePath(p.logName())
	if err := vfs.WriteFileAtomic(s.cfg.FS, name, append([]byte(logMagic), rec...)); err != nil {
		return err
	}
	f, err := s.cfg.FS.OpenAppend(name)
	if err != nil {
		return err
	}
	p.state, p.stateSize = f, int64(len(logMagic)+len(rec))
	return nil
}

// resume opens p's in-progress file as its state describes it, cut to its synced length.
func (s *Sink) resume(p *part, mp manifestPart) error {
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
	// Sync even when the length is right: an earlier take may have cut the tail and died (or
	// failed its fsync) before the cut was durable, and a machine crash would bring the tail
	// back into a file this sink goes on to finish and name. TestCrashAnywhere found it
	// (seed 1178 of 5000: a finished file named for 1 record holding 6).
	return f.Sync()
}

// owns reports whether name is an in-progress file of p: ".<file topic>-<partition>-" and
// 20 digits.
func (p *part) owns(name string) bool {
	prefix := fmt.Sprintf(".%s-%d-", p.fileTopic, p.partition)
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return false
	}
	digits, ok := strings.CutSuffix(rest, inProgressSuffix)
	if !ok || len(digits) != 20 {
		return false
	}
	for _, c := range []byte(digits) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
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

// snapshot is p's state as it is now, with the renames about to be made: what a sync records
// once p's file is fsynced.
func (s *Sink) snapshot(p *part, renames []manifestRename) partState {
	st := partState{Version: manifestVersion, Renames: renames,
		manifestPart: manifestPart{Topic: p.topic, Partition: p.partition, Last: p.last}}
	if p.f != nil {
		st.File, st.First, st.Size, st.Opened = p.name, p.first, p.size, p.opened
		st.Count, st.Touched = p.count, p.touched
	}
	return st
}

// writeState records p's state as it is now, with renames, in its state log (see appendState);
// p is not syncing.
func (s *Sink) writeState(p *part, renames []manifestRename) error {
	if err := s.appendState(p, s.snapshot(p, renames)); err != nil {
		return err
	}
	p.renamed = len(renames) > 0
	return nil
}

// appendState records st in p's state log: one record appended and fsynced, or, once the log is
// logCompactAt long, a new log holding it.
func (s *Sink) appendState(p *part, st partState) error {
	rec, err := logRecord(st)
	if err != nil {
		return err
	}
	if p.stateSize+int64(len(rec)) > logCompactAt {
		return s.createLog(p, st)
	}
	if _, err := p.state.Write(rec); err != nil {
		return err
	}
	p.stateSize += int64(len(rec))
	return p.state.Sync()
}

// checkName refuses a manifest name that would reach outside the directory.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) {
		return fmt.Errorf("manifest names the file %q", name)
	}
	return nil
}
