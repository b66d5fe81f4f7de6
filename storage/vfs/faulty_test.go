package vfs

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// never is an Injector that fails nothing but counts what it is asked, to check that Faulty asks.
type never struct {
	mu   sync.Mutex
	seen map[Op]int
}

func (n *never) Inject(op Op, name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.seen == nil {
		n.seen = make(map[Op]int)
	}
	n.seen[op]++
	return nil
}

func TestFaultyContract(t *testing.T) {
	for _, tc := range []struct {
		name  string
		inner FS
		dir   string
	}{
		{"OS", OS, t.TempDir()},
		{"Mem", NewMem(), "/data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inj := &never{}
			testFSContract(t, NewFaulty(tc.inner, inj), tc.dir)
			for op := OpCreate; op <= OpStat; op++ {
				if inj.seen[op] == 0 {
					t.Errorf("the injector was never asked about %v", op)
				}
			}
		})
	}
	t.Run("nil injector", func(t *testing.T) { testFSContract(t, NewFaulty(NewMem(), nil), "/") })
}

func TestFaultyConcurrentReadAt(t *testing.T) {
	testConcurrentReadAt(t, NewFaulty(NewMem(), Random(nil, 0, nil)), "log")
}

func TestOpString(t *testing.T) {
	for op, want := range map[Op]string{OpCreate: "create", OpSyncDir: "syncdir", OpStat: "stat", 99: "Op(99)"} {
		if got := op.String(); got != want {
			t.Errorf("Op(%d).String() = %q, want %q", int(op), got, want)
		}
	}
}

// faultyMem returns a Faulty over a Mem with the directory /d.
func faultyMem(t *testing.T, inj Injector) (*Faulty, *Mem) {
	t.Helper()
	m := NewMem()
	if err := m.MkdirAll("/d"); err != nil {
		t.Fatal(err)
	}
	return NewFaulty(m, inj), m
}

func TestFaultyShortWrite(t *testing.T) {
	for _, tc := range []struct {
		data  string
		wantN int
	}{
		{"0123456789", 5},
		{"0123456", 3},
		{"0", 0},
		{"", 0},
	} {
		fsys, m := faultyMem(t, FailAfter(1, ErrNoSpace, OpWrite))
		f, err := fsys.Create("/d/f")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("ok|")); err != nil {
			t.Fatal(err)
		}
		n, err := f.Write([]byte(tc.data))
		if n != tc.wantN || !errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("failed Write(%q) = %d, %v; want %d, ENOSPC", tc.data, n, err, tc.wantN)
		}
		if got, want := mustRead(t, m, "/d/f"), "ok|"+tc.data[:tc.wantN]; got != want {
			t.Errorf("after short write of %q the file holds %q, want %q", tc.data, got, want)
		}
		if err != nil && !strings.Contains(err.Error(), "write /d/f") {
			t.Errorf("error %q does not name the operation and file", err)
		}
	}
}

func TestFaultyFailedOpsDoNothing(t *testing.T) {
	// The injector fails everything on /d/fail and /d/dir once armed.
	var armed atomic.Bool
	fsys, m := faultyMem(t, InjectorFunc(func(op Op, name string) error {
		if armed.Load() && (name == "/d/fail" || name == "/d/dir") {
			return ErrInjected
		}
		return nil
	}))
	if err := m.WriteFile("/d/fail", []byte("synced")); err != nil {
		t.Fatal(err)
	}
	ff, err := fsys.OpenAppend("/d/fail")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ff.Write([]byte("unsynced")); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)

	injected := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrInjected) {
			t.Errorf("%s: %v, want ErrInjected", what, err)
		}
	}
	injected("Create", second(fsys.Create("/d/fail")))
	injected("Open", second(fsys.Open("/d/fail")))
	injected("OpenAppend", second(fsys.OpenAppend("/d/fail")))
	injected("Remove", fsys.Remove("/d/fail"))
	injected("Rename", fsys.Rename("/d/fail", "/d/other"))
	injected("MkdirAll", fsys.MkdirAll("/d/dir"))
	injected("List", second(fsys.List("/d/dir")))
	injected("Stat", second(fsys.Stat("/d/fail")))
	injected("SyncDir", fsys.SyncDir("/d/dir"))
	injected("Sync", ff.Sync())
	injected("Truncate", ff.Truncate(0))
	injected("ReadAt", second(ff.ReadAt(make([]byte, 1), 0)))
	injected("Size", second(ff.Size()))
	injected("Close", ff.Close())

	if got := mustRead(t, m, "/d/fail"); got != "syncedunsynced" {
		t.Errorf("failed operations changed the file to %q", got)
	}
	if got := mustRead(t, m.Crash(nil), "/d/fail"); got != "synced" {
		t.Errorf("a failed Sync synced: crash left %q", got)
	}
	if names, _ := m.List("/d"); len(names) != 1 {
		t.Errorf("failed operations changed the directory to %q", names)
	}
	// A failed Close still closes, so nothing leaks.
	if _, err := ff.(*faultyFile).inner.Write([]byte("x")); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Write after failed Close: %v, want fs.ErrClosed", err)
	}
}

func TestFailAfter(t *testing.T) {
	for _, tc := range []struct {
		name      string
		inj       *Countdown
		ops       []Op
		wantFails []bool
		wantCount int
	}{{
		name:      "writes only",
		inj:       FailAfter(2, nil, OpWrite),
		ops:       []Op{OpWrite, OpSync, OpWrite, OpCreate, OpWrite, OpWrite},
		wantFails: []bool{false, false, false, false, true, true},
		wantCount: 4,
	}, {
		name:      "mutating by default",
		inj:       FailAfter(3, nil),
		ops:       []Op{OpOpen, OpCreate, OpRead, OpWrite, OpStat, OpList, OpClose, OpSync, OpRename, OpSyncDir},
		wantFails: []bool{false, false, false, false, false, false, false, false, true, true},
		wantCount: 5,
	}, {
		name:      "at once",
		inj:       FailAfter(0, nil, OpSync, OpSyncDir),
		ops:       []Op{OpWrite, OpSyncDir, OpSync},
		wantFails: []bool{false, true, true},
		wantCount: 2,
	}, {
		name:      "once",
		inj:       FailOnce(1, nil, OpWrite),
		ops:       []Op{OpWrite, OpSync, OpWrite, OpWrite, OpWrite},
		wantFails: []bool{false, false, true, false, false},
		wantCount: 4,
	}, {
		name:      "never reached",
		inj:       FailAfter(5, nil),
		ops:       []Op{OpWrite, OpWrite, OpRead},
		wantFails: []bool{false, false, false},
		wantCount: 2,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			fired := false
			for i, op := range tc.ops {
				err := tc.inj.Inject(op, "f")
				if (err != nil) != tc.wantFails[i] || (err != nil && !errors.Is(err, ErrInjected)) {
					t.Errorf("op %d (%v): error %v, want failure %v", i, op, err, tc.wantFails[i])
				}
				fired = fired || err != nil
			}
			if got := tc.inj.Count(); got != tc.wantCount {
				t.Errorf("Count() = %d, want %d", got, tc.wantCount)
			}
			if got := tc.inj.Fired(); got != fired {
				t.Errorf("Fired() = %v, want %v", got, fired)
			}
		})
	}
}

func TestFailAfterThroughFaulty(t *testing.T) {
	inj := FailAfter(2, ErrNoSpace)
	fsys, m := faultyMem(t, inj)
	f, err := fsys.Create("/d/f") // 1
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("abcd")); err != nil { // 2
		t.Fatal(err)
	}
	if n, err := f.Write([]byte("efgh")); n != 2 || !errors.Is(err, syscall.ENOSPC) { // 3
		t.Errorf("third op: Write = %d, %v, want 2, ENOSPC", n, err)
	}
	if _, err := fsys.Stat("/d/f"); err != nil { // not counted
		t.Errorf("Stat failed: %v", err)
	}
	if err := f.Sync(); !errors.Is(err, syscall.ENOSPC) { // 4
		t.Errorf("Sync after the countdown: %v, want ENOSPC", err)
	}
	if !inj.Fired() || inj.Count() != 4 {
		t.Errorf("Fired() = %v, Count() = %d, want true, 4", inj.Fired(), inj.Count())
	}
	if got := mustRead(t, m, "/d/f"); got != "abcdef" {
		t.Errorf("file holds %q, want %q", got, "abcdef")
	}
}

func TestCountdownConcurrent(t *testing.T) {
	const goroutines, each, n = 8, 100, 250
	inj := FailAfter(n, nil, OpWrite)
	var mu sync.Mutex
	failed := 0
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range each {
				if inj.Inject(OpWrite, "f") != nil {
					mu.Lock()
					failed++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if inj.Count() != goroutines*each || failed != goroutines*each-n {
		t.Errorf("Count() = %d, failed %d; want %d, %d", inj.Count(), failed, goroutines*each, goroutines*each-n)
	}
}

func TestRandom(t *testing.T) {
	for _, tc := range []struct {
		p        float64
		min, max int // failures out of 1000
	}{
		{0, 0, 0},
		{1, 1000, 1000},
		{0.5, 400, 600},
	} {
		inj := Random(rand.New(rand.NewPCG(7, 7)), tc.p, ErrNoSpace, OpWrite, OpSync)
		failed := 0
		for i := range 1000 {
			op := OpWrite
			if i%2 == 1 {
				op = OpSync
			}
			if err := inj.Inject(op, "f"); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Errorf("p=%v: error %v, want ENOSPC", tc.p, err)
				}
				failed++
			}
			if err := inj.Inject(OpCreate, "f"); err != nil {
				t.Errorf("p=%v: failed an op not in the list: %v", tc.p, err)
			}
		}
		if failed < tc.min || failed > tc.max {
			t.Errorf("p=%v: %d of 1000 failed, want %d to %d", tc.p, failed, tc.min, tc.max)
		}
		if inj.Count() != 1000 || inj.Fired() != (failed > 0) {
			t.Errorf("p=%v: Count() = %d, Fired() = %v", tc.p, inj.Count(), inj.Fired())
		}
	}
}

func TestErrNoSpace(t *testing.T) {
	if !errors.Is(ErrNoSpace, syscall.ENOSPC) {
		t.Error("ErrNoSpace is not syscall.ENOSPC")
	}
	if errors.Is(ErrInjected, syscall.ENOSPC) || errors.Is(ErrNoSpace, ErrInjected) {
		t.Error("ErrInjected and ErrNoSpace are confused")
	}
	fsys, _ := faultyMem(t, FailAfter(0, ErrNoSpace, OpCreate))
	_, err := fsys.Create("/d/f")
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "create /d/f") {
		t.Errorf("Create = %v, want ENOSPC naming the operation and file", err)
	}
}
