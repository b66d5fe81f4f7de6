package vfs

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

// testFSContract checks the FS contract on fsys, in the existing or creatable directory dir. It
// runs the same way on OS, Mem and Faulty, so the fakes cannot drift from the real thing.
func testFSContract(t *testing.T, fsys FS, dir string) {
	t.Helper()
	path := func(elem ...string) string { return filepath.Join(append([]string{dir}, elem...)...) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	content := func(name string) string {
		t.Helper()
		f, err := fsys.Open(name)
		must(err)
		defer f.Close()
		return string(readAll(t, f))
	}
	notExist := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: got error %v, want fs.ErrNotExist", what, err)
		}
	}

	must(fsys.MkdirAll(path("sub", "deeper")))
	must(fsys.MkdirAll(path("sub", "deeper"))) // exists already: no error

	// Write appends, also after Truncate; Size and ReadAt see unsynced bytes.
	a := path("sub", "a")
	f, err := fsys.Create(a)
	must(err)
	if f.Name() != a {
		t.Errorf("Name() = %q, want %q", f.Name(), a)
	}
	for _, s := range []string{"hello", " ", "world"} {
		if n, err := f.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if size, err := f.Size(); size != 11 || err != nil {
		t.Errorf("Size() = %d, %v, want 11", size, err)
	}
	checkReadAt(t, f, "hello world")
	must(f.Truncate(5))
	_, err = f.Write([]byte("XY"))
	must(err)
	if got := string(readAll(t, f)); got != "helloXY" {
		t.Errorf("after Truncate(5) and Write: %q, want %q", got, "helloXY")
	}
	must(f.Truncate(9)) // extends with zeros
	_, err = f.Write([]byte("!"))
	must(err)
	if got := string(readAll(t, f)); got != "helloXY\x00\x00!" {
		t.Errorf("after Truncate(9) and Write: %q", got)
	}
	must(f.Sync())
	must(f.Close())
	if _, err := f.Write([]byte("x")); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Write after Close: %v, want fs.ErrClosed", err)
	}
	if size, err := fsys.Stat(a); size != 10 || err != nil {
		t.Errorf("Stat = %d, %v, want 10", size, err)
	}

	// OpenAppend appends to what is there.
	f, err = fsys.OpenAppend(a)
	must(err)
	_, err = f.Write([]byte("+"))
	must(err)
	must(f.Close())
	if got := content(a); got != "helloXY\x00\x00!+" {
		t.Errorf("after OpenAppend and Write: %q", got)
	}

	// Open is read-only.
	f, err = fsys.Open(a)
	must(err)
	if _, err := f.Write([]byte("x")); err == nil {
		t.Error("Write on a read-only file succeeded")
	}
	if err := f.Truncate(0); err == nil {
		t.Error("Truncate on a read-only file succeeded")
	}
	must(f.Close())

	// Create truncates an existing file.
	f, err = fsys.Create(a)
	must(err)
	must(f.Close())
	if size, err := fsys.Stat(a); size != 0 || err != nil {
		t.Errorf("Stat after Create of existing file = %d, %v, want 0", size, err)
	}

	// List is sorted and shows files and directories.
	for _, name := range []string{"c", "b"} {
		f, err := fsys.Create(path("sub", name))
		must(err)
		_, err = f.Write([]byte(name))
		must(err)
		must(f.Close())
	}
	names, err := fsys.List(path("sub"))
	must(err)
	if want := []string{"a", "b", "c", "deeper"}; !slices.Equal(names, want) {
		t.Errorf("List = %q, want %q", names, want)
	}
	must(fsys.SyncDir(path("sub")))

	// Rename replaces the target.
	must(fsys.Rename(path("sub", "c"), path("sub", "b")))
	if got := content(path("sub", "b")); got != "c" {
		t.Errorf("after Rename: b holds %q, want %q", got, "c")
	}
	_, err = fsys.Stat(path("sub", "c"))
	notExist("Stat of renamed file", err)

	// Remove removes files and empty directories only.
	must(fsys.Remove(path("sub", "b")))
	_, err = fsys.Stat(path("sub", "b"))
	notExist("Stat of removed file", err)
	if err := fsys.Remove(path("sub")); err == nil {
		t.Error("Remove of a non-empty directory succeeded")
	}
	must(fsys.Remove(path("sub", "deeper")))
	names, err = fsys.List(path("sub"))
	must(err)
	if want := []string{"a"}; !slices.Equal(names, want) {
		t.Errorf("List after Remove = %q, want %q", names, want)
	}

	// Everything that needs an existing file or directory fails with fs.ErrNotExist.
	missing := path("missing")
	_, err = fsys.Open(missing)
	notExist("Open", err)
	_, err = fsys.OpenAppend(missing)
	notExist("OpenAppend", err)
	_, err = fsys.Stat(missing)
	notExist("Stat", err)
	_, err = fsys.List(missing)
	notExist("List", err)
	notExist("Remove", fsys.Remove(missing))
	notExist("Rename", fsys.Rename(missing, path("other")))
	notExist("SyncDir", fsys.SyncDir(missing))
	_, err = fsys.Create(path("missing", "file"))
	notExist("Create in a missing directory", err)
}

// checkReadAt checks that ReadAt on f, which holds want, behaves like os.File.ReadAt.
func checkReadAt(t *testing.T, f File, want string) {
	t.Helper()
	size := int64(len(want))
	for _, tc := range []struct {
		off     int64
		n       int
		wantN   int
		wantEOF bool
	}{
		{off: 0, n: 0, wantN: 0},
		{off: 0, n: 5, wantN: 5},
		{off: 1, n: int(size) - 1, wantN: int(size) - 1},
		{off: 0, n: int(size) + 3, wantN: int(size), wantEOF: true},
		{off: size - 2, n: 5, wantN: 2, wantEOF: true},
		{off: size, n: 1, wantN: 0, wantEOF: true},
		{off: size + 10, n: 1, wantN: 0, wantEOF: true},
	} {
		p := make([]byte, tc.n)
		n, err := f.ReadAt(p, tc.off)
		if n != tc.wantN || (err == io.EOF) != tc.wantEOF || (err != nil && err != io.EOF) {
			t.Errorf("ReadAt(len %d, off %d) = %d, %v; want %d, EOF %v",
				tc.n, tc.off, n, err, tc.wantN, tc.wantEOF)
			continue
		}
		if n > 0 && string(p[:n]) != want[tc.off:tc.off+int64(n)] {
			t.Errorf("ReadAt(len %d, off %d) read %q", tc.n, tc.off, p[:n])
		}
	}
	if _, err := f.ReadAt(make([]byte, 1), -1); err == nil {
		t.Error("ReadAt at a negative offset succeeded")
	}
}

// readAll returns the whole current content of f.
func readAll(t *testing.T, f File) []byte {
	t.Helper()
	size, err := f.Size()
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, size)
	if n, err := f.ReadAt(p, 0); n != len(p) || (err != nil && err != io.EOF) {
		t.Fatalf("ReadAt of whole file = %d, %v, want %d", n, err, len(p))
	}
	return p
}

func TestOSContract(t *testing.T) { testFSContract(t, OS, t.TempDir()) }

func TestMemContract(t *testing.T) {
	for _, dir := range []string{"/data/log", "data", "/"} {
		t.Run(dir, func(t *testing.T) { testFSContract(t, NewMem(), dir) })
	}
}

// memWith returns a Mem with the file /d/f, which was created, written with synced and then
// synced, and then written with unsynced.
func memWith(t *testing.T, synced, unsynced string) (*Mem, File) {
	t.Helper()
	m := NewMem()
	if err := m.MkdirAll("/d"); err != nil {
		t.Fatal(err)
	}
	f, err := m.Create("/d/f")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte(synced)); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte(unsynced)); err != nil {
		t.Fatal(err)
	}
	return m, f
}

func mustRead(t *testing.T, m *Mem, name string) string {
	t.Helper()
	b, err := m.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMemErrors(t *testing.T) {
	m := NewMem()
	if err := m.WriteFile("/file", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := m.MkdirAll("/dir/sub"); err != nil {
		t.Fatal(err)
	}
	f, err := m.Open("/file")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what string
		err  error
	}{
		{"Create in missing dir", second(m.Create("/nodir/f"))},
		{"Create under a file", second(m.Create("/file/f"))},
		{"Create of a directory", second(m.Create("/dir"))},
		{"Open of missing file", second(m.Open("/nofile"))},
		{"Open of a directory", second(m.Open("/dir"))},
		{"List of missing dir", second(m.List("/nodir"))},
		{"List of a file", second(m.List("/file"))},
		{"Stat of missing file", second(m.Stat("/nofile"))},
		{"MkdirAll under a file", m.MkdirAll("/file/sub")},
		{"Remove of non-empty dir", m.Remove("/dir")},
		{"Remove of root", m.Remove("/")},
		{"Rename of file onto dir", m.Rename("/file", "/dir")},
		{"Rename of dir into itself", m.Rename("/dir", "/dir/sub/x")},
		{"Rename of dir onto file", m.Rename("/dir", "/file")},
		{"SyncDir of a file", m.SyncDir("/file")},
		{"SyncDir of missing dir", m.SyncDir("/nodir")},
		{"Sync of read-only file", f.Sync()},
		{"Write of read-only file", second(f.Write([]byte("x")))},
		{"Truncate of read-only file", f.Truncate(0)},
		{"ReadFile of missing file", second(m.ReadFile("/nofile"))},
		{"Corrupt past the end", m.Corrupt("/file", 1, []byte("y"))},
		{"Corrupt at negative offset", m.Corrupt("/file", -1, []byte("y"))},
	} {
		if tc.err == nil {
			t.Errorf("%s: no error", tc.what)
		}
	}
	// Errors name the path, as those of the os package do.
	_, err = m.Open("/nofile")
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Path != "/nofile" || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of missing file: %#v, want *fs.PathError for /nofile wrapping fs.ErrNotExist", err)
	}
	if got := mustRead(t, m, "/file"); got != "x" {
		t.Errorf("failed operations changed /file to %q", got)
	}
}

func second[T any](_ T, err error) error { return err }

func TestMemOpenFileSurvivesRemoveAndRename(t *testing.T) {
	m, f := memWith(t, "abc", "")
	if err := m.Rename("/d/f", "/d/g"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("d")); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, m, "/d/g"); got != "abcd" {
		t.Errorf("renamed file holds %q, want %q", got, "abcd")
	}
	if err := m.Remove("/d/g"); err != nil {
		t.Fatal(err)
	}
	if got := string(readAll(t, f)); got != "abcd" {
		t.Errorf("removed open file reads %q, want %q", got, "abcd")
	}
	if names, err := m.List("/d"); err != nil || len(names) != 0 {
		t.Errorf("List after Remove = %q, %v, want nothing", names, err)
	}
}

func TestMemRenameDir(t *testing.T) {
	m := NewMem()
	for _, name := range []string{"/tmp/snap/a", "/tmp/snap/x/b"} {
		if err := m.MkdirAll(filepath.Dir(name)); err != nil {
			t.Fatal(err)
		}
		if err := m.WriteFile(name, []byte(name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.MkdirAll("/data/snap"); err != nil { // empty: replaced
		t.Fatal(err)
	}
	if err := m.Rename("/tmp/snap", "/data/snap"); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, m, "/data/snap/x/b"); got != "/tmp/snap/x/b" {
		t.Errorf("moved file holds %q", got)
	}
	if names, _ := m.List("/data/snap"); !slices.Equal(names, []string{"a", "x"}) {
		t.Errorf("List of moved dir = %q", names)
	}
	if names, _ := m.List("/tmp"); len(names) != 0 {
		t.Errorf("List of old parent = %q, want nothing", names)
	}
	if err := m.Rename("/tmp", "/data"); err == nil {
		t.Error("Rename onto a non-empty directory succeeded")
	}
}

func TestMemCrashTornWrites(t *testing.T) {
	const synced, unsynced = "durable|", "abc|defgh"
	seen := make(map[int]bool)
	for seed := range uint64(500) {
		m, _ := memWith(t, synced, unsynced)
		c := m.Crash(rand.New(rand.NewPCG(seed, 0)))
		got := mustRead(t, c, "/d/f")
		// Always the synced content and a prefix of the unsynced bytes, never more.
		if len(got) < len(synced) || got != (synced + unsynced)[:len(got)] {
			t.Fatalf("seed %d: crash left %q, want %q and a prefix of %q", seed, got, synced, unsynced)
		}
		seen[len(got)-len(synced)] = true
		// What survived a crash is durable.
		if again := mustRead(t, c.Crash(rand.New(rand.NewPCG(seed, 1))), "/d/f"); again != got {
			t.Fatalf("seed %d: second crash changed %q to %q", seed, got, again)
		}
	}
	// Every torn length, from nothing to everything, shows up.
	for n := 0; n <= len(unsynced); n++ {
		if !seen[n] {
			t.Errorf("no seed kept exactly %d unsynced bytes", n)
		}
	}

	m, _ := memWith(t, synced, unsynced)
	if got := mustRead(t, m.Crash(nil), "/d/f"); got != synced {
		t.Errorf("Crash(nil) left %q, want %q", got, synced)
	}
	if got := mustRead(t, m, "/d/f"); got != synced+unsynced {
		t.Errorf("Crash changed the crashed Mem to %q", got)
	}
}

func TestMemCrashTruncate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, m *Mem, f File) error
		want  []string // every possible outcome; the first is that of Crash(nil)
	}{{
		name:  "truncate",
		setup: func(t *testing.T, m *Mem, f File) error { return f.Truncate(4) },
		want:  []string{"0123456789", "0123"},
	}, {
		name: "truncate and append",
		setup: func(t *testing.T, m *Mem, f File) error {
			if err := f.Truncate(4); err != nil {
				return err
			}
			_, err := f.Write([]byte("XY"))
			return err
		},
		want: []string{"0123456789", "0123", "0123X", "0123XY"},
	}, {
		name: "truncate, append, truncate",
		setup: func(t *testing.T, m *Mem, f File) error {
			if err := f.Truncate(6); err != nil {
				return err
			}
			if _, err := f.Write([]byte("XY")); err != nil {
				return err
			}
			return f.Truncate(3)
		},
		want: []string{"0123456789", "012"},
	}, {
		name: "append and truncate above durable",
		setup: func(t *testing.T, m *Mem, f File) error {
			if _, err := f.Write([]byte("XYZ")); err != nil {
				return err
			}
			return f.Truncate(11)
		},
		want: []string{"0123456789", "0123456789X"},
	}, {
		name: "create over",
		setup: func(t *testing.T, m *Mem, f File) error {
			g, err := m.Create("/d/f")
			if err != nil {
				return err
			}
			_, err = g.Write([]byte("hi"))
			return err
		},
		want: []string{"0123456789", "", "h", "hi"},
	}, {
		name: "truncate and sync",
		setup: func(t *testing.T, m *Mem, f File) error {
			if err := f.Truncate(4); err != nil {
				return err
			}
			if err := f.Sync(); err != nil {
				return err
			}
			_, err := f.Write([]byte("XY"))
			return err
		},
		want: []string{"0123", "0123X", "0123XY"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			seen := make(map[string]bool)
			for seed := range uint64(200) {
				m, f := memWith(t, "0123456789", "")
				if err := tc.setup(t, m, f); err != nil {
					t.Fatal(err)
				}
				if seed == 0 {
					if got := mustRead(t, m.Crash(nil), "/d/f"); got != tc.want[0] {
						t.Errorf("Crash(nil) left %q, want %q", got, tc.want[0])
					}
				}
				got := mustRead(t, m.Crash(rand.New(rand.NewPCG(seed, 0))), "/d/f")
				if !slices.Contains(tc.want, got) {
					t.Fatalf("seed %d: crash left %q, want one of %q", seed, got, tc.want)
				}
				seen[got] = true
			}
			for _, want := range tc.want {
				if !seen[want] {
					t.Errorf("no seed left %q", want)
				}
			}
		})
	}
}

func TestMemCrashEntries(t *testing.T) {
	m, f := memWith(t, "synced", "lost")
	for _, name := range []string{"/d/new", "/d/gone", "/d/old"} {
		if _, err := m.Create(name); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Remove("/d/gone"); err != nil {
		t.Fatal(err)
	}
	if err := m.Rename("/d/old", "/d/renamed"); err != nil {
		t.Fatal(err)
	}
	if err := m.MkdirAll("/e/f"); err != nil {
		t.Fatal(err)
	}
	c := m.Crash(nil)
	for dir, want := range map[string][]string{
		"/":  {"d", "e"},
		"/d": {"f", "new", "renamed"},
		"/e": {"f"},
	} {
		if got, err := c.List(dir); err != nil || !slices.Equal(got, want) {
			t.Errorf("after crash, List(%q) = %q, %v, want %q", dir, got, err, want)
		}
	}
	// The old file stays on the old Mem.
	if _, err := f.Write([]byte("more")); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, c, "/d/f"); got != "synced" {
		t.Errorf("write on old Mem reached the crashed one: %q", got)
	}
	if got := mustRead(t, m, "/d/f"); got != "syncedlostmore" {
		t.Errorf("old Mem holds %q", got)
	}
}

func TestMemCrashDeterministic(t *testing.T) {
	m := NewMem()
	var files []File
	for i := range 8 {
		f, err := m.Create(string(rune('a'+i)) + ".log")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(bytes.Repeat([]byte{'x'}, 100)); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	for seed := range uint64(20) {
		a := m.Crash(rand.New(rand.NewPCG(seed, 0)))
		b := m.Crash(rand.New(rand.NewPCG(seed, 0)))
		for _, f := range files {
			if x, y := mustRead(t, a, f.Name()), mustRead(t, b, f.Name()); x != y {
				t.Fatalf("seed %d: %s crashed to %d and to %d bytes", seed, f.Name(), len(x), len(y))
			}
		}
	}
}

func TestMemClone(t *testing.T) {
	m, f := memWith(t, "synced", "unsynced")
	c := m.Clone()
	if got := mustRead(t, c, "/d/f"); got != "syncedunsynced" {
		t.Errorf("clone holds %q, want all current content", got)
	}
	// The copy is independent of the original.
	if _, err := f.Write([]byte("!")); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteFile("/d/g", nil); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, c, "/d/f"); got != "syncedunsynced" {
		t.Errorf("write on original reached the clone: %q", got)
	}
	if _, err := m.Stat("/d/g"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("file created in clone shows in original: %v", err)
	}
	// A clone is exact: what was not synced can still be lost.
	if got := mustRead(t, c.Crash(nil), "/d/f"); got != "synced" {
		t.Errorf("crash of clone left %q, want %q", got, "synced")
	}
}

func TestMemWriteFileCorrupt(t *testing.T) {
	m, f := memWith(t, "0123456789", "abc")
	if err := m.Corrupt("/d/f", 8, []byte("XYZ")); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, m, "/d/f"); got != "01234567XYZbc" {
		t.Errorf("after Corrupt: %q", got)
	}
	if got := string(readAll(t, f)); got != "01234567XYZbc" {
		t.Errorf("open file reads %q after Corrupt", got)
	}
	if got := mustRead(t, m.Crash(nil), "/d/f"); got != "01234567XY" {
		t.Errorf("after Corrupt and crash: %q", got)
	}

	if err := m.WriteFile("/d/f", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, m.Crash(nil), "/d/f"); got != "new" {
		t.Errorf("WriteFile content after crash: %q, want it durable", got)
	}
	if got := string(readAll(t, f)); got != "new" {
		t.Errorf("open file reads %q after WriteFile", got)
	}
	if err := m.WriteFile("/nodir/f", nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("WriteFile in missing dir: %v, want fs.ErrNotExist", err)
	}
	// ReadFile returns a copy.
	b, _ := m.ReadFile("/d/f")
	b[0] = 'X'
	if got := mustRead(t, m, "/d/f"); got != "new" {
		t.Errorf("changing ReadFile's result changed the file to %q", got)
	}
}

// testConcurrentReadAt runs readers against a file that one writer appends to and truncates. Run
// it with -race.
func testConcurrentReadAt(t *testing.T, fsys FS, name string) {
	w, err := fsys.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const chunks, chunk = 2000, 37
	pattern := func(i int64) byte { return byte(i % 251) }

	// The writer starts once every reader is reading, so that they overlap.
	const readers = 4
	done := make(chan struct{})
	var wg, started sync.WaitGroup
	started.Add(readers)
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := true
			r, err := fsys.Open(name)
			if err != nil {
				t.Error(err)
				started.Done()
				return
			}
			defer r.Close()
			p := make([]byte, 64)
			for off := int64(0); ; off = (off + 13) % (chunks * chunk) {
				select {
				case <-done:
					return
				default:
				}
				n, err := r.ReadAt(p, off)
				if first {
					started.Done()
					first = false
				}
				if err != nil && err != io.EOF {
					t.Error(err)
					return
				}
				for i := range n {
					if p[i] != pattern(off+int64(i)) {
						t.Errorf("byte at %d is %d, want %d", off+int64(i), p[i], pattern(off+int64(i)))
						return
					}
				}
			}
		}()
	}
	defer func() {
		close(done)
		wg.Wait()
	}()
	started.Wait()
	var off int64
	buf := make([]byte, chunk)
	for i := range chunks {
		for j := range buf {
			buf[j] = pattern(off + int64(j))
		}
		if _, err := w.Write(buf); err != nil {
			t.Fatal(err)
		}
		off += chunk
		if i%50 == 49 {
			// Truncate and rewrite the last chunk: readers must never see torn state.
			if err := w.Truncate(off - chunk); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(buf); err != nil {
				t.Fatal(err)
			}
			if err := w.Sync(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestMemConcurrentReadAt(t *testing.T) { testConcurrentReadAt(t, NewMem(), "log") }
