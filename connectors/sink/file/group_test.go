package file

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
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
			cfg := Config{Dir: c.dir, RollSize: 1 << 20, SyncSize: 1, FS: c.fs} // every Write durable
			a, b := openSink(t, cfg), openSink(t, cfg)
			writeDurable(t, a, msgs("t", 0, 0, 10))
			writeDurable(t, a, msgs("t", 1, 0, 4))
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
			writeDurable(t, b, msgs("t", 0, 5, 15))
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
	cfg := Config{Dir: "/out", RollSize: 1 << 20, SyncSize: 1, FS: mem} // every Write durable
	a, b := openSink(t, cfg), openSink(t, cfg)
	writeDurable(t, a, msgs("t", 0, 0, 6)) // committed: 3
	writeDurable(t, b, msgs("t", 1, 0, 4)) // committed: 4
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
// a torn tail, a rename to redo) opens: its manifest becomes per-partition state (version 2
// JSON, at once migrated to state logs as Open takes the partitions) and the marker that keeps
// older sinks out.
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
	if m, err := mem.ReadFile("/out/" + manifestName); err != nil || string(m) != `{"version":3}` {
		t.Fatalf("manifest after the migration: %s %v", m, err)
	}
	for _, name := range []string{"t-0", "t-1"} {
		if j, err := mem.ReadFile("/out/.state/" + name + ".json"); err != nil || string(j) != tombstone {
			t.Fatalf("%s.json: %s %v, want %s", name, j, err, tombstone)
		}
		if _, err := mem.Stat("/out/.state/" + name + logSuffix); err != nil {
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

// TestCrashAnywhereInAGroup is TestCrashAnywhere for two sinks sharing a directory, as two
// members of a consumer group do: the partitions are assigned at random and reassigned at
// rebalances (every member resets, in random order; sometimes a partition's new owner writes
// before its former owner has reset, and must get ErrReplay), a filesystem operation fails at
// a random point, and the process or the machine crashes, over and over. In the end every
// record is in the finished files exactly once, and no in-progress file is left.
func TestCrashAnywhereInAGroup(t *testing.T) {
	seeds := uint64(200)
	if n, err := strconv.ParseUint(os.Getenv("WEIR_CRASH_SEEDS"), 10, 64); err == nil && n > 0 {
		seeds = n
	}
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { groupCrashScenario(t, seed) })
	}
}

func groupCrashScenario(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 11))
	const total, parts = 40, 3
	mem := vfs.NewMem()
	committed := make([]int64, parts) // next offset to write, per partition
	format := Format(rng.IntN(2))
	rollCount := rng.IntN(8)
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	syncSize, syncInterval := randomSync(rng)
	done := func() bool {
		for _, c := range committed {
			if c < total {
				return false
			}
		}
		return true
	}
	for round := 0; ; round++ {
		if round > 1000 {
			t.Fatal("no progress")
		}
		last := done()
		var ops int
		failAt := 1 + rng.IntN(80)
		if last || rng.IntN(5) == 0 {
			failAt = -1
		}
		fsys := vfs.NewFaulty(mem, vfs.InjectorFunc(func(vfs.Op, string) error {
			ops++
			if ops == failAt {
				return vfs.ErrInjected
			}
			return nil
		}))
		cfg := Config{Dir: "/out", RollSize: int64(4 + rng.IntN(40)), RollCount: rollCount, RollInterval: time.Minute,
			SyncSize: syncSize, SyncInterval: syncInterval, Format: format, FS: fsys, Now: clock.Now}
		var members [2]*Sink
		crashed := false
		for i := range members {
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			s.manual = true
			members[i] = s
			if err := s.Open(ctx); err != nil {
				if failAt < 0 {
					t.Fatalf("open without a fault: %v", err)
				}
				crashed = true
				break
			}
		}
		// The runner resets each member before it joins; a failure is a crash.
		for i := 0; !crashed && i < len(members); i++ {
			if err := members[i].Reset(); err != nil {
				if failAt < 0 {
					t.Fatalf("reset without a fault: %v", err)
				}
				crashed = true
			}
		}
		if last && !crashed {
			for _, s := range members {
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
			break
		}
		owner := make([]int, parts)
		held := [2]map[int32]bool{{}, {}} // what each member took since its last Reset
		assign := func() {
			for p := range owner {
				owner[p] = rng.IntN(2)
			}
		}
		assign()
		// As the runner, each member reads on from where its last Write of a partition ended,
		// and from the committed offsets after it joined again, and commits what Durable
		// reports.
		pos := slices.Clone(committed)
		commit := func(s *Sink) {
			d, err := s.Durable()
			if err != nil {
				return // broken: the next Write fails
			}
			for _, o := range d {
				committed[o.Partition] = max(committed[o.Partition], o.Offset)
			}
		}
		for step := 0; !crashed && !done() && step < 30; step++ {
			p := int32(rng.IntN(parts))
			m := owner[p]
			to := min(pos[p]+int64(1+rng.IntN(6)), total)
			clock.advance(time.Duration(rng.IntN(20)) * time.Second)
			if i := rng.IntN(2); rng.IntN(3) == 0 {
				members[i].tick() // the timer: rolls and syncs by time (a failure shows later)
				commit(members[i])
			}
			background := rng.IntN(4) == 0
			if background {
				startBackground(t, members[m]) // syncs that run while the Write appends
			}
			err := members[m].Write(ctx, msgs("t", p, pos[p], to))
			if background {
				finishBackground(members[m]) // a failure shows in the next Write
			}
			switch {
			case err == nil:
				held[m][p] = true
				pos[p] = to
			case held[1-m][p] && errors.Is(err, connectors.ErrReplay):
				continue // the former owner has not reset yet: the runner reads again later
			case failAt < 0:
				t.Fatalf("write without a fault: %v", err)
			default:
				crashed = true
				continue
			}
			if rng.IntN(5) != 0 { // else the commit is lost (the process dies, or a rebalance comes first)
				commit(members[m])
			}
			if rng.IntN(6) == 0 {
				// A rebalance: the members reset in random order, and a partition's new owner may
				// write before its former owner has.
				assign()
				first := rng.IntN(2)
				for _, i := range []int{first, 1 - first} {
					if rng.IntN(3) == 0 {
						q := int32(rng.IntN(parts))
						if o := owner[q]; held[1-o][q] && committed[q] < total {
							err := members[o].Write(ctx, msgs("t", q, committed[q], committed[q]+1))
							if err == nil || (!errors.Is(err, connectors.ErrReplay) && failAt < 0) {
								t.Fatalf("write of a partition the other member holds: %v", err)
							}
						}
					}
					if err := members[i].Reset(); err != nil {
						if failAt < 0 {
							t.Fatalf("reset without a fault: %v", err)
						}
						crashed = true
						break
					}
					held[i] = map[int32]bool{}
				}
				copy(pos, committed)
			}
		}
		if !crashed && rng.IntN(4) == 0 {
			for _, s := range members {
				s.Close() // a clean stop, which may itself fail
			}
		}
		for _, s := range members {
			if s != nil {
				abandon(s)
			}
		}
		mem = crash(mem, rng)
	}
	got := finished(t, mem, "/out", format)
	for p := range parts {
		if g := got[fmt.Sprintf("t/%d", p)]; strings.Join(g, ",") != strings.Join(want(0, total), ",") {
			t.Fatalf("partition %d holds %v", p, g)
		}
	}
	names, _ := mem.List("/out")
	for _, n := range names {
		if strings.HasSuffix(n, inProgressSuffix) {
			t.Fatalf("%s left after a clean close: %v", n, names)
		}
		if first, last, ok := offsetsOf(n); ok && rollCount > 0 && last-first+1 > int64(rollCount) {
			t.Fatalf("%s holds more than RollCount %d records", n, rollCount)
		}
	}
}
