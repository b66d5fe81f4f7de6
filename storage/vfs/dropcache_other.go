//go:build !linux

package vfs

// DropCache does nothing where posix_fadvise is not available.
func (osFS) DropCache(string) error { return nil }
