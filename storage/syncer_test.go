package storage

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirhq/weir/storage/vfs"
)

// holdFS wraps an FS. Once armed, the first Sync of the file target runs (the data is durable)
// and then does not return until release is closed, returning err: an fsync that has done its
// writeback but not yet returned to the syncer.
type holdFS struct {
	vfs.FS
	mu      sync.Mutex
	target  string
	armed   bool
	err     error
	before  bool // hold before the underlying fsync instead of after it
	held    chan struct{}
	release chan struct{}
}

func newHoldFS(fs vfs.FS, target string) *holdFS {
	return &holdFS{FS: fs, target: target, held: make(chan struct{}), release: make(chan struct{})}
}

func (h *holdFS) arm() { h.mu.Lock(); h.armed = true; h.mu.Unlock() }

func (h *holdFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return &holdFile{File: f, h: h}, nil
}
func (h *holdFS) Create(n string) (vfs.File, error)     { return h.wrap(h.FS.Create(n)) }
func (h *holdFS) OpenAppend(n string) (vfs.File, error) { return h.wrap(h.FS.OpenAppend(n)) }
func (h *holdFS) Open(n string) (vfs.File, error)       { return h.wrap(h.FS.Open(n)) }

type holdFile struct {
	vfs.File
	h *holdFS
}

func (f *holdFile) Sync() error {
	h := f.h
	h.mu.Lock()
	hold := h.armed && f.Name() == h.target
	if hold {
		h.armed = false
	}
	before := h.before
	h.mu.Unlock()
	if !hold {
		return f.File.Sync()
	}
	var err error
	if !before {
		err = f.File.Sync()
	}
	close(h.held)
	<-h.release
	if before {
		err = f.File.Sync()
	}
	if h.err != nil {
		return h.err
	}
	return err
}

func waitHeld(t *testing.T, h *holdFS) {
	t.Helper()
	select {
	case <-h.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the syncer never fsynced the sealed segment")
	}
}

func waitNoPending(t *testing.T, l *Log) {
	t.Helper()
	for start := time.Now(); ; time.Sleep(time.Millisecond) {
		l.mu.RLock()
		n := len(l.pending)
		l.mu.RUnlock()
		if n == 0 {
			return
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("%d segments still pending", n)
		}
	}
}

// rollHeld opens a SyncNever log on mem whose first fsync of segment 0, once armed, is held by
// a holdFS (failing with syncErr when released, if not nil), and appends until segment 0 is
// sealed and the syncer is inside that fsync.
func rollHeld(t *testing.T, mem *vfs.Mem, syncErr error) (*Log, *holdFS, Config) {
	t.Helper()
	hfs := newHoldFS(mem, segmentPath("/log", 0, logSuffix))
	hfs.err = syncErr
	cfg := testConfig()
	cfg.FS = hfs
	l, err := Open("/log", cfg)
	if err != nil {
		t.Fatal(err)
	}
	hfs.arm()
	for l.Segments() < 2 {
		appendN(t, l, 1, 3, 0)
	}
	waitHeld(t, hfs)
	return l, hfs, cfg
}

func withFS(cfg Config, fs vfs.FS) Config {
	cfg.FS = fs
	return cfg
}

// TestRollDoesNotWaitForSealedSync: under SyncNever, the append that rolls a segment returns
// while the sealed segment's fsync is still in progress, and appends go on meanwhile. Until the
// fsync is done a machine crash may lose the sealed segment's data, and recovery cuts the log
// there instead of reporting corruption; once the syncer wrote the indexes, the sealed segment
// survives a machine crash.
func TestRollDoesNotWaitForSealedSync(t *testing.T) {
	mem := vfs.NewMem()
	hfs := newHoldFS(mem, segmentPath("/log", 0, logSuffix))
	hfs.before = true // held before the fsync: nothing of segment 0's data is durable meanwhile
	cfg := testConfig()
	cfg.FS = hfs
	l, err := Open("/log", cfg)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 1, 3, 0)
	hfs.arm()

	// Should an append wait for the held fsync, the watchdog releases it and the test fails.
	var release sync.Once
	watchdog := time.AfterFunc(20*time.Second, func() {
		release.Do(func() { close(hfs.release) })
	})
	for l.Segments() < 3 { // two rolls while the first sealed segment's fsync is held
		appendN(t, l, 1, 3, 0)
	}
	if !watchdog.Stop() {
		t.Fatal("appends across a roll waited for the sealed segment's fsync")
	}
	waitHeld(t, hfs)
	sealedEnd := l.segs[1].baseOffset // under no lock: nothing appends now

	// A machine crash now keeps nothing of the sealed segment's data: the log is cut at the
	// first sealed segment's start, or later if a part of it happened to be durable.
	lost, err := Open("/log", withFS(cfg, mem.Crash(nil)))
	if err != nil {
		t.Fatalf("open after a machine crash with a sealed segment unsynced: %v", err)
	}
	if end := lost.EndOffset(); end > sealedEnd {
		t.Fatalf("log ends at %d after a crash, beyond the unsynced sealed segment ending at %d", end, sealedEnd)
	}
	readAll(t, lost, 0)
	lost.Close()

	release.Do(func() { close(hfs.release) })
	waitNoPending(t, l)
	kept, err := Open("/log", withFS(cfg, mem.Crash(nil)))
	if err != nil {
		t.Fatalf("open after a machine crash with the sealed segments synced: %v", err)
	}
	if end := kept.EndOffset(); end < sealedEnd {
		t.Fatalf("log ends at %d after a crash, before the end %d of the synced sealed segments", end, sealedEnd)
	}
	if got := readAll(t, kept, 0); got != kept.EndOffset() {
		t.Fatalf("read to %d, log ends at %d", got, kept.EndOffset())
	}
	kept.Close()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestTornCrashesAcrossRolls crashes a SyncNever log with small segments at random moments while
// it appends and the syncer works, tearing every unsynced file at random. Every crash must open:
// what Sync made durable is there, any damage is a torn tail, and reads return a gapless log.
func TestTornCrashesAcrossRolls(t *testing.T) {
	for seed := uint64(0); seed < 60; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		mem := vfs.NewMem()
		cfg := testConfig()
		cfg.FS = mem
		l := mustOpen(t, "/log", cfg)
		var synced int64
		var crashes []*vfs.Mem
		var syncedAt []int64
		for i := 0; i < 400; i++ {
			appendN(t, l, 1, 1+rng.IntN(4), 0)
			switch rng.IntN(20) {
			case 0:
				if err := l.Sync(); err != nil {
					t.Fatal(err)
				}
				synced = l.EndOffset()
			case 1:
				crashes = append(crashes, mem.Crash(rand.New(rand.NewPCG(seed, uint64(i)))))
				syncedAt = append(syncedAt, synced)
			}
		}
		l.Close()
		for k, fs := range crashes {
			l2, err := Open("/log", withFS(cfg, fs))
			if err != nil {
				t.Fatalf("seed %d crash %d: open: %v", seed, k, err)
			}
			if end := l2.EndOffset(); end < syncedAt[k] {
				t.Fatalf("seed %d crash %d: log ends at %d, before the synced end %d", seed, k, end, syncedAt[k])
			}
			if got := readAll(t, l2, l2.StartOffset()); got != l2.EndOffset() {
				t.Fatalf("seed %d crash %d: read to %d, log ends at %d", seed, k, got, l2.EndOffset())
			}
			// A second open of what the first recovery left changes nothing.
			end := l2.EndOffset()
			l2.Close()
			l3, err := Open("/log", withFS(cfg, fs))
			if err != nil {
				t.Fatalf("seed %d crash %d: second open: %v", seed, k, err)
			}
			if l3.EndOffset() != end {
				t.Fatalf("seed %d crash %d: second open ends at %d, first at %d", seed, k, l3.EndOffset(), end)
			}
			l3.Close()
		}
	}
}

// Regression: TruncateTo (or SaveEntries) to the base of the active segment removes it and leaves the
// previous segment as the active one with sealed and syncPending still set and still in
// l.pending. The next roll appends it to l.pending a second time. unpend then only removes one
// copy and clears syncPending, so syncPendingLocked loops forever under l.mu (Sync, Close and
// every SyncInterval append hang) and the syncer spins.
func TestTruncateToSegmentBaseThenRoll(t *testing.T) {
	l, hfs, _ := rollHeld(t, vfs.NewMem(), nil) // segment 0 is still pending
	l.mu.RLock()
	s1 := l.segs[1].baseOffset
	l.mu.RUnlock()
	if err := l.TruncateTo(s1); err != nil { // a diverged follower cuts back to the segment boundary
		t.Fatal(err)
	}
	for l.Segments() < 2 { // segment 0 is full: the next append rolls it again
		appendN(t, l, 1, 3, 0)
	}
	close(hfs.release)

	done := make(chan error, 1)
	go func() { done <- l.Sync() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("Sync hung: syncPendingLocked loops forever on a pending segment that is no longer syncPending (log lock held; Close would hang too)")
	}
}

// Regression: syncSealed decides whether to rename its index files by s.syncPending, a boolean, not a
// generation. If the segment is truncated (made active again, unpended) while the syncer is in
// its fsync, and then appended to and rolled again before the syncer takes the lock, the syncer
// sees syncPending true again, renames the index files it encoded before the truncation into
// place and unpends the segment: the data appended after the truncation is never fsynced (not
// even by an explicit Sync, since the segment is no longer pending), yet it has index files, so
// after a machine crash recovery treats it as synced and refuses to open.
func TestSyncerIgnoresAnEarlierSealOfTheSegment(t *testing.T) {
	mem := vfs.NewMem()
	l, hfs, cfg := rollHeld(t, mem, nil)
	if err := l.TruncateTo(9); err != nil { // into segment 0, which becomes active again
		t.Fatal(err)
	}
	for l.Segments() < 2 { // different batch sizes: segment 0 now holds other bytes
		appendN(t, l, 1, 5, 0)
	}
	appendN(t, l, 2, 3, 0)
	close(hfs.release)
	waitNoPending(t, l)
	if err := l.Sync(); err != nil { // "Sync makes everything appended so far durable"
		t.Fatal(err)
	}
	synced := l.EndOffset()

	l2, err := Open("/log", withFS(cfg, mem.Crash(nil)))
	if err != nil {
		t.Fatalf("open after a machine crash following a successful Sync: %v", err)
	}
	defer l2.Close()
	if end := l2.EndOffset(); end < synced {
		t.Fatalf("log ends at %d after a crash, but Sync had returned at %d", end, synced)
	}
	l.Close()
}

// Regression: an fsync error of the syncer is dropped when the segment was truncated (made active again)
// while the fsync ran: the log does not fail, although after a failed fsync the kept prefix of
// the segment cannot be trusted (syncLocked fails the log for the same error).
func TestSyncerFsyncErrorFailsLogAfterTruncate(t *testing.T) {
	l, hfs, _ := rollHeld(t, vfs.NewMem(), errors.New("EIO"))
	defer l.Close()
	if err := l.TruncateTo(9); err != nil {
		t.Fatal(err)
	}
	close(hfs.release)
	for start := time.Now(); ; time.Sleep(time.Millisecond) {
		l.mu.RLock()
		failed := l.failed
		l.mu.RUnlock()
		if failed != nil {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("the syncer's failed fsync of segment 0 was ignored; the log still takes writes")
		}
	}
}

// Regression: recovery of a sealed segment without index files that ends short of the next segment
// first rebuilds and writes its index files (loadSealed, rebuild), and only then is it cut and
// made the active segment. The index files stay (the stale-index cleanup uses the listing taken
// before). When that segment is rolled again, it is "sealed with index files" before the syncer
// has fsynced its new data, so a machine crash then makes Open fail with a CorruptError instead of
// cutting a torn tail.
func TestCutSegmentHasNoIndexFiles(t *testing.T) {
	mem := vfs.NewMem()
	l, hfs, cfg := rollHeld(t, mem, nil)
	appendN(t, l, 2, 3, 0)
	// A machine crash that kept segment 0 up to a batch boundary (and segment 1 whole).
	crashed := mem.Clone()
	seg0 := segmentPath("/log", 0, logSuffix)
	b, err := crashed.ReadFile(seg0)
	if err != nil {
		t.Fatal(err)
	}
	pos := batchPositions(t, b)
	f, err := crashed.OpenAppend(seg0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(pos[len(pos)/2]); err != nil {
		t.Fatal(err)
	}
	f.Sync()
	f.Close()
	close(hfs.release)
	l.Close()

	hfs2 := newHoldFS(crashed, seg0)
	hfs2.before = true
	l2, err := Open("/log", withFS(cfg, hfs2))
	if err != nil {
		t.Fatal(err)
	}
	if l2.Segments() != 1 {
		t.Fatalf("%d segments after the cut, want 1", l2.Segments())
	}
	// Roll segment 0 again while the syncer's fsync of it is held, then crash the machine.
	hfs2.arm()
	for l2.Segments() < 2 {
		appendN(t, l2, 1, 3, 0)
	}
	waitHeld(t, hfs2)
	crash2 := crashed.Crash(nil)
	close(hfs2.release)
	l2.Close()
	l3, err := Open("/log", withFS(cfg, crash2))
	if err != nil {
		t.Fatalf("open after a machine crash with segment 0 sealed but not yet synced: %v", err)
	}
	l3.Close()
}

// Regression: a sealed segment whose index files are gone (lost or deleted; the docs say a missing
// index is rebuilt) and whose last batch is damaged is now cut silently, and every later segment,
// synced and with its own index files, is deleted. The later segments' index files prove this one
// was synced (the syncer goes oldest first), so this is corruption, which Open used to report.
func TestMissingIndexBeforeSyncedSegmentIsCorruption(t *testing.T) {
	mem := vfs.NewMem()
	cfg := testConfig()
	cfg.Sync = SyncAlways
	cfg.FS = mem
	l, err := Open("/log", cfg)
	if err != nil {
		t.Fatal(err)
	}
	for l.Segments() < 4 {
		appendN(t, l, 1, 3, 0)
	}
	end := l.EndOffset()
	l.Close()
	seg0 := segmentPath("/log", 0, logSuffix)
	mem.Remove(segmentPath("/log", 0, indexSuffix))
	mem.Remove(segmentPath("/log", 0, timeIndexSuffix))
	b, _ := mem.ReadFile(seg0)
	if err := mem.Corrupt(seg0, int64(len(b)-3), []byte{^b[len(b)-3]}); err != nil {
		t.Fatal(err)
	}
	l2, err := Open("/log", cfg)
	if err == nil {
		defer l2.Close()
		t.Fatalf("bit rot in synced segment 0 (later segments have index files) was cut silently: log end %d -> %d, %d segments left", end, l2.EndOffset(), l2.Segments())
	}
	var ce *CorruptError
	if !errors.As(err, &ce) {
		t.Fatal(err)
	}
}

// dropFS records the files whose pages a log asks to drop from the page cache.
type dropFS struct {
	*vfs.Mem
	mu      sync.Mutex
	dropped []string
}

func (d *dropFS) DropCache(name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dropped = append(d.dropped, name)
	return nil
}

// TestDropCacheOfSyncedSegments: with DropCache, each sealed segment is dropped from the page
// cache once it is fsynced, except the newest CachedSealedSegments; never the active one, never
// one awaiting its fsync, and never one the log found sealed when it opened. Without DropCache
// nothing is dropped.
func TestDropCacheOfSyncedSegments(t *testing.T) {
	for _, sync := range []SyncMode{SyncNever, SyncAlways} {
		for _, drop := range []bool{true, false} {
			dfs := &dropFS{Mem: vfs.NewMem()}
			cfg := testConfig()
			cfg.FS, cfg.Sync, cfg.DropCache = dfs, sync, drop
			l := mustOpen(t, "/log", cfg)
			for l.Segments() < 6 {
				appendN(t, l, 1, 3, 0)
			}
			waitNoPending(t, l)
			l.mu.RLock()
			var want []string
			if drop {
				for _, s := range l.segs[:len(l.segs)-1-CachedSealedSegments] {
					want = append(want, s.path)
				}
			}
			l.mu.RUnlock()
			dfs.mu.Lock()
			got := append([]string(nil), dfs.dropped...)
			dfs.mu.Unlock()
			if len(got) != len(want) {
				t.Fatalf("%v DropCache %v: dropped %q, want %q", sync, drop, got, want)
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("%v DropCache %v: dropped %q, want %q", sync, drop, got, want)
				}
			}
			l.Close()

			// Reopened: the sealed segments found are not the log's to drop, the ones it seals
			// from now on are.
			dfs.mu.Lock()
			dfs.dropped = nil
			dfs.mu.Unlock()
			l = mustOpen(t, "/log", cfg)
			n := l.Segments()
			for l.Segments() < n+CachedSealedSegments+2 {
				appendN(t, l, 1, 3, 0)
			}
			waitNoPending(t, l)
			dfs.mu.Lock()
			got = append([]string(nil), dfs.dropped...)
			dfs.mu.Unlock()
			l.mu.RLock()
			first := l.segs[n-1].path // active when reopened, sealed since
			l.mu.RUnlock()
			if drop && (len(got) == 0 || got[0] != first) {
				t.Fatalf("%v: after reopening dropped %q, want the segments sealed since, from %s", sync, got, first)
			}
			if !drop && len(got) > 0 {
				t.Fatalf("%v: without DropCache, dropped %q", sync, got)
			}
			l.Close()
		}
	}
}

// prefetchFS records the Prefetch calls on its files.
type prefetchFS struct {
	dropFS
	mu    sync.Mutex
	calls []string
}

type prefetchFile struct {
	vfs.File
	fs *prefetchFS
}

func (f prefetchFile) Prefetch(off, n int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	f.fs.calls = append(f.fs.calls, fmt.Sprintf("%s@%d+%d", f.Name(), off, n))
	return nil
}

func (p *prefetchFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return prefetchFile{File: f, fs: p}, nil
}
func (p *prefetchFS) Create(n string) (vfs.File, error)     { return p.wrap(p.Mem.Create(n)) }
func (p *prefetchFS) OpenAppend(n string) (vfs.File, error) { return p.wrap(p.Mem.OpenAppend(n)) }
func (p *prefetchFS) Open(n string) (vfs.File, error)       { return p.wrap(p.Mem.Open(n)) }

// TestReadAheadOfDroppedSegments: a read of a segment dropped from the page cache asks for the
// bytes after it to be read ahead; a read of a cached one (the active segment) does not.
func TestReadAheadOfDroppedSegments(t *testing.T) {
	pfs := &prefetchFS{dropFS: dropFS{Mem: vfs.NewMem()}}
	cfg := testConfig()
	cfg.FS = pfs
	l := mustOpen(t, "/log", cfg)
	for l.Segments() < 6 {
		appendN(t, l, 1, 3, 0)
	}
	waitNoPending(t, l)
	b, err := l.Read(nil, 0, 256, l.EndOffset())
	if err != nil || len(b) == 0 {
		t.Fatalf("read of the first segment: %d bytes, %v", len(b), err)
	}
	l.mu.RLock()
	first := l.segs[0]
	activeBase := l.active().baseOffset
	l.mu.RUnlock()
	pfs.mu.Lock()
	got := append([]string(nil), pfs.calls...)
	pfs.calls = nil
	pfs.mu.Unlock()
	pos, _, _ := first.seekOffset(&window{f: first.f}, 0)
	var off, n int64
	var path string
	if len(got) == 1 {
		i := strings.LastIndex(got[0], "@")
		path = got[0][:i]
		fmt.Sscanf(got[0][i+1:], "%d+%d", &off, &n)
	}
	if len(got) != 1 || path != first.path || off < pos+int64(len(b)) || n != readAheadBytes {
		t.Fatalf("prefetches after reading %d bytes at %d of a dropped segment: %q, want one of %s after them", len(b), pos, got, first.path)
	}
	if _, err := l.Read(nil, activeBase, 256, l.EndOffset()); err != nil {
		t.Fatal(err)
	}
	pfs.mu.Lock()
	defer pfs.mu.Unlock()
	if len(pfs.calls) != 0 {
		t.Fatalf("a read of the active segment prefetched: %q", pfs.calls)
	}
}
