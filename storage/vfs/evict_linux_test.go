package vfs

import (
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// resident counts the pages of [off, off+n) of the file that are in the page cache.
func resident(t *testing.T, path string, off, n int64) (in, pages int) {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	m, err := unix.Mmap(fd, off, int(n), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+unix.Getpagesize()-1)/unix.Getpagesize())
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	for _, v := range vec {
		if v&1 != 0 {
			in++
		}
	}
	return in, len(vec)
}

// TestEvictDropsPages: on the real filesystem, Evict writes a written range back and drops it
// from the page cache, and leaves the rest of the file cached.
func TestEvictDropsPages(t *testing.T) {
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type == unix.TMPFS_MAGIC {
		t.Skip("the test directory is on tmpfs, whose pages are the file and cannot be dropped")
	}
	path := filepath.Join(dir, "f")
	f, err := OS.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const mib = 1 << 20
	buf := make([]byte, mib)
	for i := range buf {
		buf[i] = byte(i)
	}
	for i := 0; i < 8; i++ {
		if _, err := f.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	if in, n := resident(t, path, 0, 8*mib); in < n*9/10 {
		t.Skipf("only %d of %d just-written pages are in the page cache: nothing to measure", in, n)
	}
	if err := Evict(f, 0, 4*mib); err != nil {
		t.Fatal(err)
	}
	if in, n := resident(t, path, 0, 4*mib); in > n/10 {
		t.Fatalf("%d of the %d evicted pages are still in the page cache", in, n)
	}
	if in, n := resident(t, path, 4*mib, 4*mib); in < n*9/10 {
		t.Fatalf("only %d of the %d pages after the evicted range are in the page cache", in, n)
	}
	got := make([]byte, mib)
	if _, err := f.ReadAt(got, 3*mib); err != nil || got[12345] != buf[12345] {
		t.Fatalf("read back of evicted data: %v", err)
	}
}
