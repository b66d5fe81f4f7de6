// Package vfs is the filesystem seam under storage: every byte the log reads or writes goes through
// the FS and File interfaces here, so tests can swap the operating system for an in-memory
// filesystem that models what survives a crash (Mem) or for one that injects faults (Faulty).
//
// The contract is deliberately small. Files are written by appending only: Write always adds at the
// end of the file, also after Truncate. Reads are positional (ReadAt) and safe to run concurrently
// with one writer. Data is durable only after File.Sync returns nil; a new, renamed or removed
// directory entry is durable only after SyncDir of its directory returns nil.
//
// Implementations are safe for use by several goroutines, but one File is written by one goroutine
// at a time.
package vfs

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// File is an open file. Write appends; ReadAt reads at an absolute position.
type File interface {
	io.Writer
	io.ReaderAt
	io.Closer
	// Sync makes everything written so far durable.
	Sync() error
	// Truncate cuts the file to size bytes; later writes append after that.
	Truncate(size int64) error
	// Size is the current length of the file, written but maybe not yet synced bytes included.
	Size() (int64, error)
	// Name is the path the file was opened with.
	Name() string
}

// FS is a filesystem. Paths are ordinary OS-style paths.
type FS interface {
	// Create creates name, or truncates it if it exists, and opens it for reading and appending.
	Create(name string) (File, error)
	// OpenAppend opens an existing file for reading and appending.
	OpenAppend(name string) (File, error)
	// Open opens an existing file read-only; Write, Truncate and Sync on it fail.
	Open(name string) (File, error)
	// Remove removes a file or an empty directory.
	Remove(name string) error
	// Rename renames oldname to newname, replacing newname if it exists.
	Rename(oldname, newname string) error
	// MkdirAll creates dir and any missing parents.
	MkdirAll(dir string) error
	// List returns the names (not paths) of the entries in dir, sorted.
	List(dir string) ([]string, error)
	// Stat reports whether name exists and its size. A missing file returns an error for which
	// errors.Is(err, fs.ErrNotExist) holds.
	Stat(name string) (size int64, err error)
	// SyncDir makes the directory's entries (creations, renames, removals) durable.
	SyncDir(dir string) error
}

// CacheDropper is an FS that can ask the operating system to drop a file's pages from its page
// cache. Only clean pages go; it never loses data.
type CacheDropper interface {
	DropCache(name string) error
}

// DropCache asks fsys to drop the file name's pages from the page cache, if it can; it does
// nothing for an FS that cannot.
func DropCache(fsys FS, name string) error {
	if d, ok := fsys.(CacheDropper); ok {
		return d.DropCache(name)
	}
	return nil
}

// Prefetcher is a File that can ask the operating system to read a range into the page cache
// ahead of the reads that will want it.
type Prefetcher interface {
	Prefetch(off, n int64) error
}

// Prefetch asks f to read [off, off+n) ahead, if it can; it is advice and may do nothing.
func Prefetch(f File, off, n int64) error {
	if p, ok := f.(Prefetcher); ok {
		return p.Prefetch(off, n)
	}
	return nil
}

// Evicter is a File that can write a range of itself back to the disk and then drop it from the
// page cache, so that a file written at a steady rate does not grow the page cache (or the
// kernel's dirty pages) by every byte. It makes nothing durable: Sync does.
type Evicter interface {
	Evict(off, n int64) error
}

// Evict asks f to write [off, off+n) back and drop it from the page cache, if it can; it does
// nothing for a File that cannot. Only written-back pages are dropped: it never loses data. An
// error other than errors.ErrUnsupported is a failed writeback, which the File's next Sync may
// not report again: treat it as a failed Sync.
func Evict(f File, off, n int64) error {
	if e, ok := f.(Evicter); ok {
		return e.Evict(off, n)
	}
	return nil
}

// ErrLocked is the error of Lock when another holder has the lock.
var ErrLocked = errors.New("locked by another holder")

// Locker is an FS that can lock a file exclusively against other holders, in this process or
// another: a directory's owner keeps a lock file to keep a second owner out. A lock held by a
// process goes when the process does.
type Locker interface {
	// Lock takes the lock of the file name, creating the file if needed; it fails at once with
	// an error for which errors.Is(err, ErrLocked) holds when someone else has it.
	Lock(name string) (release func() error, err error)
}

// Lock takes the lock of name on fsys, or does nothing for an FS that has no locks.
func Lock(fsys FS, name string) (release func() error, err error) {
	if l, ok := fsys.(Locker); ok {
		return l.Lock(name)
	}
	return func() error { return nil }, nil
}

// OS is the FS of the operating system.
var OS FS = osFS{}

type osFS struct{}

type osFile struct{ *os.File }

func (f osFile) Size() (int64, error) {
	st, err := f.File.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func (osFS) Create(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) OpenAppend(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) Open(name string) (File, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) Remove(name string) error             { return os.Remove(name) }
func (osFS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }
func (osFS) MkdirAll(dir string) error            { return os.MkdirAll(dir, 0o755) }

func (osFS) List(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, nil
}

func (osFS) Stat(name string) (int64, error) {
	st, err := os.Stat(name)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(filepath.Clean(dir))
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
