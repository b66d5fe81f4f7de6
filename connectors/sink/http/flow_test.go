package http_test

import (
	"context"
	nethttp "net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhq/weir/client"
	httpsink "github.com/weirhq/weir/connectors/sink/http"
	"github.com/weirhq/weir/connectors/source/seq"
	"github.com/weirhq/weir/flow"
	"github.com/weirhq/weir/storage"
)

// node starts an embedded node with a client port, and a client to it; edit, if any, changes
// the node's configuration first.
func node(t *testing.T, edit ...func(*flow.NodeConfig)) (*flow.Runtime, *client.Client, string) {
	t.Helper()
	cfg := flow.NodeConfig{DataDir: t.TempDir(), ClientAddr: "127.0.0.1:0"}
	cfg.Log = storage.DefaultConfig()
	cfg.Log.Sync = storage.SyncNever
	cfg.Coordinator.InitialDelay = 20 * time.Millisecond
	for _, e := range edit {
		e(&cfg)
	}
	n, err := flow.StartNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	rt := flow.New(n)
	t.Cleanup(rt.Stop)
	cl, err := client.Dial(n.ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return rt, cl, n.ClientAddr()
}

// TestDeadLetterTopic: a request the endpoint refuses with 400 goes to a dead-letter topic of a
// real node, whose records read back through the client are the batch's, unchanged, with the
// dead-letter headers; Write returns nil.
func TestDeadLetterTopic(t *testing.T) {
	_, cl, addr := node(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.CreateTopic(ctx, "dead", 1, 1); err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, func(int64, nethttp.ResponseWriter, *nethttp.Request) int { return 400 })
	s := open(t, httpsink.Config{URL: srv.URL, BatchSize: 4, DeadLetterTopic: "dead", DeadLetterAddr: addr})
	in := msgs(10)
	in[2].Headers = map[string]string{"trace": "abc"}
	if err := s.Write(ctx, in); err != nil {
		t.Fatal(err)
	}
	if srv.n.Load() != 3 {
		t.Fatalf("%d requests, want 3 (none retried)", srv.n.Load())
	}
	if st := s.Stats(); st.DeadLettered != 10 || st.Records != 0 {
		t.Fatalf("stats %+v", st)
	}
	c, _ := cl.NewConsumer("dead", 0)
	defer c.Close()
	var got []client.Message
	for len(got) < len(in) {
		msgs, err := c.Poll(ctx)
		if err != nil {
			t.Fatalf("read the dead-letter topic after %d records: %v", len(got), err)
		}
		got = append(got, msgs...)
	}
	for i, m := range got {
		want := in[i]
		h := m.Headers
		if string(m.Key) != string(want.Key) || string(m.Value) != string(want.Value) || m.Timestamp.UnixMilli() != want.Timestamp ||
			h[httpsink.HeaderStatus] != "400" || h[httpsink.HeaderAttempts] != "1" || h[httpsink.HeaderTopic] != "events" ||
			h[httpsink.HeaderPartition] != strconv.Itoa(int(want.Partition)) || h[httpsink.HeaderOffset] != strconv.Itoa(i) ||
			h[httpsink.HeaderError] == "" {
			t.Fatalf("dead letter %d: %+v, from %+v", i, m, want)
		}
	}
	if got[2].Headers["trace"] != "abc" {
		t.Fatalf("the record's own headers were not kept: %v", got[2].Headers)
	}
}

// TestFlow runs generator -> topic -> http sink -> endpoint in a node; the endpoint fails one
// request in five with 503. Every record arrives, in requests of at most BatchSize records.
func TestFlow(t *testing.T) {
	rt, _, _ := node(t)
	srv := newServer(t, func(n int64, _ nethttp.ResponseWriter, _ *nethttp.Request) int {
		if n%5 == 0 {
			return 503
		}
		return 200
	})
	const count = 3000
	src, _ := seq.New(seq.Config{Count: count, Batch: 100, Prefix: "r"})
	if err := rt.Source("gen", src, "events", flow.Partitions(2)); err != nil {
		t.Fatal(err)
	}
	sink, err := httpsink.New(httpsink.Config{URL: srv.URL, BatchSize: 64, Format: httpsink.NDJSON, MinBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Sink("post", sink, flow.FromTopics("events")); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for i := range count {
		want["r"+strconv.Itoa(i)] = true
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		srv.mu.Lock()
		seen := map[string]bool{}
		for _, r := range srv.records {
			seen[r.Value] = true
			if r.Topic != "events" {
				t.Errorf("record from topic %q", r.Topic)
			}
		}
		big := 0
		for _, b := range srv.bodies {
			big = max(big, len(b))
		}
		srv.mu.Unlock()
		if big > 64 {
			t.Fatalf("a request of %d records, BatchSize 64", big)
		}
		if len(seen) == count {
			for v := range seen {
				if !want[v] {
					t.Fatalf("unknown record %q", v)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d records arrived (%d requests)", len(seen), count, srv.n.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := srv.n.Load(); n < 5 {
		t.Fatalf("%d requests: the endpoint never failed one", n)
	}
}

// TestFlowWaitsOutRetryAfter: an endpoint in maintenance answers 503 with Retry-After: 60,
// longer than RetryFor, for a second, then takes everything. The sink, without a dead-letter
// topic, waits each Write's budget out before it fails, so the runner restarts it a few times
// at most and the records arrive once the endpoint is back; a sink that gave up at once on the
// Retry-After would fail every Write at once, and the supervisor (5 restarts here, a few
// milliseconds apart) would stop the flow before the endpoint came back.
func TestFlowWaitsOutRetryAfter(t *testing.T) {
	rt, _, _ := node(t, func(c *flow.NodeConfig) {
		c.Supervisor.MaxRestarts, c.Supervisor.Window = 5, time.Minute
		c.Supervisor.MinBackoff, c.Supervisor.MaxBackoff = 10*time.Millisecond, 20*time.Millisecond
	})
	const outage, count = time.Second, 10
	start := time.Now()
	var refused atomic.Int64
	srv := newServer(t, func(_ int64, w nethttp.ResponseWriter, _ *nethttp.Request) int {
		if time.Since(start) < outage {
			refused.Add(1)
			w.Header().Set("Retry-After", "60")
			return 503
		}
		return 200
	})
	src, _ := seq.New(seq.Config{Count: count, Batch: count, Prefix: "r"})
	if err := rt.Source("gen", src, "events"); err != nil {
		t.Fatal(err)
	}
	sink, err := httpsink.New(httpsink.Config{URL: srv.URL, RetryFor: 400 * time.Millisecond, MinBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Sink("post", sink, flow.FromTopics("events")); err != nil {
		t.Fatal(err)
	}
	for {
		srv.mu.Lock()
		got := len(srv.records)
		srv.mu.Unlock()
		if got >= count {
			break
		}
		if time.Since(start) > outage+10*time.Second {
			t.Fatalf("%d of %d records arrived, %d requests (%d refused)", got, count, srv.n.Load(), refused.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d attempts refused, %d requests in all", refused.Load(), srv.n.Load())
	// Each Write waits its 400 ms budget out: two refused attempts a Write.
	if n := refused.Load(); n > 8 {
		t.Fatalf("%d attempts refused during a %v outage: not waiting", n, outage)
	}
}
