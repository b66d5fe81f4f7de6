package file

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/storage/vfs"
)

// finishedNames returns the finished files of dir, in name order.
func finishedNames(t *testing.T, fsys vfs.FS, dir string) []string {
	t.Helper()
	all, err := fsys.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range all {
		if !strings.HasPrefix(n, ".") {
			out = append(out, n)
		}
	}
	return out
}

// ranges names the finished files of topic t, partition p, for the offset ranges [from, to) cut
// every n offsets.
func ranges(p int32, from, to int64, n int64) []string {
	var out []string
	for f := from; f < to; f += n {
		out = append(out, fmt.Sprintf("t-%d-%020d-%020d.txt", p, f, min(f+n, to)-1))
	}
	return out
}

// TestRollsByCount: with RollCount 10 and no other trigger, every finished file holds exactly 10
// records, named for 10 consecutive offsets, whatever the Writes' sizes and however partitions
// interleave in them; a file is finished by the Write that filled it.
func TestRollsByCount(t *testing.T) {
	mem := vfs.NewMem()
	s := openSink(t, Config{Dir: "/out", RollSize: 1 << 20, RollCount: 10, FS: mem})
	next := map[int32]int64{0: 0, 1: 100} // partition 1 starts at offset 100
	for _, n := range []int64{7, 3, 13, 1, 1, 25, 9, 10, 11, 4, 11} {
		var in []connectors.Message
		for o := int64(0); o < n; o++ { // interleaved record by record
			for p := range int32(2) {
				in = append(in, msgs("t", p, next[p], next[p]+1)...)
				next[p]++
			}
		}
		if err := s.Write(ctx, in); err != nil {
			t.Fatal(err)
		}
		// Every full file is finished at once; only the rest is in progress.
		var wantNames []string
		for p := range int32(2) {
			base := int64(100 * p)
			full := base + (next[p]-base)/10*10
			wantNames = append(wantNames, ranges(p, base, full, 10)...)
		}
		if got := finishedNames(t, mem, "/out"); strings.Join(got, " ") != strings.Join(wantNames, " ") {
			t.Fatalf("after offsets up to %v, finished:\n%s\nwant\n%s", next, strings.Join(got, "\n"), strings.Join(wantNames, "\n"))
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// 95 records a partition: nine files of 10, and the last five closed by Close.
	wantNames := append(ranges(0, 0, 95, 10), ranges(1, 100, 195, 10)...)
	if got := finishedNames(t, mem, "/out"); strings.Join(got, " ") != strings.Join(wantNames, " ") {
		t.Fatalf("after close:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantNames, "\n"))
	}
	got := finished(t, mem, "/out", Lines) // checks each name against its records
	if strings.Join(got["t/0"], ",") != strings.Join(want(0, 95), ",") || strings.Join(got["t/1"], ",") != strings.Join(want(100, 195), ",") {
		t.Fatalf("content: %v", got)
	}
}

// TestRollCountWithOtherTriggers: whichever of RollSize and RollCount comes first rolls.
func TestRollCountWithOtherTriggers(t *testing.T) {
	mem := vfs.NewMem()
	// "vNN\n" is 4 bytes: RollSize 20 is 5 records, RollCount 3 comes first.
	s := openSink(t, Config{Dir: "/out", RollSize: 20, RollCount: 3, FS: mem})
	if err := s.Write(ctx, msgs("t", 0, 0, 7)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got, w := finishedNames(t, mem, "/out"), ranges(0, 0, 7, 3); strings.Join(got, " ") != strings.Join(w, " ") {
		t.Fatalf("RollCount first: %v, want %v", got, w)
	}
	mem = vfs.NewMem()
	s = openSink(t, Config{Dir: "/out", RollSize: 8, RollCount: 3, FS: mem}) // 2 records by size
	if err := s.Write(ctx, msgs("t", 0, 0, 7)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got, w := finishedNames(t, mem, "/out"), ranges(0, 0, 7, 2); strings.Join(got, " ") != strings.Join(w, " ") {
		t.Fatalf("RollSize first: %v, want %v", got, w)
	}
}

// TestRollCountAcrossACrash: the count of a file in progress is in the manifest, so a sink that
// crashed (no Close) and is opened again, and replays from the committed offset, still cuts the
// files every RollCount records.
func TestRollCountAcrossACrash(t *testing.T) {
	for _, machine := range []bool{false, true} {
		t.Run(fmt.Sprintf("machine crash %v", machine), func(t *testing.T) {
			mem := vfs.NewMem()
			cfg := Config{Dir: "/out", RollSize: 1 << 20, RollCount: 10, SyncSize: 1, FS: mem} // every Write durable
			s := openSink(t, cfg)
			for _, r := range [][2]int64{{0, 4}, {4, 8}} {
				writeDurable(t, s, msgs("t", 0, r[0], r[1]))
			}
			abandon(s) // committed: 4; written: 8
			if machine {
				mem = mem.Crash(rand.New(rand.NewPCG(3, 4)))
			} else {
				mem = mem.Clone()
			}
			cfg.FS = mem
			s = openSink(t, cfg)
			for from := int64(4); from < 27; from += 5 {
				if err := s.Write(ctx, msgs("t", 0, from, min(from+5, 27))); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if got, w := finishedNames(t, mem, "/out"), ranges(0, 0, 27, 10); strings.Join(got, " ") != strings.Join(w, " ") {
				t.Fatalf("files: %v, want %v", got, w)
			}
			if got := finished(t, mem, "/out", Lines)["t/0"]; strings.Join(got, ",") != strings.Join(want(0, 27), ",") {
				t.Fatalf("content: %v", got)
			}
		})
	}
}

// TestRollCountOfAnOlderManifest: a manifest written before count and touched existed is read
// with the file's count taken as last-first+1, and its age as its idle time.
func TestRollCountOfAnOlderManifest(t *testing.T) {
	const inprog = ".t-0-00000000000000000000.inprogress"
	clock := &fakeClock{now: time.UnixMilli(1_000_000)}
	mem := vfs.NewMem()
	if err := mem.MkdirAll("/out"); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		manifestName: `{"version":1,"partitions":[{"topic":"t","partition":0,"last":1,"file":"` + inprog + `","first":0,"size":8,"opened":1000000}]}`,
		inprog:       "v00\nv01\n",
	} {
		if err := mem.WriteFile("/out/"+name, []byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	s := openSink(t, Config{Dir: "/out", RollSize: 1 << 20, RollCount: 3, IdleTimeout: time.Minute, FS: mem, Now: clock.Now})
	if err := s.Write(ctx, msgs("t", 0, 2, 7)); err != nil {
		t.Fatal(err)
	}
	if got, w := finishedNames(t, mem, "/out"), ranges(0, 0, 6, 3); strings.Join(got, " ") != strings.Join(w, " ") {
		t.Fatalf("files: %v, want %v", got, w)
	}
	// Offset 6 is alone in a file touched at the Write; a minute later it is idle.
	clock.advance(time.Minute)
	if err := s.rollDue(); err != nil {
		t.Fatal(err)
	}
	if got, w := finishedNames(t, mem, "/out"), ranges(0, 0, 7, 3); strings.Join(got, " ") != strings.Join(w, " ") {
		t.Fatalf("files after a minute: %v, want %v", got, w)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRollsWhenIdle: a file rolls once it has had no record for IdleTimeout, not a millisecond
// before, however old it is; a record restarts the wait; each partition's file waits for its
// own records; and a Write rolls an idle file the timer has not rolled yet before adding to it.
func TestRollsWhenIdle(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	mem := vfs.NewMem()
	s := openSink(t, Config{Dir: "/out", RollSize: 1 << 20, IdleTimeout: 10 * time.Second, FS: mem, Now: clock.Now})
	defer s.Close()
	write := func(p int32, from, to int64) {
		t.Helper()
		if err := s.Write(ctx, msgs("t", p, from, to)); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string, w ...string) {
		t.Helper()
		if err := s.rollDue(); err != nil {
			t.Fatal(err)
		}
		if got := finishedNames(t, mem, "/out"); strings.Join(got, " ") != strings.Join(w, " ") {
			t.Fatalf("%s: finished %v, want %v", what, got, w)
		}
	}
	write(0, 0, 3)
	clock.advance(10*time.Second - time.Millisecond)
	check("idle 9.999 s")
	clock.advance(time.Millisecond)
	check("idle 10 s", ranges(0, 0, 3, 3)...)

	// Records every 6 s keep a file from rolling, though it grows older than IdleTimeout.
	write(0, 3, 4)
	clock.advance(6 * time.Second)
	write(0, 4, 5)
	write(1, 0, 1) // partition 1 gets its first record 6 s after partition 0's file opened
	clock.advance(6 * time.Second)
	check("a file 12 s old, idle 6 s", ranges(0, 0, 3, 3)...)
	clock.advance(4 * time.Second) // partition 0 idle 10 s, partition 1 only 10 s too: both
	check("idle 10 s since the last record", append(ranges(0, 0, 3, 3), ranges(0, 3, 5, 2)[0], ranges(1, 0, 1, 1)[0])...)

	// A Write after the timeout rolls the idle file first, even if the timer has not.
	write(0, 5, 6)
	clock.advance(10 * time.Second)
	write(0, 6, 7)
	names := finishedNames(t, mem, "/out")
	if !strings.Contains(strings.Join(names, " "), ranges(0, 5, 6, 1)[0]) {
		t.Fatalf("the Write did not roll the idle file: %v", names)
	}
}

// TestTimerRollsWhenIdle: with IdleTimeout and no RollInterval, the sink's own timer runs and
// rolls a file no Write comes for.
func TestTimerRollsWhenIdle(t *testing.T) {
	dir := t.TempDir()
	s := openLive(t, Config{Dir: dir, RollSize: 1 << 20, IdleTimeout: 30 * time.Millisecond})
	defer s.Close()
	if err := s.Write(ctx, msgs("t", 0, 0, 2)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(finished(t, vfs.OS, dir, Lines)["t/0"]) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("the idle file was never rolled")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCheckEvery(t *testing.T) {
	for _, c := range []struct {
		interval, idle, want time.Duration
	}{
		{0, 0, 0},
		{0, -time.Second, 0}, // negative IdleTimeout: never
		{time.Minute, 0, time.Second},
		{0, time.Minute, time.Second},
		{time.Minute, 100 * time.Millisecond, 25 * time.Millisecond},
		{200 * time.Millisecond, time.Minute, 50 * time.Millisecond},
		{0, 20 * time.Millisecond, 10 * time.Millisecond},
	} {
		s, err := New(Config{Dir: "d", RollSize: 1, RollInterval: c.interval, IdleTimeout: c.idle})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.checkEvery(); got != c.want {
			t.Errorf("RollInterval %v, IdleTimeout %v: checks every %v, want %v", c.interval, c.idle, got, c.want)
		}
	}
}

// TestCrashBetweenManifestAndRename: a roll by count (in a Write) and a roll by idleness (by the
// timer) each record their rename in the manifest, and the process dies before the rename (it
// fails, and the sink is not closed). A machine or process crash later, the next Open makes the
// rename, the runner replays from the committed offset, and every record is in the files once,
// in files of RollCount records.
func TestCrashBetweenManifestAndRename(t *testing.T) {
	for _, c := range []struct {
		name    string
		machine bool
		byTimer bool
	}{
		{"count, process crash", false, false},
		{"count, machine crash", true, false},
		{"idle, process crash", false, true},
		{"idle, machine crash", true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
			mem := vfs.NewMem()
			failRename := false
			renames := 0
			fsys := vfs.NewFaulty(mem, vfs.InjectorFunc(func(op vfs.Op, name string) error {
				if op == vfs.OpRename && strings.HasSuffix(name, inProgressSuffix) {
					renames++
					if failRename {
						return vfs.ErrInjected
					}
				}
				return nil
			}))
			cfg := Config{Dir: "/out", RollSize: 1 << 20, RollCount: 10, IdleTimeout: time.Minute, SyncSize: 1, FS: fsys, Now: clock.Now}
			s := openSink(t, cfg)
			if err := s.Write(ctx, msgs("t", 0, 0, 14)); err != nil { // 0-9 finished, 10-13 in progress
				t.Fatal(err)
			}
			committed := int64(14)
			failRename = true
			if c.byTimer {
				clock.advance(time.Minute)
				if err := s.rollDue(); !errors.Is(err, vfs.ErrInjected) {
					t.Fatalf("roll by idleness with a failing rename: %v", err)
				}
			} else {
				if err := s.Write(ctx, msgs("t", 0, 14, 23)); !errors.Is(err, vfs.ErrInjected) {
					t.Fatalf("roll by count with a failing rename: %v", err)
				}
			}
			if renames != 2 {
				t.Fatalf("%d renames of finished files tried, want 2", renames)
			}
			// The partition's state records the rename, which did not happen.
			st, err := readStateLog(mem, "/out/.state/t-0"+logSuffix)
			if err != nil || len(st.Renames) != 1 || st.Renames[0].From != ".t-0-00000000000000000010.inprogress" {
				t.Fatalf("state %+v (%v): no rename recorded", st, err)
			}
			abandon(s)
			if c.machine {
				mem = mem.Crash(rand.New(rand.NewPCG(5, 6)))
			} else {
				mem = mem.Clone()
			}
			cfg.FS = mem
			s = openSink(t, cfg)
			for from := committed; from < 35; from += 6 { // the replay, and more
				if err := s.Write(ctx, msgs("t", 0, from, min(from+6, 35))); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			w := ranges(0, 0, 20, 10)
			if c.byTimer { // the idle roll cut 10-13 short
				w = []string{ranges(0, 0, 10, 10)[0], ranges(0, 10, 14, 4)[0], ranges(0, 14, 24, 10)[0], ranges(0, 24, 34, 10)[0], ranges(0, 34, 35, 1)[0]}
			} else {
				w = append(w, ranges(0, 20, 35, 10)...)
			}
			if got := finishedNames(t, mem, "/out"); strings.Join(got, " ") != strings.Join(w, " ") {
				t.Fatalf("files:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(w, "\n"))
			}
			if got := finished(t, mem, "/out", Lines)["t/0"]; strings.Join(got, ",") != strings.Join(want(0, 35), ",") {
				t.Fatalf("content: %v", got)
			}
		})
	}
}
