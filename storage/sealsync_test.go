package storage

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/weirhq/weir/storage/vfs"
)

// blockSyncs is an injector that, while armed, holds every fsync of one file until it is
// released, counting the ones it holds.
type blockSyncs struct {
	mu      sync.Mutex
	target  string
	armed   bool
	held    int
	release chan struct{}
}

func (b *blockSyncs) Inject(op vfs.Op, name string) error {
	if op != vfs.OpSync || name != b.target {
		return nil
	}
	b.mu.Lock()
	armed, release := b.armed, b.release
	if armed {
		b.held++
	}
	b.mu.Unlock()
	if armed {
		<-release
	}
	return nil
}

func (b *blockSyncs) heldSyncs() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.held
}

// TestRollDoesNotWaitForSealedSync: under SyncNever, the append that rolls a segment returns
// while the sealed segment's fsync is still in progress, and appends go on meanwhile. Until the
// fsync is done a machine crash may lose the sealed segment's data, and recovery cuts the log
// there instead of reporting corruption; once the syncer wrote the indexes, the sealed segment
// survives a machine crash.
func TestRollDoesNotWaitForSealedSync(t *testing.T) {
	mem := vfs.NewMem()
	inj := &blockSyncs{release: make(chan struct{}), target: segmentPath("/log", 0, logSuffix)}
	cfg := testConfig()
	cfg.FS = vfs.NewFaulty(mem, inj)
	l, err := Open("/log", cfg)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 1, 3, 0)
	inj.mu.Lock()
	inj.armed = true
	inj.mu.Unlock()

	// Should an append wait for the held fsync, the watchdog releases it and the test fails.
	var waited sync.Once
	watchdog := time.AfterFunc(20*time.Second, func() {
		waited.Do(func() { close(inj.release) })
	})
	for l.Segments() < 3 { // two rolls while the first sealed segment's fsync is held
		appendN(t, l, 1, 3, 0)
	}
	if !watchdog.Stop() {
		t.Fatal("appends across a roll waited for the sealed segment's fsync")
	}
	for start := time.Now(); inj.heldSyncs() == 0; time.Sleep(time.Millisecond) {
		if time.Since(start) > 20*time.Second {
			t.Fatal("the syncer never fsynced the sealed segment")
		}
	}
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

	inj.mu.Lock()
	inj.armed = false
	inj.mu.Unlock()
	waited.Do(func() { close(inj.release) })
	deadline := time.Now().Add(20 * time.Second)
	for {
		l.mu.RLock()
		n := len(l.pending)
		l.mu.RUnlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sealed segments still pending after the fsync was released", n)
		}
		time.Sleep(time.Millisecond)
	}
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

func withFS(cfg Config, fs vfs.FS) Config {
	cfg.FS = fs
	return cfg
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
