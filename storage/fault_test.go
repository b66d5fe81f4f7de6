package storage

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"

	"github.com/weirhq/weir/storage/vfs"
)

// faultWorkload appends batches to a log on fs until an error, with rolls, retention and
// DeleteBefore along the way. It returns the end offset that had been acknowledged: every append
// that returned nil under SyncAlways, which must survive any crash after it.
func faultWorkload(fs vfs.FS, dir string) (acked int64, err error) {
	cfg := testConfig()
	cfg.FS = fs
	cfg.Sync = SyncAlways
	cfg.SegmentBytes = 4096
	cfg.RetentionBytes = 16 << 10
	l, err := Open(dir, cfg)
	if err != nil {
		return 0, err
	}
	defer l.Close()
	acked = l.EndOffset()
	b := NewBatchBuilder()
	for i := 0; i < 80; i++ {
		b.Reset()
		next := l.EndOffset()
		for j := int64(0); j < 4; j++ {
			b.Add(Record{Value: []byte(fmt.Sprintf("v%d", next+j)), Timestamp: next + j})
		}
		if _, err := l.Append(b.Build()); err != nil {
			return acked, err
		}
		acked = l.EndOffset()
		switch i % 20 {
		case 9:
			if _, err := l.ApplyRetention(); err != nil {
				return acked, err
			}
		case 19:
			if err := l.DeleteBefore(l.StartOffset() + 2); err != nil {
				return acked, err
			}
		}
	}
	return acked, l.Close()
}

// checkPrefix reopens a crashed filesystem with no faults and checks that the log holds the
// records of the workload, dense and intact from its start, up to at least acked.
func checkPrefix(t *testing.T, fs vfs.FS, dir string, acked int64, what string) {
	t.Helper()
	cfg := testConfig()
	cfg.FS = fs
	l, err := Open(dir, cfg)
	if err != nil {
		t.Fatalf("%s: reopen after crash: %v", what, err)
	}
	defer func() { l.Close() }()
	if end := l.EndOffset(); end < acked {
		t.Fatalf("%s: log ends at %d, but %d was acknowledged", what, end, acked)
	}
	if n := readAll(t, l, l.StartOffset()); n != l.EndOffset()-l.StartOffset() {
		t.Fatalf("%s: read %d records of [%d, %d)", what, n, l.StartOffset(), l.EndOffset())
	}
	// The reopened log takes writes again, and they read back after another reopen.
	appendN(t, l, 2, 2, 0)
	end := l.EndOffset()
	if err := l.Close(); err != nil {
		t.Fatalf("%s: close: %v", what, err)
	}
	l, err = Open(dir, cfg)
	if err != nil {
		t.Fatalf("%s: second reopen: %v", what, err)
	}
	if l.EndOffset() != end {
		t.Fatalf("%s: second reopen ends at %d, want %d", what, l.EndOffset(), end)
	}
	if n := readAll(t, l, l.StartOffset()); n != end-l.StartOffset() {
		t.Fatalf("%s: after second reopen read %d records of [%d, %d)", what, n, l.StartOffset(), end)
	}
}

// TestFaultAtEveryStep fails the workload at each mutating filesystem operation in turn, with
// each kind of fault, crashes the machine (dropping or tearing what was not synced) and checks
// that the log reopens to a prefix of what was appended that holds every acknowledged append.
func TestFaultAtEveryStep(t *testing.T) {
	// Count the operations of a fault-free run.
	probe := vfs.FailAfter(1<<30, vfs.ErrInjected)
	if _, err := faultWorkload(vfs.NewFaulty(vfs.NewMem(), probe), "/log"); err != nil {
		t.Fatal(err)
	}
	total := probe.Count()
	if total < 100 {
		t.Fatalf("the workload made only %d mutating operations", total)
	}
	faults := []struct {
		name string
		err  error
		ops  []vfs.Op
	}{
		{"any op fails", vfs.ErrInjected, nil},
		{"disk full", vfs.ErrNoSpace, []vfs.Op{vfs.OpWrite, vfs.OpCreate}},
		{"fsync fails", vfs.ErrInjected, []vfs.Op{vfs.OpSync, vfs.OpSyncDir}},
	}
	step := 1
	if testing.Short() {
		step = 7
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			fired := 0
			for k := 0; k < total; k += step {
				mem := vfs.NewMem()
				inj := vfs.FailAfter(k, f.err, f.ops...)
				acked, err := faultWorkload(vfs.NewFaulty(mem, inj), "/log")
				if !inj.Fired() {
					continue
				}
				fired++
				if err == nil {
					t.Fatalf("k=%d: a fault fired but the workload saw no error", k)
				}
				if errors.Is(f.err, syscall.ENOSPC) && !errors.Is(err, syscall.ENOSPC) && !errors.Is(err, ErrFailed) {
					t.Fatalf("k=%d: disk full reported as %v", k, err)
				}
				what := fmt.Sprintf("k=%d (%v)", k, err)
				checkPrefix(t, mem.Clone(), "/log", acked, what+", process crash")
				checkPrefix(t, mem.Crash(nil), "/log", acked, what+", machine crash")
				for seed := uint64(0); seed < 3; seed++ {
					checkPrefix(t, mem.Crash(rand.New(rand.NewPCG(seed, uint64(k)))), "/log", acked, fmt.Sprintf("%s, torn crash seed %d", what, seed))
				}
			}
			if fired == 0 {
				t.Fatal("no fault fired")
			}
		})
	}
}

// TestFailedSyncStopsWrites: after a failed fsync the log must not take writes, even when the disk
// works again, because the kernel may have dropped pages the log believes written.
func TestFailedSyncStopsWrites(t *testing.T) {
	mem := vfs.NewMem()
	failing := false
	inj := vfs.InjectorFunc(func(op vfs.Op, name string) error {
		if failing && op == vfs.OpSync {
			return vfs.ErrInjected
		}
		return nil
	})
	cfg := testConfig()
	cfg.FS, cfg.Sync = vfs.NewFaulty(mem, inj), SyncAlways
	l, err := Open("/log", cfg)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 3, 2, 0)
	next, _ := EncodeBatch([]Record{{Value: []byte("v6"), Timestamp: 6}})
	failing = true
	if _, err := l.Append(next); err == nil {
		t.Fatal("append succeeded although its fsync failed")
	}
	failing = false
	if _, err := l.Append(next); !errors.Is(err, ErrFailed) {
		t.Fatalf("append after a failed fsync: %v, want ErrFailed", err)
	}
	if err := l.Sync(); !errors.Is(err, ErrFailed) {
		t.Fatalf("sync after a failed fsync: %v, want ErrFailed", err)
	}
	// Reads still work, and reopening recovers.
	if n := readAll(t, l, 0); n < 6 {
		t.Fatalf("read %d", n)
	}
	l.Close()
	checkPrefix(t, mem.Crash(nil), "/log", 6, "after a failed fsync")
}
