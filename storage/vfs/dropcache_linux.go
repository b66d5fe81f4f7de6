package vfs

import (
	"errors"
	"fmt"
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
	return f.control(func(fd int) error { return unix.Fadvise(fd, off, n, unix.FADV_WILLNEED) })
}

// control runs op on the file's descriptor, which stays open meanwhile: a concurrent Close
// cannot hand its number to another file in the middle.
func (f osFile) control(op func(fd int) error) error {
	rc, err := f.File.SyscallConn()
	if err != nil {
		return err
	}
	if cerr := rc.Control(func(fd uintptr) { err = op(int(fd)) }); cerr != nil {
		return cerr
	}
	return err
}

// Evict writes [off, off+n) back to the disk (sync_file_range), waits for that, and drops the
// range from the page cache (POSIX_FADV_DONTNEED). It makes nothing durable: no metadata is
// written and the disk's cache is not flushed. A writeback error is reported here and, for
// this open file, not again by its next Sync. A filesystem or file that cannot do it gives an
// error for which errors.Is(err, errors.ErrUnsupported) holds.
func (f osFile) Evict(off, n int64) error {
	err := f.control(func(fd int) error {
		if err := unix.SyncFileRange(fd, off, n,
			unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER); err != nil {
			return fmt.Errorf("sync_file_range %s: %w", f.Name(), err)
		}
		if err := unix.Fadvise(fd, off, n, unix.FADV_DONTNEED); err != nil {
			return fmt.Errorf("fadvise %s: %w", f.Name(), err)
		}
		return nil
	})
	for _, e := range []error{unix.ENOSYS, unix.EINVAL, unix.EOPNOTSUPP, unix.ESPIPE} {
		if errors.Is(err, e) {
			return fmt.Errorf("%w: %w", errors.ErrUnsupported, err)
		}
	}
	return err
}
