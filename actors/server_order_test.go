package actors

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/cluster/wire"
)

// pipeline writes every request to one connection before reading any answer, and returns the
// answers' bodies by correlation id (1 for the first request).
func pipeline(t *testing.T, addr string, api wire.API, reqs []any) map[uint32][]byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var frames []byte
	for i, req := range reqs {
		body, err := wire.Encode(req)
		if err != nil {
			t.Fatal(err)
		}
		frames = wire.AppendFrame(frames, api, uint32(i+1), body)
	}
	// One write: the node reads the requests back to back, as fast as it can.
	if _, err := c.Write(frames); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	out := make(map[uint32][]byte, len(reqs))
	for len(out) < len(reqs) {
		f, _, err := wire.ReadFrame(r, nil, 0)
		if err != nil {
			t.Fatalf("after %d of %d answers: %v", len(out), len(reqs), err)
		}
		if f.API != api || f.Corr == 0 || int(f.Corr) > len(reqs) {
			t.Fatalf("answer %s/%d to %d %s requests", f.API, f.Corr, len(reqs), api)
		}
		if _, dup := out[f.Corr]; dup {
			t.Fatalf("two answers to request %d", f.Corr)
		}
		out[f.Corr] = f.Body
	}
	return out
}

// TestPipelinedProducesKeepOrder sends many produce requests to one partition back to back on
// one connection: the partition must append them in the order they were sent, whatever order
// their answers come back in.
func TestPipelinedProducesKeepOrder(t *testing.T) {
	n := startTestNode(t, t.TempDir(), nil)
	defer n.Close()
	tc := dialNode(t, n)
	createTopic(t, tc, "ordered", 2)

	const requests = 200 // within the node's 256 requests in flight per connection
	// acks=none first: the committed acks=all requests at the end make its records readable.
	order := []wire.Acks{wire.AcksNone, wire.AcksLeader, wire.AcksAll}
	for _, acks := range order {
		t.Run(fmt.Sprintf("acks %d", acks), func(t *testing.T) {
			reqs := make([]any, requests)
			for i := range reqs {
				reqs[i] = &wire.ProduceRequest{Topic: "ordered", Acks: acks, Batches: []wire.PartitionBatch{
					{Partition: 1, Batch: batchOf(t, fmt.Sprintf("%d-%d-a", acks, i), fmt.Sprintf("%d-%d-b", acks, i))}}}
			}
			answers := pipeline(t, n.ClientAddr(), wire.ApiProduce, reqs)
			last := int64(-1)
			for corr := uint32(1); acks == wire.AcksNone && corr <= requests; corr++ {
				var resp wire.ProduceResponse
				if err := wire.Decode(wire.ApiProduce, answers[corr], &resp); err != nil || resp.Err != nil || resp.Results[0].Err != nil {
					t.Fatalf("request %d: %+v, %v", corr, resp, err)
				}
			}
			for corr := uint32(1); acks != wire.AcksNone && corr <= requests; corr++ {
				var resp wire.ProduceResponse
				if err := wire.Decode(wire.ApiProduce, answers[corr], &resp); err != nil {
					t.Fatal(err)
				}
				if resp.Err != nil || len(resp.Results) != 1 || resp.Results[0].Err != nil {
					t.Fatalf("request %d: %+v", corr, resp)
				}
				if off := resp.Results[0].BaseOffset; off <= last {
					t.Fatalf("request %d appended at %d, after request %d at %d", corr, off, corr-1, last)
				} else {
					last = off
				}
			}
		})
	}
	// The log holds the values in the order sent.
	got := consumeAll(t, tc, "ordered", 1)
	i := 0
	for _, acks := range order {
		for r := range requests {
			for _, s := range []string{"a", "b"} {
				if want := fmt.Sprintf("%d-%d-%s", acks, r, s); i >= len(got) || got[i] != want {
					t.Fatalf("record %d of the log: want %q, log %q", i, want, got[min(i, len(got)-1)])
				}
				i++
			}
		}
	}
}

// TestNodeCloseTwice closes a node twice in a row, then another from several goroutines at
// once: every call returns, none panics, and the ports are closed after the first.
func TestNodeCloseTwice(t *testing.T) {
	withHTTP := func(c *NodeConfig) { c.HTTPAddr = "127.0.0.1:0" }
	n := startTestNode(t, t.TempDir(), withHTTP)
	addr := n.ClientAddr()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("the client port still accepts after Close")
	}

	n = startTestNode(t, t.TempDir(), withHTTP)
	tc := dialNode(t, n)
	createTopic(t, tc, "t", 1)
	done := make(chan error)
	const closers = 8
	for range closers {
		go func() { done <- n.Close() }()
	}
	for range closers {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a concurrent Close did not return")
		}
	}
	if err := tc.try(wire.ApiMetadata, &wire.MetadataRequest{}, &wire.MetadataResponse{}); err == nil {
		t.Fatal("a connection still answers after Close")
	}
}

// TestNodeCloseAnswersWaitingRequests: Close does not wait for requests that actors hold (a
// fetch long-polling for a minute, a join waiting for a rebalance): stopping the actors
// answers them.
func TestNodeCloseAnswersWaitingRequests(t *testing.T) {
	n := startTestNode(t, t.TempDir(), func(c *NodeConfig) {
		c.Coordinator = CoordinatorConfig{InitialDelay: 10 * time.Millisecond, RebalanceTimeout: time.Minute}
	})
	tc := dialNode(t, n)
	createTopic(t, tc, "w", 1)
	var first wire.JoinGroupResponse
	tc.call(wire.ApiJoinGroup, &wire.JoinGroupRequest{Group: "g", MemberID: "a", Topics: []string{"w"}}, &first)
	if first.Err != nil {
		t.Fatal(first.Err)
	}
	// A second member's join waits for the first to rejoin, for up to a minute.
	join := dialNode(t, n)
	body, _ := wire.Encode(&wire.JoinGroupRequest{Group: "g", MemberID: "b", Topics: []string{"w"}})
	if _, err := join.c.Write(wire.AppendFrame(nil, wire.ApiJoinGroup, 1, body)); err != nil {
		t.Fatal(err)
	}
	fetch := dialNode(t, n)
	body, _ = wire.Encode(&wire.FetchRequest{Topic: "w", Offset: 0, MaxBytes: 1 << 20, MaxWaitMs: 60_000})
	if _, err := fetch.c.Write(wire.AppendFrame(nil, wire.ApiFetch, 1, body)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // both are held by their actors
	start := time.Now()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("Close took %v with a fetch and a join waiting", el)
	}
}

// TestProduceUnknownTopicAnswersAtOnce: a produce to a topic the node does not know is
// answered at once with CodeUnknownTopic naming the topic, and so is a metadata request for
// it: `weir produce` relies on the latter to fail fast.
func TestProduceUnknownTopicAnswersAtOnce(t *testing.T) {
	n := startTestNode(t, t.TempDir(), nil)
	defer n.Close()
	tc := dialNode(t, n)
	start := time.Now()
	var pr wire.ProduceResponse
	tc.call(wire.ApiProduce, &wire.ProduceRequest{Topic: "missing-topic", Acks: wire.AcksAll,
		Batches: []wire.PartitionBatch{{Partition: 0, Batch: batchOf(t, "x")}}}, &pr)
	if len(pr.Results) != 1 || !errors.Is(pr.Results[0].Err, wire.ErrUnknownTopic) || !strings.Contains(pr.Results[0].Err.Error(), `"missing-topic"`) {
		t.Fatalf("produce to a missing topic: %+v", pr)
	}
	var md wire.MetadataResponse
	tc.call(wire.ApiMetadata, &wire.MetadataRequest{Topics: []string{"missing-topic"}}, &md)
	if md.Err != nil || len(md.Topics) != 1 || !errors.Is(md.Topics[0].Err, wire.ErrUnknownTopic) || !strings.Contains(md.Topics[0].Err.Error(), `"missing-topic"`) {
		t.Fatalf("metadata of a missing topic: %+v", md)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("answered after %v", el)
	}
}

// TestProfilingEndpoints: /debug/pprof/ is served only when Profiling is set; /metrics and
// /healthz either way.
func TestProfilingEndpoints(t *testing.T) {
	for _, on := range []bool{false, true} {
		n := startTestNode(t, t.TempDir(), func(c *NodeConfig) { c.HTTPAddr, c.Profiling = "127.0.0.1:0", on })
		get := func(path string) int {
			resp, err := http.Get("http://" + n.HTTPAddr() + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		want := http.StatusNotFound
		if on {
			want = http.StatusOK
		}
		if got := get("/debug/pprof/"); got != want {
			t.Errorf("Profiling %v: /debug/pprof/ answered %d, want %d", on, got, want)
		}
		if got := get("/debug/pprof/heap"); got != want {
			t.Errorf("Profiling %v: /debug/pprof/heap answered %d, want %d", on, got, want)
		}
		if got := get("/metrics"); got != http.StatusOK {
			t.Errorf("Profiling %v: /metrics answered %d", on, got)
		}
		n.Close()
	}
}
