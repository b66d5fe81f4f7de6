package flow_test

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/interceptor"
	"github.com/weirhq/weir/connectors/selector"
	httpsource "github.com/weirhq/weir/connectors/source/http"
	"github.com/weirhq/weir/connectors/source/seq"
	"github.com/weirhq/weir/flow"
	"github.com/weirhq/weir/storage"
)

// memSink keeps what it is given; Write is "durable" when it returns.
type memSink struct {
	mu   sync.Mutex
	msgs []connectors.Message
}

func (s *memSink) Open(context.Context) error { return nil }
func (s *memSink) Close() error               { return nil }
func (s *memSink) Write(_ context.Context, msgs []connectors.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, msgs...)
	return nil
}

func (s *memSink) values() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.msgs))
	for i, m := range s.msgs {
		out[i] = string(m.Value)
	}
	return out
}

func startNode(t *testing.T, faults func(kind, point string)) *flow.Node {
	t.Helper()
	cfg := flow.NodeConfig{DataDir: t.TempDir(), Faults: faults}
	cfg.Log = storage.DefaultConfig()
	cfg.Log.Sync = storage.SyncNever
	cfg.Supervisor.MaxRestarts = 20
	cfg.Supervisor.Window = time.Minute
	cfg.Supervisor.MinBackoff = 5 * time.Millisecond
	cfg.Supervisor.MaxBackoff = 50 * time.Millisecond
	cfg.Coordinator.InitialDelay = 20 * time.Millisecond
	n, err := flow.StartNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// waitFor waits until every number below count has reached the sink.
func waitFor(t *testing.T, s *memSink, count int, within time.Duration) map[int]int {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		seen := map[int]int{}
		for _, v := range s.values() {
			n, err := strconv.Atoi(strings.TrimPrefix(v, "n"))
			if err != nil {
				t.Fatalf("sink got %q", v)
			}
			seen[n]++
		}
		missing := 0
		for i := range count {
			if seen[i] == 0 {
				missing++
			}
		}
		if missing == 0 {
			return seen
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d records never reached the sink", missing, count)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSourceToSink(t *testing.T) {
	n := startNode(t, nil)
	rt := flow.New(n)
	defer rt.Stop()
	src, _ := seq.New(seq.Config{Count: 5000, Batch: 250, Prefix: "n"})
	dropOdd := connectors.InterceptorFunc(func(r storage.Record) (storage.Record, bool) {
		v, _ := strconv.Atoi(strings.TrimPrefix(string(r.Value), "n"))
		r.Key = []byte(strconv.Itoa(v % 7))
		return r, true
	})
	if err := rt.Source("gen", src, "events", flow.Partitions(3), flow.Intercept(dropOdd)); err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := rt.Sink("mem", sink, flow.FromTopics("events")); err != nil {
		t.Fatal(err)
	}
	seen := waitFor(t, sink, 5000, 30*time.Second)
	for v, c := range seen {
		if c != 1 {
			t.Fatalf("record %d delivered %d times without any fault", v, c)
		}
	}
	// Per partition, offsets increase by one: no gap, no reorder.
	last := map[int32]int64{}
	for _, m := range sink.msgs {
		if prev, ok := last[m.Partition]; ok && m.Offset != prev+1 {
			t.Fatalf("partition %d: offset %d after %d", m.Partition, m.Offset, prev)
		}
		last[m.Partition] = m.Offset
	}
	if len(last) != 3 {
		t.Fatalf("records in %d partitions, want 3 (keys spread them)", len(last))
	}
}

// TestFlowSurvivesPanics injects panics into the partition, the group coordinator, the source
// and the sink while a flow runs. Each actor is restarted by its supervisor; the sink ends up
// with every record (no gap), and repeats stay within the bound: one in-flight batch per fault
// (the source's batch of 100 records, or one fetch of the sink).
func TestFlowSurvivesPanics(t *testing.T) {
	var calls atomic.Int64
	var fired sync.Map
	faults := func(kind, point string) {
		key := kind + "/" + point
		c := calls.Add(1)
		// Each kind of fault fires once, some way into the stream.
		if c > 200 && (key == "partition/ready" || key == "group/commit" || key == "source/read" || key == "sink/commit") {
			if _, dup := fired.LoadOrStore(key, true); !dup {
				panic("injected fault at " + key)
			}
		}
	}
	n := startNode(t, faults)
	rt := flow.New(n)
	defer rt.Stop()
	const count = 20000
	src, _ := seq.New(seq.Config{Count: count, Batch: 100, Prefix: "n"})
	if err := rt.Source("gen", src, "events", flow.Partitions(2)); err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := rt.Sink("mem", sink, flow.FromTopics("events"), flow.FetchBytes(8<<10)); err != nil {
		t.Fatal(err)
	}
	seen := waitFor(t, sink, count, 60*time.Second)
	nfired := 0
	fired.Range(func(any, any) bool { nfired++; return true })
	if nfired < 4 {
		t.Fatalf("only %d of 4 faults fired", nfired)
	}
	repeats := 0
	for _, c := range seen {
		repeats += c - 1
	}
	// Source fault: ≤ 100 records again (its batch). Partition fault: the source retries its
	// batch (≤ 100). Sink and coordinator faults: ≤ one fetch each, 8 KiB of whole batches
	// plus the one batch a fetch may overshoot by: ≤ 1,000 records of about 15 bytes.
	const bound = 100 + 100 + 2*1000
	if repeats > bound {
		t.Fatalf("%d repeated records, more than the bound %d", repeats, bound)
	}
	t.Logf("faults fired: %d, repeated records: %d", nfired, repeats)
}

func TestSinkNeedsTopic(t *testing.T) {
	n := startNode(t, nil)
	rt := flow.New(n)
	if err := rt.Sink("x", &memSink{}, flow.FromTopics("missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("sink on a missing topic: %v", err)
	}
	if err := rt.Source("bad name!", nil, "t"); err == nil {
		t.Fatal("bad flow name accepted")
	}
	_ = fmt.Sprint()
}

// TestInterceptorChain: the interceptor package's interceptors, chained on a source, run in
// order before the records reach the topic: the filtered-out records never reach it (the sink
// sees only the others), and the kept ones carry the headers and timestamps set.
func TestInterceptorChain(t *testing.T) {
	n := startNode(t, nil)
	rt := flow.New(n)
	defer rt.Stop()
	src, _ := seq.New(seq.Config{Count: 4000, Batch: 200, Prefix: "n"})
	static, err := interceptor.Static("dc", "eu1", false)
	if err != nil {
		t.Fatal(err)
	}
	odd, err := interceptor.RegexFilter(`[13579]$`, false) // keep odd numbers
	if err != nil {
		t.Fatal(err)
	}
	extract, err := interceptor.RegexExtractor(`^n(\d)`, "first")
	if err != nil {
		t.Fatal(err)
	}
	at := time.UnixMilli(1_700_000_000_000)
	stamp := interceptor.Timestamp(interceptor.TimestampConfig{Header: "timestamp", Now: func() time.Time { return at }})
	if err := rt.Source("gen", src, "kept", flow.Partitions(2), flow.Intercept(odd, static, extract, stamp)); err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := rt.Sink("mem", sink, flow.FromTopics("kept")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); len(sink.values()) < 2000; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the sink got %d of the 2000 odd records", len(sink.values()))
		}
	}
	time.Sleep(300 * time.Millisecond) // anything the filter let through would show up by now
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.msgs) != 2000 {
		t.Fatalf("the sink got %d records, want the 2000 odd ones of 4000", len(sink.msgs))
	}
	for _, m := range sink.msgs {
		v := string(m.Value)
		if !strings.ContainsAny(v[len(v)-1:], "13579") || m.Headers["dc"] != "eu1" || m.Headers["first"] != v[1:2] ||
			m.Headers["timestamp"] != "1700000000000" || m.Timestamp != at.UnixMilli() {
			t.Fatalf("record %q: headers %v, timestamp %d", v, m.Headers, m.Timestamp)
		}
	}
}

// TestSourceToSelectors: a multiplexing selector routes each record by a header an
// interceptor set, to one or two topics or to the default; a replicating one sends every record
// to each of its topics. Sinks on each topic see exactly the records routed there, once.
func TestSourceToSelectors(t *testing.T) {
	n := startNode(t, nil)
	rt := flow.New(n)
	defer rt.Stop()
	kind := interceptor.Func(func(r storage.Record) (storage.Record, bool) {
		v, _ := strconv.Atoi(strings.TrimPrefix(string(r.Value), "n"))
		r.Headers = map[string]string{"kind": []string{"a", "b", "c"}[v%3]}
		return r, true
	})
	mux, err := selector.Multiplexing(selector.MultiplexingConfig{
		Header:  "kind",
		Routes:  map[string][]string{"a": {"ta"}, "b": {"tb", "tall"}},
		Default: []string{"tother"},
	})
	if err != nil {
		t.Fatal(err)
	}
	src, _ := seq.New(seq.Config{Count: 3000, Batch: 100, Prefix: "n"})
	if err := rt.SourceTo("mux", src, mux, flow.Partitions(2), flow.Intercept(kind)); err != nil {
		t.Fatal(err)
	}
	rep, err := selector.Replicating("r1", "r2")
	if err != nil {
		t.Fatal(err)
	}
	src2, _ := seq.New(seq.Config{Count: 1000, Batch: 100, Prefix: "n"})
	if err := rt.SourceTo("rep", src2, rep); err != nil {
		t.Fatal(err)
	}
	want := map[string]func(int) bool{
		"ta":     func(v int) bool { return v%3 == 0 && v < 3000 },
		"tb":     func(v int) bool { return v%3 == 1 },
		"tall":   func(v int) bool { return v%3 == 1 },
		"tother": func(v int) bool { return v%3 == 2 },
		"r1":     func(v int) bool { return v < 1000 },
		"r2":     func(v int) bool { return v < 1000 },
	}
	sinks := map[string]*memSink{}
	for topic := range want {
		sinks[topic] = &memSink{}
		if err := rt.Sink("sink-"+topic, sinks[topic], flow.FromTopics(topic)); err != nil {
			t.Fatal(err)
		}
	}
	for topic, ok := range want {
		count := 1000
		deadline := time.Now().Add(30 * time.Second)
		for len(sinks[topic].values()) < count {
			if time.Now().After(deadline) {
				t.Fatalf("topic %s: %d of %d records", topic, len(sinks[topic].values()), count)
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
		seen := map[int]bool{}
		for _, v := range sinks[topic].values() {
			n, _ := strconv.Atoi(strings.TrimPrefix(v, "n"))
			if !ok(n) || seen[n] {
				t.Fatalf("topic %s got record %d (twice: %v)", topic, n, seen[n])
			}
			seen[n] = true
		}
		if len(seen) != count {
			t.Fatalf("topic %s: %d records, want %d", topic, len(seen), count)
		}
	}
}

// TestHTTPSourceFlow: events POSTed with curl to an http source in a flow are answered 200
// once the topic acknowledged them, and reach the topic's sink, headers and keys included.
func TestHTTPSourceFlow(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed")
	}
	n := startNode(t, nil)
	rt := flow.New(n)
	defer rt.Stop()
	src, err := httpsource.New(httpsource.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Source("web", src, "web", flow.Partitions(2)); err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := rt.Sink("web-sink", sink, flow.FromTopics("web")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); src.Addr() == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the http source does not listen")
		}
	}
	url := "http://" + src.Addr().String() + "/"
	out, err := exec.Command(curl, "-s", "--max-time", "10", "-H", "Content-Type: application/json",
		"--data", `[{"headers":{"type":"click"},"body":"e1","key":"u1"},{"body":"e2"},{"body":"e3"}]`, url).Output()
	if err != nil || strings.TrimSpace(string(out)) != `{"accepted":3}` {
		t.Fatalf("curl: %q, %v", out, err)
	}
	for deadline := time.Now().Add(10 * time.Second); len(sink.values()) < 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the sink got %v", sink.values())
		}
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for _, m := range sink.msgs {
		if string(m.Value) == "e1" && (m.Headers["type"] != "click" || string(m.Key) != "u1") {
			t.Fatalf("e1 arrived as %+v", m)
		}
	}
}
