package storage

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhq/weir/storage/vfs"
)

// prefetched returns the ranges [off, off+n) asked to be read ahead in path since the last call.
func (p *prefetchFS) prefetched(t *testing.T, path string) [][2]int64 {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	var out [][2]int64
	for _, c := range p.calls {
		i := strings.LastIndex(c, "@")
		if c[:i] != path {
			continue
		}
		var off, n int64
		if _, err := fmt.Sscanf(c[i+1:], "%d+%d", &off, &n); err != nil {
			t.Fatal(err)
		}
		out = append(out, [2]int64{off, n})
	}
	p.calls = nil
	return out
}

// TestReadAheadOncePerHalfWindow: a consumer reading a dropped segment from start to end asks
// the kernel to read each byte ahead once, about once per half window (not at every read, for
// the whole window), and each of its reads ends at least half a window before the end of what was
// asked for. A read elsewhere in the segment asks for its own whole window.
func TestReadAheadOncePerHalfWindow(t *testing.T) {
	pfs := &prefetchFS{dropFS: dropFS{Mem: vfs.NewMem()}}
	cfg := testConfig()
	cfg.FS = pfs
	cfg.SegmentBytes = 3 * readAheadBytes
	l := mustOpen(t, "/log", cfg)
	for l.Segments() < CachedSealedSegments+2 {
		appendBig(t, l, 1, 128<<10)
	}
	waitNoPending(t, l)
	l.mu.RLock()
	first := l.segs[0]
	end, size := first.nextOffset, first.size
	l.mu.RUnlock()
	pfs.prefetched(t, first.path) // the reads of recovery and appends, if any

	const maxBytes = 1 << 20
	var asked [][2]int64
	reads := 0
	for off := first.baseOffset; off < end; reads++ {
		pos, _, err := first.seekOffset(&window{f: first.f}, off)
		if err != nil {
			t.Fatal(err)
		}
		b, err := l.Read(nil, off, maxBytes, l.EndOffset())
		if err != nil {
			t.Fatal(err)
		}
		next, err := DecodeBatches(b, off, func(int64, Record) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		off = next
		asked = append(asked, pfs.prefetched(t, first.path)...)
		readEnd := min(pos+maxBytes, size)
		if len(asked) == 0 {
			t.Fatalf("read %d (to %d) of a dropped segment: nothing read ahead", reads, readEnd)
		}
		last := asked[len(asked)-1]
		if last[0]+last[1] < readEnd+readAheadBytes/2 {
			t.Fatalf("read %d ends at %d, but read ahead only up to %d: %v", reads, readEnd, last[0]+last[1], asked)
		}
	}
	for i := 1; i < len(asked); i++ {
		if prev := asked[i-1]; asked[i][0] != prev[0]+prev[1] {
			t.Fatalf("read-ahead %d starts at %d, want %d (where the one before ended): %v", i, asked[i][0], prev[0]+prev[1], asked)
		}
	}
	if want := int(size/(readAheadBytes/2)) + 1; len(asked) > want {
		t.Fatalf("%d reads of a %d-byte segment asked for read-ahead %d times, want at most %d: %v", reads, size, len(asked), want, asked)
	}

	// Another reader, back at the start: its whole window, whatever the first one asked for.
	pos, _, err := first.seekOffset(&window{f: first.f}, first.baseOffset)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Read(nil, first.baseOffset, maxBytes, l.EndOffset()); err != nil {
		t.Fatal(err)
	}
	got := pfs.prefetched(t, first.path)
	if want := [2]int64{pos + maxBytes, readAheadBytes}; len(got) != 1 || got[0] != want {
		t.Fatalf("a read at the start after the end was read: read ahead %v, want [%v]", got, want)
	}
}

// readDuringDropFS is a prefetchFS that, before the first segment it is asked to drop from the
// page cache is dropped, runs during: a reader reading it meanwhile.
type readDuringDropFS struct {
	prefetchFS
	once   sync.Once
	during func(name string)
}

func (d *readDuringDropFS) DropCache(name string) error {
	d.once.Do(func() { d.during(name) })
	return d.prefetchFS.DropCache(name)
}

// TestReadAheadAfterDropCache: a reader that reads a segment after the log marks it uncached
// but before its pages are dropped (the syncer drops them outside the log's lock) has what it
// asked to be read ahead dropped too: its next read asks again, instead of reading up to half
// a window from disk, one read at a time.
func TestReadAheadAfterDropCache(t *testing.T) {
	var l atomic.Pointer[Log]
	var next atomic.Int64
	read := make(chan error, 1)
	dfs := &readDuringDropFS{prefetchFS: prefetchFS{dropFS: dropFS{Mem: vfs.NewMem()}}}
	dfs.during = func(name string) {
		read <- func() error {
			log := l.Load()
			log.mu.RLock()
			var base int64 = -1
			for _, s := range log.segs {
				if s.path == name {
					base = s.baseOffset
				}
			}
			log.mu.RUnlock()
			if base < 0 {
				return fmt.Errorf("no segment %s", name)
			}
			b, err := log.Read(nil, base, 1<<20, log.EndOffset())
			if err != nil {
				return err
			}
			n, err := DecodeBatches(b, base, func(int64, Record) error { return nil })
			next.Store(n)
			return err
		}()
	}
	cfg := testConfig()
	cfg.FS = dfs
	cfg.SegmentBytes = readAheadBytes + readAheadBytes/2
	log := mustOpen(t, "/log", cfg)
	l.Store(log)
	// Two segments dropped: the syncer is done with the first (it drops one after the other).
	for log.Segments() < CachedSealedSegments+3 {
		appendBig(t, log, 1, 128<<10)
	}
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	var dropped []string
	for start := time.Now(); len(dropped) < 2; time.Sleep(time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("dropped %v, want 2 segments", dropped)
		}
		dfs.dropFS.mu.Lock()
		dropped = append([]string(nil), dfs.dropped...)
		dfs.dropFS.mu.Unlock()
	}
	log.mu.RLock()
	first := log.segs[0]
	log.mu.RUnlock()
	if dropped[0] != first.path {
		t.Fatalf("dropped %v, want %s first", dropped, first.path)
	}
	before := dfs.prefetched(t, first.path)
	if len(before) == 0 {
		t.Fatal("the read during the drop asked for no read-ahead")
	}

	// The read-ahead asked for during the drop was dropped with the rest: the next read asks
	// for its whole window.
	off := next.Load()
	pos, _, err := first.seekOffset(&window{f: first.f}, off)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := log.Read(nil, off, 1<<20, log.EndOffset()); err != nil {
		t.Fatal(err)
	}
	got := dfs.prefetched(t, first.path)
	if want := [2]int64{min(pos+1<<20, first.size), readAheadBytes}; len(got) != 1 || got[0] != want {
		t.Fatalf("the read after the drop (at %d) asked to read ahead %v, want [%v] (during the drop: %v)", pos, got, want, before)
	}
}
