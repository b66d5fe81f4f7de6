package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	manifestVersion  = 2 // the layout this sink writes: state per partition under stateDir
	oldVersion       = 1 // one manifest for the whole directory, migrated by Open
	stateDir         = ".state"
	stateSuffix      = ".json" // <stateDir>/<file topic>-<partition>.json: a partition's state
	partLockSuffix   = ".lock" // <stateDir>/<file topic>-<partition>.lock: its owner's lock
	inProgressSuffix = ".inprogress"
	lengthPrefix     = 4 // bytes of the length before a value in LengthPrefixed

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

// stateName is the name of p's state file in stateDir; partLockName that of its lock.
func (p *part) stateName() string {
	return fmt.Sprintf("%s-%d%s", p.fileTopic, p.partition, stateSuffix)
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
	case m.Version == oldVersion:
		if err := s.migrate(m); err != nil {
			return fmt.Errorf("migrate the version 1 manifest: %w", err)
		}
	default:
		return fmt.Errorf("manifest version %d, want %d (or %d, which is migrated)", m.Version, manifestVersion, oldVersion)
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
		done, err := s.redoRename(r)
		if err != nil {
			return err
		}
		dirty = dirty || done
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
		states = append(states, partState{Version: manifestVersion, manifestPart: mp})
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
		if !ok {
			continue
		}
		if _, err := s.take(k); err != nil && !errors.Is(err, connectors.ErrReplay) {
			return err
		}
	}
	return nil
}

// stateKey is the partition a state file's name is of.
func stateKey(name string) (tpKey, bool) {
	base, ok := strings.CutSuffix(name, stateSuffix)
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
		_ = unlock()
		return nil, fmt.Errorf("%s/%d: %w", k.topic, k.partition, err)
	}
	p.unlock = unlock
	s.parts[k] = p
	return p, nil
}

// load reads p's state and recovers its files; p's lock is held. A partition without a state
// file gets one at once, before any of its files exists, so that Open's adoptFree finds every
// partition that may have files.
func (s *Sink) load(p *part) error {
	b, err := vfs.ReadFile(s.cfg.FS, s.statePath(p.stateName()))
	if errors.Is(err, fs.ErrNotExist) {
		return s.writeState(p, nil)
	}
	if err != nil {
		return err
	}
	var st partState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("state %s is corrupt: %w", p.stateName(), err)
	}
	if st.Version != manifestVersion {
		return fmt.Errorf("state %s: version %d, want %d", p.stateName(), st.Version, manifestVersion)
	}
	if st.Topic != p.topic || st.Partition != p.partition {
		return fmt.Errorf("state %s is of %s/%d", p.stateName(), st.Topic, st.Partition)
	}
	if err := checkPart(p, st.manifestPart); err != nil {
		return err
	}
	dirty := false
	for _, r := range st.Renames {
		if !p.owns(r.From) {
			return fmt.Errorf("state %s renames %q, a file of another partition", p.stateName(), r.From)
		}
		done, err := s.redoRename(r)
		if err != nil {
			return err
		}
		dirty = dirty || done
	}
	p.last = st.Last
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
			// A file no state ever recorded: it holds only what Writes that did not return
			// wrote.
			if err := s.cfg.FS.Remove(s.path(name)); err != nil {
				return err
			}
			dirty = true
		}
	}
	tmp := s.statePath(p.stateName() + vfs.TmpSuffix)
	if _, err := s.cfg.FS.Stat(tmp); err == nil {
		// A state file never renamed into place: it held what a Write that did not return
		// wrote.
		if err := s.cfg.FS.Remove(tmp); err != nil {
			return err
		}
		if err := s.cfg.FS.SyncDir(filepath.Join(s.cfg.Dir, stateDir)); err != nil {
			return err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
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

// writeState replaces p's state file with what was flushed and the renames about to be made.
func (s *Sink) writeState(p *part, renames []manifestRename) error {
	st := partState{Version: manifestVersion, Renames: renames,
		manifestPart: manifestPart{Topic: p.topic, Partition: p.partition, Last: p.last}}
	if p.f != nil {
		st.File, st.First, st.Size, st.Opened = p.name, p.first, p.size, p.opened
		st.Count, st.Touched = p.count, p.touched
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := vfs.WriteFileAtomic(s.cfg.FS, s.statePath(p.stateName()), b); err != nil {
		return err
	}
	p.renamed = len(renames) > 0
	return nil
}

// checkName refuses a manifest name that would reach outside the directory.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) {
		return fmt.Errorf("manifest names the file %q", name)
	}
	return nil
}
