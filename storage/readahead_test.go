package storage

import (
	"fmt"
	"strings"
	"testing"

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
