//go:build !unix

package vfs

// Lock does nothing where flock is not available.
func (osFS) Lock(string) (func() error, error) { return func() error { return nil }, nil }
