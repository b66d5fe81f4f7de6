package vfs

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// Mem is an in-memory FS that models what survives a machine crash, for crash tests.
//
// Every file has two contents. The current content is what reads see: it is what the page cache
// of a real machine holds, and it all survives when only the process dies. The durable content is
// what is on the disk: Sync copies the current content to it, and only it is sure to survive a
// machine crash. Crash builds the filesystem that a machine crash leaves behind.
//
// Directory entries are modelled more simply: creating, renaming and removing a file or directory
// is durable at once, and SyncDir only checks that the directory exists. The model is about file
// data, as on a journaling filesystem that orders metadata; crash tests on Mem therefore do not
// catch a missing SyncDir, and code must still call SyncDir wherever the FS contract asks for it.
//
// Mem has no working directory: paths are cleaned with filepath.Clean and then compared as
// strings, so "/a" and "a" are different files. The roots "/" and "." always exist.
//
// Mem is safe for concurrent use. One mutex guards the whole tree and the content of every file,
// which is simple and fast enough for tests.
type Mem struct {
	mu    sync.Mutex
	dirs  map[string]struct{}
	files map[string]*memInode
	locks map[string]bool // names locked with Lock (a crash copy holds none)
}

// Lock takes the lock of name (creating the file if needed) until release.
func (m *Mem) Lock(name string) (func() error, error) {
	if _, err := m.Stat(name); err != nil {
		f, err := m.Create(name)
		if err != nil {
			return nil, err
		}
		f.Close()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.locks[name] {
		return nil, fmt.Errorf("%s: %w", name, ErrLocked)
	}
	if m.locks == nil {
		m.locks = map[string]bool{}
	}
	m.locks[name] = true
	var once sync.Once
	return func() error {
		once.Do(func() {
			m.mu.Lock()
			delete(m.locks, name)
			m.mu.Unlock()
		})
		return nil
	}, nil
}

// memInode is the data of one file. Open files point at it rather than at a name, so, as on a
// POSIX system, an open file stays usable after it is renamed or removed. Its fields are guarded
// by the mutex of the Mem that holds it.
type memInode struct {
	data    []byte // current content
	durable []byte // content that survives a machine crash
	// stable is the length of the prefix of data that is unchanged since the last Sync, so
	// data[:stable] equals durable[:stable]. Writes only append, so only a Truncate below it
	// lowers it; everything in data after it was written since the last Sync.
	stable int
}

// NewMem returns an empty Mem that holds only the roots "/" and ".".
func NewMem() *Mem {
	m := &Mem{dirs: make(map[string]struct{}), files: make(map[string]*memInode)}
	m.dirs[string(filepath.Separator)] = struct{}{}
	m.dirs["."] = struct{}{}
	return m
}

// Crash returns a new Mem holding what a machine crash would leave of m. Every directory and
// directory entry survives (see Mem). Every file keeps its durable content and, after it, a
// prefix of random length, from nothing to everything, of the bytes appended since its last Sync:
// a torn write. If the file was truncated below its durable length since its last Sync, the crash
// either lost the truncation, and so everything after it, keeping the durable content, or kept it,
// keeping the truncated content and a torn prefix of what was appended after it; each with even
// odds. All the content of the new Mem is durable.
//
// With a nil rng nothing that was not synced survives: every file keeps exactly its durable
// content. With the same rng state, Crash of the same Mem gives the same result.
//
// m is left unchanged, and files open on m stay usable on m only.
func (m *Mem) Crash(rng *rand.Rand) *Mem {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.copyDirs()
	// Visit the files in a fixed order, so that the outcome depends on the rng state alone and
	// a failing seed can be replayed.
	names := make([]string, 0, len(m.files))
	for name := range m.files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		data := m.files[name].crashed(rng)
		c.files[name] = &memInode{data: data, durable: bytes.Clone(data), stable: len(data)}
	}
	return c
}

// crashed returns the content a machine crash leaves of ino, as documented at Mem.Crash.
func (ino *memInode) crashed(rng *rand.Rand) []byte {
	if ino.stable < len(ino.durable) && (rng == nil || rng.IntN(2) == 0) {
		return bytes.Clone(ino.durable)
	}
	// Here data[:stable] is either the durable content or a truncation of it.
	n := 0
	if rng != nil {
		n = rng.IntN(len(ino.data) - ino.stable + 1)
	}
	return bytes.Clone(ino.data[:ino.stable+n])
}

// Clone returns an exact copy of m, current and durable content alike, as a restarted process
// sees the filesystem after the old one exited or was killed without the machine crashing: the
// page cache keeps all the current content. A later Crash of the copy can still lose whatever had
// not been synced in m. Files open on m stay usable on m only.
func (m *Mem) Clone() *Mem {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.copyDirs()
	for name, ino := range m.files {
		c.files[name] = &memInode{
			data:    bytes.Clone(ino.data),
			durable: bytes.Clone(ino.durable),
			stable:  ino.stable,
		}
	}
	return c
}

// copyDirs returns a new Mem with the directories of m and no files. The caller holds m.mu.
func (m *Mem) copyDirs() *Mem {
	c := NewMem()
	for dir := range m.dirs {
		c.dirs[dir] = struct{}{}
	}
	return c
}

// ReadFile returns a copy of the current content of the file name.
func (m *Mem) ReadFile(name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, err := m.file(name)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return bytes.Clone(ino.data), nil
}

// WriteFile creates the file name, or replaces the content of an existing one, with data, both
// current and durable: it sets up a file as if it had been written and synced long ago.
func (m *Mem) WriteFile(name string, data []byte) error {
	p := filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, err := m.createInode(p)
	if err != nil {
		return &fs.PathError{Op: "open", Path: name, Err: err}
	}
	ino.data = bytes.Clone(data)
	ino.durable = bytes.Clone(data)
	ino.stable = len(data)
	return nil
}

// Corrupt overwrites the bytes of the file name at off with b, in place and in both the current
// and the durable content, as bit rot on the disk would, seen through a cold page cache. The range
// must lie within the current content; bytes of it beyond the end of the durable content change
// only the current content.
func (m *Mem) Corrupt(name string, off int64, b []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, err := m.file(name)
	if err != nil {
		return &fs.PathError{Op: "corrupt", Path: name, Err: err}
	}
	if off < 0 || off > int64(len(ino.data))-int64(len(b)) {
		return &fs.PathError{Op: "corrupt", Path: name, Err: syscall.EINVAL}
	}
	copy(ino.data[off:], b)
	if off < int64(len(ino.durable)) {
		copy(ino.durable[off:], b)
	}
	return nil
}

// Create creates name, or truncates it if it exists, and opens it for reading and appending.
// Truncating an existing file is, like any Truncate, not durable until Sync.
func (m *Mem) Create(name string) (File, error) {
	p := filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, err := m.createInode(p)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	ino.truncate(0)
	return &memFile{m: m, ino: ino, name: name}, nil
}

// OpenAppend opens an existing file for reading and appending.
func (m *Mem) OpenAppend(name string) (File, error) { return m.open(name, false) }

// Open opens an existing file read-only.
func (m *Mem) Open(name string) (File, error) { return m.open(name, true) }

func (m *Mem) open(name string, readOnly bool) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, err := m.file(name)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return &memFile{m: m, ino: ino, name: name, readOnly: readOnly}, nil
}

// file returns the file name. The caller holds m.mu.
func (m *Mem) file(name string) (*memInode, error) {
	p := filepath.Clean(name)
	if ino, ok := m.files[p]; ok {
		return ino, nil
	}
	if _, ok := m.dirs[p]; ok {
		return nil, syscall.EISDIR
	}
	return nil, fs.ErrNotExist
}

// createInode returns the file at the cleaned path p, creating it empty if it does not exist.
// The caller holds m.mu.
func (m *Mem) createInode(p string) (*memInode, error) {
	if ino, ok := m.files[p]; ok {
		return ino, nil
	}
	if _, ok := m.dirs[p]; ok {
		return nil, syscall.EISDIR
	}
	if err := m.checkDir(filepath.Dir(p)); err != nil {
		return nil, err
	}
	ino := &memInode{}
	m.files[p] = ino
	return ino, nil
}

// checkDir reports whether the cleaned path p is a directory. The caller holds m.mu.
func (m *Mem) checkDir(p string) error {
	if _, ok := m.dirs[p]; ok {
		return nil
	}
	if _, ok := m.files[p]; ok {
		return syscall.ENOTDIR
	}
	return fs.ErrNotExist
}

// isRoot reports whether the cleaned path p is a root, which cannot be removed or renamed.
func isRoot(p string) bool { return filepath.Dir(p) == p }

// within reports whether the cleaned path p lies strictly inside the cleaned directory dir.
func within(p, dir string) bool {
	prefix := dir
	if !strings.HasSuffix(prefix, string(filepath.Separator)) {
		prefix += string(filepath.Separator)
	}
	return strings.HasPrefix(p, prefix)
}

// hasChildren reports whether the cleaned directory p has entries. The caller holds m.mu.
func (m *Mem) hasChildren(p string) bool {
	for name := range m.files {
		if filepath.Dir(name) == p {
			return true
		}
	}
	for dir := range m.dirs {
		if dir != p && filepath.Dir(dir) == p {
			return true
		}
	}
	return false
}

// Remove removes a file or an empty directory. Files open on a removed file stay usable.
func (m *Mem) Remove(name string) error {
	p := filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.files[p]; ok {
		delete(m.files, p)
		return nil
	}
	var err error
	switch _, ok := m.dirs[p]; {
	case !ok:
		err = fs.ErrNotExist
	case isRoot(p):
		err = syscall.EBUSY
	case m.hasChildren(p):
		err = syscall.ENOTEMPTY
	default:
		delete(m.dirs, p)
		return nil
	}
	return &fs.PathError{Op: "remove", Path: name, Err: err}
}

// Rename renames oldname to newname. A file replaces a file; a directory replaces an empty
// directory and moves with everything in it. Errors are *os.LinkError, as from os.Rename.
func (m *Mem) Rename(oldname, newname string) error {
	op, np := filepath.Clean(oldname), filepath.Clean(newname)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.rename(op, np); err != nil {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: err}
	}
	return nil
}

// rename implements Rename on cleaned paths. The caller holds m.mu.
func (m *Mem) rename(op, np string) error {
	if ino, ok := m.files[op]; ok {
		if _, ok := m.dirs[np]; ok {
			return syscall.EISDIR
		}
		if err := m.checkDir(filepath.Dir(np)); err != nil {
			return err
		}
		delete(m.files, op)
		m.files[np] = ino
		return nil
	}
	switch _, ok := m.dirs[op]; {
	case !ok:
		return fs.ErrNotExist
	case op == np:
		return nil
	case isRoot(op) || isRoot(np):
		return syscall.EBUSY
	case within(np, op):
		return syscall.EINVAL
	}
	if _, ok := m.files[np]; ok {
		return syscall.ENOTDIR
	}
	if _, ok := m.dirs[np]; ok && m.hasChildren(np) {
		return syscall.ENOTEMPTY
	}
	if err := m.checkDir(filepath.Dir(np)); err != nil {
		return err
	}
	// Collect before changing the maps, so no entry is visited twice.
	moved := func(p string) bool { return p == op || within(p, op) }
	var dirs, files []string
	for dir := range m.dirs {
		if moved(dir) {
			dirs = append(dirs, dir)
		}
	}
	for name := range m.files {
		if moved(name) {
			files = append(files, name)
		}
	}
	delete(m.dirs, np)
	for _, dir := range dirs {
		delete(m.dirs, dir)
		m.dirs[np+dir[len(op):]] = struct{}{}
	}
	for _, name := range files {
		ino := m.files[name]
		delete(m.files, name)
		m.files[np+name[len(op):]] = ino
	}
	return nil
}

// MkdirAll creates dir and any missing parents.
func (m *Mem) MkdirAll(dir string) error {
	p := filepath.Clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	var missing []string
	for q := p; ; q = filepath.Dir(q) {
		if _, ok := m.dirs[q]; ok {
			break
		}
		if _, ok := m.files[q]; ok {
			return &fs.PathError{Op: "mkdir", Path: q, Err: syscall.ENOTDIR}
		}
		missing = append(missing, q)
		if isRoot(q) {
			break
		}
	}
	for _, q := range missing {
		m.dirs[q] = struct{}{}
	}
	return nil
}

// List returns the names of the entries in dir, sorted.
func (m *Mem) List(dir string) ([]string, error) {
	p := filepath.Clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkDir(p); err != nil {
		return nil, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	var names []string
	for name := range m.files {
		if filepath.Dir(name) == p {
			names = append(names, filepath.Base(name))
		}
	}
	for d := range m.dirs {
		if d != p && filepath.Dir(d) == p {
			names = append(names, filepath.Base(d))
		}
	}
	slices.Sort(names)
	return names, nil
}

// Stat returns the current size of the file name, or 0 for a directory.
func (m *Mem) Stat(name string) (int64, error) {
	p := filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if ino, ok := m.files[p]; ok {
		return int64(len(ino.data)), nil
	}
	if _, ok := m.dirs[p]; ok {
		return 0, nil
	}
	return 0, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
}

// SyncDir checks that dir is a directory; its entries are durable already (see Mem). Unlike the
// OS, it rejects a file, to catch code that syncs the wrong path.
func (m *Mem) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkDir(filepath.Clean(dir)); err != nil {
		return &fs.PathError{Op: "sync", Path: dir, Err: err}
	}
	return nil
}

// truncate cuts or, with zeros, extends the current content to size bytes.
func (ino *memInode) truncate(size int) {
	if size > len(ino.data) {
		ino.data = append(ino.data, make([]byte, size-len(ino.data))...)
		return
	}
	ino.data = ino.data[:size]
	ino.stable = min(ino.stable, size)
}

// memFile is an open file of a Mem.
type memFile struct {
	m        *Mem
	ino      *memInode
	name     string
	readOnly bool
	closed   bool // guarded by m.mu
}

// check returns the error for operation op on f, if f is closed or, for a change, read-only.
// The caller holds f.m.mu.
func (f *memFile) check(op string, change bool) error {
	switch {
	case f.closed:
		return &fs.PathError{Op: op, Path: f.name, Err: fs.ErrClosed}
	case change && f.readOnly:
		return &fs.PathError{Op: op, Path: f.name, Err: syscall.EBADF}
	}
	return nil
}

// Write appends p to the current content.
func (f *memFile) Write(p []byte) (int, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.check("write", true); err != nil {
		return 0, err
	}
	f.ino.data = append(f.ino.data, p...)
	return len(p), nil
}

// ReadAt reads from the current content like os.File.ReadAt: it returns io.EOF with fewer than
// len(p) bytes when the read reaches the end.
func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.check("read", false); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "readat", Path: f.name, Err: syscall.EINVAL}
	}
	if len(p) == 0 {
		return 0, nil
	}
	if off >= int64(len(f.ino.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.ino.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Sync makes the current content durable.
func (f *memFile) Sync() error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.check("sync", true); err != nil {
		return err
	}
	// A copy, not an alias: after a Truncate, Write reuses the array that data points to.
	f.ino.durable = bytes.Clone(f.ino.data)
	f.ino.stable = len(f.ino.data)
	return nil
}

// Truncate cuts the current content to size bytes, or extends it with zeros.
func (f *memFile) Truncate(size int64) error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.check("truncate", true); err != nil {
		return err
	}
	if size < 0 || int64(int(size)) != size {
		return &fs.PathError{Op: "truncate", Path: f.name, Err: syscall.EINVAL}
	}
	f.ino.truncate(int(size))
	return nil
}

// Size returns the length of the current content.
func (f *memFile) Size() (int64, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.check("stat", false); err != nil {
		return 0, err
	}
	return int64(len(f.ino.data)), nil
}

// Close closes f. Unsynced content stays in the current content, as in a page cache.
func (f *memFile) Close() error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.check("close", false); err != nil {
		return err
	}
	f.closed = true
	return nil
}

// Name returns the path f was opened with.
func (f *memFile) Name() string { return f.name }
