package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/weirhq/weir/actors"
	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// testNode is an embedded node whose Close may be called more than once (Node.Close may not).
type testNode struct {
	*actors.Node
	once sync.Once
}

func (n *testNode) Close() { n.once.Do(func() { n.Node.Close() }) }

// startNode starts a real embedded node on a free port (addr "" picks one), with the log's
// fsync off for speed. WEIR_TEST_LOG=1 shows its logs.
func startNode(t testing.TB, dir, addr string) *testNode {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	cfg := actors.NodeConfig{DataDir: dir, ClientAddr: addr}
	cfg.Log = storage.DefaultConfig()
	cfg.Log.Sync = storage.SyncNever
	if os.Getenv("WEIR_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	an, err := actors.StartNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{Node: an}
	t.Cleanup(n.Close)
	return n
}

func dial(t testing.TB, addr string, opts ...Option) *Client {
	t.Helper()
	if os.Getenv("WEIR_TEST_LOG") != "" {
		opts = append(opts, Logger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	}
	c, err := Dial(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// setup starts a node, dials it and creates a topic.
func setup(t testing.TB, topic string, partitions int32) (*testNode, *Client) {
	t.Helper()
	n := startNode(t, t.TempDir(), "")
	c := dial(t, n.ClientAddr())
	if topic != "" {
		if err := c.CreateTopic(testCtx(t), topic, partitions, 1); err != nil {
			t.Fatal(err)
		}
	}
	return n, c
}

// consumeN reads a partition from from until it has n messages.
func consumeN(t testing.TB, c *Client, topic string, partition int32, from OffsetSpec, n int) []Message {
	t.Helper()
	cons, err := c.NewConsumer(topic, partition, From(from), MaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	ctx := testCtx(t)
	var out []Message
	for len(out) < n {
		msgs, err := cons.Poll(ctx)
		if err != nil {
			t.Fatalf("poll %s/%d after %d messages: %v", topic, partition, len(out), err)
		}
		out = append(out, msgs...)
	}
	return out
}

func TestAdmin(t *testing.T) {
	_, c := setup(t, "", 0)
	ctx := testCtx(t)
	if err := c.CreateTopic(ctx, "orders", 3, 1); err != nil {
		t.Fatal(err)
	}
	errCases := []struct {
		name string
		err  error
		want error
	}{
		{"create existing", c.CreateTopic(ctx, "orders", 3, 1), wire.ErrTopicExists},
		{"create zero partitions", c.CreateTopic(ctx, "bad", 0, 1), wire.ErrInvalidRequest},
		{"delete unknown", c.DeleteTopic(ctx, "nope"), wire.ErrUnknownTopic},
	}
	for _, tc := range errCases {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, tc.err, tc.want)
		}
		var ce *Error
		if tc.err != nil && !errors.As(tc.err, &ce) {
			t.Errorf("%s: %T is not a *client.Error", tc.name, tc.err)
		}
	}
	md, err := c.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Topics) != 1 || md.Topics[0].Name != "orders" || len(md.Topics[0].Partitions) != 3 || len(md.Nodes) != 1 {
		t.Fatalf("metadata: %+v", md)
	}
	md, err = c.Metadata(ctx, "orders", "missing")
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Topics) != 2 || md.Topics[0].Err != nil || !errors.Is(md.Topics[1].Err, wire.ErrUnknownTopic) {
		t.Fatalf("metadata of a missing topic: %+v", md.Topics)
	}
	for _, spec := range []OffsetSpec{Earliest(), Latest(), AtTime(time.Now())} {
		if off, err := c.ListOffsets(ctx, "orders", 1, spec); err != nil || off != 0 {
			t.Errorf("ListOffsets(%v) of an empty partition = %d, %v", spec, off, err)
		}
	}
	if _, err := c.ListOffsets(ctx, "orders", 7, Earliest()); !errors.Is(err, wire.ErrUnknownPartition) {
		t.Errorf("ListOffsets of partition 7: %v", err)
	}
	if err := c.DeleteTopic(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	if md, err := c.Metadata(ctx); err != nil || len(md.Topics) != 0 {
		t.Fatalf("metadata after delete: %+v, %v", md, err)
	}
}

func TestOptionValidation(t *testing.T) {
	_, c := setup(t, "", 0)
	bad := []struct {
		name string
		opts []ProducerOption
	}{
		{"acks", []ProducerOption{Acks(5)}},
		{"linger", []ProducerOption{Linger(-time.Second)}},
		{"batch bytes", []ProducerOption{BatchBytes(10)}},
		{"in flight", []ProducerOption{MaxInFlight(0)}},
		{"record bytes", []ProducerOption{MaxRecordBytes(storage.MaxBatchSize)}},
		{"buffered bytes", []ProducerOption{MaxBufferedBytes(0)}},
		{"retries", []ProducerOption{Retries(-1)}},
		{"backoff", []ProducerOption{RetryBackoff(time.Second, time.Millisecond)}},
	}
	for _, tc := range bad {
		if _, err := c.NewProducer("t", tc.opts...); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	if _, err := c.NewConsumer("t", -1); err == nil {
		t.Error("negative partition accepted")
	}
	if _, err := c.NewConsumer("t", 0, MaxWait(2*time.Minute)); err == nil {
		t.Error("MaxWait of 2 minutes accepted")
	}
	if _, err := c.NewGroupConsumer("g", []string{"t"}, SessionTimeout(time.Second), HeartbeatInterval(time.Second)); err == nil {
		t.Error("heartbeat interval equal to the session timeout accepted")
	}
	if _, err := Dial("127.0.0.1:1", DialTimeout(0)); err == nil {
		t.Error("zero dial timeout accepted")
	}
}

func TestDialRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = Dial(addr, DialTimeout(time.Second))
	var ce *ConnError
	if !errors.As(err, &ce) || !IsRetriable(err) {
		t.Fatalf("dial of a closed port: %v", err)
	}
}

// TestRequestTimeout talks to a peer that accepts and never answers: requests time out with
// wire.ErrTimeout and Close returns.
func TestRequestTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	c, err := Dial(ln.Addr().String(), RequestTimeout(50*time.Millisecond), Retries(1), RetryBackoff(time.Millisecond, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.Metadata(context.Background())
	if !errors.Is(err, wire.ErrTimeout) || !IsRetriable(err) {
		t.Fatalf("metadata from a silent peer: %v", err)
	}
	if el := time.Since(start); el < 100*time.Millisecond || el > 5*time.Second {
		t.Fatalf("two attempts of 50 ms took %v", el)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.CreateTopic(ctx, "t", 1, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("create with a canceled context: %v", err)
	}
	c.Close()
	if err := c.CreateTopic(context.Background(), "t", 1, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("create after Close: %v", err)
	}
	(<-accepted).Close()
}

// TestReconnect restarts the node under a producer and a consumer: the connection is closed
// by the node, requests in flight fail and are retried on a new connection.
func TestReconnect(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir, "")
	addr := n.ClientAddr()
	c := dial(t, addr, RetryBackoff(20*time.Millisecond, 200*time.Millisecond), Retries(30))
	ctx := testCtx(t)
	if err := c.CreateTopic(ctx, "r", 1, 1); err != nil {
		t.Fatal(err)
	}
	p, err := c.NewProducer("r")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := range 10 {
		if _, err := p.Produce(ctx, storage.Record{Value: fmt.Appendf(nil, "v%d", i)}).Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := c.NewConsumer("r", 0, MaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	if msgs, err := cons.Poll(ctx); err != nil || len(msgs) != 10 {
		t.Fatalf("first poll: %d messages, %v", len(msgs), err)
	}

	n.Close() // closes the client's connection, with a long-polling fetch in flight
	down, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err = c.Metadata(down)
	cancel()
	var ce *ConnError
	if !errors.As(err, &ce) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("metadata while the node is down: %v", err)
	}
	n2 := startNode(t, dir, addr)
	defer n2.Close()
	for i := 10; i < 20; i++ {
		if _, err := p.Produce(ctx, storage.Record{Value: fmt.Appendf(nil, "v%d", i)}).Wait(ctx); err != nil {
			t.Fatalf("produce after the restart: %v", err)
		}
	}
	var got []Message
	for len(got) < 10 {
		msgs, err := cons.Poll(ctx)
		if err != nil {
			t.Fatalf("poll after the restart: %v", err)
		}
		got = append(got, msgs...)
	}
	for i, m := range got {
		if m.Offset != int64(10+i) || string(m.Value) != fmt.Sprintf("v%d", 10+i) {
			t.Fatalf("message %d after the restart: offset %d %q", i, m.Offset, m.Value)
		}
	}
	// From the start, the log holds the new leader's empty raft entry between the two runs'
	// records: a batch of another kind, skipped.
	for i, m := range consumeN(t, c, "r", 0, Earliest(), 20) {
		if m.Offset != int64(i) || string(m.Value) != fmt.Sprintf("v%d", i) {
			t.Fatalf("message %d from the start: offset %d %q", i, m.Offset, m.Value)
		}
	}
}

// fakeNode is a peer that speaks the wire protocol with answers made up by a test: answer
// returns the response to a request and how long to hold it (nil: no answer).
func fakeNode(t testing.TB, answer func(f wire.Frame) (resp any, delay time.Duration)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				var mu sync.Mutex // one writer at a time
				var answers sync.WaitGroup
				defer answers.Wait()
				for {
					f, _, err := wire.ReadFrame(nc, nil, 0)
					if err != nil {
						return
					}
					resp, delay := answer(f)
					if resp == nil {
						continue
					}
					frame, err := wire.EncodeFrame(f.API, f.Corr, resp)
					if err != nil {
						t.Error(err)
						return
					}
					answers.Add(1)
					time.AfterFunc(delay, func() {
						defer answers.Done()
						mu.Lock()
						defer mu.Unlock()
						_, _ = nc.Write(frame)
					})
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestPartitions(t *testing.T) {
	_, c := setup(t, "three", 3)
	ctx := testCtx(t)
	if n, err := c.Partitions(ctx, "three"); err != nil || n != 3 {
		t.Fatalf("Partitions of a 3-partition topic: %d, %v", n, err)
	}
	start := time.Now()
	_, err := c.Partitions(ctx, "missing")
	var ce *Error
	if !errors.Is(err, wire.ErrUnknownTopic) || !errors.As(err, &ce) || ce.Topic != "missing" {
		t.Fatalf("Partitions of a missing topic: %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("a missing topic was retried: %v", el)
	}

	// A node whose answer holds no topic at all.
	addr := fakeNode(t, func(f wire.Frame) (any, time.Duration) {
		return &wire.MetadataResponse{}, 0
	})
	fc := dial(t, addr, Retries(0))
	if n, err := fc.Partitions(ctx, "three"); err == nil {
		t.Fatalf("an answer without the topic gave %d partitions", n)
	}
}
