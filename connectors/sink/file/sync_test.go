package file

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/storage/vfs"
)

// These tests are of how the sink makes what it appended durable: by size, by time, in the
// background while Writes go on, through a state log whose last record may be torn.

// durableOf returns what s reports durable, as "topic/partition:offset" in order.
func durableOf(t *testing.T, s *Sink) string {
	t.Helper()
	d, err := s.Durable()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, o := range d {
		out = append(out, fmt.Sprintf("%s/%d:%d", o.Topic, o.Partition, o.Offset))
	}
	return strings.Join(out, " ")
}

// startBackground starts the syncs the background would start now, and leaves them to
// finishBackground (or to a seal, Reset or Close that waits for them).
func startBackground(t *testing.T, s *Sink) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	jobs, err := s.startDue()
	s.manualJobs = append(s.manualJobs, jobs...)
	if err != nil {
		t.Logf("start: %v", err)
	}
}

// finishBackground runs and finishes the syncs startBackground started.
func finishBackground(s *Sink) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	for _, j := range s.manualJobs {
		if j.ended {
			continue
		}
		if !j.ran {
			s.run(j)
		}
		if ferr := s.finish(j); ferr != nil && err == nil {
			err = ferr
		}
	}
	s.manualJobs = nil
	return err
}

// TestDurableReportsOnlyWhatWasSynced: Write appends; Durable moves only when the partition was
// made durable, by size or by time, and a machine crash cuts what was appended after that.
func TestDurableReportsOnlyWhatWasSynced(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	mem := vfs.NewMem()
	cfg := Config{Dir: "/out", RollSize: 1 << 20, SyncSize: 50, SyncInterval: time.Minute, FS: mem, Now: clock.Now}
	s := openSink(t, cfg)
	if err := s.Write(ctx, msgs("t", 0, 0, 10)); err != nil { // 40 bytes
		t.Fatal(err)
	}
	if err := s.tick(); err != nil {
		t.Fatal(err)
	}
	if d := durableOf(t, s); d != "" {
		t.Fatalf("durable after 40 bytes, SyncSize 50: %q", d)
	}
	if err := s.Write(ctx, msgs("t", 0, 10, 13)); err != nil { // 52 bytes: due by size
		t.Fatal(err)
	}
	if d := durableOf(t, s); d != "" {
		t.Fatalf("durable before the background ran: %q", d)
	}
	if err := s.tick(); err != nil {
		t.Fatal(err)
	}
	if d := durableOf(t, s); d != "t/0:13" {
		t.Fatalf("durable after the sync by size: %q", d)
	}
	if err := s.Write(ctx, msgs("t", 0, 13, 15)); err != nil {
		t.Fatal(err)
	}
	clock.advance(59 * time.Second)
	if err := s.tick(); err != nil || durableOf(t, s) != "t/0:13" {
		t.Fatalf("durable before SyncInterval: %q %v", durableOf(t, s), err)
	}
	clock.advance(time.Second)
	if err := s.tick(); err != nil || durableOf(t, s) != "t/0:15" {
		t.Fatalf("durable at SyncInterval: %q %v", durableOf(t, s), err)
	}
	if err := s.Write(ctx, msgs("t", 0, 15, 20)); err != nil { // appended, never durable
		t.Fatal(err)
	}
	abandon(s)
	mem = mem.Crash(nil) // only what was fsynced survives
	cfg.FS = mem
	s = openSink(t, cfg)
	if d := durableOf(t, s); d != "t/0:15" {
		t.Fatalf("durable after the crash: %q", d)
	}
	if err := s.Write(ctx, msgs("t", 0, 15, 25)); err != nil { // the runner's replay
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := finished(t, mem, "/out", Lines)["t/0"]; strings.Join(got, ",") != strings.Join(want(0, 25), ",") {
		t.Fatalf("content: %v", got)
	}
}

// TestSyncWhileWriting: a partition's sync starts, Writes append to it before the sync runs,
// and Durable then reports what the sync's snapshot held, not what was appended after it. A
// crash after the sync cuts the file to the snapshot.
func TestSyncWhileWriting(t *testing.T) {
	for _, machine := range []bool{false, true} {
		t.Run(fmt.Sprintf("machine crash %v", machine), func(t *testing.T) {
			mem := vfs.NewMem()
			cfg := Config{Dir: "/out", RollSize: 1 << 20, SyncSize: 1, FS: mem}
			s := openSink(t, cfg)
			if err := s.Write(ctx, msgs("t", 0, 0, 5)); err != nil {
				t.Fatal(err)
			}
			startBackground(t, s) // the snapshot: up to offset 4
			if err := s.Write(ctx, msgs("t", 0, 5, 9)); err != nil {
				t.Fatal(err)
			}
			if err := finishBackground(s); err != nil {
				t.Fatal(err)
			}
			if d := durableOf(t, s); d != "t/0:5" {
				t.Fatalf("durable after a sync that started at offset 4: %q", d)
			}
			abandon(s)
			if machine {
				mem = mem.Crash(rand.New(rand.NewPCG(7, 8)))
			} else {
				mem = mem.Clone()
			}
			cfg.FS = mem
			s = openSink(t, cfg)
			if d := durableOf(t, s); d != "t/0:5" {
				t.Fatalf("durable after the crash: %q", d)
			}
			if err := s.Write(ctx, msgs("t", 0, 5, 12)); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if got := finished(t, mem, "/out", Lines)["t/0"]; strings.Join(got, ",") != strings.Join(want(0, 12), ",") {
				t.Fatalf("content: %v", got)
			}
		})
	}
}

// TestSealWaitsForTheSync: a Write that rolls a file whose sync is running waits for the sync
// (here, a manual sink runs it) before it closes the file.
func TestSealWaitsForTheSync(t *testing.T) {
	mem := vfs.NewMem()
	s := openSink(t, Config{Dir: "/out", RollSize: 1 << 20, RollCount: 6, SyncSize: 1, FS: mem})
	if err := s.Write(ctx, msgs("t", 0, 0, 4)); err != nil {
		t.Fatal(err)
	}
	startBackground(t, s)
	if err := s.Write(ctx, msgs("t", 0, 4, 8)); err != nil { // rolls at 6
		t.Fatal(err)
	}
	if !s.manualJobs[0].ended {
		t.Fatal("the seal did not wait for the sync")
	}
	if d := durableOf(t, s); d != "t/0:8" { // a roll makes the Write durable
		t.Fatalf("durable after the roll: %q", d)
	}
	if err := finishBackground(s); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got, w := finishedNames(t, mem, "/out"), ranges(0, 0, 8, 6); strings.Join(got, " ") != strings.Join(w, " ") {
		t.Fatalf("files: %v, want %v", got, w)
	}
}

// TestCrashInTheStateWrite: the file of a partition is fsynced, and then its state record is
// torn (a short write), or written but its fsync fails, or never written (the process dies
// between the two). The sink breaks; after a process or machine crash the state is the last
// whole record, the file is cut to it, and the replay from what Durable reported before puts
// every record in the files once.
func TestCrashInTheStateWrite(t *testing.T) {
	for _, c := range []struct {
		name string
		op   vfs.Op
	}{{"torn record", vfs.OpWrite}, {"failed fsync", vfs.OpSync}} {
		for _, machine := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, machine crash %v", c.name, machine), func(t *testing.T) {
				mem := vfs.NewMem()
				fail, dataSynced := false, false
				fsys := vfs.NewFaulty(mem, vfs.InjectorFunc(func(op vfs.Op, name string) error {
					if fail && op == vfs.OpSync && strings.HasSuffix(name, inProgressSuffix) {
						dataSynced = true
					}
					if fail && op == c.op && strings.HasSuffix(name, logSuffix) {
						return vfs.ErrInjected
					}
					return nil
				}))
				cfg := Config{Dir: "/out", RollSize: 1 << 20, SyncSize: 1, FS: fsys}
				s := openSink(t, cfg)
				writeDurable(t, s, msgs("t", 0, 0, 5))
				fail = true
				if err := s.Write(ctx, msgs("t", 0, 5, 10)); err != nil {
					t.Fatal(err)
				}
				if err := s.tick(); !errors.Is(err, vfs.ErrInjected) || !dataSynced {
					t.Fatalf("sync with a failing state write: %v (file fsynced: %v)", err, dataSynced)
				}
				if _, err := s.Durable(); !errors.Is(err, ErrBroken) {
					t.Fatalf("Durable after a failed sync: %v", err)
				}
				abandon(s)
				if machine {
					mem = mem.Crash(rand.New(rand.NewPCG(9, 10)))
				} else {
					mem = mem.Clone()
				}
				cfg.FS = mem
				s = openSink(t, cfg)
				d := durableOf(t, s)
				switch {
				case c.op == vfs.OpWrite && d != "t/0:5":
					t.Fatalf("durable after a torn state: %q, want t/0:5", d)
				case d != "t/0:5" && d != "t/0:10":
					t.Fatalf("durable after a state whose fsync failed: %q", d)
				}
				if err := s.Write(ctx, msgs("t", 0, 5, 12)); err != nil { // from what was committed
					t.Fatal(err)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				if got := finished(t, mem, "/out", Lines)["t/0"]; strings.Join(got, ",") != strings.Join(want(0, 12), ",") {
					t.Fatalf("content: %v", got)
				}
			})
		}
	}
}

// TestReadLog: the last whole record is the state; a torn last record (short, or whole but its
// checksum wrong, or zeros) is cut; a bad record followed by more is corruption.
func TestReadLog(t *testing.T) {
	rec := func(last int64) []byte {
		b, err := logRecord(partState{Version: manifestVersion, manifestPart: manifestPart{Topic: "t", Last: last}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	whole := append(append(append([]byte(logMagic), rec(1)...), rec(2)...), rec(3)...)
	bad := bytes.Clone(rec(4))
	bad[len(bad)-2] ^= 1
	for _, c := range []struct {
		name    string
		log     []byte
		last    int64
		end     int
		corrupt bool
	}{
		{"whole", whole, 3, len(whole), false},
		{"short header", append(bytes.Clone(whole), rec(4)[:5]...), 3, len(whole), false},
		{"short record", append(bytes.Clone(whole), rec(4)[:20]...), 3, len(whole), false},
		{"bad checksum at the end", append(bytes.Clone(whole), bad...), 3, len(whole), false},
		{"zeros", append(bytes.Clone(whole), make([]byte, 100)...), 3, len(whole), false},
		{"bad checksum before more", append(append(bytes.Clone(whole), bad...), rec(5)...), 0, 0, true},
		{"no record", []byte(logMagic), 0, 0, true},
		{"not a log", []byte(`{"version":2}`), 0, 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			mem := vfs.NewMem()
			if err := mem.WriteFile("/log", c.log); err != nil {
				t.Fatal(err)
			}
			f, err := mem.Open("/log")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			st, end, size, err := readLog(f)
			switch {
			case c.corrupt && err == nil:
				t.Fatalf("read a corrupt log: state %+v", st)
			case c.corrupt:
			case err != nil:
				t.Fatal(err)
			case st.Last != c.last || end != int64(c.end) || size != int64(len(c.log)):
				t.Fatalf("last %d, end %d, size %d; want %d, %d, %d", st.Last, end, size, c.last, c.end, len(c.log))
			}
		})
	}
}

// FuzzStateLog: readLog of any bytes returns a state or an error, never a panic, and an end
// within the file.
func FuzzStateLog(f *testing.F) {
	r, _ := logRecord(partState{Version: manifestVersion, manifestPart: manifestPart{Topic: "t", Last: 3}})
	f.Add(append([]byte(logMagic), r...))
	f.Add(append(append([]byte(logMagic), r...), r[:9]...))
	f.Add(binary.BigEndian.AppendUint32([]byte(logMagic), 1<<31))
	f.Fuzz(func(t *testing.T, b []byte) {
		mem := vfs.NewMem()
		if err := mem.WriteFile("/log", b); err != nil {
			t.Fatal(err)
		}
		fl, err := mem.Open("/log")
		if err != nil {
			t.Fatal(err)
		}
		defer fl.Close()
		if _, end, size, err := readLog(fl); err == nil && (end > size || end < int64(len(logMagic))) {
			t.Fatalf("end %d of a log of %d bytes", end, size)
		}
	})
}

// TestStateLogIsCompacted: a partition synced many times keeps a short state log.
func TestStateLogIsCompacted(t *testing.T) {
	mem := vfs.NewMem()
	cfg := Config{Dir: "/out", RollSize: 1 << 30, SyncSize: 1, FS: mem}
	s := openSink(t, cfg)
	for from := int64(0); from < 2000; from += 2 {
		writeDurable(t, s, msgs("t", 0, from, from+2))
	}
	size, err := mem.Stat("/out/.state/t-0" + logSuffix)
	if err != nil || size > logCompactAt {
		t.Fatalf("state log of %d bytes (%v), want at most %d", size, err, logCompactAt)
	}
	abandon(s)
	mem = mem.Crash(nil)
	cfg.FS = mem
	s = openSink(t, cfg)
	if d := durableOf(t, s); d != "t/0:2000" {
		t.Fatalf("durable after the crash: %q", d)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestMigratesVersion2: a directory of a version 2 sink (a JSON state per partition, a file in
// progress with a torn tail) opens: each state becomes a state log and its JSON file
// {"version":3}, which a version 2 sink refuses. A failure between the two migrates again.
func TestMigratesVersion2(t *testing.T) {
	const inprog = ".t-0-00000000000000000000.inprogress"
	mem := vfs.NewMem()
	if err := mem.MkdirAll("/out/.state"); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		manifestName:        `{"version":2}`,
		".state/t-0.json":   `{"version":2,"topic":"t","partition":0,"last":1,"file":"` + inprog + `","first":0,"size":8,"opened":1,"count":2,"touched":1}`,
		".state/t-1.json":   `{"version":2,"topic":"t","partition":1,"last":3}`,
		".state/t-1.json.x": `ignored`,
		inprog:              "v00\nv01\nv0",
	} {
		if err := mem.WriteFile("/out/"+name, []byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	failTombstone := true
	fsys := vfs.NewFaulty(mem, vfs.InjectorFunc(func(op vfs.Op, name string) error {
		if failTombstone && op == vfs.OpRename && strings.HasSuffix(name, "t-0.json"+vfs.TmpSuffix) {
			return vfs.ErrInjected
		}
		return nil
	}))
	cfg := Config{Dir: "/out", RollSize: 1 << 20, FS: fsys}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.manual = true
	if err := s.Open(ctx); !errors.Is(err, vfs.ErrInjected) {
		t.Fatalf("Open with a failing rename of the JSON state: %v", err)
	}
	if j, _ := mem.ReadFile("/out/.state/t-0.json"); !strings.Contains(string(j), `"version":2`) {
		t.Fatalf("t-0.json after the failed migration: %s", j)
	}
	failTombstone = false
	s = openSink(t, cfg)
	if m, err := mem.ReadFile("/out/" + manifestName); err != nil || string(m) != `{"version":3}` {
		t.Fatalf("manifest: %s %v", m, err)
	}
	for _, name := range []string{"t-0", "t-1"} {
		if j, err := mem.ReadFile("/out/.state/" + name + ".json"); err != nil || string(j) != tombstone {
			t.Fatalf("%s.json: %s %v, want %s", name, j, err, tombstone)
		}
	}
	if d := durableOf(t, s); d != "t/0:2 t/1:4" {
		t.Fatalf("durable after the migration: %q", d)
	}
	if err := s.Write(ctx, append(msgs("t", 0, 0, 6), msgs("t", 1, 0, 6)...)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got := finished(t, mem, "/out", Lines)
	if g := strings.Join(got["t/0"], ","); g != strings.Join(want(0, 6), ",") {
		t.Errorf("t/0 holds %s", g)
	}
	if g := strings.Join(got["t/1"], ","); g != "v04,v05" {
		t.Errorf("t/1 holds %s", g)
	}
}

// TestBackgroundNotifiesDurable: with its goroutine, the sink makes a Write durable within
// about SyncInterval and calls the runner's notify.
func TestBackgroundNotifiesDurable(t *testing.T) {
	s, err := New(Config{Dir: t.TempDir(), RollSize: 1 << 20, SyncInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	notified := make(chan struct{}, 1)
	s.NotifyDurable(func() {
		select {
		case notified <- struct{}{}:
		default:
		}
	})
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Write(ctx, msgs("t", 0, 0, 3)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-notified:
	case <-time.After(10 * time.Second):
		t.Fatal("no notification")
	}
	if d := durableOf(t, s); d != "t/0:3" {
		t.Fatalf("durable after the notification: %q", d)
	}
	var _ connectors.DurableNotifier = s
}

// TestLiveWritesWhileSyncing: with its goroutine syncing every few bytes and milliseconds, a
// sink's Writes (rolling every 50 records) and Durable race with the syncs; every record ends in
// the files once, and Durable never goes back. Run with -race.
func TestLiveWritesWhileSyncing(t *testing.T) {
	dir := t.TempDir()
	s := openLive(t, Config{Dir: dir, RollSize: 1 << 20, RollCount: 50, SyncSize: 64, SyncInterval: time.Millisecond})
	const parts, total = 3, 1000
	seen := map[int32]int64{}
	for from := int64(0); from < total; from += 7 {
		for p := range int32(parts) {
			if err := s.Write(ctx, msgs("t", p, from, min(from+7, total))); err != nil {
				t.Fatal(err)
			}
		}
		d, err := s.Durable()
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range d {
			if o.Offset < seen[o.Partition] {
				t.Fatalf("t/%d durable at %d after %d", o.Partition, o.Offset, seen[o.Partition])
			}
			seen[o.Partition] = o.Offset
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got := finished(t, vfs.OS, dir, Lines)
	for p := range parts {
		if g := got[fmt.Sprintf("t/%d", p)]; strings.Join(g, ",") != strings.Join(want(0, total), ",") {
			t.Fatalf("t/%d holds %d records", p, len(g))
		}
	}
}
