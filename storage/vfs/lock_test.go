package vfs

import (
	"errors"
	"path/filepath"
	"testing"
)

// TestLock: a second Lock of a held name fails with ErrLocked, on the OS (flock) and on Mem;
// after release it succeeds.
func TestLock(t *testing.T) {
	for _, c := range []struct {
		name string
		fs   FS
		path string
	}{
		{"os", OS, filepath.Join(t.TempDir(), ".lock")},
		{"mem", NewMem(), "/d/.lock"},
		{"faulty", NewFaulty(NewMem(), nil), "/d/.lock"},
	} {
		if err := c.fs.MkdirAll(filepath.Dir(c.path)); err != nil {
			t.Fatal(err)
		}
		release, err := Lock(c.fs, c.path)
		if err != nil {
			t.Fatalf("%s: first Lock: %v", c.name, err)
		}
		if _, err := Lock(c.fs, c.path); !errors.Is(err, ErrLocked) {
			t.Fatalf("%s: second Lock while held: %v, want ErrLocked", c.name, err)
		}
		if err := release(); err != nil {
			t.Fatal(err)
		}
		release, err = Lock(c.fs, c.path)
		if err != nil {
			t.Fatalf("%s: Lock after release: %v", c.name, err)
		}
		release()
	}
}
