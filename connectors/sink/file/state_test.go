package file

import (
	"github.com/weirhq/weir/storage/vfs"
)

// readStateLog returns the state a state log holds.
func readStateLog(fsys vfs.FS, name string) (partState, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return partState{}, err
	}
	defer f.Close()
	st, _, _, err := readLog(f)
	return st, err
}
