package file

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/storage/vfs"
)

// These tests are of several sinks sharing a directory, as the members of a consumer group do:
// a partition moves between them, and the records it had are in the files exactly once.

func fsCases(t *testing.T) map[string]struct {
	fs  vfs.FS
	dir string
} {
	return map[string]struct {
		fs  vfs.FS
		dir string
	}{"mem": {vfs.NewMem(), "/out"}, "os": {vfs.OS, t.TempDir()}}
}

// TestHandOverAfterDurableUncommittedWrite: member a writes a partition and its Write is
// durable, but the runner commits only part of it before the rebalance; member b, given the
// partition, reads from the committed offset. With a directory per member (version 1) the
// records between the commit and a's last write were in both; with the state per partition b
// skips them.
func TestHandOverAfterDurableUncommittedWrite(t *testing.T) {
	for name, c := range fsCases(t) {
		t.Run(name, func(t *testing.T) {
			cfg := Config{Dir: c.dir, RollSize: 1 << 20, FS: c.fs}
			a, b := openSink(t, cfg), openSink(t, cfg)
			if err := a.Write(ctx, msgs("t", 0, 0, 10)); err != nil {
				t.Fatal(err)
			}
			if err := a.Write(ctx, msgs("t", 1, 0, 4)); err != nil {
				t.Fatal(err)
			}
			// Committed: t/0 up to 5. The rebalance: every member resets before it rejoins.
			if err := a.Reset(); err != nil {
				t.Fatal(err)
			}
			if err := b.Reset(); err != nil {
				t.Fatal(err)
			}
			if d, err := a.Durable(); err != nil || len(d) != 0 {
				t.Fatalf("a's Durable after Reset: %v %v, want nothing", d, err)
			}
			// b has t/0 now and reads it from 5; a keeps t/1 and reads it from 4.
			if err := b.Write(ctx, msgs("t", 0, 5, 15)); err != nil {
				t.Fatal(err)
			}
			d, err := b.Durable()
			if err != nil || len(d) != 1 || d[0] != (connectors.PartitionOffset{Topic: "t", Partition: 0, Offset: 15}) {
				t.Fatalf("b's Durable: %v %v, want t/0 at 15", d, err)
			}
			if err := a.Write(ctx, msgs("t", 1, 4, 8)); err != nil {
				t.Fatal(err)
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			got := finished(t, c.fs, c.dir, Lines)
			if g := strings.Join(got["t/0"], ","); g != strings.Join(want(0, 15), ",") {
				t.Errorf("t/0 holds %s", g)
			}
			if g := strings.Join(got["t/1"], ","); g != strings.Join(want(0, 8), ",") {
				t.Errorf("t/1 holds %s", g)
			}
		})
	}
}

// TestMemberThatHasNotNoticedGetsErrReplay: while a still holds a partition (it has not yet
// reset for the rebalance), b's Write of it writes nothing and returns ErrReplay; b stays
// usable, and writes the partition once a has let it go.
func TestMemberThatHasNotNoticedGetsErrReplay(t *testing.T) {
	for name, c := range fsCases(t) {
		t.Run(name, func(t *testing.T) {
			cfg := Config{Dir: c.dir, RollSize: 1 << 20, FS: c.fs}
			a, b := openSink(t, cfg), openSink(t, cfg)
			if err := a.Write(ctx, msgs("t", 0, 0, 6)); err != nil {
				t.Fatal(err)
			}
			in := append(msgs("t", 1, 0, 3), msgs("t", 0, 3, 9)...)
			err := b.Write(ctx, in)
			if !errors.Is(err, connectors.ErrReplay) || !errors.Is(err, vfs.ErrLocked) {
				t.Fatalf("b's Write of a partition a holds: %v, want ErrReplay", err)
			}
			if err := b.Write(ctx, msgs("t", 1, 0, 3)); err != nil { // not broken
				t.Fatal(err)
			}
			if err := a.Write(ctx, msgs("t", 0, 6, 7)); err != nil { // a still owns it
				t.Fatal(err)
			}
			if err := a.Reset(); err != nil {
				t.Fatal(err)
			}
			if err := b.Write(ctx, in); err != nil {
				t.Fatal(err)
			}
			for _, s := range []*Sink{a, b} {
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
			got := finished(t, c.fs, c.dir, Lines)
			if g := strings.Join(got["t/0"], ","); g != strings.Join(want(0, 9), ",") {
				t.Errorf("t/0 holds %s", g)
			}
			if g := strings.Join(got["t/1"], ","); g != strings.Join(want(0, 3), ",") {
				t.Errorf("t/1 holds %s", g)
			}
		})
	}
}

// TestCrashOfMembers: two members each hold a partition with a file in progress and a torn
// tail when the process dies; after the restart the partitions go to the other members than
// before, and each partition is recovered from its own state.
func TestCrashOfMembers(t *testing.T) {
	mem := vfs.NewMem()
	cfg := Config{Dir: "/out", RollSize: 1 << 20, FS: mem}
	a, b := openSink(t, cfg), openSink(t, cfg)
	if err := a.Write(ctx, msgs("t", 0, 0, 6)); err != nil { // committed: 3
		t.Fatal(err)
	}
	if err := b.Write(ctx, msgs("t", 1, 0, 4)); err != nil { // committed: 4
		t.Fatal(err)
	}
	// A Write that did not return: bytes past what t/0's state knows.
	f, err := mem.OpenAppend("/out/.t-0-00000000000000000000.inprogress")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("torn"))
	f.Close()
	abandon(a)
	abandon(b)
	mem = mem.Clone() // the process dies: its locks go
	cfg.FS = mem
	c, d := openSink(t, cfg), openSink(t, cfg)
	for _, s := range []*Sink{c, d} { // the runner resets each before it joins
		if err := s.Reset(); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Write(ctx, msgs("t", 0, 3, 10)); err != nil {
		t.Fatal(err)
	}
	if err := c.Write(ctx, msgs("t", 1, 4, 7)); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Sink{c, d} {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	got := finished(t, mem, "/out", Lines)
	if g := strings.Join(got["t/0"], ","); g != strings.Join(want(0, 10), ",") {
		t.Errorf("t/0 holds %s", g)
	}
	if g := strings.Join(got["t/1"], ","); g != strings.Join(want(0, 7), ",") {
		t.Errorf("t/1 holds %s", g)
	}
}

// TestMigratesVersion1: a directory of a version 1 sink (one manifest, a file in progress with
// a torn tail, a rename to redo) opens: its manifest becomes per-partition state and the marker
// that keeps version 1 sinks out.
func TestMigratesVersion1(t *testing.T) {
	const inprog, final = ".t-0-00000000000000000002.inprogress", "t-0-00000000000000000000-00000000000000000001.txt"
	mem := vfs.NewMem()
	if err := mem.MkdirAll("/out"); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		manifestName: `{"version":1,"partitions":[{"topic":"t","partition":0,"last":3,"file":"` + inprog + `","first":2,"size":8,"opened":1},` +
			`{"topic":"t","partition":1,"last":0}],"renames":[{"from":".t-0-00000000000000000000.inprogress","to":"` + final + `"}]}`,
		".t-0-00000000000000000000.inprogress": "v00\nv01\n",
		inprog:                                 "v02\nv03\nv0",
	} {
		if err := mem.WriteFile("/out/"+name, []byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Config{Dir: "/out", RollSize: 1 << 20, FS: mem}
	s := openSink(t, cfg)
	if m, err := mem.ReadFile("/out/" + manifestName); err != nil || string(m) != `{"version":2}` {
		t.Fatalf("manifest after the migration: %s %v", m, err)
	}
	for _, name := range []string{"t-0.json", "t-1.json"} {
		if _, err := mem.Stat("/out/.state/" + name); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Write(ctx, append(msgs("t", 0, 2, 6), msgs("t", 1, 0, 2)...)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got := finished(t, mem, "/out", Lines)
	if g := strings.Join(got["t/0"], ","); g != strings.Join(want(0, 6), ",") {
		t.Errorf("t/0 holds %s", g)
	}
	if g := strings.Join(got["t/1"], ","); g != "v01" {
		t.Errorf("t/1 holds %s", g)
	}
}

// TestVersion1SinkHoldsTheDirectory: a version 1 sink holds the directory's lock while open;
// Open waits a while for it, then fails naming the reason.
func TestVersion1SinkHoldsTheDirectory(t *testing.T) {
	mem := vfs.NewMem()
	if err := mem.MkdirAll("/out"); err != nil {
		t.Fatal(err)
	}
	if err := mem.WriteFile("/out/"+manifestName, []byte(`{"version":1,"partitions":[]}`)); err != nil {
		t.Fatal(err)
	}
	unlock, err := vfs.Lock(mem, "/out/"+lockName)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Dir: "/out", RollSize: 10, FS: mem})
	if err != nil {
		t.Fatal(err)
	}
	octx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := s.Open(octx); !errors.Is(err, vfs.ErrLocked) || !strings.Contains(err.Error(), "older version") {
		t.Fatalf("Open beside a version 1 sink: %v", err)
	}
	unlock()
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestMemberIsNotStaging: Member hides Durable and Reset, so that a sink group takes it.
func TestMemberIsNotStaging(t *testing.T) {
	s, err := New(Config{Dir: "/out", RollSize: 10, FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	var _ connectors.StagingSink = s
	if _, ok := s.Member().(connectors.StagingSink); ok {
		t.Fatal("Member is a StagingSink")
	}
}
