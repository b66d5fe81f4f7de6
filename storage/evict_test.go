package storage

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/weirhq/weir/storage/vfs"
)

// evictFS records the Evict calls on its files (and, through prefetchFS, their Prefetch calls).
type evictFS struct {
	prefetchFS
	emu     sync.Mutex
	evicted [][2]int64 // off, n
}

type evictFile struct {
	prefetchFile
	e *evictFS
}

func (f evictFile) Evict(off, n int64) error {
	fs := f.e
	fs.emu.Lock()
	defer fs.emu.Unlock()
	fs.evicted = append(fs.evicted, [2]int64{off, n})
	return nil
}

func newEvictFS() *evictFS {
	return &evictFS{prefetchFS: prefetchFS{dropFS: dropFS{Mem: vfs.NewMem()}}}
}

func (e *evictFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return evictFile{prefetchFile{File: f, fs: &e.prefetchFS}, e}, nil
}
func (e *evictFS) Create(n string) (vfs.File, error)     { return e.wrap(e.Mem.Create(n)) }
func (e *evictFS) OpenAppend(n string) (vfs.File, error) { return e.wrap(e.Mem.OpenAppend(n)) }
func (e *evictFS) Open(n string) (vfs.File, error)       { return e.wrap(e.Mem.Open(n)) }

func (e *evictFS) calls() [][2]int64 {
	e.emu.Lock()
	defer e.emu.Unlock()
	return append([][2]int64(nil), e.evicted...)
}

// appendBig appends n batches of one record with a value of size bytes.
func appendBig(t testing.TB, l *Log, n, size int) {
	t.Helper()
	b := NewBatchBuilder()
	v := bytes.Repeat([]byte{'x'}, size)
	for i := 0; i < n; i++ {
		b.Reset()
		if err := b.Add(Record{Value: v, Timestamp: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Append(b.Build()); err != nil {
			t.Fatal(err)
		}
	}
}

// waitEvictedTo waits until the active segment was evicted up to want.
func waitEvictedTo(t *testing.T, l *Log, want int64) {
	t.Helper()
	for start := time.Now(); ; time.Sleep(time.Millisecond) {
		l.mu.RLock()
		got := l.active().evictedTo
		l.mu.RUnlock()
		if got == want {
			return
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("active segment evicted to %d, want %d", got, want)
		}
	}
}

// TestEvictBehindActiveSegment: with DropCache, the active segment's data older than its newest
// CachedTailBytes is evicted in whole EvictSteps, each byte once and in order, under every sync
// policy; without DropCache nothing is. After a truncation the eviction resumes from the cut.
func TestEvictBehindActiveSegment(t *testing.T) {
	for _, sync := range []SyncMode{SyncNever, SyncInterval, SyncAlways} {
		for _, drop := range []bool{true, false} {
			t.Run(fmt.Sprintf("%v/drop=%v", sync, drop), func(t *testing.T) {
				efs := newEvictFS()
				cfg := testConfig()
				cfg.FS, cfg.Sync, cfg.DropCache = efs, sync, drop
				cfg.SegmentBytes = 1 << 30
				l := mustOpen(t, "/log", cfg)
				appendBig(t, l, 100, 256<<10) // 25 MiB
				size := l.Size()
				want := (size - CachedTailBytes) / EvictStep * EvictStep
				if !drop {
					time.Sleep(50 * time.Millisecond)
					if c := efs.calls(); len(c) != 0 {
						t.Fatalf("without DropCache: evicted %v", c)
					}
					return
				}
				waitEvictedTo(t, l, want)
				var at int64
				for _, c := range efs.calls() {
					if c[0] != at || c[1]%EvictStep != 0 || c[1] <= 0 {
						t.Fatalf("evictions %v: want contiguous whole steps from 0", efs.calls())
					}
					at += c[1]
				}
				if at != want || size-at < CachedTailBytes {
					t.Fatalf("evicted [0, %d) of %d bytes, want [0, %d)", at, size, want)
				}

				// A read below the evicted mark asks for read-ahead; one in the cached tail does not.
				efs.prefetchFS.mu.Lock()
				efs.prefetchFS.calls = nil
				efs.prefetchFS.mu.Unlock()
				if _, err := l.Read(nil, 0, 1<<10, l.EndOffset()); err != nil {
					t.Fatal(err)
				}
				if _, err := l.Read(nil, l.EndOffset()-1, 1<<10, l.EndOffset()); err != nil {
					t.Fatal(err)
				}
				efs.prefetchFS.mu.Lock()
				pre := append([]string(nil), efs.prefetchFS.calls...)
				efs.prefetchFS.mu.Unlock()
				if len(pre) != 1 {
					t.Fatalf("prefetches after a read of evicted data and one of the tail: %q, want one", pre)
				}

				// Cut the log back into the evicted part: eviction starts again from the cut.
				if err := l.TruncateTo(10); err != nil {
					t.Fatal(err)
				}
				l.mu.RLock()
				cut := l.active().size
				evicted := l.active().evictedTo
				l.mu.RUnlock()
				if evicted > cut {
					t.Fatalf("after truncating to %d bytes, evicted mark at %d", cut, evicted)
				}
				n := len(efs.calls())
				appendBig(t, l, 100, 256<<10)
				size = l.Size()
				waitEvictedTo(t, l, (size-CachedTailBytes)/EvictStep*EvictStep)
				if c := efs.calls()[n]; c[0] != evicted {
					t.Fatalf("first eviction after the truncation at %d, want at %d", c[0], evicted)
				}
			})
		}
	}
}
