package storage

import (
	iofs "io/fs"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/weirhq/weir/storage/vfs"
)

// TestCompactToUnsyncedRollHeader: under SyncNever, DeleteBefore (a checkpoint) compacts the log
// up to a segment that a roll created lazily and whose header the syncer has not yet made
// durable, and the machine crashes. Recovery forgives a lost header only in a segment after
// another, so compaction makes the new first segment's header durable first: the log opens,
// starting at that segment.
func TestCompactToUnsyncedRollHeader(t *testing.T) {
	cfg, mem, hfs, base1 := heldSecondSegment(t)
	l, err := Open("/log", withFS(cfg, hfs))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { close(hfs.release); l.Close() }()
	hfs.arm()
	for l.Segments() < 2 {
		appendN(t, l, 1, 3, 0)
	}
	waitHeld(t, hfs)
	for l.Segments() < 3 {
		appendN(t, l, 1, 3, 0)
	}
	l.mu.RLock()
	unsynced := l.segs[1].headerUnsynced && l.segs[2].headerUnsynced
	l.mu.RUnlock()
	if !unsynced {
		t.Fatal("setup: headers of segments 1 and 2 should be unsynced")
	}
	if err := l.DeleteBefore(base1); err != nil { // segment 0 goes; state file and directory synced
		t.Fatal(err)
	}
	crashed := mem.Crash(nil) // machine crash: nothing unsynced survives
	l2, err := Open("/log", withFS(cfg, crashed))
	if err != nil {
		t.Fatalf("open after a machine crash following compaction to a lazily rolled segment: %v", err)
	}
	defer l2.Close()
	if got := l2.StartOffset(); got != base1 {
		t.Errorf("start offset %d, want %d", got, base1)
	}
}

// hookEvictFS is a Mem whose files' Evict calls hook.
type hookEvictFS struct {
	*vfs.Mem
	hook func(name string, off, n int64) error
}

type hookEvictFile struct {
	vfs.File
	fs *hookEvictFS
}

func (f hookEvictFile) Evict(off, n int64) error { return f.fs.hook(f.Name(), off, n) }

func (h *hookEvictFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return hookEvictFile{f, h}, nil
}
func (h *hookEvictFS) Create(n string) (vfs.File, error)     { return h.wrap(h.Mem.Create(n)) }
func (h *hookEvictFS) OpenAppend(n string) (vfs.File, error) { return h.wrap(h.Mem.OpenAppend(n)) }
func (h *hookEvictFS) Open(n string) (vfs.File, error)       { return h.wrap(h.Mem.Open(n)) }

// TestEvictErrorFailsTheLog: on Linux, sync_file_range(WAIT_AFTER) reports a writeback error
// of the file and advances the open file's error cursor, so the next fsync on the same
// descriptor returns 0 although pages were lost. A failed Evict must therefore fail the log, as
// a failed fsync does: neither the next append nor Sync may succeed.
func TestEvictErrorFailsTheLog(t *testing.T) {
	for _, mode := range []SyncMode{SyncAlways, SyncNever} {
		t.Run(mode.String(), func(t *testing.T) {
			// Evict fails with EIO, as sync_file_range does when the kernel's writeback failed.
			var calls atomic.Int64
			efs := &hookEvictFS{Mem: vfs.NewMem(), hook: func(name string, _, _ int64) error {
				calls.Add(1)
				return &iofs.PathError{Op: "sync_file_range", Path: name, Err: syscall.EIO}
			}}
			cfg := testConfig()
			cfg.FS, cfg.Sync, cfg.DropCache = efs, mode, true
			cfg.SegmentBytes = 1 << 30
			l := mustOpen(t, "/log", cfg)
			appendBig(t, l, 80, 256<<10) // just over 20 MiB: the last append wakes the syncer to evict [0, 4 MiB)
			for start := time.Now(); ; time.Sleep(time.Millisecond) {
				if calls.Load() > 0 {
					break
				}
				if time.Since(start) > 5*time.Second {
					t.Fatal("no eviction")
				}
			}
			// Once evictBehind has looked at the error, the log takes no more writes.
			var aerr, serr error
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				if serr = l.Sync(); serr != nil {
					break
				}
			}
			_, aerr = l.Append(mustBatch(t, 1))
			if aerr == nil || serr == nil {
				t.Fatal("writeback failed (sync_file_range: EIO, which the next fsync will not report), yet the next append and Sync succeeded")
			}
		})
	}
}

// TestEvictRacesTruncation: an eviction of [0, to) runs without the lock; meanwhile the active
// segment is cut below to and appends grow it past to again. The eviction must not record
// [0, to) as evicted (the new data in [cut, to) was never written back or dropped): the next
// eviction starts at or below the cut.
func TestEvictRacesTruncation(t *testing.T) {
	// Evictions are recorded; the first one blocks until release.
	var mu sync.Mutex
	var evictions [][2]int64
	held, release := make(chan struct{}), make(chan struct{})
	bfs := &hookEvictFS{Mem: vfs.NewMem(), hook: func(_ string, off, n int64) error {
		mu.Lock()
		evictions = append(evictions, [2]int64{off, n})
		first := len(evictions) == 1
		mu.Unlock()
		if first {
			close(held)
			<-release
		}
		return nil
	}}
	cfg := testConfig()
	cfg.FS, cfg.Sync, cfg.DropCache = bfs, SyncNever, true
	cfg.SegmentBytes = 1 << 30
	l := mustOpen(t, "/log", cfg)
	appendBig(t, l, 80, 256<<10) // wakes the syncer to evict [0, 4 MiB)
	select {
	case <-held:
	case <-time.After(5 * time.Second):
		t.Fatal("no eviction")
	}
	if err := l.TruncateTo(1); err != nil { // cut to one batch: about 256 KiB
		t.Fatal(err)
	}
	l.mu.RLock()
	cut := l.active().size
	l.mu.RUnlock()
	appendBig(t, l, 20, 256<<10) // regrow to about 5.3 MiB, past the eviction's end
	close(release)
	appendBig(t, l, 80, 256<<10) // enough for the next evictions
	var calls [][2]int64
	for deadline := time.Now().Add(5 * time.Second); len(calls) < 2 && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		mu.Lock()
		calls = append(calls[:0], evictions...)
		mu.Unlock()
	}
	if len(calls) < 2 {
		t.Fatalf("evictions %v: want more after the truncation", calls)
	}
	if calls[1][0] > cut {
		t.Fatalf("evictions %v: after the cut at %d, eviction resumed at %d; [%d, %d) of new data is never evicted",
			calls, cut, calls[1][0], cut, calls[1][0])
	}
}

// TestHeaderDurableBeforeIndexFiles: a machine crash while the syncer is at a rolled segment's
// header fsync must leave a log that opens. Were a segment's index files written before the
// next segment's header was durable, the crash would leave segment 0 indexed, segment 1 without
// a header and segment 2 after it: a CorruptError.
func TestHeaderDurableBeforeIndexFiles(t *testing.T) {
	cfg, mem, hfs, _ := heldSecondSegment(t)
	l, err := Open("/log", withFS(cfg, hfs))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { l.Close() }()
	hfs.arm()
	for l.Segments() < 3 {
		appendN(t, l, 1, 3, 0)
	}
	waitHeld(t, hfs)
	for l.Segments() < 4 {
		appendN(t, l, 1, 3, 0)
	}
	crashed := mem.Crash(nil)
	close(hfs.release)
	l2, err := Open("/log", withFS(cfg, crashed))
	if err != nil {
		t.Fatalf("open after a machine crash during the syncer's work: %v", err)
	}
	l2.Close()
}

// heldSecondSegment returns a config, a Mem and a holdFS over it whose first fsync of segment 1
// (once armed) waits before syncing, and the base offset of segment 1, found by a probe log
// (the layout is deterministic).
func heldSecondSegment(t *testing.T) (Config, *vfs.Mem, *holdFS, int64) {
	t.Helper()
	cfg := testConfig()
	cfg.DropCache = false
	probe := mustOpen(t, "/log", withFS(cfg, vfs.NewMem()))
	for probe.Segments() < 2 {
		appendN(t, probe, 1, 3, 0)
	}
	probe.mu.RLock()
	base1 := probe.segs[1].baseOffset
	probe.mu.RUnlock()
	mem := vfs.NewMem()
	hfs := newHoldFS(mem, segmentPath("/log", base1, logSuffix))
	hfs.before = true // the syncer's header fsync of segment 1 is slow: nothing synced yet
	return cfg, mem, hfs, base1
}
