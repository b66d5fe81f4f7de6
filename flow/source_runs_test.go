package flow_test

import (
	"context"
	"fmt"
	httpsource "github.com/weirhq/weir/connectors/source/http"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhq/weir/connectors/selector"
	"github.com/weirhq/weir/flow"
	"github.com/weirhq/weir/storage"
)

// onceSource serves one batch of 10 records at position "1", then nothing; it counts Opens.
type onceSource struct {
	mu     sync.Mutex
	opens  int
	served bool
	opened [][]byte // the positions given to Open
}

func (s *onceSource) Open(_ context.Context, pos []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opens++
	s.served = pos != nil
	s.opened = append(s.opened, pos)
	return nil
}

func (s *onceSource) Read(ctx context.Context) ([]storage.Record, []byte, error) {
	s.mu.Lock()
	if !s.served {
		s.served = true
		s.mu.Unlock()
		var recs []storage.Record
		for i := range 10 {
			recs = append(recs, storage.Record{Value: []byte(fmt.Sprint(i))})
		}
		return recs, []byte("1"), nil
	}
	s.mu.Unlock()
	<-ctx.Done()
	return nil, []byte("1"), nil
}

func (s *onceSource) Close() error { return nil }

func (s *onceSource) openCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opens
}

// TestStaleRetryDoesNotReachTheNextRun: a source runner whose produce is being retried is
// stopped, and the flow is defined again under the same name (as a cluster does when a flow moves
// and comes back, or a user re-adds it). The old runner's retry timer still fires at the same PID
// name; the new runner must ignore it (run numbers are unique in the process). When every run
// counted from 0, the new one produced a batch it did not have (the partition answered
// CorruptBatch and the runner crashed and reopened its source), or produced its batch twice.
func TestStaleRetryDoesNotReachTheNextRun(t *testing.T) {
	var failing atomic.Bool
	var failures atomic.Int64
	failing.Store(true)
	n := startNode(t, func(kind, point string) {
		if kind == "partition" && point == "produce" && failing.Load() {
			failures.Add(1)
			panic("injected produce failure") // the replica answers Unavailable: retriable
		}
	})
	sel, err := selector.Replicating("ra", "rb")
	if err != nil {
		t.Fatal(err)
	}
	src := &onceSource{}
	rt := flow.New(n)
	if err := rt.SourceTo("stale", src, sel); err != nil {
		t.Fatal(err)
	}
	// 2 partitions x 6 failures: the next retry waits 10ms<<6 = 640 ms.
	for deadline := time.Now().Add(20 * time.Second); failures.Load() < 12; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d produce failures", failures.Load())
		}
	}
	rt.Stop()
	failing.Store(false)
	rt2 := flow.New(n)
	defer rt2.Stop()
	if err := rt2.SourceTo("stale", src, sel); err != nil {
		t.Fatal(err)
	}
	sinks := map[string]*memSink{"ra": {}, "rb": {}}
	for topic, s := range sinks {
		if err := rt2.Sink("sink-"+topic, s, flow.FromTopics(topic)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(3 * time.Second) // past the longest retry wait (2 s)
	if o := src.openCount(); o != 2 {
		t.Errorf("the source was opened %d times, want 2 (once per runner): the new runner crashed", o)
	}
	for topic, s := range sinks {
		if got := len(s.values()); got != 10 {
			t.Errorf("topic %s has %d records, want 10", topic, got)
		}
	}
}

// lastRead wraps a source and remembers how many records its last Read returned.
type lastRead struct {
	*httpsource.Source
	n atomic.Int64
}

func (l *lastRead) Read(ctx context.Context) ([]storage.Record, []byte, error) {
	recs, pos, err := l.Source.Read(ctx)
	l.n.Store(int64(len(recs)))
	return recs, pos, err
}

// TestHTTPAnswersOnceAcknowledged: the runner stops (here: fails at its next pull, the
// "source"/"read" fault point; in production a Stop, a node shutdown or a flow moving in a
// cluster does the same) after the topic acknowledged a request's events and the position was
// committed, but before its next Read. The client must get 200: the runner tells the source
// (connectors.Acker) when the commit is done. When the source answered at its next Read, the
// request got 503 although its events were in the topic, and the client sent them again.
func TestHTTPAnswersOnceAcknowledged(t *testing.T) {
	src0, err := httpsource.New(httpsource.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	src := &lastRead{Source: src0}
	var fired atomic.Bool
	n := startNode(t, func(kind, point string) {
		if kind == "source" && point == "read" && src.n.Load() > 0 && fired.CompareAndSwap(false, true) {
			panic("injected: the runner stops after the commit, before the next Read")
		}
	})
	rt := flow.New(n)
	defer rt.Stop()
	if err := rt.Source("web", src, "web"); err != nil {
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
	resp, err := http.Post("http://"+src.Addr().String()+"/", "text/plain", strings.NewReader("e1"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for deadline := time.Now().Add(5 * time.Second); len(sink.values()) < 1 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !fired.Load() {
		t.Fatal("the runner never stopped after the commit: the fault did not fire")
	}
	if got := sink.values(); len(got) != 1 || resp.StatusCode != 200 {
		t.Fatalf("the topic holds %q and the client got %d; want the event stored once and 200", got, resp.StatusCode)
	}
}

// TestSourceFindsItsPositionWhenTheFirstTopicChanges: the position is committed under the
// selector's first topic; when a route added to a multiplexing selector (without a default)
// makes another topic first, the flow defined again still finds its position, under the old
// first topic, instead of starting over.
func TestSourceFindsItsPositionWhenTheFirstTopicChanges(t *testing.T) {
	n := startNode(t, nil)
	src := &onceSource{}
	before, err := selector.Multiplexing(selector.MultiplexingConfig{Header: "k", Routes: map[string][]string{"web": {"web"}}})
	if err != nil {
		t.Fatal(err)
	}
	rt := flow.New(n)
	if err := rt.SourceTo("pos", src, before); err != nil {
		t.Fatal(err)
	}
	// The batch (no header: routed nowhere) is committed at position "1".
	waitCommitted := func(want int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			src.mu.Lock()
			served, opens := src.served, src.opens
			src.mu.Unlock()
			if served && opens == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("source opened %d times, served %v", opens, served)
			}
		}
	}
	waitCommitted(1)
	time.Sleep(300 * time.Millisecond) // the commit of position "1"
	rt.Stop()
	after, err := selector.Multiplexing(selector.MultiplexingConfig{Header: "k", Routes: map[string][]string{"web": {"web"}, "api": {"api"}}})
	if err != nil {
		t.Fatal(err)
	}
	if after.Topics()[0] != "api" {
		t.Fatalf("setup: first topic %q", after.Topics()[0])
	}
	rt2 := flow.New(n)
	defer rt2.Stop()
	if err := rt2.SourceTo("pos", src, after); err != nil {
		t.Fatal(err)
	}
	waitCommitted(2)
	src.mu.Lock()
	defer src.mu.Unlock()
	if string(src.opened[1]) != "1" {
		t.Fatalf("the flow defined again opened its source at %q, want the committed position \"1\"", src.opened[1])
	}
}

// announceSource returns a position with no records at its first Read, then nothing.
type announceSource struct {
	onceSource
	reads atomic.Int64
}

func (s *announceSource) Read(ctx context.Context) ([]storage.Record, []byte, error) {
	if s.reads.Add(1) == 1 {
		return nil, []byte("start"), nil
	}
	<-ctx.Done()
	return nil, nil, nil
}

// TestPositionWithoutRecordsIsCommitted: a Read that returns no records but a new position (a
// file source started at the end of its files) has it committed; the next run opens there.
func TestPositionWithoutRecordsIsCommitted(t *testing.T) {
	n := startNode(t, nil)
	src := &announceSource{}
	rt := flow.New(n)
	if err := rt.Source("announce", src, "ann"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); src.reads.Load() < 3; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the runner did not read again")
		}
	}
	rt.Stop()
	rt2 := flow.New(n)
	defer rt2.Stop()
	if err := rt2.Source("announce", src, "ann"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); src.openCount() < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the second run did not open the source")
		}
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if string(src.opened[1]) != "start" {
		t.Fatalf("the second run opened at %q, want the position returned with no records", src.opened[1])
	}
}
