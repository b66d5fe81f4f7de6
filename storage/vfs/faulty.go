package vfs

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
)

// Op names an operation that can fail.
type Op int

// The operations of FS and File that Faulty passes through its Injector.
const (
	OpCreate   Op = iota // FS.Create
	OpOpen               // FS.Open and FS.OpenAppend
	OpWrite              // File.Write
	OpSync               // File.Sync
	OpTruncate           // File.Truncate
	OpRemove             // FS.Remove
	OpRename             // FS.Rename
	OpMkdir              // FS.MkdirAll
	OpList               // FS.List
	OpSyncDir            // FS.SyncDir
	OpRead               // File.ReadAt
	OpClose              // File.Close
	OpStat               // FS.Stat and File.Size
)

// String returns the lower-case name of op, as used in error messages.
func (op Op) String() string {
	switch op {
	case OpCreate:
		return "create"
	case OpOpen:
		return "open"
	case OpWrite:
		return "write"
	case OpSync:
		return "sync"
	case OpTruncate:
		return "truncate"
	case OpRemove:
		return "remove"
	case OpRename:
		return "rename"
	case OpMkdir:
		return "mkdir"
	case OpList:
		return "list"
	case OpSyncDir:
		return "syncdir"
	case OpRead:
		return "read"
	case OpClose:
		return "close"
	case OpStat:
		return "stat"
	}
	return fmt.Sprintf("Op(%d)", int(op))
}

// ErrInjected is the generic fault to inject.
var ErrInjected = errors.New("vfs: injected fault")

// ErrNoSpace is an injected full disk. It wraps syscall.ENOSPC, so code that checks for a full
// disk with errors.Is(err, syscall.ENOSPC) sees it as one.
var ErrNoSpace = fmt.Errorf("vfs: injected disk full: %w", syscall.ENOSPC)

// Injector decides, before each operation, whether it fails: a non-nil error fails it. name is
// the path the operation is on; for OpRename it is the old name. Faulty may call Inject from
// several goroutines at once.
type Injector interface {
	Inject(op Op, name string) error
}

// InjectorFunc is a function that is an Injector.
type InjectorFunc func(op Op, name string) error

// Inject returns fn(op, name).
func (fn InjectorFunc) Inject(op Op, name string) error { return fn(op, name) }

// Faulty is an FS that passes every operation, on itself and on the files it opens, first to an
// Injector and then, unless the Injector fails it, to an inner FS. It lets tests reach the error
// paths for short writes, full disks, failed fsyncs and crashes at any point.
//
// An operation that the Injector fails returns the Injector's error wrapped with the operation
// and the path, so errors.Is sees through it, and mostly does nothing:
//
//   - A failed Write is a short write, as on a full disk: it writes the first half of p,
//     len(p)/2 bytes, and returns that count with the error.
//   - A failed Sync does not sync. Unlike Linux, which may drop the dirty pages after a failed
//     fsync, the written data stays readable; code must not rely on either, since the only safe
//     answer to a failed Sync is to stop trusting the file.
//   - A failed Close still closes the inner file, since close(2) releases the descriptor even
//     when it reports an error: retrying a Close is wrong, and tests must not leak files.
//
// Faulty holds no state of its own, so it is as safe for concurrent use as its inner FS and its
// Injector.
type Faulty struct {
	inner FS
	inj   Injector
}

// NewFaulty returns a Faulty that injects into inner the faults that inj asks for. A nil inj
// never fails anything.
func NewFaulty(inner FS, inj Injector) *Faulty {
	return &Faulty{inner: inner, inj: inj}
}

// inject asks the Injector about op on name and returns its error, wrapped, if any.
func (f *Faulty) inject(op Op, name string) error {
	if f.inj == nil {
		return nil
	}
	if err := f.inj.Inject(op, name); err != nil {
		return fmt.Errorf("vfs: %s %s: %w", op, name, err)
	}
	return nil
}

// wrap returns a File of f for the inner file g, unless the inner operation failed.
func (f *Faulty) wrap(g File, err error) (File, error) {
	if err != nil {
		return nil, err
	}
	return &faultyFile{fs: f, inner: g}, nil
}

// Create creates name unless OpCreate fails.
func (f *Faulty) Create(name string) (File, error) {
	if err := f.inject(OpCreate, name); err != nil {
		return nil, err
	}
	return f.wrap(f.inner.Create(name))
}

// OpenAppend opens name unless OpOpen fails.
func (f *Faulty) OpenAppend(name string) (File, error) {
	if err := f.inject(OpOpen, name); err != nil {
		return nil, err
	}
	return f.wrap(f.inner.OpenAppend(name))
}

// Open opens name read-only unless OpOpen fails.
func (f *Faulty) Open(name string) (File, error) {
	if err := f.inject(OpOpen, name); err != nil {
		return nil, err
	}
	return f.wrap(f.inner.Open(name))
}

// Remove removes name unless OpRemove fails.
func (f *Faulty) Remove(name string) error {
	if err := f.inject(OpRemove, name); err != nil {
		return err
	}
	return f.inner.Remove(name)
}

// Rename renames oldname to newname unless OpRename on oldname fails.
func (f *Faulty) Rename(oldname, newname string) error {
	if f.inj != nil {
		if err := f.inj.Inject(OpRename, oldname); err != nil {
			return fmt.Errorf("vfs: %s %s %s: %w", OpRename, oldname, newname, err)
		}
	}
	return f.inner.Rename(oldname, newname)
}

// MkdirAll creates dir and its parents unless OpMkdir fails.
func (f *Faulty) MkdirAll(dir string) error {
	if err := f.inject(OpMkdir, dir); err != nil {
		return err
	}
	return f.inner.MkdirAll(dir)
}

// List lists dir unless OpList fails.
func (f *Faulty) List(dir string) ([]string, error) {
	if err := f.inject(OpList, dir); err != nil {
		return nil, err
	}
	return f.inner.List(dir)
}

// Stat returns the size of name unless OpStat fails.
func (f *Faulty) Stat(name string) (int64, error) {
	if err := f.inject(OpStat, name); err != nil {
		return 0, err
	}
	return f.inner.Stat(name)
}

// SyncDir syncs dir unless OpSyncDir fails.
func (f *Faulty) SyncDir(dir string) error {
	if err := f.inject(OpSyncDir, dir); err != nil {
		return err
	}
	return f.inner.SyncDir(dir)
}

// DropCache passes the advice on to the wrapped FS; it injects no fault (it loses nothing).
func (f *Faulty) DropCache(name string) error { return DropCache(f.inner, name) }

// Lock passes the lock on to the wrapped FS.
func (f *Faulty) Lock(name string) (func() error, error) { return Lock(f.inner, name) }

// faultyFile is a File of a Faulty.
type faultyFile struct {
	fs    *Faulty
	inner File
}

func (f *faultyFile) Write(p []byte) (int, error) {
	if err := f.fs.inject(OpWrite, f.inner.Name()); err != nil {
		// A short write. Its own error, if any, matters less than the injected one.
		n, _ := f.inner.Write(p[:len(p)/2])
		return n, err
	}
	return f.inner.Write(p)
}

func (f *faultyFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.fs.inject(OpRead, f.inner.Name()); err != nil {
		return 0, err
	}
	return f.inner.ReadAt(p, off)
}

func (f *faultyFile) Sync() error {
	if err := f.fs.inject(OpSync, f.inner.Name()); err != nil {
		return err
	}
	return f.inner.Sync()
}

func (f *faultyFile) Truncate(size int64) error {
	if err := f.fs.inject(OpTruncate, f.inner.Name()); err != nil {
		return err
	}
	return f.inner.Truncate(size)
}

func (f *faultyFile) Size() (int64, error) {
	if err := f.fs.inject(OpStat, f.inner.Name()); err != nil {
		return 0, err
	}
	return f.inner.Size()
}

func (f *faultyFile) Close() error {
	if err := f.fs.inject(OpClose, f.inner.Name()); err != nil {
		_ = f.inner.Close()
		return err
	}
	return f.inner.Close()
}

func (f *faultyFile) Name() string { return f.inner.Name() }

// Evict passes the call on to the wrapped File unless OpSync fails: an injected failure is a
// failed writeback, as a failed Sync is.
func (f *faultyFile) Evict(off, n int64) error {
	if err := f.fs.inject(OpSync, f.inner.Name()); err != nil {
		return err
	}
	return Evict(f.inner, off, n)
}

// opSet is a set of operations, one bit per Op.
type opSet uint32

// mutatingOps are the operations that change the filesystem; injectors made without a list of
// operations fail only these.
const mutatingOps = opSet(1)<<OpCreate | 1<<OpWrite | 1<<OpSync | 1<<OpTruncate |
	1<<OpRemove | 1<<OpRename | 1<<OpMkdir | 1<<OpSyncDir

// makeOpSet returns the set of ops, or mutatingOps if ops is empty.
func makeOpSet(ops []Op) opSet {
	if len(ops) == 0 {
		return mutatingOps
	}
	var s opSet
	for _, op := range ops {
		if op >= 0 && op < 32 {
			s |= 1 << op
		}
	}
	return s
}

func (s opSet) has(op Op) bool { return op >= 0 && op < 32 && s&(1<<op) != 0 }

// Countdown is an Injector that lets a number of matching operations through and then fails
// either every later one or just the next one. Made by FailAfter and FailOnce.
type Countdown struct {
	ops  opSet
	n    int
	err  error
	once bool

	mu    sync.Mutex
	seen  int  // matching operations seen
	fired bool // whether it failed one
}

// FailAfter returns an Injector that lets the first n operations in ops through and fails the
// next and every later one with err: a disk that fills up, or a machine that dies after n
// operations. Without ops it counts the mutating operations: OpCreate, OpWrite, OpSync,
// OpTruncate, OpRemove, OpRename, OpMkdir and OpSyncDir. A nil err means ErrInjected.
func FailAfter(n int, err error, ops ...Op) *Countdown {
	return newCountdown(n, err, false, ops)
}

// FailOnce is like FailAfter but fails only the (n+1)-th matching operation and lets the
// later ones through again: a transient fault.
func FailOnce(n int, err error, ops ...Op) *Countdown {
	return newCountdown(n, err, true, ops)
}

func newCountdown(n int, err error, once bool, ops []Op) *Countdown {
	if err == nil {
		err = ErrInjected
	}
	return &Countdown{ops: makeOpSet(ops), n: n, err: err, once: once}
}

// Inject implements Injector.
func (c *Countdown) Inject(op Op, name string) error {
	if !c.ops.has(op) {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen++
	if c.seen <= c.n || (c.once && c.seen > c.n+1) {
		return nil
	}
	c.fired = true
	return c.err
}

// Fired reports whether c has failed an operation.
func (c *Countdown) Fired() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fired
}

// Count returns how many matching operations c has seen, failed ones included.
func (c *Countdown) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen
}

// Chance is an Injector that fails each matching operation with a fixed probability. Made by
// Random.
type Chance struct {
	ops opSet
	p   float64
	err error

	mu     sync.Mutex
	rng    *rand.Rand // not safe for concurrent use, so guarded by mu
	seen   int
	failed int
}

// Random returns an Injector that fails each of the operations in ops with probability p,
// drawing from rng; p <= 0 never fails and p >= 1 always does. Without ops it picks among the
// mutating operations, as FailAfter does. A nil rng means one with a fixed seed; a nil err
// means ErrInjected.
func Random(rng *rand.Rand, p float64, err error, ops ...Op) *Chance {
	if rng == nil {
		rng = rand.New(rand.NewPCG(1, 2))
	}
	if err == nil {
		err = ErrInjected
	}
	return &Chance{ops: makeOpSet(ops), p: p, err: err, rng: rng}
}

// Inject implements Injector.
func (c *Chance) Inject(op Op, name string) error {
	if !c.ops.has(op) {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen++
	if c.rng.Float64() >= c.p {
		return nil
	}
	c.failed++
	return c.err
}

// Fired reports whether c has failed an operation.
func (c *Chance) Fired() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failed > 0
}

// Count returns how many matching operations c has seen, failed ones included.
func (c *Chance) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen
}
