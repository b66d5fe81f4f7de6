package client

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

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
	for _, idem := range []bool{true, false} {
		t.Run(fmt.Sprintf("idempotent=%v", idem), func(t *testing.T) {
			ctx := testCtx(t)
			topic := fmt.Sprintf("lost-answers-%v", idem)
			if err := direct.CreateTopic(ctx, topic, 2, 1); err != nil {
				t.Fatal(err)
			}
			proxy := newAnswerDropper(t, n.ClientAddr(), 4)
			c := dial(t, proxy.ln.Addr().String())
			p, err := c.NewProducer(topic, Idempotent(idem), BatchBytes(2<<10), Retries(20))
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
