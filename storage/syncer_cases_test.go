package storage

import (
	"errors"
	"path/filepath"
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

// Regression: TruncateTo (or SaveEntries) to the base of the active segment removes it and leaves the
// previous segment as the active one with sealed and syncPending still set and still in
// l.pending. The next roll appends it to l.pending a second time. unpend then only removes one
// copy and clears syncPending, so syncPendingLocked loops forever under l.mu (Sync, Close and
// every SyncInterval append hang) and the syncer spins.
func TestTruncateToSegmentBaseThenRoll(t *testing.T) {
	mem := vfs.NewMem()
	hfs := newHoldFS(mem, segmentPath("/log", 0, logSuffix))
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
	waitHeld(t, hfs) // the syncer is inside the fsync of segment 0, which is still pending
	base := l.EndOffset()
	if err := l.TruncateTo(base); err != nil { // no-op: off == end
		t.Fatal(err)
	}
	l.mu.RLock()
	s1 := l.segs[1].baseOffset
	l.mu.RUnlock()
	if err := l.TruncateTo(s1); err != nil { // a diverged follower cuts back to the segment boundary
		t.Fatal(err)
	}
	for l.Segments() < 2 { // segment 0 is full: the next append rolls it again
		appendN(t, l, 1, 3, 0)
	}
	l.mu.RLock()
	npending := len(l.pending)
	l.mu.RUnlock()
	t.Logf("pending after re-roll: %d (segment 0 twice)", npending)
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
	hfs := newHoldFS(mem, segmentPath("/log", 0, logSuffix))
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
	mem := vfs.NewMem()
	hfs := newHoldFS(mem, segmentPath("/log", 0, logSuffix))
	hfs.err = errors.New("EIO")
	cfg := testConfig()
	cfg.FS = hfs
	l, err := Open("/log", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	hfs.arm()
	for l.Segments() < 2 {
		appendN(t, l, 1, 3, 0)
	}
	waitHeld(t, hfs)
	if err := l.TruncateTo(9); err != nil {
		t.Fatal(err)
	}
	close(hfs.release)
	time.Sleep(100 * time.Millisecond)
	l.mu.RLock()
	failed := l.failed
	l.mu.RUnlock()
	if failed == nil {
		t.Fatal("the syncer's failed fsync of segment 0 was ignored; the log still takes writes")
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
	hfs := newHoldFS(mem, segmentPath("/log", 0, logSuffix))
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
	names, _ := crashed.List("/log")
	var idx []string
	for _, n := range names {
		if strings.HasPrefix(n, filepath.Base(segmentPath("/log", 0, ""))) && n != filepath.Base(seg0) {
			idx = append(idx, n)
		}
	}
	if l2.Segments() != 1 {
		t.Fatalf("%d segments after the cut, want 1", l2.Segments())
	}
	t.Logf("after the cut, active segment 0 has on disk: %v", idx)
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

// Concern: a sealed segment whose index files are gone (lost or deleted; the docs say a missing
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
