package file

import (
	"testing"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/storage/vfs"
)

// writeDurable writes msgs to a manual sink and runs its background step, which makes them
// durable (with SyncSize 1): a Write as it was before syncs moved to the background.
func writeDurable(t *testing.T, s *Sink, msgs []connectors.Message) {
	t.Helper()
	if err := s.Write(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	if err := s.tick(); err != nil {
		t.Fatal(err)
	}
}

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
