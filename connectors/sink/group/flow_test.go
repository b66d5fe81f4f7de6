package group_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/sink/file"
	"github.com/weirhq/weir/connectors/sink/group"
	"github.com/weirhq/weir/connectors/sink/hdfs"
	"github.com/weirhq/weir/connectors/source/seq"
	"github.com/weirhq/weir/flow"
	"github.com/weirhq/weir/storage"
	"github.com/weirhq/weir/storage/vfs"
)

// failing is a file sink whose disk is full (every filesystem operation fails) during its
// Writes number fromWrite to toWrite-1 and its Open number failOpen, counting from 1.
type failing struct {
	connectors.Sink                           // a file sink's Member
	full                         *atomic.Bool // read by the sink's filesystem
	fromWrite, toWrite, failOpen int64
	writes, opens                atomic.Int64
}

func (f *failing) Open(ctx context.Context) error {
	if f.opens.Add(1) == f.failOpen {
		f.full.Store(true)
		defer f.full.Store(false)
	}
	return f.Sink.Open(ctx)
}

func (f *failing) Write(ctx context.Context, msgs []connectors.Message) error {
	if n := f.writes.Add(1); n >= f.fromWrite && n < f.toWrite {
		f.full.Store(true)
		defer f.full.Store(false)
	}
	return f.Sink.Write(ctx, msgs)
}

func newFileSink(t *testing.T, dir string, fs vfs.FS) *file.Sink {
	t.Helper()
	cfg := file.DefaultConfig(dir)
	cfg.RollSize = 4 << 10
	cfg.FS = fs
	s, err := file.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestThroughTheRuntime runs generator -> topic -> group of two file sinks in a node, for a
// Failover group and a LoadBalance one with Backoff. The first member's disk fills up for seven
// of its Writes and one reopen: each time the group penalises it and gives the batch to the
// other member, and after each penalty (20 ms, doubling to 100 ms) it tries the first again,
// which stores again once its disk is back. Every record is in one of the two directories.
func TestThroughTheRuntime(t *testing.T) {
	for _, tc := range []struct {
		name  string
		group func(members []group.Member, penalty, max time.Duration) (groupSink, error)
	}{
		{"failover", func(members []group.Member, penalty, max time.Duration) (groupSink, error) {
			return group.NewFailover(group.FailoverConfig{Members: members, Penalty: penalty, MaxPenalty: max})
		}},
		{"load balance", func(members []group.Member, penalty, max time.Duration) (groupSink, error) {
			return group.NewLoadBalance(group.LoadBalanceConfig{Members: members, Selector: group.RoundRobin,
				Backoff: true, Penalty: penalty, MaxPenalty: max})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { testThroughTheRuntime(t, tc.group) })
	}
}

// groupSink is what both kinds of group are.
type groupSink interface {
	connectors.Sink
	State() []group.MemberState
}

func testThroughTheRuntime(t *testing.T, newGroup func([]group.Member, time.Duration, time.Duration) (groupSink, error)) {
	cfg := flow.NodeConfig{DataDir: t.TempDir()}
	cfg.Log = storage.DefaultConfig()
	cfg.Log.Sync = storage.SyncNever
	cfg.Coordinator.InitialDelay = 20 * time.Millisecond
	node, err := flow.StartNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	rt := flow.New(node)
	defer rt.Stop()

	const count = 4000
	src, _ := seq.New(seq.Config{Count: count, Batch: 50, Rate: 2000, Prefix: "n"})
	if err := rt.Source("gen", src, "events", flow.Partitions(2)); err != nil {
		t.Fatal(err)
	}

	primaryDir, secondaryDir := filepath.Join(t.TempDir(), "primary"), filepath.Join(t.TempDir(), "secondary")
	full := &atomic.Bool{}
	faulty := vfs.NewFaulty(vfs.OS, vfs.InjectorFunc(func(vfs.Op, string) error {
		if full.Load() {
			return vfs.ErrNoSpace
		}
		return nil
	}))
	primary := &failing{Sink: newFileSink(t, primaryDir, faulty).Member(), full: full, fromWrite: 5, toWrite: 12, failOpen: 2}
	secondary := newFileSink(t, secondaryDir, nil).Member()
	g, err := newGroup([]group.Member{
		{Name: "primary", Sink: primary, Priority: 10},
		{Name: "secondary", Sink: secondary, Priority: 5},
	}, 20*time.Millisecond, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Sink("files", g, flow.FromTopics("events"), flow.FetchBytes(2<<10)); err != nil {
		t.Fatal(err)
	}

	// Until the records stored add up to count (with any repeats), and the primary stored again
	// after its last failure.
	deadline := time.Now().Add(60 * time.Second)
	for {
		st := g.State()
		if st[0].Records+st[1].Records >= count && primary.writes.Load() > primary.toWrite && st[0].Failures == 0 {
			t.Logf("primary: %d batches, %d records, opened %d times; secondary: %d batches, %d records; primary's last failure: %v",
				st[0].Batches, st[0].Records, primary.opens.Load(), st[1].Batches, st[1].Records, st[0].LastError)
			if st[1].Records == 0 || st[0].LastError == nil || !strings.Contains(st[0].LastError.Error(), "disk full") || primary.opens.Load() < 3 {
				t.Fatalf("the primary did not fail over: %+v", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s the members stored %d records of %d (lost or stuck); primary written %d times; %+v",
				st[0].Records+st[1].Records, count, primary.writes.Load(), st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	rt.Stop()

	// Each directory as the next start of its sink sees it: opening a sink finishes what a
	// member closed after a failure left in progress.
	seen := map[string]int{}
	for _, dir := range []string{primaryDir, secondaryDir} {
		s := newFileSink(t, dir, nil)
		if err := s.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
				seen[v]++
			}
		}
	}
	var missing []string
	repeats := 0
	for i := range count {
		switch c := seen[fmt.Sprintf("n%d", i)]; {
		case c == 0:
			missing = append(missing, fmt.Sprintf("n%d", i))
		case c > 1:
			repeats += c - 1
		}
	}
	if len(missing) > 0 || len(seen) != count {
		t.Fatalf("%d distinct records in the two directories, want %d; missing %d: %.20v", len(seen), count, len(missing), missing)
	}
	t.Logf("every record stored; %d repeats", repeats)
}

// TestHDFSSinkIsRefused: the HDFS sink, a staging sink, cannot be a member of either group; nor
// can a file sink, whose Member can.
func TestHDFSSinkIsRefused(t *testing.T) {
	var cfg hdfs.Config
	cfg.Client.Addresses = []string{"127.0.0.1:1"}
	cfg.Path = "/weir/out"
	h, err := hdfs.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	members := []group.Member{{Name: "files", Sink: newFileSink(t, t.TempDir(), nil).Member()}, {Name: "hdfs", Sink: h}}
	if _, err := group.NewFailover(group.FailoverConfig{Members: members}); !errors.Is(err, group.ErrStagingMember) || !strings.Contains(err.Error(), `"hdfs"`) {
		t.Errorf("NewFailover: %v", err)
	}
	if _, err := group.NewLoadBalance(group.LoadBalanceConfig{Members: members}); !errors.Is(err, group.ErrStagingMember) {
		t.Errorf("NewLoadBalance: %v", err)
	}
	// A file sink itself is a staging sink (for the runner); the error names its Member.
	bare := []group.Member{{Name: "files", Sink: newFileSink(t, t.TempDir(), nil)}}
	if _, err := group.NewFailover(group.FailoverConfig{Members: bare}); !errors.Is(err, group.ErrStagingMember) || !strings.Contains(err.Error(), "Member()") {
		t.Errorf("NewFailover of a file sink: %v", err)
	}
}
