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

// Evict writes [off, off+n) back to the disk (sync_file_range), waits for that, and drops the
// range from the page cache (POSIX_FADV_DONTNEED). It makes nothing durable: no metadata is
// written and the disk's cache is not flushed.
func (f osFile) Evict(off, n int64) error {
	rc, err := f.File.SyscallConn()
	if err != nil {
		return err
	}
	// Control keeps the descriptor open while it runs, so a concurrent Close cannot hand its
	// number to another file in the middle.
	cerr := rc.Control(func(fd uintptr) {
		err = unix.SyncFileRange(int(fd), off, n,
			unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
		if err == nil {
			err = unix.Fadvise(int(fd), off, n, unix.FADV_DONTNEED)
		}
	})
	if cerr != nil {
		return cerr
	}
	return err
}
