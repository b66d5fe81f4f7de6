package vfs

import (
	"os"

	"golang.org/x/sys/unix"
)

// DropCache advises the kernel that the file's cached pages are not needed
// (posix_fadvise POSIX_FADV_DONTNEED): clean pages are freed, dirty ones are written back first.
func (osFS) DropCache(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// Prefetch starts reading [off, off+n) into the page cache (posix_fadvise POSIX_FADV_WILLNEED).
func (f osFile) Prefetch(off, n int64) error {
	return unix.Fadvise(int(f.Fd()), off, n, unix.FADV_WILLNEED)
}
