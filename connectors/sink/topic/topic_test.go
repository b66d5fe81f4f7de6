package topic_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhq/weir/client"
	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/sink/produce"
	"github.com/weirhq/weir/connectors/sink/topic"
	"github.com/weirhq/weir/connectors/source/seq"
	"github.com/weirhq/weir/flow"
	"github.com/weirhq/weir/internal/topictest"
	"github.com/weirhq/weir/storage"
)

// fakeProducer records what it is given, and fails topics listed in fail.
type fakeProducer struct {
	mu   sync.Mutex
	got  map[string][]storage.Record
	fail map[string]error
}

func (f *fakeProducer) Produce(_ context.Context, topic string, recs []storage.Record) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail[topic]; err != nil {
		return err
	}
	if f.got == nil {
		f.got = map[string][]storage.Record{}
	}
	f.got[topic] = append(f.got[topic], recs...)
	return nil
}

func TestValidate(t *testing.T) {
	p := &fakeProducer{}
	route := func(connectors.Message) []string { return nil }
	for _, tc := range []struct {
		name string
		cfg  topic.Config
		want string // in the error; "" for none
	}{
		{"addr and topic", topic.Config{Addr: "127.0.0.1:7420", Topic: "b"}, ""},
		{"producer and route", topic.Config{Producer: p, Route: route}, ""},
		{"no destination cluster", topic.Config{Topic: "b"}, "Addr"},
		{"addr and producer", topic.Config{Addr: "x:1", Producer: p, Topic: "b"}, "Addr or Producer, not both"},
		{"no topic", topic.Config{Producer: p}, "Topic"},
		{"topic and route", topic.Config{Producer: p, Topic: "b", Route: route}, "Topic or Route, not both"},
		{"bad topic", topic.Config{Producer: p, Topic: "a/b"}, "Topic: topic name \"a/b\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := topic.New(tc.cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func msg(topic string, off int64, v string, h map[string]string) connectors.Message {
	return connectors.Message{Topic: topic, Partition: 1, Offset: off,
		Record: storage.Record{Key: []byte("k" + v), Value: []byte(v), Headers: h, Timestamp: 1000 + off}}
}

func TestWriteRoutesAndKeepsRecords(t *testing.T) {
	p := &fakeProducer{}
	s, err := topic.New(topic.Config{Producer: p, OriginHeader: "origin", Route: func(m connectors.Message) []string {
		switch string(m.Value) {
		case "drop":
			return nil
		case "both":
			return []string{"x", "y"}
		}
		return []string{"x"}
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srcHeaders := map[string]string{"h": "1", "origin": "old"}
	msgs := []connectors.Message{msg("a", 7, "one", srcHeaders), msg("a", 8, "drop", nil), msg("a", 9, "both", nil)}
	if err := s.Write(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	if srcHeaders["origin"] != "old" {
		t.Fatal("Write changed the headers of the message it was given")
	}
	x, y := p.got["x"], p.got["y"]
	if len(x) != 2 || len(y) != 1 {
		t.Fatalf("x got %d records, y %d; want 2 and 1", len(x), len(y))
	}
	r := x[0]
	if string(r.Key) != "kone" || string(r.Value) != "one" || r.Timestamp != 1007 || r.Headers["h"] != "1" || r.Headers["origin"] != "a/1/7" {
		t.Fatalf("forwarded record %+v: key, value, timestamp or headers not kept", r)
	}
	if x[1].Headers["origin"] != "a/1/9" || y[0].Headers["origin"] != "a/1/9" || string(y[0].Value) != "both" {
		t.Fatalf("fan-out copies: %+v, %+v", x[1], y[0])
	}
}

func TestWriteFails(t *testing.T) {
	boom := errors.New("boom")
	p := &fakeProducer{fail: map[string]error{"bad": boom}}
	for _, tc := range []struct {
		name  string
		route []string
		want  string
	}{
		{"producer error", []string{"good", "bad"}, "boom"},
		{"loop", []string{"a"}, "the topic it came from"},
		{"bad name", []string{"no spaces"}, "bad topic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := topic.New(topic.Config{Producer: p, Route: func(connectors.Message) []string { return tc.route }})
			if err := s.Open(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			err := s.Write(context.Background(), []connectors.Message{msg("a", 0, "v", nil)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// node starts an embedded node with a client port, and a client to it.
func node(t *testing.T) (*flow.Runtime, *client.Client, string) {
	t.Helper()
	cfg := flow.NodeConfig{DataDir: t.TempDir(), ClientAddr: "127.0.0.1:0"}
	cfg.Log = storage.DefaultConfig()
	cfg.Log.Sync = storage.SyncNever
	cfg.Coordinator.InitialDelay = 20 * time.Millisecond
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

// awaitAll reads topic until it holds want records, and returns them.
func awaitAll(t *testing.T, cl *client.Client, topic string, want int) []client.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		msgs, err := topictest.ReadAll(ctx, cl, topic)
		if err != nil {
			t.Fatalf("read %s: %v", topic, err)
		}
		if len(msgs) >= want {
			return msgs
		}
		if ctx.Err() != nil {
			t.Fatalf("%s holds %d records, want %d", topic, len(msgs), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// keyed gives each generated record a key (its value) and a header, to see both kept.
var keyed = connectors.InterceptorFunc(func(r storage.Record) (storage.Record, bool) {
	r.Key = r.Value
	r.Headers = map[string]string{"src": "gen"}
	return r, true
})

// TestFlowForwards runs generator -> topic a -> topic sink -> topic b in one node: b holds every
// record of a, with its key, headers and timestamp, and a header naming its origin in a.
func TestFlowForwards(t *testing.T) {
	rt, cl, addr := node(t)
	ctx := context.Background()
	if err := cl.CreateTopic(ctx, "b", 3, 1); err != nil {
		t.Fatal(err)
	}
	const count = 1500
	src, _ := seq.New(seq.Config{Count: count, Batch: 100, Prefix: "r"})
	if err := rt.Source("gen", src, "a", flow.Partitions(2), flow.Intercept(keyed)); err != nil {
		t.Fatal(err)
	}
	sink, err := topic.New(topic.Config{Addr: addr, Topic: "b", OriginHeader: "origin"})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Sink("fwd", sink, flow.FromTopics("a"), flow.FetchBytes(4<<10)); err != nil {
		t.Fatal(err)
	}
	got := awaitAll(t, cl, "b", count)
	src1, err := topictest.ReadAll(ctx, cl, "a")
	if err != nil {
		t.Fatal(err)
	}
	inA := map[string]client.Message{}
	for _, m := range src1 {
		inA[fmt.Sprintf("%s/%d/%d", m.Topic, m.Partition, m.Offset)] = m
	}
	seen := map[string]int{}
	for _, m := range got {
		seen[string(m.Value)]++
		o, ok := inA[m.Headers["origin"]]
		switch {
		case !ok:
			t.Fatalf("record %q in b: origin header %q names no record of a", m.Value, m.Headers["origin"])
		case string(o.Value) != string(m.Value) || string(m.Key) != string(m.Value) || m.Headers["src"] != "gen" || !m.Timestamp.Equal(o.Timestamp):
			t.Fatalf("record in b %+v does not match its origin %+v", m, o)
		}
	}
	for i := range count {
		if seen["r"+strconv.Itoa(i)] == 0 {
			t.Fatalf("r%d is not in b (%d records there)", i, len(got))
		}
	}
}

// TestFlowFanOut routes every record to "all" and, by its number, to "even" or "odd".
func TestFlowFanOut(t *testing.T) {
	rt, cl, addr := node(t)
	ctx := context.Background()
	for _, tp := range []string{"all", "even", "odd"} {
		if err := cl.CreateTopic(ctx, tp, 2, 1); err != nil {
			t.Fatal(err)
		}
	}
	const count = 1000
	src, _ := seq.New(seq.Config{Count: count, Batch: 100})
	if err := rt.Source("gen", src, "in", flow.Partitions(2)); err != nil {
		t.Fatal(err)
	}
	sink, err := topic.New(topic.Config{Addr: addr, Route: func(m connectors.Message) []string {
		n, _ := strconv.Atoi(string(m.Value))
		if n%2 == 0 {
			return []string{"all", "even"}
		}
		return []string{"all", "odd"}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Sink("fan", sink, flow.FromTopics("in")); err != nil {
		t.Fatal(err)
	}
	values := func(msgs []client.Message) map[int]bool {
		out := map[int]bool{}
		for _, m := range msgs {
			n, _ := strconv.Atoi(string(m.Value))
			out[n] = true
		}
		return out
	}
	all := values(awaitAll(t, cl, "all", count))
	even := values(awaitAll(t, cl, "even", count/2))
	odd := values(awaitAll(t, cl, "odd", count/2))
	for i := range count {
		half := odd
		if i%2 == 0 {
			half = even
		}
		if !all[i] || !half[i] {
			t.Fatalf("record %d: in all %v, in its half %v", i, all[i], half[i])
		}
	}
	if len(even) != count/2 || len(odd) != count/2 {
		t.Fatalf("even holds %d distinct records, odd %d; want %d each", len(even), len(odd), count/2)
	}
}

// flaky produces through p, then fails every third call: the records are in the destination,
// but Write fails and the runner replays the batch.
type flaky struct {
	p     topic.Producer
	calls atomic.Int64
}

func (f *flaky) Produce(ctx context.Context, topic string, recs []storage.Record) error {
	if err := f.p.Produce(ctx, topic, recs); err != nil {
		return err
	}
	if f.calls.Add(1)%3 == 0 {
		return errors.New("injected failure after producing")
	}
	return nil
}

// TestFlowReplaysFailedWrites: Writes that fail after producing are replayed by the runner
// (restarting the sink's actor); every record reaches b, and only replays repeat.
func TestFlowReplaysFailedWrites(t *testing.T) {
	cfg := flow.NodeConfig{DataDir: t.TempDir(), ClientAddr: "127.0.0.1:0"}
	cfg.Log = storage.DefaultConfig()
	cfg.Log.Sync = storage.SyncNever
	cfg.Coordinator.InitialDelay = 20 * time.Millisecond
	cfg.Supervisor.MaxRestarts = 1000
	cfg.Supervisor.Window = time.Minute
	cfg.Supervisor.MinBackoff = 5 * time.Millisecond
	cfg.Supervisor.MaxBackoff = 20 * time.Millisecond
	n, err := flow.StartNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	rt := flow.New(n)
	defer rt.Stop()
	cl, err := client.Dial(n.ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.CreateTopic(context.Background(), "b", 1, 1); err != nil {
		t.Fatal(err)
	}
	p, err := produce.Dial(n.ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	f := &flaky{p: p}
	const count = 600
	src, _ := seq.New(seq.Config{Count: count, Batch: 50})
	if err := rt.Source("gen", src, "a", flow.Partitions(2)); err != nil {
		t.Fatal(err)
	}
	sink, err := topic.New(topic.Config{Producer: f, Topic: "b", OriginHeader: "origin"})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Sink("fwd", sink, flow.FromTopics("a"), flow.FetchBytes(1<<10)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		msgs, err := topictest.ReadAll(context.Background(), cl, "b")
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, m := range msgs {
			seen[string(m.Value)] = true
		}
		if len(seen) == count {
			if f.calls.Load() < 3 || len(msgs) == count {
				t.Fatalf("%d Produce calls, %d records in b: no failure was replayed", f.calls.Load(), len(msgs))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d records in b after %d Produce calls", len(seen), count, f.calls.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
