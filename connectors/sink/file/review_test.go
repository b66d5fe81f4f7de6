package file

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weirhq/weir/storage/vfs"
)

// TestTakeSyncsARenameItFoundDone: a sync records a roll's rename in the state log, makes the
// rename, and the process dies before the directory fsync that makes the rename durable. The
// next take finds the rename done; it must fsync the directory before it relies on it (before
// it appends a state that no longer records the rename, and before Open returns and Durable
// reports the records): else a machine crash can undo the rename, and the next take removes the
// in-progress file as one no state knows, with records whose offsets were committed.
func TestTakeSyncsARenameItFoundDone(t *testing.T) {
	mem := vfs.NewMem()
	failDirSync, renamed := false, false
	fsys := vfs.NewFaulty(mem, vfs.InjectorFunc(func(op vfs.Op, name string) error {
		if op == vfs.OpRename && strings.HasSuffix(name, inProgressSuffix) {
			renamed = true
		}
		if failDirSync && renamed && op == vfs.OpSyncDir && filepath.Clean(name) == "/out" {
			return vfs.ErrInjected // the process dies here
		}
		return nil
	}))
	cfg := Config{Dir: "/out", RollSize: 1 << 20, RollCount: 10, SyncSize: 1, FS: fsys}
	s := openSink(t, cfg)
	writeDurable(t, s, msgs("t", 0, 0, 5))
	failDirSync = true
	if err := s.Write(ctx, msgs("t", 0, 5, 12)); !errors.Is(err, vfs.ErrInjected) { // rolls at 10
		t.Fatalf("roll whose directory fsync fails: %v", err)
	}
	if names := finishedNames(t, mem, "/out"); len(names) != 1 {
		t.Fatalf("finished files %v, want the one renamed", names)
	}
	abandon(s)
	mem = mem.Clone() // a process crash: the rename is in the page cache, not yet durable

	unsynced := []string{"the rename of the dead process"}
	rec := vfs.InjectorFunc(func(op vfs.Op, name string) error {
		switch {
		case op == vfs.OpSyncDir && filepath.Clean(name) == "/out":
			unsynced = nil
		case op == vfs.OpWrite && strings.HasSuffix(name, logSuffix),
			op == vfs.OpRename && strings.HasSuffix(name, logSuffix+vfs.TmpSuffix):
			if len(unsynced) > 0 {
				t.Errorf("state written before the directory fsync of %v", unsynced)
			}
		}
		return nil
	})
	cfg.FS = vfs.NewFaulty(mem, rec)
	s = openSink(t, cfg)
	if len(unsynced) > 0 {
		t.Fatalf("Open returned, Durable reporting %q, with %v not durable", durableOf(t, s), unsynced)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestMigrationSyncsARenameItFoundDone: as TestTakeSyncsARenameItFoundDone, for a version 1
// manifest whose recorded rename its sink made before it died: the migration must fsync the
// directory before it writes state files that no longer record the rename.
func TestMigrationSyncsARenameItFoundDone(t *testing.T) {
	mem := vfs.NewMem()
	const final = "t-0-00000000000000000000-00000000000000000001.txt"
	if err := mem.MkdirAll("/out"); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		manifestName: `{"version":1,"partitions":[{"topic":"t","partition":0,"last":1}],"renames":[{"from":".t-0-00000000000000000000.inprogress","to":"` + final + `"}]}`,
		final:        "v00\nv01\n",
	} {
		if err := mem.WriteFile("/out/"+name, []byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	unsynced := []string{"the rename of the dead version 1 sink"}
	rec := vfs.InjectorFunc(func(op vfs.Op, name string) error {
		switch {
		case op == vfs.OpSyncDir && filepath.Clean(name) == "/out":
			unsynced = nil
		case op == vfs.OpRename && strings.HasSuffix(name, vfs.TmpSuffix),
			op == vfs.OpWrite && strings.HasSuffix(name, logSuffix):
			if len(unsynced) > 0 {
				t.Errorf("%s written before the directory fsync of %v", filepath.Base(name), unsynced)
			}
		}
		return nil
	})
	s := openSink(t, Config{Dir: "/out", RollSize: 1 << 20, FS: vfs.NewFaulty(mem, rec)})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := finished(t, mem, "/out", Lines)["t/0"]; strings.Join(got, ",") != "v00,v01" {
		t.Fatalf("t/0 holds %v", got)
	}
}
