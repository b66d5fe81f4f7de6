package client

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/storage"
)

// answerDropper is a TCP proxy to a node that swallows the answers to the first drops produce
// requests and cuts the connection instead, as a node that fails after writing would: the
// producer cannot know whether its batch was written, and sends it again.
type answerDropper struct {
	ln      net.Listener
	target  string
	drops   atomic.Int32
	dropped atomic.Int32
	wg      sync.WaitGroup
}

func newAnswerDropper(t *testing.T, target string, drops int32) *answerDropper {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &answerDropper{ln: ln, target: target}
	d.drops.Store(drops)
	d.wg.Add(1)
	go d.serve()
	t.Cleanup(func() { ln.Close(); d.wg.Wait() })
	return d
}

func (d *answerDropper) serve() {
	defer d.wg.Done()
	for {
		c, err := d.ln.Accept()
		if err != nil {
			return
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer c.Close()
			up, err := net.Dial("tcp", d.target)
			if err != nil {
				return
			}
			defer up.Close()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			r := bufio.NewReader(up)
			for {
				f, _, err := wire.ReadFrame(r, nil, 0)
				if err != nil {
					return
				}
				if f.API == wire.ApiProduce && d.drops.Add(-1) >= 0 {
					d.dropped.Add(1)
					return // the answer is lost with the connection
				}
				if _, err := c.Write(wire.AppendFrame(nil, f.API, f.Corr, f.Body)); err != nil {
					return
				}
			}
		}()
	}
}

// TestIdempotentProducerLostAnswers loses the answers of produce requests that the node carried
// out: the producer sends those batches again, and with idempotence each record is in the log
// once, at the offset its callback was given; without it, the same run writes copies.
func TestIdempotentProducerLostAnswers(t *testing.T) {
	n, direct := setup(t, "", 0)
	for _, tc := range []struct {
		idem     bool
		inFlight int
	}{{true, 1}, {true, 5}, {false, 1}} {
		idem := tc.idem
		t.Run(fmt.Sprintf("idempotent=%v,inflight=%d", idem, tc.inFlight), func(t *testing.T) {
			ctx := testCtx(t)
			topic := fmt.Sprintf("lost-answers-%v-%d", idem, tc.inFlight)
			if err := direct.CreateTopic(ctx, topic, 2, 1); err != nil {
				t.Fatal(err)
			}
			proxy := newAnswerDropper(t, n.ClientAddr(), 4)
			c := dial(t, proxy.ln.Addr().String())
			p, err := c.NewProducer(topic, Idempotent(idem), BatchBytes(2<<10), Retries(20), MaxInFlight(tc.inFlight))
			if err != nil {
				t.Fatal(err)
			}
			const records = 400
			var mu sync.Mutex
			offsets := map[string]int64{}
			for i := range records {
				v := fmt.Sprintf("r%04d", i)
				p.ProduceAsync(ctx, storage.Record{Key: []byte(v), Value: []byte(v)}, func(off int64, err error) {
					if err != nil {
						t.Errorf("record %s: %v", v, err)
					}
					mu.Lock()
					offsets[v] = off
					mu.Unlock()
				})
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if proxy.dropped.Load() == 0 {
				t.Fatal("no answer was dropped")
			}
			seen := map[string]int{}
			dups := 0
			for part := range int32(2) {
				hw, err := direct.ListOffsets(ctx, topic, part, Latest())
				if err != nil {
					t.Fatal(err)
				}
				if hw == 0 {
					continue
				}
				for _, m := range consumeN(t, direct, topic, part, Earliest(), int(hw)) {
					v := string(m.Value)
					seen[v]++
					if seen[v] > 1 {
						dups++
					} else if idem && offsets[v] != m.Offset {
						t.Errorf("record %s at %d/%d, its callback said %d", v, part, m.Offset, offsets[v])
					}
				}
			}
			if len(seen) != records {
				t.Fatalf("%d distinct records in the log, want %d", len(seen), records)
			}
			t.Logf("idempotent=%v: %d answers dropped, %d copies written", idem, proxy.dropped.Load(), dups)
			if idem && dups > 0 {
				t.Fatalf("%d records written twice", dups)
			}
			if !idem && dups == 0 {
				t.Fatal("without idempotence no copy was written: the test does not lose answers")
			}
		})
	}
}

// scriptedProxy is a TCP proxy to a node that hands each produce request, on a goroutine of its
// own, to a script that decides its fate: forwarded to the node (on a connection of its own)
// or not, answered with the node's answer or with an error of the script's choice. Other
// requests are forwarded.
type scriptedProxy struct {
	ln     net.Listener
	target string
	script func(s *produceCall)
	mu     sync.Mutex
	tries  map[[2]int64]int // (producer id, sequence) -> attempts seen
	wg     sync.WaitGroup
}

// produceCall is one produce request the proxy holds: its first batch's header and how many
// times a batch with that stamp was seen (1 for the first).
type produceCall struct {
	h       storage.Header
	attempt int
	p       *scriptedProxy
	f       wire.Frame
	reply   func(wire.Frame)
}

// forward sends the request to the node and returns its answer.
func (c *produceCall) forward() wire.Frame {
	up, err := net.Dial("tcp", c.p.target)
	if err != nil {
		return wire.Frame{}
	}
	defer up.Close()
	if _, err := up.Write(wire.AppendFrame(nil, c.f.API, c.f.Corr, c.f.Body)); err != nil {
		return wire.Frame{}
	}
	g, _, _ := wire.ReadFrame(bufio.NewReader(up), nil, 0)
	return g
}

// answer sends an answer to the producer.
func (c *produceCall) answer(g wire.Frame) { c.reply(g) }

// fail answers the request with an error for its batch.
func (c *produceCall) fail(code wire.Code) {
	fr, _ := wire.EncodeFrame(wire.ApiProduce, c.f.Corr, &wire.ProduceResponse{Results: []wire.ProduceResult{{BaseOffset: -1, Err: wire.Errorf(code, "injected by the test proxy")}}})
	g, _, _ := wire.ReadFrame(bufio.NewReader(bytes.NewReader(fr)), nil, 0)
	c.reply(g)
}

func newScriptedProxy(t *testing.T, target string, script func(*produceCall)) *scriptedProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sp := &scriptedProxy{ln: ln, target: target, script: script, tries: map[[2]int64]int{}}
	sp.wg.Add(1)
	go func() {
		defer sp.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			sp.wg.Add(1)
			go sp.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close(); sp.wg.Wait() })
	return sp
}

func (sp *scriptedProxy) serve(c net.Conn) {
	defer sp.wg.Done()
	defer c.Close()
	var wmu sync.Mutex
	reply := func(corr uint32) func(wire.Frame) {
		return func(g wire.Frame) {
			wmu.Lock()
			defer wmu.Unlock()
			_, _ = c.Write(wire.AppendFrame(nil, g.API, corr, g.Body))
		}
	}
	var calls sync.WaitGroup
	defer calls.Wait()
	r := bufio.NewReader(c)
	for {
		f, _, err := wire.ReadFrame(r, nil, 0)
		if err != nil {
			return
		}
		call := &produceCall{p: sp, f: f, reply: reply(f.Corr)}
		calls.Add(1)
		go func() {
			defer calls.Done()
			if f.API != wire.ApiProduce {
				call.answer(call.forward())
				return
			}
			var req wire.ProduceRequest
			if err := wire.Decode(f.API, f.Body, &req); err != nil || len(req.Batches) == 0 {
				call.answer(call.forward())
				return
			}
			call.h, _ = storage.ParseHeader(req.Batches[0].Batch)
			sp.mu.Lock()
			k := [2]int64{call.h.ProducerID, int64(call.h.BaseSequence)}
			sp.tries[k]++
			call.attempt = sp.tries[k]
			sp.mu.Unlock()
			sp.script(call)
		}()
	}
}

// produceChecked produces records "r<i>" (padded to size bytes) to partition 0 of topic and
// checks the log afterwards: every record acknowledged without error is in it, at the offset
// its callback was given, and no record is in it twice. It returns the records that failed.
func produceChecked(t *testing.T, direct, c *Client, topic string, records, size int, opts ...ProducerOption) map[string]error {
	t.Helper()
	ctx := testCtx(t)
	p, err := c.NewProducer(topic, opts...)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	acked := map[string]int64{}
	failed := map[string]error{}
	for i := range records {
		v := fmt.Sprintf("r%d", i)
		pad := fmt.Sprintf("%s-%0*d", v, max(size-len(v)-1, 0), 0)
		p.ProduceAsync(ctx, storage.Record{Value: []byte(pad)}, func(off int64, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed[v] = err
				return
			}
			acked[v] = off
		})
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	hw, err := direct.ListOffsets(ctx, topic, 0, Latest())
	if err != nil {
		t.Fatal(err)
	}
	at := map[string]int64{}
	for _, m := range consumeN(t, direct, topic, 0, Earliest(), int(hw)) {
		v, _, _ := strings.Cut(string(m.Value), "-")
		if prev, ok := at[v]; ok {
			t.Errorf("record %s is in the log twice, at %d and %d", v, prev, m.Offset)
		}
		at[v] = m.Offset
	}
	for v, off := range acked {
		switch got, ok := at[v]; {
		case !ok:
			t.Errorf("record %s was acknowledged (offset %d) but is not in the log", v, off)
		case off >= 0 && got != off:
			t.Errorf("record %s is at %d, its callback said %d", v, got, off)
		}
	}
	return failed
}

// TestIdempotentProducerReorderedRequests: with MaxInFlight(2) a new producer's second request
// reaches the leader before its first (the producer sends each request from a goroutine of its
// own). The leader must not take the second batch before the first, nor report the first as
// written when it is not.
func TestIdempotentProducerReorderedRequests(t *testing.T) {
	n, direct := setup(t, "swap", 1)
	first := make(chan struct{})
	var once sync.Once
	proxy := newScriptedProxy(t, n.ClientAddr(), func(c *produceCall) {
		if c.h.BaseSequence == 0 && c.attempt == 1 {
			<-first // held until the second request has been answered
		} else if c.attempt == 1 {
			defer once.Do(func() { close(first) })
		}
		c.answer(c.forward())
	})
	failed := produceChecked(t, direct, dial(t, proxy.ln.Addr().String()), "swap", 20, 600, MaxInFlight(2), BatchBytes(1<<10))
	if len(failed) > 0 {
		t.Fatalf("records failed: %v", failed)
	}
}

// TestIdempotentProducerAfterAFailedBatch: a batch fails for good without being written; the
// batches after it do not follow their producer's sequence any more, and the partition numbers
// anew: they are written once each.
func TestIdempotentProducerAfterAFailedBatch(t *testing.T) {
	n, direct := setup(t, "gap", 1)
	proxy := newScriptedProxy(t, n.ClientAddr(), func(c *produceCall) {
		if c.h.BaseSequence == 0 && c.attempt <= 2 && len(failedPIDs(c.p, c.h.ProducerID)) == 0 {
			c.fail(wire.CodeUnavailable) // r0, first producer id: never written
			return
		}
		c.answer(c.forward())
	})
	failed := produceChecked(t, direct, dial(t, proxy.ln.Addr().String()), "gap", 10, 600,
		BatchBytes(1<<9), Retries(1), RetryBackoff(10*time.Millisecond, 10*time.Millisecond))
	if len(failed) != 1 || failed["r0"] == nil {
		t.Fatalf("failed records %v, want r0 alone", failed)
	}
}

// failedPIDs lists the producer ids other than pid that the proxy has seen: empty while the
// first producer id is in use.
func failedPIDs(sp *scriptedProxy, pid int64) []int64 {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	var out []int64
	for k := range sp.tries {
		if k[0] != pid && !slices.Contains(out, k[0]) {
			out = append(out, k[0])
		}
	}
	return out
}

// TestIdempotentProducerWrittenBatchFailsForGood: batches A and B are both written but their
// answers are lost; A's retry then fails for good. B's retry must be recognised as a copy, not
// numbered anew and written twice.
func TestIdempotentProducerWrittenBatchFailsForGood(t *testing.T) {
	n, direct := setup(t, "restamp", 1)
	aWritten, aFailed := make(chan struct{}), make(chan struct{})
	proxy := newScriptedProxy(t, n.ClientAddr(), func(c *produceCall) {
		switch {
		case c.h.BaseSequence == 0 && c.attempt == 1: // A: written, answer lost
			c.forward()
			close(aWritten)
			c.fail(wire.CodeTimeout)
		case c.h.BaseSequence == 0 && c.attempt == 2: // A's retry fails for good
			c.fail(wire.CodeUnavailable)
			time.Sleep(50 * time.Millisecond)
			close(aFailed)
		case c.h.BaseSequence == 1 && c.attempt == 1: // B: written after A, answer lost
			<-aWritten
			c.forward()
			<-aFailed
			c.fail(wire.CodeTimeout)
		default:
			c.answer(c.forward())
		}
	})
	failed := produceChecked(t, direct, dial(t, proxy.ln.Addr().String()), "restamp", 2, 600,
		MaxInFlight(2), BatchBytes(1<<9), Retries(1), RetryBackoff(10*time.Millisecond, 10*time.Millisecond))
	if len(failed) != 1 || failed["r0"] == nil {
		t.Fatalf("failed records %v, want r0 alone", failed)
	}
}

// TestIdempotentProducersInFlight runs many idempotent producers with 5 batches in flight each
// against one node: every acknowledged record is in the log once, where its callback said.
func TestIdempotentProducersInFlight(t *testing.T) {
	_, c := setup(t, "many", 1)
	var wg sync.WaitGroup
	const producers, records = 10, 20
	for i := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := testCtx(t)
			p, err := c.NewProducer("many", MaxInFlight(5), BatchBytes(1<<9), Linger(0))
			if err != nil {
				t.Error(err)
				return
			}
			for j := range records {
				v := fmt.Sprintf("p%d-%d-%0400d", i, j, 0)
				p.ProduceAsync(ctx, storage.Record{Value: []byte(v)}, func(_ int64, err error) {
					if err != nil {
						t.Errorf("record %s: %v", v[:8], err)
					}
				})
			}
			_ = p.Close()
		}()
	}
	wg.Wait()
	hw, err := c.ListOffsets(testCtx(t), "many", 0, Latest())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range consumeN(t, c, "many", 0, Earliest(), int(hw)) {
		parts := strings.SplitN(string(m.Value), "-", 3)
		k := parts[0] + "-" + parts[1]
		if seen[k] {
			t.Errorf("record %s twice", k)
		}
		seen[k] = true
	}
	if len(seen) != producers*records {
		t.Fatalf("%d distinct records in the log, want %d", len(seen), producers*records)
	}
}

func TestIdempotentMaxInFlight(t *testing.T) {
	_, c := setup(t, "", 0)
	if _, err := c.NewProducer("x", MaxInFlight(6)); err == nil || !strings.Contains(err.Error(), "at most 5") {
		t.Fatalf("MaxInFlight(6) with idempotence: %v", err)
	}
	if _, err := c.NewProducer("x", MaxInFlight(6), Idempotent(false)); err != nil {
		t.Fatal(err)
	}
}
