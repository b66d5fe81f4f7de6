package file_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/sink/file"
	"github.com/weirhq/weir/connectors/source/seq"
	"github.com/weirhq/weir/flow"
	"github.com/weirhq/weir/storage"
)

// distinct counts the records its sink stored, by partition and offset.
type distinct struct {
	connectors.Sink
	mu   sync.Mutex
	next map[int32]int64
	n    atomic.Int64
}

func (d *distinct) Write(ctx context.Context, msgs []connectors.Message) error {
	if err := d.Sink.Write(ctx, msgs); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, m := range msgs {
		if m.Offset >= d.next[m.Partition] {
			d.next[m.Partition] = m.Offset + 1
			d.n.Add(1)
		}
	}
	return nil
}

// TestExactlyOnceThroughTheRuntime runs generator -> topic -> group -> file sink in a node and
// makes the sink runner crash twice between the sink's Write and the commit of its offsets:
// each time the runner restarts, the sink is closed and opened again, the group replays the
// uncommitted fetch, and the sink skips it. Every record is in the files exactly once.
func TestExactlyOnceThroughTheRuntime(t *testing.T) {
	var commits atomic.Int64
	faults := func(kind, point string) {
		if kind == "sink" && point == "commit" {
			if c := commits.Add(1); c == 5 || c == 12 {
				panic(fmt.Sprintf("injected crash before commit %d", c))
			}
		}
	}
	cfg := flow.NodeConfig{DataDir: t.TempDir(), Faults: faults}
	cfg.Log = storage.DefaultConfig()
	cfg.Log.Sync = storage.SyncNever
	cfg.Supervisor.MaxRestarts = 20
	cfg.Supervisor.Window = time.Minute
	cfg.Supervisor.MinBackoff = 5 * time.Millisecond
	cfg.Supervisor.MaxBackoff = 50 * time.Millisecond
	cfg.Coordinator.InitialDelay = 20 * time.Millisecond
	node, err := flow.StartNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	rt := flow.New(node)
	defer rt.Stop()

	const count = 3000
	src, _ := seq.New(seq.Config{Count: count, Batch: 100, Prefix: "n"})
	if err := rt.Source("gen", src, "events", flow.Partitions(2)); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "out")
	fcfg := file.DefaultConfig(dir)
	fcfg.RollSize = 4 << 10
	sink, err := file.New(fcfg)
	if err != nil {
		t.Fatal(err)
	}
	d := &distinct{Sink: sink, next: map[int32]int64{}}
	if err := rt.Sink("files", d, flow.FromTopics("events"), flow.FetchBytes(2<<10)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for d.n.Load() < count {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d records stored", d.n.Load(), count)
		}
		time.Sleep(20 * time.Millisecond)
	}
	rt.Stop()
	if c := commits.Load(); c < 12 {
		t.Fatalf("only %d commits: the faults did not fire", c)
	}

	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			if e.Name() != ".manifest" && e.Name() != ".lock" && e.Name() != ".state" {
				t.Fatalf("%s left after the flow stopped", e.Name())
			}
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
	var dups []string
	for v, c := range seen {
		if c != 1 {
			dups = append(dups, fmt.Sprintf("%s×%d", v, c))
		}
	}
	sort.Strings(dups)
	if len(dups) > 0 || len(seen) != count {
		t.Fatalf("%d distinct records in the files (want %d); repeated: %v", len(seen), count, dups)
	}
}
