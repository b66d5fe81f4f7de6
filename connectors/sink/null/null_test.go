package null_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/client"
	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/sink/null"
	"github.com/weirhq/weir/connectors/source/seq"
	"github.com/weirhq/weir/flow"
	"github.com/weirhq/weir/storage"
)

func TestValidate(t *testing.T) {
	if err := (null.Config{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	_, err := null.New(null.Config{LogEvery: -1})
	if err == nil || !strings.Contains(err.Error(), "LogEvery") {
		t.Fatalf("LogEvery -1: got %v, want an error naming LogEvery", err)
	}
}

func TestCountsAndLogs(t *testing.T) {
	var buf bytes.Buffer
	s, err := null.New(null.Config{LogEvery: 10, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{4, 5, 1, 25, 0} { // 4, 9, 10 (logs), 35 (logs once), 35
		if err := s.Write(ctx, make([]connectors.Message, n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s.Records() != 35 || s.Writes() != 5 {
		t.Fatalf("Records %d, Writes %d; want 35, 5", s.Records(), s.Writes())
	}
	if n := strings.Count(buf.String(), "null sink discarded records"); n != 2 {
		t.Fatalf("%d log lines, want 2 (at 10 and at 35):\n%s", n, buf.String())
	}
}

// TestFlow runs generator -> topic -> null sink in a node: the sink sees every record and, as
// its Write returns nil, the group's offsets are committed to the end of each partition.
func TestFlow(t *testing.T) {
	cfg := flow.NodeConfig{DataDir: t.TempDir(), ClientAddr: "127.0.0.1:0"}
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

	const count = 2000
	src, _ := seq.New(seq.Config{Count: count, Batch: 100})
	if err := rt.Source("gen", src, "events", flow.Partitions(2)); err != nil {
		t.Fatal(err)
	}
	sink, _ := null.New(null.Config{})
	if err := rt.Sink("discard", sink, flow.FromTopics("events"), flow.Group("nulls")); err != nil {
		t.Fatal(err)
	}
	cl, err := client.Dial(node.ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		offs, err := cl.FetchCommitted(ctx, "nulls")
		if err != nil {
			t.Fatal(err)
		}
		var committed int64
		for _, o := range offs {
			committed += o.Offset
		}
		if committed == count {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%d of %d offsets committed, %d records seen", committed, count, sink.Records())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if sink.Records() < count {
		t.Fatalf("offsets committed for %d records, but the sink saw %d", count, sink.Records())
	}
}
