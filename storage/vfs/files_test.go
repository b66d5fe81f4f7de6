package vfs

import (
	"errors"
	"io/fs"
	"testing"
)

// TestWriteFileAtomic: the new content survives a machine crash once WriteFileAtomic returned;
// a failure before the rename leaves the old content in place.
func TestWriteFileAtomic(t *testing.T) {
	m := NewMem()
	if err := m.MkdirAll("/d"); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(m, "/d/f"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ReadFile of a missing file: %v", err)
	}
	if err := WriteFileAtomic(m, "/d/f", []byte("old")); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFile(m.Crash(nil), "/d/f"); err != nil || string(b) != "old" {
		t.Fatalf("after a crash: %q, %v", b, err)
	}
	failRename := NewFaulty(m, InjectorFunc(func(op Op, _ string) error {
		if op == OpRename {
			return ErrInjected
		}
		return nil
	}))
	if err := WriteFileAtomic(failRename, "/d/f", []byte("new")); !errors.Is(err, ErrInjected) {
		t.Fatalf("failed rename: %v", err)
	}
	if b, err := ReadFile(m.Crash(nil), "/d/f"); err != nil || string(b) != "old" {
		t.Fatalf("after a failed replace and a crash: %q, %v", b, err)
	}
	if err := WriteFileAtomic(m, "/d/f", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFile(m.Crash(nil), "/d/f"); err != nil || string(b) != "new" {
		t.Fatalf("after a replace and a crash: %q, %v", b, err)
	}
}
