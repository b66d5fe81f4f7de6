package file

import (
	"encoding/binary"
	"errors"
	"fmt"
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
		case op == vfs.OpWrite && strings.HasSuffix(name, logSuffix):
			// The append of the state that no longer records the rename (the take's rewrite
			// of the log, under a temporary name, still records it).
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

// lostFS models Linux after a failed fsync: the pages it did not write are marked clean, so
// they stay readable from the page cache but a later fsync, by any handle, has nothing to
// write. lost holds, per path, the file's length when its fsync failed; a Sync of it while it
// still has that length succeeds and makes nothing durable.
type lostFS struct {
	vfs.FS
	lost map[string]int64
}

func (l lostFS) Lock(name string) (func() error, error) { return vfs.Lock(l.FS, name) }

func (l lostFS) OpenAppend(name string) (vfs.File, error) {
	f, err := l.FS.OpenAppend(name)
	if err != nil {
		return nil, err
	}
	return lostFile{f, l}, nil
}

type lostFile struct {
	vfs.File
	fs lostFS
}

func (f lostFile) Sync() error {
	if n, ok := f.fs.lost[filepath.Clean(f.Name())]; ok {
		if size, err := f.Size(); err == nil && size == n {
			return nil // the clean pages are not written again
		}
	}
	return f.File.Sync()
}

// TestTakeRewritesAStateWhoseFsyncFailed: a state record is appended and its fsync fails (the
// sink breaks, the process restarts). On Linux the record stays readable in the page cache,
// but its pages are clean, so the next take's fsync of the log makes nothing durable: the take
// must not act on the record (report it durable) before it wrote it anew, or a machine crash
// brings back the state before it and cuts records whose offsets were committed.
func TestTakeRewritesAStateWhoseFsyncFailed(t *testing.T) {
	mem := vfs.NewMem()
	failLogSync := false
	fsys := vfs.NewFaulty(mem, vfs.InjectorFunc(func(op vfs.Op, name string) error {
		if failLogSync && op == vfs.OpSync && strings.HasSuffix(name, logSuffix) {
			return vfs.ErrInjected
		}
		return nil
	}))
	cfg := Config{Dir: "/out", RollSize: 1 << 20, SyncSize: 1, FS: fsys}
	s := openSink(t, cfg)
	writeDurable(t, s, msgs("t", 0, 0, 5))
	failLogSync = true
	if err := s.Write(ctx, msgs("t", 0, 5, 10)); err != nil {
		t.Fatal(err)
	}
	if err := s.tick(); !errors.Is(err, vfs.ErrInjected) {
		t.Fatalf("sync whose state fsync fails: %v", err)
	}
	abandon(s)
	mem = mem.Clone() // the process restarts; the page cache holds the record
	logPath := "/out/.state/t-0" + logSuffix
	size, err := mem.Stat(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg.FS = lostFS{mem, map[string]int64{logPath: size}}
	s = openSink(t, cfg)
	reported := durableOf(t, s) // what the runner commits
	abandon(s)

	mem = mem.Crash(nil) // a machine crash
	cfg.FS = mem
	s = openSink(t, cfg)
	if d := durableOf(t, s); d != reported {
		t.Fatalf("durable %q after a machine crash, but %q was reported durable before it", d, reported)
	}
	var from int64
	if _, err := fmt.Sscanf(reported, "t/0:%d", &from); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, msgs("t", 0, from, 12)); err != nil { // the replay from the commit
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := finished(t, mem, "/out", Lines)["t/0"]; strings.Join(got, ",") != strings.Join(want(0, 12), ",") {
		t.Fatalf("content: %v", got)
	}
}

// TestTakeSyncsTheStateDirectory: a compaction renames its new state log into place and the
// process dies before the directory fsync. The next take reads the new log; before it acts on
// it (Open returns, Durable reports it) the rename must be durable, or a machine crash brings
// back the old log, whose last state is older than what was reported.
func TestTakeSyncsTheStateDirectory(t *testing.T) {
	mem := vfs.NewMem()
	dying, logs := false, 0
	fsys := vfs.NewFaulty(mem, vfs.InjectorFunc(func(op vfs.Op, name string) error {
		if op == vfs.OpRename && strings.HasSuffix(name, logSuffix+vfs.TmpSuffix) {
			logs++
			dying = logs > 1 // the first is the log's creation by the take
		}
		if dying && op == vfs.OpSyncDir {
			return vfs.ErrInjected // the process dies after the compaction's rename
		}
		return nil
	}))
	cfg := Config{Dir: "/out", RollSize: 1 << 30, SyncSize: 1, FS: fsys}
	s := openSink(t, cfg)
	var from int64
	for ; !dying; from += 2 {
		if from > 10000 {
			t.Fatal("no compaction")
		}
		if err := s.Write(ctx, msgs("t", 0, from, from+2)); err != nil {
			t.Fatal(err)
		}
		if err := s.tick(); err != nil && !dying {
			t.Fatal(err)
		}
	}
	abandon(s)
	mem = mem.Clone()
	unsynced := []string{"the compaction's rename"}
	rec := vfs.InjectorFunc(func(op vfs.Op, name string) error {
		if op == vfs.OpSyncDir && filepath.Clean(name) == "/out/.state" {
			unsynced = nil
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

// TestReadLogCorruptLengthBeforeMore: a record in the middle of a state log whose length was
// damaged (zero, more than any record, or past the end of the log) hides whole records after
// it. Only the last record can be torn (each is fsynced before the next is appended), so this
// is corruption, to report, not a torn tail to cut: cutting it would roll the partition back to
// an older state, and cut its file below records whose offsets were committed.
func TestReadLogCorruptLengthBeforeMore(t *testing.T) {
	rec := func(last int64) []byte {
		b, err := logRecord(partState{Version: manifestVersion, manifestPart: manifestPart{Topic: "t", Last: last}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, c := range []struct {
		name   string
		length uint32
	}{{"zero length", 0}, {"length over the limit", 0xffffffff}, {"length past the end", 1 << 20}} {
		t.Run(c.name, func(t *testing.T) {
			r2 := rec(2)
			binary.BigEndian.PutUint32(r2, c.length)
			log := append(append(append(append([]byte(logMagic), rec(1)...), r2...), rec(3)...), rec(4)...)
			mem := vfs.NewMem()
			if err := mem.WriteFile("/log", log); err != nil {
				t.Fatal(err)
			}
			f, err := mem.Open("/log")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if st, end, _, err := readLog(f); err == nil {
				t.Fatalf("read as state %d, cut at %d of %d bytes: the records after the damaged one are lost", st.Last, end, len(log))
			}
		})
	}
}

// TestMissingStateLogIsNotANewPartition: a partition's JSON state says its state is its log
// ({"version":3}, written only once the log is in place) and the log is gone. Taking the
// partition as a new one would remove its in-progress file, with records whose offsets were
// committed, as a file no state knows: the take must fail, naming the log.
func TestMissingStateLogIsNotANewPartition(t *testing.T) {
	mem := vfs.NewMem()
	cfg := Config{Dir: "/out", RollSize: 1 << 20, SyncSize: 1, FS: mem}
	s := openSink(t, cfg)
	writeDurable(t, s, msgs("t", 0, 0, 5))
	abandon(s)
	mem = mem.Clone() // the process ends: its locks go
	cfg.FS = mem
	if err := mem.Remove("/out/.state/t-0" + logSuffix); err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.manual = true
	err = s.Open(ctx)
	if err == nil {
		d := durableOf(t, s)
		abandon(s)
		t.Fatalf("opened with t-0's state log gone, durable %q, files %v", d, func() []string { n, _ := mem.List("/out"); return n }())
	}
	if !strings.Contains(err.Error(), "t-0"+logSuffix) {
		t.Fatalf("the error does not name the log: %v", err)
	}
}

// TestCorruptStateLogErrorNamesIt: a Write that takes a partition whose state log is damaged
// fails with an error that names the log's path (a sink's directory is not in a Write's
// error otherwise) and what is wrong with it, and writes nothing.
func TestCorruptStateLogErrorNamesIt(t *testing.T) {
	mem := vfs.NewMem()
	cfg := Config{Dir: "/out", RollSize: 1 << 20, SyncSize: 1, FS: mem}
	s := openSink(t, cfg)
	writeDurable(t, s, msgs("t", 0, 0, 5))
	writeDurable(t, s, msgs("t", 0, 5, 7))
	if err := s.Reset(); err != nil { // lets go of t/0; its next Write takes it again
		t.Fatal(err)
	}
	const log = "/out/.state/t-0" + logSuffix
	if err := mem.Corrupt(log, int64(len(logMagic))+logHeader+3, []byte("X")); err != nil { // in the first record
		t.Fatal(err)
	}
	err := s.Write(ctx, msgs("t", 0, 7, 9))
	if err == nil || !strings.Contains(err.Error(), log) || !strings.Contains(err.Error(), "corrupt record at 8") {
		t.Fatalf("Write with a corrupt state log: %v; want an error naming %s and the corrupt record", err, log)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
