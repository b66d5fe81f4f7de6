package storage

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirhq/weir/storage/vfs"
)

// dirGateFS wraps a Mem; while closed, SyncDir waits until the gate opens.
type dirGateFS struct {
	*vfs.Mem
	mu     sync.Mutex
	closed bool
	open   chan struct{}
}

func (g *dirGateFS) close() {
	g.mu.Lock()
	g.closed, g.open = true, make(chan struct{})
	g.mu.Unlock()
}

func (g *dirGateFS) reopen() {
	g.mu.Lock()
	if g.closed {
		g.closed = false
		close(g.open)
	}
	g.mu.Unlock()
}

func (g *dirGateFS) SyncDir(dir string) error {
	g.mu.Lock()
	closed, open := g.closed, g.open
	g.mu.Unlock()
	if closed {
		<-open
	}
	return g.Mem.SyncDir(dir)
}

// TestRollLeavesSyncsToTheSyncer: under SyncNever and SyncInterval, appends roll segments while
// the directory's fsync is held up: the new segment's header and directory entry are the
// syncer's to make durable, and once it has, a machine crash keeps every segment. Under
// SyncAlways the roll itself makes them durable, so the appends wait.
func TestRollLeavesSyncsToTheSyncer(t *testing.T) {
	for _, sync := range []SyncMode{SyncNever, SyncInterval, SyncAlways} {
		t.Run(sync.String(), func(t *testing.T) {
			gfs := &dirGateFS{Mem: vfs.NewMem()}
			cfg := testConfig()
			cfg.FS, cfg.Sync, cfg.DropCache = gfs, sync, false
			l := mustOpen(t, "/log", cfg)
			gfs.close()
			done := make(chan struct{})
			go func() {
				defer close(done)
				for l.Segments() < 4 {
					appendN(t, l, 1, 3, 0)
				}
			}()
			select {
			case <-done:
				if sync == SyncAlways {
					t.Fatal("SyncAlways: segments rolled without a directory fsync")
				}
			case <-time.After(time.Second):
				if sync != SyncAlways {
					gfs.reopen()
					<-done
					t.Fatalf("%v: appends that roll wait for the directory's fsync", sync)
				}
			}
			gfs.reopen()
			<-done
			waitNoPending(t, l)
			segs, end := l.Segments(), l.EndOffset()
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			crashed := gfs.Mem.Crash(nil)
			l2, err := Open("/log", func() Config { c := cfg; c.FS = crashed; return c }())
			if err != nil {
				t.Fatal(err)
			}
			defer l2.Close()
			if l2.Segments() != segs || l2.EndOffset() != end {
				t.Fatalf("after a machine crash: %d segments ending at %d, want %d ending at %d", l2.Segments(), l2.EndOffset(), segs, end)
			}
		})
	}
}

// TestRecoverTornRollHeader: a segment whose header is zeros after a sealed segment without index
// files (its roll left the header unsynced, and a machine crash lost it) is removed on open,
// with the segments after it; after a sealed segment with index files the same damage is
// corruption, and so is a header of other bytes (not what a lost write leaves) anywhere.
func TestRecoverTornRollHeader(t *testing.T) {
	for _, c := range []struct {
		synced bool
		fill   byte
	}{{false, 0}, {true, 0}, {false, 0xa5}} {
		synced, fill := c.synced, c.fill
		corrupt := synced || fill != 0
		mem := vfs.NewMem()
		cfg := testConfig()
		cfg.FS = mem
		l := mustOpen(t, "/log", cfg)
		for l.Segments() < 4 {
			appendN(t, l, 1, 3, 0)
		}
		waitNoPending(t, l)
		l.mu.RLock()
		bases := []int64{l.segs[0].baseOffset, l.segs[1].baseOffset, l.segs[2].baseOffset}
		want := l.segs[0].nextOffset
		l.mu.RUnlock()
		disk := mem.Clone()
		l.Close()
		// Segment 0 sealed; segment 1 with a lost header; segments 2 and 3 after it.
		if !synced {
			for _, b := range bases {
				for _, suffix := range []string{indexSuffix, timeIndexSuffix} {
					if err := disk.Remove(segmentPath("/log", b, suffix)); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		if err := disk.Corrupt(segmentPath("/log", bases[1], logSuffix), 0, bytes.Repeat([]byte{fill}, segmentHeaderSize)); err != nil {
			t.Fatal(err)
		}
		c := cfg
		c.FS = disk
		l2, err := Open("/log", c)
		if corrupt {
			var ce *CorruptError
			if !errors.As(err, &ce) {
				if err == nil {
					l2.Close()
				}
				t.Fatalf("header of %#x bytes, previous segment synced %v: open gave %v, want a CorruptError", fill, synced, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("header lost after an unsynced roll: %v", err)
		}
		if l2.Segments() != 1 || l2.EndOffset() != want {
			t.Fatalf("after a lost header: %d segments ending at %d, want 1 ending at %d", l2.Segments(), l2.EndOffset(), want)
		}
		names, _ := disk.List("/log")
		var logs []string
		for _, n := range names {
			if strings.HasSuffix(n, logSuffix) {
				logs = append(logs, n)
			}
		}
		if len(logs) != 1 {
			t.Fatalf("segment files %q: want only the first (the torn ones removed)", logs)
		}
		appendN(t, l2, 1, 3, 0) // the log goes on from there
		l2.Close()
	}
}
