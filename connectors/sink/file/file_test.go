package file

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/storage"
	"github.com/weirhq/weir/storage/vfs"
)

var ctx = context.Background()

func msgs(topic string, partition int32, from, to int64) []connectors.Message {
	var out []connectors.Message
	for o := from; o < to; o++ {
		out = append(out, connectors.Message{Topic: topic, Partition: partition, Offset: o,
			Record: storage.Record{Value: []byte(fmt.Sprintf("v%02d", o))}})
	}
	return out
}

// openSink opens a manual sink: no background goroutine, so that what happens depends on the
// test's steps alone; the test calls tick where the background would make records durable or
// roll by time.
func openSink(t testing.TB, cfg Config) *Sink {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.manual = true
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// openLive opens a sink with its background goroutine, as in production.
func openLive(t testing.TB, cfg Config) *Sink {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// abandon drops s as a crashed process would: no roll, no manifest; only the timer stops, so
// that it cannot touch a directory another sink now owns.
func abandon(s *Sink) {
	s.mu.Lock()
	stop, done := s.stop, s.done
	s.stop, s.done, s.open = nil, nil, false
	s.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}

// finished reads the finished files of dir: per "topic/partition", the values in name order.
// It checks that every name's offset range matches the count of values in the file, and that
// no in-progress file has a visible name.
func finished(t *testing.T, fsys vfs.FS, dir string, format Format) map[string][]string {
	t.Helper()
	names, err := fsys.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, name := range names {
		if strings.HasPrefix(name, ".") {
			continue
		}
		if strings.Contains(name, "inprogress") {
			t.Fatalf("in-progress file with a visible name: %s", name)
		}
		// <topic>-<partition>-<first>-<last><suffix>
		base := strings.TrimSuffix(strings.TrimSuffix(name, ".txt"), ".bin")
		f := strings.Split(base, "-")
		if len(f) != 4 {
			t.Fatalf("file name %s", name)
		}
		first, _ := strconv.ParseInt(f[2], 10, 64)
		last, _ := strconv.ParseInt(f[3], 10, 64)
		vals := readValues(t, fsys, filepath.Join(dir, name), format)
		if int64(len(vals)) != last-first+1 {
			t.Fatalf("%s holds %d records, its name says %d", name, len(vals), last-first+1)
		}
		k := f[0] + "/" + f[1]
		out[k] = append(out[k], vals...)
	}
	return out
}

func readValues(t *testing.T, fsys vfs.FS, name string, format Format) []string {
	t.Helper()
	f, err := fsys.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size, _ := f.Size()
	b := make([]byte, size)
	if _, err := f.ReadAt(b, 0); err != nil && size > 0 {
		t.Fatal(err)
	}
	var vals []string
	if format == Lines {
		if len(b) == 0 || b[len(b)-1] != '\n' {
			t.Fatalf("%s does not end with a newline: %q", name, b)
		}
		return strings.Split(string(b[:len(b)-1]), "\n")
	}
	for len(b) > 0 {
		if len(b) < lengthPrefix {
			t.Fatalf("%s: torn length", name)
		}
		n := int(binary.BigEndian.Uint32(b))
		if len(b) < lengthPrefix+n {
			t.Fatalf("%s: torn value", name)
		}
		vals = append(vals, string(b[lengthPrefix:lengthPrefix+n]))
		b = b[lengthPrefix+n:]
	}
	return vals
}

func want(from, to int64) []string {
	var out []string
	for o := from; o < to; o++ {
		out = append(out, fmt.Sprintf("v%02d", o))
	}
	return out
}

func TestRollsBySize(t *testing.T) {
	dir := t.TempDir()
	s := openSink(t, Config{Dir: dir, RollSize: 20}) // "vNN\n" is 4 bytes: 5 records a file
	for from := int64(0); from < 23; from += 3 {
		if err := s.Write(ctx, msgs("t", 0, from, min(from+3, 23))); err != nil {
			t.Fatal(err)
		}
		// Whatever is visible now is whole.
		got := finished(t, vfs.OS, dir, Lines)
		if n := len(got["t/0"]); n%5 != 0 || strings.Join(got["t/0"], ",") != strings.Join(want(0, int64(n)), ",") {
			t.Fatalf("after writing up to %d, visible: %v", from+3, got)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := vfs.OS.List(dir)
	wantNames := []string{".lock", ".manifest", ".state",
		"t-0-00000000000000000000-00000000000000000004.txt",
		"t-0-00000000000000000005-00000000000000000009.txt",
		"t-0-00000000000000000010-00000000000000000014.txt",
		"t-0-00000000000000000015-00000000000000000019.txt",
		"t-0-00000000000000000020-00000000000000000022.txt"}
	if strings.Join(names, " ") != strings.Join(wantNames, " ") {
		t.Fatalf("files after close:\n%s\nwant\n%s", strings.Join(names, "\n"), strings.Join(wantNames, "\n"))
	}
	if got := finished(t, vfs.OS, dir, Lines)["t/0"]; strings.Join(got, ",") != strings.Join(want(0, 23), ",") {
		t.Fatalf("content: %v", got)
	}
}

func TestRecordBiggerThanRollSize(t *testing.T) {
	mem := vfs.NewMem()
	s := openSink(t, Config{Dir: "/out", RollSize: 3, FS: mem})
	if err := s.Write(ctx, msgs("t", 0, 0, 3)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := mem.List("/out")
	if len(names) != 6 { // the lock, the manifest, the state directory and a file per record
		t.Fatalf("files: %v", names)
	}
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestRollsByAge(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	mem := vfs.NewMem()
	s := openSink(t, Config{Dir: "/out", RollSize: 1 << 20, RollInterval: time.Minute, FS: mem, Now: clock.Now})
	visible := func() []string {
		t.Helper()
		var out []string
		for k, v := range finished(t, mem, "/out", Lines) {
			out = append(out, k+":"+strings.Join(v, ","))
		}
		return out
	}
	write := func(from, to int64) {
		t.Helper()
		if err := s.Write(ctx, msgs("t", 0, from, to)); err != nil {
			t.Fatal(err)
		}
	}
	write(0, 3)
	clock.advance(30 * time.Second)
	write(3, 4)
	if err := s.rollDue(); err != nil || len(visible()) != 0 {
		t.Fatalf("rolled a file 30 s old: %v %v", visible(), err)
	}
	clock.advance(31 * time.Second)
	if err := s.rollDue(); err != nil {
		t.Fatal(err)
	}
	if got := visible(); len(got) != 1 || got[0] != "t/0:v00,v01,v02,v03" {
		t.Fatalf("after a minute: %v", got)
	}
	// A Write also rolls a file that has come of age before adding to it.
	write(4, 5)
	clock.advance(time.Minute)
	write(5, 6)
	names, _ := mem.List("/out")
	if !strings.Contains(strings.Join(names, " "), "t-0-00000000000000000004-00000000000000000004.txt") {
		t.Fatalf("write did not roll the old file: %v", names)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := finished(t, mem, "/out", Lines)["t/0"]; strings.Join(got, ",") != strings.Join(want(0, 6), ",") {
		t.Fatalf("content: %v", got)
	}
}

// TestTimerRollsIdleFile checks that the sink's own timer rolls a file no Write comes for.
func TestTimerRollsIdleFile(t *testing.T) {
	dir := t.TempDir()
	s := openLive(t, Config{Dir: dir, RollSize: 1 << 20, RollInterval: 30 * time.Millisecond})
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

func TestLengthPrefixed(t *testing.T) {
	mem := vfs.NewMem()
	s := openSink(t, Config{Dir: "/out", RollSize: 1 << 20, Format: LengthPrefixed, FS: mem})
	vals := []string{"a\nb", "", "\x00\xff", strings.Repeat("z", 1000)}
	var in []connectors.Message
	for i, v := range vals {
		in = append(in, connectors.Message{Topic: "bin", Offset: int64(i), Record: storage.Record{Value: []byte(v)}})
	}
	if err := s.Write(ctx, in); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got := finished(t, mem, "/out", LengthPrefixed)["bin/0"]
	if len(got) != len(vals) {
		t.Fatalf("got %q", got)
	}
	for i := range vals {
		if got[i] != vals[i] {
			t.Fatalf("value %d: %q, want %q", i, got[i], vals[i])
		}
	}
}

func TestPartitionsAndTopicsGetTheirOwnFiles(t *testing.T) {
	mem := vfs.NewMem()
	s := openSink(t, Config{Dir: "/out", RollSize: 1 << 20, FS: mem})
	var in []connectors.Message
	for o := int64(0); o < 4; o++ { // interleaved, as a Write may get them
		in = append(in, msgs("a", 0, o, o+1)...)
		in = append(in, msgs("a", 1, o+10, o+11)...)
		in = append(in, msgs(".hidden", 0, o, o+1)...)
	}
	if err := s.Write(ctx, in); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got := finished(t, mem, "/out", Lines)
	if strings.Join(got["a/0"], ",") != strings.Join(want(0, 4), ",") ||
		strings.Join(got["a/1"], ",") != strings.Join(want(10, 14), ",") ||
		strings.Join(got["+.hidden/0"], ",") != strings.Join(want(0, 4), ",") {
		t.Fatalf("files: %v", got)
	}
}

func TestSkipsWhatWasWritten(t *testing.T) {
	mem := vfs.NewMem()
	s := openSink(t, Config{Dir: "/out", RollSize: 12, FS: mem})
	for _, r := range [][2]int64{{0, 10}, {5, 15}, {0, 3}, {15, 16}} {
		if err := s.Write(ctx, msgs("t", 0, r[0], r[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := finished(t, mem, "/out", Lines)["t/0"]; strings.Join(got, ",") != strings.Join(want(0, 16), ",") {
		t.Fatalf("content: %v", got)
	}
}

// TestCrashReplay is the runner's crash: records written, the process dies before it committed
// their offsets (the sink is not closed), and a new sink on the directory gets them again from
// the committed offset. Each record is in the files once.
func TestCrashReplay(t *testing.T) {
	for _, machine := range []bool{false, true} {
		t.Run(fmt.Sprintf("machine crash %v", machine), func(t *testing.T) {
			mem := vfs.NewMem()
			cfg := Config{Dir: "/out", RollSize: 30, FS: mem}
			s := openSink(t, cfg)
			for from := int64(0); from < 100; from += 10 {
				if err := s.Write(ctx, msgs("t", 0, from, from+10)); err != nil {
					t.Fatal(err)
				}
			}
			abandon(s) // committed: 50; written: 100
			if machine {
				mem = mem.Crash(rand.New(rand.NewPCG(1, 2)))
			} else {
				mem = mem.Clone()
			}
			cfg.FS = mem
			s2 := openSink(t, cfg)
			for from := int64(50); from < 150; from += 7 {
				if err := s2.Write(ctx, msgs("t", 0, from, min(from+7, 150))); err != nil {
					t.Fatal(err)
				}
			}
			if err := s2.Close(); err != nil {
				t.Fatal(err)
			}
			if got := finished(t, mem, "/out", Lines)["t/0"]; strings.Join(got, ",") != strings.Join(want(0, 150), ",") {
				t.Fatalf("content after the crash: %v", got)
			}
		})
	}
}

// TestCrashAnywhere fails one filesystem operation at a random point (a short write, a failed
// fsync, a rename that did not happen...), then crashes the process or the machine, reopens a
// sink on what is left and replays from the committed offsets, as the runner does, over and
// over. In the end every record is in the finished files exactly once, and no in-progress file
// is left. As the runner does, it commits only what Durable reports, after a Write or a tick of
// the timer; the sink makes records durable at every Write, every few bytes, or only at rolls and
// by time (the tick), so that crashes fall between an append and its sync, between a file's
// fsync and its state, and into a state record being written (a short write).
func TestCrashAnywhere(t *testing.T) {
	seeds := uint64(200)
	if n, err := strconv.ParseUint(os.Getenv("WEIR_CRASH_SEEDS"), 10, 64); err == nil && n > 0 {
		seeds = n // make soak runs many more
	}
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { crashScenario(t, seed) })
	}
}

func crashScenario(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	const total = 60
	mem := vfs.NewMem()
	committed := map[int32]int64{0: 0, 1: 0} // next offset to write, per partition
	// Partition 1 belongs to a topic whose name starts with '.': its finished files must not be
	// hidden, and a rename a crash interrupted must be redone.
	topics := map[int32]string{0: "t", 1: ".t"}
	format := Format(rng.IntN(2))
	// Fixed for the scenario, so that every finished file can be checked against it: RollCount
	// 0 (no limit) to 7; IdleTimeout none, 20 s or 40 s (the clock moves up to 30 s a Write).
	rollCount := rng.IntN(8)
	idle := time.Duration(rng.IntN(3)) * 20 * time.Second
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	syncSize, syncInterval := randomSync(rng)
	for round := 0; ; round++ {
		if round > 500 {
			t.Fatal("no progress")
		}
		done := committed[0] == total && committed[1] == total
		// Fail the n-th operation of this incarnation (none on the last, clean one).
		var ops int
		failAt := 1 + rng.IntN(60)
		if done || rng.IntN(5) == 0 {
			failAt = -1
		}
		inj := vfs.InjectorFunc(func(op vfs.Op, name string) error {
			ops++
			if ops == failAt {
				return vfs.ErrInjected
			}
			return nil
		})
		s, err := New(Config{Dir: "/out", RollSize: int64(4 + rng.IntN(40)), RollCount: rollCount, RollInterval: time.Minute,
			IdleTimeout: idle, SyncSize: syncSize, SyncInterval: syncInterval, Format: format, FS: vfs.NewFaulty(mem, inj), Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		s.manual = true
		if err := s.Open(ctx); err != nil {
			if failAt < 0 {
				t.Fatalf("open without a fault: %v", err)
			}
			abandon(s)
			mem = crash(mem, rng)
			continue
		}
		if done {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			break
		}
		commitDurable(s, committed) // what Open took (the runner's tick)
		// The runner reads on from where its last Write ended, and from the committed offsets
		// after a restart.
		pos := map[int32]int64{0: committed[0], 1: committed[1]}
		for committed[0] < total || committed[1] < total {
			var in []connectors.Message
			for p := range int32(2) {
				to := min(pos[p]+int64(rng.IntN(6)), total)
				in = append(in, msgs(topics[p], p, pos[p], to)...)
				pos[p] = to
			}
			clock.advance(time.Duration(rng.IntN(30)) * time.Second)
			if rng.IntN(8) == 0 {
				s.rollDue() // a failure here shows in the next Write
			}
			if rng.IntN(4) == 0 {
				s.tick() // the timer: rolls and syncs by time (a failure shows in the next Write)
			}
			background := rng.IntN(4) == 0
			if background {
				startBackground(t, s) // syncs that run while the Write appends
			}
			if err := s.Write(ctx, in); err != nil {
				if failAt < 0 {
					t.Fatalf("write without a fault: %v", err)
				}
				break
			}
			if background && rng.IntN(3) == 0 {
				break // the process dies with the syncs in flight
			}
			if background {
				finishBackground(s) // a failure shows in the next Write
			}
			if rng.IntN(5) == 0 {
				break // the process dies before the runner commits
			}
			commitDurable(s, committed)
			if rng.IntN(8) == 0 {
				break
			}
		}
		if rng.IntN(4) == 0 {
			s.Close() // a clean stop, which may itself fail
		}
		abandon(s)
		mem = crash(mem, rng)
	}
	got := finished(t, mem, "/out", format)
	for p, name := range map[int32]string{0: "t", 1: "+.t"} {
		if g := got[fmt.Sprintf("%s/%d", name, p)]; strings.Join(g, ",") != strings.Join(want(0, total), ",") {
			t.Fatalf("partition %d holds %v", p, g)
		}
	}
	names, _ := mem.List("/out")
	for _, n := range names {
		if strings.HasSuffix(n, inProgressSuffix) || n == manifestTemp {
			t.Fatalf("%s left after a clean close: %v", n, names)
		}
		if first, last, ok := offsetsOf(n); ok && rollCount > 0 && last-first+1 > int64(rollCount) {
			t.Fatalf("%s holds more than RollCount %d records", n, rollCount)
		}
	}
}

// randomSync picks how a crash scenario's sinks make records durable: at every Write (SyncSize
// 1), every few bytes, or at rolls and by time only; SyncInterval the default (so at nearly
// every Write, as the fake clock moves seconds at a time), 45 s, or an hour (rolls only).
func randomSync(rng *rand.Rand) (int64, time.Duration) {
	size := []int64{1, int64(8 + rng.IntN(60)), 1 << 30}[rng.IntN(3)]
	return size, []time.Duration{0, 45 * time.Second, time.Hour}[rng.IntN(3)]
}

// commitDurable is the runner's commit: it moves committed (the next offset to read, per
// partition) to what s reports durable.
func commitDurable(s *Sink, committed map[int32]int64) {
	d, err := s.Durable()
	if err != nil {
		return // broken: the runner restarts it
	}
	for _, o := range d {
		committed[o.Partition] = max(committed[o.Partition], o.Offset)
	}
}

// offsetsOf returns the offset range in a finished file's name.
func offsetsOf(name string) (first, last int64, ok bool) {
	if strings.HasPrefix(name, ".") {
		return 0, 0, false
	}
	f := strings.Split(strings.TrimSuffix(strings.TrimSuffix(name, ".txt"), ".bin"), "-")
	if len(f) != 4 {
		return 0, 0, false
	}
	first, err1 := strconv.ParseInt(f[2], 10, 64)
	last, err2 := strconv.ParseInt(f[3], 10, 64)
	return first, last, err1 == nil && err2 == nil
}

// crash returns what a process crash (every written byte kept) or a machine crash (a random
// part of what was not fsynced kept) leaves of mem.
func crash(mem *vfs.Mem, rng *rand.Rand) *vfs.Mem {
	if rng.IntN(2) == 0 {
		return mem.Clone()
	}
	return mem.Crash(rng)
}

// TestRecovery opens a sink on directories that a crash or damage left behind.
func TestRecovery(t *testing.T) {
	const inprog = ".t-0-00000000000000000000.inprogress"
	const final = "t-0-00000000000000000000-00000000000000000001.txt"
	manifestWith := func(file string, size int64, renames string) string {
		return fmt.Sprintf(`{"version":1,"partitions":[{"topic":"t","partition":0,"last":1,"file":%q,"first":0,"size":%d,"opened":1}],"renames":%s}`,
			file, size, renames)
	}
	cases := []struct {
		name    string
		files   map[string]string
		wantErr string
		want    []string // finished values after Open and Close
	}{
		{name: "torn tail is cut", files: map[string]string{
			manifestName: manifestWith(inprog, 8, "[]"), inprog: "v00\nv01\nv0"},
			want: []string{"v00", "v01"}},
		{name: "unknown in-progress file is removed", files: map[string]string{
			manifestName: `{"version":1,"partitions":[]}`, inprog: "v00\n", manifestTemp: "{"},
			want: nil},
		{name: "recorded rename is completed", files: map[string]string{
			manifestName: manifestWith("", 0, fmt.Sprintf(`[{"from":%q,"to":%q}]`, inprog, final)), inprog: "v00\nv01\n"},
			want: []string{"v00", "v01"}},
		{name: "recorded rename already done", files: map[string]string{
			manifestName: manifestWith("", 0, fmt.Sprintf(`[{"from":%q,"to":%q}]`, inprog, final)), final: "v00\nv01\n"},
			want: []string{"v00", "v01"}},
		{name: "renamed file lost", files: map[string]string{
			manifestName: manifestWith("", 0, fmt.Sprintf(`[{"from":%q,"to":%q}]`, inprog, final))},
			wantErr: "never renamed"},
		{name: "in-progress file missing", files: map[string]string{manifestName: manifestWith(inprog, 8, "[]")},
			wantErr: "in-progress file of t/0"},
		{name: "in-progress file shorter than synced", files: map[string]string{
			manifestName: manifestWith(inprog, 8, "[]"), inprog: "v00\n"}, wantErr: "shorter"},
		{name: "corrupt manifest", files: map[string]string{manifestName: `{"version":1,"partit`}, wantErr: "corrupt"},
		{name: "unknown manifest version", files: map[string]string{manifestName: `{"version":9}`}, wantErr: "version 9"},
		{name: "manifest names a path", files: map[string]string{
			manifestName: manifestWith("../escape", 1, "[]")}, wantErr: "names the file"},
		{name: "manifest renames from a path", files: map[string]string{
			manifestName: manifestWith("", 0, fmt.Sprintf(`[{"from":"../.x.inprogress","to":%q}]`, final))}, wantErr: `names the file "../.x.inprogress"`},
		{name: "manifest renames to a path", files: map[string]string{
			manifestName: manifestWith("", 0, fmt.Sprintf(`[{"from":%q,"to":"../x.txt"}]`, inprog)), inprog: "v00\n"}, wantErr: `names the file "../x.txt"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mem := vfs.NewMem()
			if err := mem.MkdirAll("/out"); err != nil {
				t.Fatal(err)
			}
			for name, content := range c.files {
				if err := mem.WriteFile("/out/"+name, []byte(content)); err != nil {
					t.Fatal(err)
				}
			}
			s, _ := New(Config{Dir: "/out", RollSize: 100, FS: mem})
			err := s.Open(ctx)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("open: %v, want an error with %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			got := finished(t, mem, "/out", Lines)["t/0"]
			if strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Fatalf("finished: %v, want %v", got, c.want)
			}
			names, _ := mem.List("/out")
			for _, n := range names {
				if strings.HasPrefix(n, ".") && n != manifestName && n != lockName && n != stateDir {
					t.Fatalf("left behind: %v", names)
				}
			}
		})
	}
}

func TestReopenSameSink(t *testing.T) {
	mem := vfs.NewMem()
	s := openSink(t, Config{Dir: "/out", RollSize: 1 << 20, RollInterval: time.Hour, FS: mem})
	if err := s.Write(ctx, msgs("t", 0, 0, 5)); err != nil {
		t.Fatal(err)
	}
	// The runner closes and reopens the same sink when it restarts the actor, then replays.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, msgs("t", 0, 2, 8)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := finished(t, mem, "/out", Lines)["t/0"]; strings.Join(got, ",") != strings.Join(want(0, 8), ",") {
		t.Fatalf("content: %v", got)
	}
}

func TestBrokenUntilReopened(t *testing.T) {
	mem := vfs.NewMem()
	fail := true
	fsys := vfs.NewFaulty(mem, vfs.InjectorFunc(func(op vfs.Op, name string) error {
		if op == vfs.OpSync && fail {
			return vfs.ErrNoSpace
		}
		return nil
	}))
	s, _ := New(Config{Dir: "/out", RollSize: 1 << 20, SyncSize: 1, FS: fsys}) // every Write syncs
	fail = false
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Member().Write(ctx, msgs("t", 0, 0, 1)); err != nil { // takes the partition
		t.Fatal(err)
	}
	fail = true
	if err := s.Member().Write(ctx, msgs("t", 0, 0, 3)); !errors.Is(err, vfs.ErrNoSpace) {
		t.Fatalf("write on a full disk: %v", err)
	}
	fail = false
	if err := s.Member().Write(ctx, msgs("t", 0, 0, 3)); !errors.Is(err, ErrBroken) {
		t.Fatalf("write after a failed write: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Member().Write(ctx, msgs("t", 0, 0, 3)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := finished(t, mem, "/out", Lines)["t/0"]; strings.Join(got, ",") != strings.Join(want(0, 3), ",") {
		t.Fatalf("content: %v", got)
	}
}

func TestBadConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{RollSize: 10}, "no directory"},
		{Config{Dir: "d"}, "RollSize 0"},
		{Config{Dir: "d", RollSize: -1}, "RollSize -1"},
		{Config{Dir: "d", RollSize: 1, RollInterval: -time.Second}, "negative RollInterval"},
		{Config{Dir: "d", RollSize: 1, RollCount: -1}, "negative RollCount"},
		{Config{Dir: "d", RollSize: 1, Format: 9}, "unknown format"},
		{Config{Dir: "d", RollSize: 1, Suffix: "/x"}, "separator"},
	} {
		if _, err := New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %+v: %v, want an error with %q", c.cfg, err, c.want)
		}
	}
	if err := DefaultConfig("d").Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}

	// A directory under a regular file cannot be created, even by root.
	base := t.TempDir()
	if err := os.WriteFile(filepath.Join(base, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s, _ := New(Config{Dir: filepath.Join(base, "file", "out"), RollSize: 10})
	if err := s.Open(ctx); err == nil {
		t.Fatal("open under a regular file succeeded")
	}
	if err := s.Write(ctx, msgs("t", 0, 0, 1)); err == nil {
		t.Fatal("write to a sink that is not open succeeded")
	}

	// A directory without write permission (root ignores permissions).
	if os.Geteuid() != 0 {
		ro := filepath.Join(base, "ro")
		if err := os.Mkdir(ro, 0o555); err != nil {
			t.Fatal(err)
		}
		s, _ := New(Config{Dir: ro, RollSize: 10})
		if err := s.Open(ctx); err == nil || !errors.Is(err, os.ErrPermission) {
			t.Fatalf("open of a read-only directory: %v", err)
		}
	}
}

// TestFileNames: offsets are zero-padded, so names sort in offset order; a topic starting with
// '.' gets a '+' so that its files are not hidden.
func TestFileNames(t *testing.T) {
	p := &part{tpKey: tpKey{"t", 3}}
	if err := p.setFileTopic(); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range [][2]int64{{9, 9}, {10, 99}, {100, 100}} {
		p.first, p.last = r[0], r[1]
		names = append(names, p.finishedName(".txt"))
	}
	if !sort.StringsAreSorted(names) || names[0] != "t-3-00000000000000000009-00000000000000000009.txt" {
		t.Fatalf("names %v", names)
	}
	if n := p.inProgressName(10); n != ".t-3-00000000000000000010.inprogress" {
		t.Fatalf("in-progress name %s", n)
	}
	dot := &part{tpKey: tpKey{".t", 0}}
	if err := dot.setFileTopic(); err != nil {
		t.Fatal(err)
	}
	if n := dot.finishedName(".txt"); strings.HasPrefix(n, ".") || !strings.HasPrefix(n, "+.t-0-") {
		t.Fatalf("finished name of topic .t: %s", n)
	}
}

// FuzzManifest opens a sink on a directory with an arbitrary manifest: Open either fails with an
// error or recovers a directory that Close then leaves with finished files only.
func FuzzManifest(f *testing.F) {
	f.Add([]byte(`{"version":1,"partitions":[{"topic":"t","partition":0,"last":1,"file":".t-0-00000000000000000000.inprogress","first":0,"size":4,"opened":1}]}`))
	f.Add([]byte(`{"version":1,"partitions":[],"renames":[{"from":".a.inprogress","to":"a.txt"}]}`))
	f.Add([]byte(`{"version":1}`))
	f.Fuzz(func(t *testing.T, m []byte) {
		mem := vfs.NewMem()
		mem.MkdirAll("/out")
		mem.WriteFile("/out/"+manifestName, m)
		mem.WriteFile("/out/.t-0-00000000000000000000.inprogress", []byte("v00\nv01\n"))
		mem.WriteFile("/out/.a.inprogress", []byte("x\n"))
		s, _ := New(Config{Dir: "/out", RollSize: 100, FS: mem})
		if err := s.Open(ctx); err != nil {
			return
		}
		if err := s.Write(ctx, msgs("t", 0, 0, 5)); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		names, _ := mem.List("/out")
		for _, n := range names {
			if strings.HasSuffix(n, inProgressSuffix) {
				t.Fatalf("%s left after close", n)
			}
		}
	})
}

// TestBadTopicName: a record of a topic that cannot name a file fails the Write, and the error
// says why.
func TestBadTopicName(t *testing.T) {
	for _, topic := range []string{"a b", "a/b", "+.a", ""} {
		s := openSink(t, Config{Dir: "/out", RollSize: 100, FS: vfs.NewMem()})
		if err := s.Write(ctx, msgs(topic, 0, 0, 1)); err == nil || !strings.Contains(err.Error(), "topic") {
			t.Fatalf("topic %q: %v", topic, err)
		}
		s.Close()
	}
}

// TestDirectorySyncs checks the order of directory fsyncs, which vfs.Mem cannot check by a
// crash (it makes directory entries durable at once): an in-progress file's creation, a
// rename of a finished file and a removal are each followed by a directory fsync before the
// manifest that relies on them is renamed into place, and before Open, Write or Close returns.
func TestDirectorySyncs(t *testing.T) {
	mem := vfs.NewMem()
	if err := mem.MkdirAll("/out"); err != nil {
		t.Fatal(err)
	}
	// A directory a crash left: a recorded rename to redo and an unknown in-progress file.
	const inprog, final = ".t-0-00000000000000000000.inprogress", "t-0-00000000000000000000-00000000000000000001.txt"
	for name, content := range map[string]string{
		manifestName:                           fmt.Sprintf(`{"version":1,"partitions":[{"topic":"t","partition":0,"last":1}],"renames":[{"from":%q,"to":%q}]}`, inprog, final),
		inprog:                                 "v00\nv01\n",
		".t-1-00000000000000000005.inprogress": "v05\n",
	} {
		if err := mem.WriteFile("/out/"+name, []byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	var unsynced []string // directory changes since the last directory fsync
	rec := vfs.InjectorFunc(func(op vfs.Op, name string) error {
		base := filepath.Base(name)
		switch {
		case op == vfs.OpSyncDir:
			unsynced = nil
		case op == vfs.OpRename && strings.HasSuffix(base, vfs.TmpSuffix),
			op == vfs.OpWrite && strings.HasSuffix(base, logSuffix):
			if len(unsynced) > 0 {
				t.Errorf("manifest or state written before the directory fsync of %v", unsynced)
			}
		case op == vfs.OpCreate && !strings.HasSuffix(base, vfs.TmpSuffix), op == vfs.OpRename, op == vfs.OpRemove:
			unsynced = append(unsynced, op.String()+" "+base)
		}
		return nil
	})
	check := func(what string) {
		t.Helper()
		if len(unsynced) > 0 {
			t.Fatalf("%s returned with directory changes not synced: %v", what, unsynced)
		}
	}
	s, err := New(Config{Dir: "/out", RollSize: 12, SyncSize: 1, FS: vfs.NewFaulty(mem, rec)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	check("Open")
	for from := int64(2); from < 20; from += 3 {
		if err := s.Member().Write(ctx, msgs("t", 0, from, from+3)); err != nil { // durable; rolls every 3 records
			t.Fatal(err)
		}
		check("Write")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check("Close")
	if got := finished(t, mem, "/out", Lines)["t/0"]; strings.Join(got, ",") != strings.Join(want(0, 20), ",") {
		t.Fatalf("finished: %v", got)
	}
}

// TestOpenSyncsACutThatWasNotDurable: an Open that cut an in-progress file's tail and died
// before the cut was durable leaves a file whose length matches the manifest while the disk may
// still hold the tail; the next Open must make the length durable before it goes on, or a
// machine crash brings the tail back into a file the sink then finishes and names (found by
// TestCrashAnywhere with 5,000 seeds).
func TestOpenSyncsACutThatWasNotDurable(t *testing.T) {
	const inprog = ".t-0-00000000000000000000.inprogress"
	mem := vfs.NewMem()
	if err := mem.MkdirAll("/out"); err != nil {
		t.Fatal(err)
	}
	f, err := mem.Create("/out/" + inprog)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("v00\nv01\nv02\nv03\n")) // durable: 4 records
	f.Sync()
	f.Truncate(8) // the cut to the 2 records the manifest knows, never synced
	f.Close()
	manifest := `{"version":1,"partitions":[{"topic":"t","partition":0,"last":1,"file":"` + inprog + `","first":0,"size":8,"opened":1}]}`
	if err := vfs.WriteFileAtomic(mem, "/out/"+manifestName, []byte(manifest)); err != nil {
		t.Fatal(err)
	}
	s := openSink(t, Config{Dir: "/out", RollSize: 1 << 20, FS: mem})
	if err := s.Close(); err != nil { // finishes the file: t-0-0-1
		t.Fatal(err)
	}
	crashed := mem.Crash(nil)                         // a machine crash: only what was synced is left
	got := finished(t, crashed, "/out", Lines)["t/0"] // checks each name against its records
	if strings.Join(got, ",") != "v00,v01" {
		t.Fatalf("after Open and a machine crash the partition holds %v, want v00,v01", got)
	}
}
