package hdfs

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"github.com/weirhq/weir/internal/syncbuf"
	"io"
	"log/slog"
	"net"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/colinmarc/hdfs/v2"
	"github.com/linkedin/goavro/v2"
	"github.com/parquet-go/parquet-go"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/source/seq"
	"github.com/weirhq/weir/flow"
	"github.com/weirhq/weir/internal/hdfstest"
	"github.com/weirhq/weir/storage"
)

func TestPathTemplate(t *testing.T) {
	s, err := New(Config{Client: hdfs.ClientOptions{Addresses: []string{"x:1"}}, Path: "/logs/%{topic}/%Y-%m-%d/%H%M/p%{partition}/%{host}", Round: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2026, 12, 1, 9, 47, 13, 0, time.UTC).UnixMilli()
	m := connectors.Message{Topic: "web", Partition: 3, Record: storage.Record{Timestamp: ts, Headers: map[string]string{"host": "a/b"}}}
	if got, want := s.dirOf(m), "/logs/web/2026-12-01/0940/p3/a_b"; got != want {
		t.Fatalf("dir %q, want %q", got, want)
	}
	m.Headers = map[string]string{"host": ".."}
	if got, want := s.dirOf(m), "/logs/web/2026-12-01/0940/p3/_"; got != want {
		t.Fatalf("dir %q, want %q (a header must not climb out)", got, want)
	}
	if s.cfg.StateDir != "/logs/.weir-state" {
		t.Fatalf("state dir %q", s.cfg.StateDir)
	}
	for _, bad := range []Config{
		{Path: "/x"},
		{Client: hdfs.ClientOptions{Addresses: []string{"x:1"}}, Path: "relative/%Y"},
		{Client: hdfs.ClientOptions{Addresses: []string{"x:1"}}, Path: "/x/%q"},
		{Client: hdfs.ClientOptions{Addresses: []string{"x:1"}}, Path: "/x/%{}"},
		{Client: hdfs.ClientOptions{Addresses: []string{"x:1"}}, Path: "/x", Prefix: ".hidden"},
		{Client: hdfs.ClientOptions{Addresses: []string{"x:1"}}, Path: "/x", RollSize: -1},
		{Client: hdfs.ClientOptions{Addresses: []string{"x:1"}}, Path: "/x", Format: Avro, Gzip: true},
		{Client: hdfs.ClientOptions{Addresses: []string{"x:1"}}, Path: "/x", Format: Avro, AvroCodec: "lz4"},
		{Client: hdfs.ClientOptions{Addresses: []string{"x:1"}}, Path: "/x", Format: 9},
		{Client: hdfs.ClientOptions{Addresses: []string{"x:1"}}, Path: "/x", Format: Parquet, ParquetCodec: "lzo"},
		{Client: hdfs.ClientOptions{Addresses: []string{"x:1"}}, Path: "/x", Format: Parquet, Gzip: true},
	} {
		if _, err := New(bad); err == nil || !strings.HasPrefix(err.Error(), "hdfs sink: ") {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}

// files returns every file under root: finished ones (path -> lines) and in-progress ones.
func files(t *testing.T, cl *hdfs.Client, root string) (map[string][]string, []string) {
	t.Helper()
	done := map[string][]string{}
	var inprogress []string
	err := cl.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.IsDir() {
			return nil
		}
		if strings.HasSuffix(p, ".inprogress") {
			inprogress = append(inprogress, p)
			return nil
		}
		if strings.Contains(p, ".weir-state") {
			return nil
		}
		b, err := cl.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasSuffix(p, ".gz") {
			z, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				return err
			}
			if b, err = io.ReadAll(z); err != nil {
				return err
			}
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			done[p] = append(done[p], sc.Text())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return done, inprogress
}

// run runs seq -> topic "events" (3 partitions) -> the HDFS sink until the group has committed
// every record; during it calls during (with the count of records committed so far polled).
func run(t *testing.T, n int, cfg Config, faults func(kind, point string), during func(committed func() int64)) {
	t.Helper()
	node, err := flow.StartNode(flow.NodeConfig{DataDir: t.TempDir(), Faults: faults})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	rt := flow.New(node)
	defer rt.Stop()
	src, _ := seq.New(seq.Config{Count: int64(n), Batch: 200, Prefix: "e"})
	if err := rt.Source("gen", src, "events", flow.Partitions(3)); err != nil {
		t.Fatal(err)
	}
	sink, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Sink("hdfs", sink, flow.FromTopics("events"), flow.FetchBytes(16<<10)); err != nil {
		t.Fatal(err)
	}
	committed := func() int64 {
		lag, err := node.GroupLag("sink:hdfs", "events")
		end, err2 := node.GroupLag("no group", "events") // a group with no commits lags by all
		if err != nil || err2 != nil {
			return 0
		}
		return end - lag
	}
	if during != nil {
		during(committed)
	}
	for deadline := time.Now().Add(3 * time.Minute); committed() < int64(n); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 3 minutes, %d of %d records committed", committed(), n)
		}
	}
	rt.Stop()
}

// exactlyOnce checks that the finished files hold records e0..e(n-1) once each (in Text, the
// value; in JSON, the value of the line's object), and that no in-progress file is left.
func exactlyOnce(t *testing.T, cl *hdfs.Client, root string, n int, isJSON bool) {
	t.Helper()
	done, inprogress := files(t, cl, root)
	if len(inprogress) > 0 {
		t.Fatalf("in-progress files left: %v", inprogress)
	}
	seen := make([]int, n)
	for p, lines := range done {
		name := path.Base(p)
		if !strings.HasPrefix(name, "events-") {
			t.Fatalf("file %s: name without topic", p)
		}
		for _, l := range lines {
			v := l
			if isJSON {
				var r record
				if err := json.Unmarshal([]byte(l), &r); err != nil {
					t.Fatalf("%s: %v: %q", p, err, l)
				}
				v = r.Value
			}
			i, err := strconv.Atoi(strings.TrimPrefix(v, "e"))
			if err != nil || i < 0 || i >= n {
				t.Fatalf("%s: record %q", p, l)
			}
			seen[i]++
		}
	}
	for i, c := range seen {
		if c != 1 {
			t.Fatalf("record e%d is in the files %d times (of %d records, %d files)", i, c, n, len(done))
		}
	}
	t.Logf("%d records in %d files, each once", n, len(done))
}

// TestExactlyOnceAcrossPanics: the sink's actor panics three times during a run (its batch in
// flight, its in-progress files abandoned); the files hold every record once, and no
// in-progress file is left.
func TestExactlyOnceAcrossPanics(t *testing.T) {
	c := hdfstest.Start(t, 2)
	var writes atomic.Int64
	faults := func(kind, point string) {
		if kind == "sink" && point == "write" {
			switch writes.Add(1) {
			case 5, 12, 20:
				panic("injected sink failure")
			}
		}
	}
	const n = 30_000
	run(t, n, Config{Client: hdfs.ClientOptions{Addresses: []string{c.Addr}, User: "weir"}, Path: "/data/%{topic}/%Y%m%d/p%{partition}", RollCount: 2000, IdleTimeout: 2 * time.Second}, faults, nil)
	if writes.Load() < 20 {
		t.Fatalf("only %d writes: not every panic fired", writes.Load())
	}
	exactlyOnce(t, c.Client(t), "/data", n, false)
}

// TestDataNodeRestartGzipJSON: gzipped JSON lines while a DataNode restarts (the writes to it
// fail, the files are abandoned and written again): every record once.
func TestDataNodeRestartGzipJSON(t *testing.T) {
	c := hdfstest.Start(t, 2)
	const n = 30_000
	var logs syncbuf.Buffer
	cfg := Config{Client: hdfs.ClientOptions{Addresses: []string{c.Addr}, User: "weir"}, Path: "/json/%{topic}", Format: JSON, Gzip: true, RollSize: 256 << 10, IdleTimeout: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	run(t, n, cfg, nil, func(committed func() int64) {
		for deadline := time.Now().Add(time.Minute); committed() < n/4; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("nothing committed in a minute")
			}
		}
		if err := c.Do("restart-datanode 0"); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("abandoned in-progress files %d times, retried %d operations", strings.Count(logs.String(), "abandoned"), strings.Count(logs.String(), "retrying"))
	done, _ := files(t, c.Client(t), "/json")
	for p := range done {
		if !strings.HasSuffix(p, ".jsonl.gz") {
			t.Fatalf("file %s", p)
		}
	}
	exactlyOnce(t, c.Client(t), "/json", n, true)
}

// TestNameNodeAway30s: HDFS is unreachable for 30 s mid-run; the sink backs off, the topic
// holds the backlog, and the sink catches up with every record once.
func TestNameNodeAway30s(t *testing.T) {
	c := hdfstest.Start(t, 1)
	const n = 20_000
	cfg := Config{Client: hdfs.ClientOptions{Addresses: []string{c.Addr}, User: "weir"}, Path: "/away", RollCount: 1000, IdleTimeout: 2 * time.Second, RetryFor: 2 * time.Second}
	run(t, n, cfg, nil, func(committed func() int64) {
		for deadline := time.Now().Add(time.Minute); committed() < 1000; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("nothing committed in a minute")
			}
		}
		if err := c.Do("stop-namenode"); err != nil {
			t.Fatal(err)
		}
		before := committed()
		time.Sleep(30 * time.Second)
		if now := committed(); now != before {
			t.Errorf("%d records committed while HDFS was away", now-before)
		}
		if err := c.Do("start-namenode"); err != nil {
			t.Fatal(err)
		}
	})
	exactlyOnce(t, c.Client(t), "/away", n, false)
}

func msgs(from, to int) []connectors.Message {
	var out []connectors.Message
	now := time.Now().UnixMilli()
	for i := from; i < to; i++ {
		out = append(out, connectors.Message{Topic: "events", Partition: 0, Offset: int64(i), Record: storage.Record{Value: []byte("e" + strconv.Itoa(i)), Timestamp: now}})
	}
	return out
}

// TestRecoveryAfterCrash: a sink that dies (no Close) with a file in progress, and one that
// dies between a roll's state write and its renames; the next sink on the same state removes
// the stale in-progress file, finishes the renames, and skips the records already durable that
// the runner reads again: every record once.
func TestRecoveryAfterCrash(t *testing.T) {
	c := hdfstest.Start(t, 1)
	cfg := Config{Client: hdfs.ClientOptions{Addresses: []string{c.Addr}, User: "weir"}, Path: "/rec/%{topic}", RollCount: 50, IdleTimeout: -1}
	ctx := t.Context()
	newSink := func() *Sink { return openSink(t, cfg) }
	// Dies with 0-49 durable and 50-79 in progress.
	s1 := newSink()
	if err := s1.Write(ctx, msgs(0, 80)); err != nil {
		t.Fatal(err)
	}
	if _, inprogress := files(t, c.Client(t), "/rec"); len(inprogress) != 1 {
		t.Fatalf("in-progress files %v, want one", inprogress)
	}
	// The runner reads again from its committed offset (say 30: the commit of 0-49 was lost).
	s2 := newSink()
	func() {
		testHookBeforeRenames = func() { panic("crash between the state and the renames") }
		defer func() { testHookBeforeRenames = nil; recover() }()
		s2.Write(ctx, msgs(30, 120)) // 50-99 roll: state written, then the crash
		t.Fatal("no crash")
	}()
	s3 := newSink()
	if err := s3.Write(ctx, msgs(30, 150)); err != nil {
		t.Fatal(err)
	}
	if err := s3.Close(); err != nil {
		t.Fatal(err)
	}
	exactlyOnce(t, c.Client(t), "/rec", 150, false)
	for _, s := range []*Sink{s1, s2} { // the dead ones: their timers and clients, nothing else
		close(s.stop)
		<-s.done
		s.client.Close()
	}
}

// TestAvro: Avro object container files (deflate blocks) that goavro reads back: every record
// once, with its topic, partition, offset and value.
func TestAvro(t *testing.T) {
	c := hdfstest.Start(t, 1)
	const n = 10_000
	cfg := Config{Client: hdfs.ClientOptions{Addresses: []string{c.Addr}, User: "weir"}, Path: "/avro/%{topic}", Format: Avro, AvroCodec: "deflate", RollCount: 1500, IdleTimeout: time.Second}
	run(t, n, cfg, nil, nil)
	cl := c.Client(t)
	seen := make([]int, n)
	files := 0
	err := cl.Walk("/avro", func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || strings.Contains(p, ".weir-state") {
			return err
		}
		if !strings.HasSuffix(p, ".avro") || strings.HasPrefix(path.Base(p), ".") {
			t.Fatalf("file %s", p)
		}
		files++
		b, err := cl.ReadFile(p)
		if err != nil {
			return err
		}
		r, err := goavro.NewOCFReader(bytes.NewReader(b))
		if err != nil {
			return err
		}
		for r.Scan() {
			v, err := r.Read()
			if err != nil {
				return err
			}
			rec := v.(map[string]any)
			i, _ := strconv.Atoi(strings.TrimPrefix(string(rec["value"].([]byte)), "e"))
			if rec["topic"] != "events" || i < 0 || i >= n {
				t.Fatalf("%s: record %v", p, rec)
			}
			seen[i]++
		}
		return r.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range seen {
		if k != 1 {
			t.Fatalf("record e%d is in the files %d times", i, k)
		}
	}
	t.Logf("%d records in %d Avro files, each once", n, files)
}

// TestParquet: Parquet files (zstd pages) that parquet-go reads back: every record once, with
// its topic and value.
func TestParquet(t *testing.T) {
	c := hdfstest.Start(t, 1)
	const n = 10_000
	cfg := Config{Client: hdfs.ClientOptions{Addresses: []string{c.Addr}, User: "weir"}, Path: "/pq/%{topic}", Format: Parquet, ParquetCodec: "zstd", RollCount: 3000, IdleTimeout: time.Second}
	run(t, n, cfg, nil, nil)
	cl := c.Client(t)
	seen := make([]int, n)
	files := 0
	err := cl.Walk("/pq", func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || strings.Contains(p, ".weir-state") {
			return err
		}
		if !strings.HasSuffix(p, ".parquet") || strings.HasPrefix(path.Base(p), ".") {
			t.Fatalf("file %s", p)
		}
		files++
		b, err := cl.ReadFile(p)
		if err != nil {
			return err
		}
		r := parquet.NewGenericReader[ParquetRecord](bytes.NewReader(b))
		defer r.Close()
		rows := make([]ParquetRecord, 256)
		for {
			k, err := r.Read(rows)
			for _, rec := range rows[:k] {
				i, _ := strconv.Atoi(strings.TrimPrefix(string(rec.Value), "e"))
				if rec.Topic != "events" || i < 0 || i >= n {
					t.Fatalf("%s: record %+v", p, rec)
				}
				seen[i]++
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range seen {
		if k != 1 {
			t.Fatalf("record e%d is in the files %d times", i, k)
		}
	}
	t.Logf("%d records in %d Parquet files, each once", n, files)
}

// openSink returns an open sink of cfg.
func openSink(t *testing.T, cfg Config) *Sink {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

// hangingDataNodes is a DataNode dialer for tests whose connections it can make hang: Hang
// stops every open connection and the next few it opens from moving a byte, for ever, as a
// DataNode that stops answering (its process alive, its socket open).
type hangingDataNodes struct {
	mu     sync.Mutex
	conns  []*hangable
	toHang int // connections still to open hung
	hung   atomic.Int64
}

type hangable struct {
	hung chan struct{} // closed: nothing moves any more
	once sync.Once
}

func (h *hangable) hang() { h.once.Do(func() { close(h.hung) }) }

func (d *hangingDataNodes) Hang(next int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		c.hang()
	}
	d.hung.Add(int64(len(d.conns)))
	d.conns, d.toHang = nil, next
}

func (d *hangingDataNodes) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	real, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	mine, theirs := net.Pipe()
	h := &hangable{hung: make(chan struct{})}
	d.mu.Lock()
	if d.toHang > 0 {
		d.toHang--
		d.hung.Add(1)
		h.hang()
	} else {
		d.conns = append(d.conns, h)
	}
	d.mu.Unlock()
	pump := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			select {
			case <-h.hung:
				return // neither forwards nor closes: the peer waits
			default:
			}
			if n > 0 {
				if _, err := dst.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				dst.Close()
				return
			}
		}
	}
	go pump(real, theirs)
	go pump(theirs, real)
	return mine, nil
}

// TestDataNodeHangs: the DataNode connections stop moving bytes mid-run (the DataNode neither
// answers nor closes, as one whose disk or process hangs). Each write on them fails after
// DataNodeTimeout, the files are abandoned and written again on new connections: every record
// once, and the run ends.
func TestDataNodeHangs(t *testing.T) {
	c := hdfstest.Start(t, 1)
	const n = 20_000
	var dn hangingDataNodes
	var logs syncbuf.Buffer
	cfg := Config{Client: hdfs.ClientOptions{Addresses: []string{c.Addr}, User: "weir", DatanodeDialFunc: dn.dial},
		Path: "/hang", RollCount: 1000, IdleTimeout: 2 * time.Second, RetryFor: 2 * time.Second, DataNodeTimeout: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	run(t, n, cfg, nil, func(committed func() int64) {
		for deadline := time.Now().Add(time.Minute); committed() < n/4; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("nothing committed in a minute")
			}
		}
		dn.Hang(3)
	})
	if dn.hung.Load() < 3 {
		t.Fatalf("%d connections hung, want at least 3", dn.hung.Load())
	}
	t.Logf("%d DataNode connections hung; abandoned in-progress files %d times", dn.hung.Load(), strings.Count(logs.String(), "abandoned"))
	exactlyOnce(t, c.Client(t), "/hang", n, false)
}
