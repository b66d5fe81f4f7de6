package file

import (
	"errors"
	"fmt"
	"time"

	"github.com/weirhq/weir/storage/vfs"
)

// This file holds how the sink makes what it appended durable. A partition is synced in three
// steps: start (under the mutex) takes a snapshot of what it wrote, the file to fsync and the
// renames of its seals; run (outside the mutex, in the background goroutine) fsyncs the file,
// the directory if the file is new, appends the snapshot to the partition's state log, and
// makes the renames; finish (under the mutex again) makes Durable report the snapshot's last
// offset. Writes go on appending to the partition while its sync runs: fsync covers at least
// what was written before it was called, which the snapshot describes, and the state records
// no more than that. Whatever touches the file or the state log otherwise (a seal, a sync of
// its own, Reset, Close) waits for the partition's sync first.

// syncJob is the sync of one partition.
type syncJob struct {
	p       *part
	f       vfs.File // the file in progress, to fsync; nil when none
	fsync   bool     // f has bytes written since its last fsync
	syncDir bool     // f is new: its name must be durable before a state names it
	st      partState
	ran     bool // run is done
	ended   bool // finish is done
	err     error
}

// start begins p's sync: the snapshot, and p's pending bytes written. p is not syncing.
func (s *Sink) start(p *part) (*syncJob, error) {
	if err := s.flush(p); err != nil {
		return nil, err
	}
	j := &syncJob{p: p, f: p.f, fsync: p.dirty, syncDir: p.created, st: s.snapshot(p, p.renames)}
	p.dirty, p.created, p.renames, p.unsynced, p.want = false, false, nil, 0, false
	p.syncing = true
	s.inflight++
	return j, nil
}

// run does j's I/O; it touches only what start handed to it (p's file, which Writes may append
// to meanwhile, and p's state log, which nothing else touches while p is syncing).
func (s *Sink) run(j *syncJob) {
	j.ran = true
	j.err = s.runSync(j)
}

func (s *Sink) runSync(j *syncJob) error {
	if j.fsync {
		if err := j.f.Sync(); err != nil {
			return err
		}
	}
	if j.syncDir {
		if err := s.cfg.FS.SyncDir(s.cfg.Dir); err != nil {
			return err
		}
	}
	if err := s.appendState(j.p, j.st); err != nil {
		return err
	}
	for _, r := range j.st.Renames {
		if err := s.cfg.FS.Rename(s.path(r.From), s.path(r.To)); err != nil {
			return err
		}
	}
	if len(j.st.Renames) > 0 {
		return s.cfg.FS.SyncDir(s.cfg.Dir)
	}
	return nil
}

// finish ends j's sync: Durable reports what it made durable, or the sink is broken.
func (s *Sink) finish(j *syncJob) error {
	p := j.p
	j.ended = true
	p.syncing = false
	s.inflight--
	s.idle.Broadcast()
	if j.err != nil {
		s.broken = j.err
		return j.err
	}
	p.durable, p.renamed = j.st.Last, len(j.st.Renames) > 0
	return nil
}

// sync makes p durable before it returns (a roll, a member's Write).
func (s *Sink) sync(p *part) error {
	if err := s.waitIdle(p); err != nil {
		return err
	}
	j, err := s.start(p)
	if err != nil {
		return err
	}
	s.run(j)
	return s.finish(j)
}

// waitIdle waits until p's background sync, if any, is finished. A manual sink (tests) has no
// background goroutine: the sync is run and finished here. The error is that of a failed sync
// (of any partition) which broke the sink meanwhile: the caller must write nothing more, or it
// could append a state after a torn one (TestCrashAnywhere found it, seed 20).
func (s *Sink) waitIdle(p *part) error {
	for p.syncing && !s.manual {
		s.idle.Wait()
	}
	for _, j := range s.manualJobs {
		if j.p == p && !j.ended {
			if !j.ran {
				s.run(j)
			}
			s.finish(j)
		}
	}
	if s.broken != nil {
		return fmt.Errorf("%w: %v", ErrBroken, s.broken)
	}
	return nil
}

// waitAll waits until no background sync runs; the error is waitIdle's.
func (s *Sink) waitAll() error {
	var err error
	for _, p := range s.parts {
		if werr := s.waitIdle(p); err == nil {
			err = werr
		}
	}
	return err
}

// syncDue reports whether p is to be made durable at now: it rolled, or what it appended since
// its last sync is SyncSize bytes or SyncInterval old.
func (s *Sink) syncDue(p *part, now time.Time) bool {
	return len(p.renames) > 0 || p.unsynced > 0 && (p.unsynced >= s.cfg.SyncSize || now.Sub(p.dirtySince) >= s.cfg.SyncInterval)
}

// startDue starts the sync of every partition that a Write found due, or that is due now by
// time, and is not syncing already.
func (s *Sink) startDue() ([]*syncJob, error) {
	now := s.cfg.Now()
	var jobs []*syncJob
	for _, p := range s.sortedParts() {
		if p.syncing || !p.want && !s.syncDue(p, now) {
			continue
		}
		if p.unsynced == 0 && len(p.renames) == 0 {
			p.want = false
			continue
		}
		j, err := s.start(p)
		if err != nil {
			s.broken = err
			return jobs, err
		}
		jobs = append(jobs, j)
	}
	return jobs, nil
}

// step is one round of the background work: it rolls the files due by time (at once, under the
// mutex: rolls are rare), starts the syncs due, runs them outside the mutex, and tells the
// runner when records became durable (or the sink broke).
func (s *Sink) step() error {
	s.mu.Lock()
	if s.busy || s.usable() != nil {
		// A Write waits for a sync (it will ask again when it returns), or nothing to do.
		s.mu.Unlock()
		return nil
	}
	rolled, err := s.rollDueLocked()
	var jobs []*syncJob
	if err == nil {
		jobs, err = s.startDue()
	}
	s.mu.Unlock()
	for _, j := range jobs {
		s.run(j)
	}
	s.mu.Lock()
	for _, j := range jobs {
		if ferr := s.finish(j); ferr != nil && err == nil {
			err = fmt.Errorf("file sink: sync: %w", ferr)
		}
	}
	notify := s.notify
	s.mu.Unlock()
	if (rolled || len(jobs) > 0 || err != nil) && notify != nil {
		notify()
	}
	return err
}

// tick is step for a manual sink (tests): the background's round, run by the caller.
func (s *Sink) tick() error { return s.step() }

// background is the sink's goroutine: a step at every tick, and when a Write found a sync due.
func (s *Sink) background(stop <-chan struct{}, done chan<- struct{}, every time.Duration) {
	defer close(done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		case <-s.wake:
		}
		if err := s.step(); err != nil && !errors.Is(err, ErrBroken) {
			s.cfg.Logger.Warn("file sink: roll or sync in the background failed", "dir", s.cfg.Dir, "err", err)
		}
	}
}
