package produce_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/weirhq/weir/client"
	"github.com/weirhq/weir/connectors/sink/produce"
	"github.com/weirhq/weir/flow"
	"github.com/weirhq/weir/storage"
)

// TestProduce: once Produce returned nil, every record is in the topic (acknowledged, so
// readable up to the high watermark at once), with its key, headers and timestamp; after
// Close, Produce fails with ErrClosed.
func TestProduce(t *testing.T) {
	cfg := flow.NodeConfig{DataDir: t.TempDir(), ClientAddr: "127.0.0.1:0"}
	cfg.Log = storage.DefaultConfig()
	cfg.Log.Sync = storage.SyncNever
	n, err := flow.StartNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := client.Dial(n.ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.CreateTopic(ctx, "t", 1, 1); err != nil {
		t.Fatal(err)
	}
	p, err := produce.Dial(n.ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	recs := make([]storage.Record, 500)
	for i := range recs {
		recs[i] = storage.Record{Key: []byte("k"), Value: fmt.Appendf(nil, "v%d", i), Headers: map[string]string{"i": fmt.Sprint(i)}, Timestamp: int64(1000 + i)}
	}
	if err := p.Produce(ctx, "t", recs); err != nil {
		t.Fatal(err)
	}
	end, err := cl.ListOffsets(ctx, "t", 0, client.Latest())
	if err != nil || end != int64(len(recs)) {
		t.Fatalf("after Produce the topic ends at %d (%v), want %d", end, err, len(recs))
	}
	c, _ := cl.NewConsumer("t", 0)
	defer c.Close()
	var got []client.Message
	for len(got) < len(recs) {
		msgs, err := c.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, msgs...)
	}
	for i, m := range got {
		if string(m.Value) != fmt.Sprintf("v%d", i) || string(m.Key) != "k" || m.Headers["i"] != fmt.Sprint(i) || m.Timestamp.UnixMilli() != int64(1000+i) {
			t.Fatalf("record %d read back as %+v", i, m)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Produce(ctx, "t", recs[:1]); !errors.Is(err, produce.ErrClosed) {
		t.Fatalf("Produce after Close: %v, want ErrClosed", err)
	}
}
