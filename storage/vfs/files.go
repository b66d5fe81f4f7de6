package vfs

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
)

// TmpSuffix is what WriteFileAtomic appends to a name for the file it writes first.
const TmpSuffix = ".tmp"

// ReadFile returns the whole content of the file name. A missing file returns an error for which
// errors.Is(err, fs.ErrNotExist) holds.
func ReadFile(fsys FS, name string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	b := make([]byte, size)
	if n, err := f.ReadAt(b, 0); n < len(b) {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return b, nil
}

// WriteFileSynced creates (or replaces) the file name with data and fsyncs it. Its directory entry
// is not synced.
func WriteFileSynced(fsys FS, name string, data []byte) error {
	f, err := fsys.Create(name)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// WriteFileAtomic replaces the file name with data so that a crash leaves the old content or the
// new, never a mix: data goes to name+TmpSuffix, which is fsynced and renamed over name, and then
// the directory is fsynced. A crash can leave the temporary file behind; its owner removes it.
func WriteFileAtomic(fsys FS, name string, data []byte) error {
	tmp := name + TmpSuffix
	if err := WriteFileSynced(fsys, tmp, data); err != nil {
		return err
	}
	if err := fsys.Rename(tmp, name); err != nil {
		return err
	}
	return fsys.SyncDir(filepath.Dir(name))
}
