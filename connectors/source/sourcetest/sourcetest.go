// Package sourcetest is the conformance suite every Weir source passes. A source's package
// describes how to drive it (a Harness) and calls Run from a test and Main from its TestMain:
//
//	func TestMain(m *testing.M) { sourcetest.Main(m, harness) }
//	func TestConformance(t *testing.T) { sourcetest.Run(t, harness) }
//
// Each case runs the source in a flow of a real node (source -> topic "conf" with 2 partitions)
// and reads the topic back through the client port. Records carry their number as "rec-N" in
// their value (Value), so the suite can count every one:
//
//   - DeliversAll: every record sent arrives, once.
//   - ResumesAfterPanic: the source's actor panics three times just after a Read returned
//     records (the batch is then lost in flight); the supervisor restarts it, the source is
//     opened again at its committed position, and every record arrives; repeats stay within a
//     batch per panic unless RepeatsAll. The records of the batches the panics lost in flight
//     must arrive too. A source that is not Lossless loses what is sent while it restarts, so
//     for it half the records are sent after the last restart, and those must all arrive.
//   - ResumesAfterSIGKILL: the node runs in a child process (the test binary run again, see
//     Main; it exits when its standard input, held by the test process, ends), which is killed
//     with SIGKILL while records are being sent, then started again on the same data directory. A Lossless source delivers every record; another delivers every
//     record sent once it is back. Repeats stay within one batch unless RepeatsAll.
//   - StopsCleanly: once the flow is stopped, Close has been called, Read is not called again,
//     and a new source of the same configuration opens and delivers (ports, files released).
//   - ReportsBadInput (when the harness has Bad): bad input is reported as the harness checks,
//     and good records sent around it all arrive.
package sourcetest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/weirhq/weir/internal/freeport"
	"github.com/weirhq/weir/internal/syncbuf"

	"github.com/weirhq/weir/client"
	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/flow"
	"github.com/weirhq/weir/internal/topictest"
	"github.com/weirhq/weir/storage"
)

// Vars are the settings a harness builds its source from: made by Setup in the test process
// and handed to New there and in child processes.
type Vars map[string]string

// Harness drives one source through the suite.
type Harness struct {
	// Name tells harnesses of one package apart (it picks the harness in a child process).
	Name string
	// Lossless: no record sent is lost across a crash, because the source resumes from its
	// position or because its senders retry until the source acknowledges. Otherwise records
	// in flight when the node dies are lost, as the source's package documents.
	Lossless bool
	// Batch is the most records the source returns from one Read: the bound on records
	// delivered again (and, for a source that is not Lossless, lost) per crash.
	Batch int
	// RepeatsAll: a restart may deliver everything again (a command run again from its start).
	RepeatsAll bool
	// N is how many records each case sends (default 2,000).
	N int
	// Setup prepares the outside world (directories, free ports) and returns the Vars.
	Setup func(t testing.TB) Vars
	// New builds the source; log receives what it logs.
	New func(v Vars, log *slog.Logger) (connectors.Source, error)
	// Release, if set, is called with a source New built once its flow has stopped for good,
	// to release what the program owns rather than the source (the reader of a lines source).
	Release func(connectors.Source)
	// Send delivers records from..to-1, each with Value(i) in its value, and returns when it
	// has sent them (a sender that waits for acknowledgements retries until it has them or
	// ctx is done). Nil for a source that makes records 0..N-1 itself.
	Send func(ctx context.Context, v Vars, from, to int) error
	// Bad sends bad input and fails t unless the source reported it: in an answer to the
	// sender, in what it logged, or in the records' headers.
	Bad func(t testing.TB, v Vars, r Reports)
}

// Reports are where a source reports bad input.
type Reports struct {
	// Logs returns what the source logged so far.
	Logs func() string
	// Records returns the records in the topic so far.
	Records func() []client.Message
}

// Value is the text that identifies record i.
func Value(i int) string { return "rec-" + strconv.Itoa(i) }

var valueRE = regexp.MustCompile(`rec-(\d+)`)

const (
	topic      = "conf"
	envChild   = "WEIR_SOURCETEST_CHILD"
	envVars    = "WEIR_SOURCETEST_VARS"
	envDataDir = "WEIR_SOURCETEST_DATA"
)

func (h *Harness) n() int {
	if h.N > 0 {
		return h.N
	}
	return 2000
}

// Main runs the tests, or, in a child process started by ResumesAfterSIGKILL, the node.
func Main(m *testing.M, hs ...Harness) {
	if name, ok := os.LookupEnv(envChild); ok {
		for _, h := range hs {
			if h.Name == name {
				fmt.Fprintln(os.Stderr, "sourcetest child:", runChild(h))
				os.Exit(2)
			}
		}
		fmt.Fprintf(os.Stderr, "sourcetest child: no harness %q\n", name)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

// Run runs the suite's cases for h.
func Run(t *testing.T, h Harness) {
	t.Run("DeliversAll", func(t *testing.T) { deliversAll(t, h) })
	t.Run("ResumesAfterPanic", func(t *testing.T) { resumesAfterPanic(t, h) })
	t.Run("ResumesAfterSIGKILL", func(t *testing.T) { resumesAfterKill(t, h) })
	t.Run("StopsCleanly", func(t *testing.T) { stopsCleanly(t, h) })
	if h.Bad != nil {
		t.Run("ReportsBadInput", func(t *testing.T) { reportsBadInput(t, h) })
	}
}

// watched wraps a source: it tells when Open returned, counts calls after Close, and panics
// in Read when told to.
type watched struct {
	connectors.Source
	opened  chan struct{}
	once    sync.Once
	closed  atomic.Bool
	late    atomic.Int64 // Reads after Close
	reads   atomic.Int64 // Reads that returned records
	opens   atomic.Int64 // Opens that succeeded
	inRead  atomic.Int64 // Reads running
	overlap atomic.Int64 // Closes called while a Read ran
	panicAt map[int64]bool

	mu      sync.Mutex
	dropped []int // the record numbers of the batches lost in flight to the injected panics
}

func (w *watched) Open(ctx context.Context, pos []byte) error {
	w.closed.Store(false)
	err := w.Source.Open(ctx, pos)
	if err == nil {
		w.opens.Add(1)
		w.once.Do(func() { close(w.opened) })
	}
	return err
}

func (w *watched) Read(ctx context.Context) ([]storage.Record, []byte, error) {
	if w.closed.Load() {
		w.late.Add(1)
	}
	w.inRead.Add(1)
	recs, pos, err := w.Source.Read(ctx)
	w.inRead.Add(-1)
	if len(recs) > 0 && w.panicAt[w.reads.Add(1)] {
		w.mu.Lock()
		for _, r := range recs {
			w.dropped = append(w.dropped, numbers(r.Value)...)
		}
		w.mu.Unlock()
		panic("sourcetest: injected panic after a Read")
	}
	return recs, pos, err
}

func (w *watched) Close() error {
	if w.inRead.Load() > 0 {
		w.overlap.Add(1)
	}
	w.closed.Store(true)
	return w.Source.Close()
}

// numbers returns the record numbers in a value.
func numbers(v []byte) []int {
	var out []int
	for _, sm := range valueRE.FindAllSubmatch(v, -1) {
		i, _ := strconv.Atoi(string(sm[1]))
		out = append(out, i)
	}
	return out
}

// Acked passes acknowledgements on to a source that wants them.
func (w *watched) Acked(pos []byte) {
	if a, ok := w.Source.(connectors.Acker); ok {
		a.Acked(pos)
	}
}

// running is a flow in this process.
type running struct {
	release func()
	node    *flow.Node
	rt      *flow.Runtime
	src     *watched
	cl      *client.Client
	logs    *syncbuf.Buffer
}

func start(t *testing.T, h Harness, v Vars, dir string, panicAt map[int64]bool) *running {
	t.Helper()
	logs := &syncbuf.Buffer{}
	src, err := h.New(v, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatalf("new source: %v", err)
	}
	node, err := flow.StartNode(flow.NodeConfig{DataDir: dir, ClientAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	r := &running{node: node, rt: flow.New(node), logs: logs,
		src: &watched{Source: src, opened: make(chan struct{}), panicAt: panicAt}}
	if h.Release != nil {
		r.release = func() { h.Release(src) }
	}
	t.Cleanup(func() { r.stop() })
	if err := r.rt.Source("conf", r.src, topic, flow.Partitions(2)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.src.opened:
	case <-time.After(30 * time.Second):
		t.Fatal("the source was not opened within 30 s")
	}
	if r.cl, err = client.Dial(node.ClientAddr()); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *running) stop() {
	if r.rt != nil {
		r.rt.Stop()
		r.rt = nil
	}
	if r.cl != nil {
		r.cl.Close()
		r.cl = nil
	}
	if r.node != nil {
		r.node.Close()
		r.node = nil
	}
	if r.release != nil {
		r.release()
		r.release = nil
	}
}

// sendAsync runs h.Send in the background; the returned function waits for it and returns its
// error.
func sendAsync(ctx context.Context, h Harness, v Vars, from, to int) func() error {
	if h.Send == nil {
		return func() error { return nil }
	}
	done := make(chan error, 1)
	go func() { done <- h.Send(ctx, v, from, to) }()
	return func() error { return <-done }
}

// counts reads the whole topic and counts each record number.
func counts(ctx context.Context, cl *client.Client) (map[int]int, error) {
	msgs, err := topictest.ReadAll(ctx, cl, topic)
	if err != nil {
		return nil, err
	}
	out := map[int]int{}
	for _, m := range msgs {
		for _, i := range numbers(m.Value) {
			out[i]++
		}
	}
	return out, nil
}

// FreeAddr returns a loopback address with a port free for network ("tcp" or "udp") now,
// outside the kernel's ephemeral range (internal/freeport), so that no outgoing connection
// takes it before the source binds it.
func FreeAddr(t testing.TB, network string) string {
	t.Helper()
	a, err := freeport.Addr()
	if err != nil {
		t.Fatalf("%s address: %v", network, err)
	}
	return a
}

// Retry calls fn until it succeeds or ctx is done, waiting a little between tries: for
// senders that reconnect to a source that is restarting.
func Retry(ctx context.Context, fn func() error) error {
	for {
		err := fn()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// await reads the topic until every record of [from, to) arrived, or fails after 60 s. It then
// reads once more after a moment, so that repeats still on their way are counted too.
func await(t *testing.T, cl *client.Client, from, to int) map[int]int {
	t.Helper()
	return awaitAll(t, cl, rangeOf(from, to))
}

func rangeOf(from, to int) []int {
	out := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// awaitTimeout is how long awaitAll waits (the suite's own tests shorten it).
var awaitTimeout = 60 * time.Second

// awaitAll reads the topic until every record in want arrived (as await).
func awaitAll(t *testing.T, cl *client.Client, want []int) map[int]int {
	t.Helper()
	deadline := time.Now().Add(awaitTimeout)
	var got map[int]int
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		got, err = counts(ctx, cl)
		cancel()
		if err == nil && missing(got, want) == 0 {
			time.Sleep(300 * time.Millisecond)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if again, err := counts(ctx, cl); err == nil {
				got = again
			}
			return got
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("after %v, %d of the %d records awaited have not arrived (read error: %v)", awaitTimeout, missing(got, want), len(want), err)
	return nil
}

func missing(got map[int]int, want []int) int {
	n := 0
	for _, i := range want {
		if got[i] == 0 {
			n++
		}
	}
	return n
}

func repeats(got map[int]int) int {
	n := 0
	for _, c := range got {
		n += c - 1
	}
	return n
}

// sendContext bounds a case's sends: a sender that waits for acknowledgements that never come
// fails the case instead of hanging it.
func sendContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func deliversAll(t *testing.T, h Harness) {
	v := h.Setup(t)
	r := start(t, h, v, t.TempDir(), nil)
	if err := sendAsync(sendContext(t), h, v, 0, h.n())(); err != nil {
		t.Fatal(err)
	}
	got := await(t, r.cl, 0, h.n())
	if n := repeats(got); n > 0 {
		t.Fatalf("%d records delivered more than once, with no crash", n)
	}
	for i := range got {
		if i >= h.n() {
			t.Fatalf("record %d arrived, which was never sent", i)
		}
	}
}

func resumesAfterPanic(t *testing.T, h Harness) {
	v := h.Setup(t)
	n := h.n()
	r := start(t, h, v, t.TempDir(), map[int64]bool{2: true, 4: true, 6: true})
	const panics = 3
	// A source that is not Lossless loses what is sent while it restarts: send half, and the
	// other half once every panic fired and the source is open again, which must all arrive.
	sendTo, from := n, 0
	if !h.Lossless && h.Send != nil {
		sendTo, from = n/2, n/2
	}
	ctx := sendContext(t)
	if err := sendAsync(ctx, h, v, 0, sendTo)(); err != nil && h.Lossless {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for r.src.reads.Load() < 6 || r.src.opens.Load() < panics+1 {
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s, %d Reads returned records and the source was opened %d times: not every panic fired", r.src.reads.Load(), r.src.opens.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := sendAsync(ctx, h, v, sendTo, n)(); err != nil {
		t.Fatal(err)
	}
	await(t, r.cl, from, n)
	// The batches the panics lost in flight must arrive all the same: the source reads them
	// again after its restart (or its senders send them again).
	r.src.mu.Lock()
	lost := slices.Clone(r.src.dropped)
	r.src.mu.Unlock()
	got := awaitAll(t, r.cl, lost)
	if n := repeats(got); n > panics*h.Batch && !h.RepeatsAll {
		t.Fatalf("%d records delivered again over %d panics, more than a batch (%d) each", n, panics, h.Batch)
	}
	t.Logf("after %d panics: %d of %d records, %d repeated", panics, len(got), n, repeats(got))
}

// child is a node in a child process.
type child struct {
	cmd   *exec.Cmd
	addr  string
	done  chan struct{}
	stdin io.WriteCloser
}

func startChild(t *testing.T, h Harness, v Vars, dir string) *child {
	t.Helper()
	vars, _ := json.Marshal(v)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+h.Name, envVars+"="+string(vars), envDataDir+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// The child exits when its standard input ends, which this process's death makes happen.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, done: make(chan struct{}), stdin: stdin}
	t.Cleanup(func() { c.kill() })
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // nobody listens any more
			}
		}
		close(lines)
		cmd.Wait()
		close(c.done)
	}()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the child process ended before its source was opened")
			}
			if a, ok := strings.CutPrefix(l, "addr "); ok {
				c.addr = a
			}
			if l == "open" {
				go func() {
					for range lines {
					}
				}()
				return c
			}
		case <-timeout:
			t.Fatal("the child process did not open its source within 60 s")
		}
	}
}

func (c *child) kill() {
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// runChild is the child process: a node and the flow, until it is killed. It returns only
// what stopped it from starting.
func runChild(h Harness) error {
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(3) // the test process is gone
	}()
	var v Vars
	if err := json.Unmarshal([]byte(os.Getenv(envVars)), &v); err != nil {
		return err
	}
	src, err := h.New(v, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}
	node, err := flow.StartNode(flow.NodeConfig{DataDir: os.Getenv(envDataDir), ClientAddr: "127.0.0.1:0"})
	if err != nil {
		return err
	}
	fmt.Printf("addr %s\n", node.ClientAddr())
	w := &watched{Source: src, opened: make(chan struct{})}
	if err := flow.New(node).Source("conf", w, topic, flow.Partitions(2)); err != nil {
		return err
	}
	<-w.opened
	fmt.Println("open")
	select {}
}

func resumesAfterKill(t *testing.T, h Harness) {
	v := h.Setup(t)
	dir := t.TempDir()
	n := h.n()
	c := startChild(t, h, v, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	firstHalf := sendAsync(ctx, h, v, 0, n/2)
	cl, err := client.Dial(c.addr)
	if err != nil {
		t.Fatal(err)
	}
	// Kill once some records arrived (more than a few batches, so that a source that ignored
	// its position would repeat more than the bound), while the rest are being sent.
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, err := counts(ctx, cl)
		if err == nil && len(got) >= max(n/8, 3*h.Batch) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no records arrived before the kill (%v)", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cl.Close()
	c.kill()
	c = startChild(t, h, v, dir)
	if err := firstHalf(); err != nil && h.Lossless {
		t.Fatal(err)
	}
	if err := sendAsync(ctx, h, v, n/2, n)(); err != nil {
		t.Fatal(err)
	}
	if cl, err = client.Dial(c.addr); err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	from := n / 2
	if h.Lossless || h.Send == nil {
		from = 0
	}
	got := await(t, cl, from, n)
	if r := repeats(got); r > h.Batch && !h.RepeatsAll {
		t.Fatalf("%d records delivered again after a kill, more than a batch (%d)", r, h.Batch)
	}
	t.Logf("after a SIGKILL: %d of %d records, %d repeated", len(got), n, repeats(got))
}

func stopsCleanly(t *testing.T, h Harness) {
	v := h.Setup(t)
	dir := t.TempDir()
	r := start(t, h, v, dir, nil)
	n := h.n() / 2
	ctx := sendContext(t)
	if err := sendAsync(ctx, h, v, 0, n)(); err != nil {
		t.Fatal(err)
	}
	await(t, r.cl, 0, min(n, 10))
	src := r.src
	done := make(chan struct{})
	go func() { r.stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("stopping the flow and the node took more than 30 s")
	}
	if !src.closed.Load() {
		t.Fatal("the source was not closed when its flow stopped")
	}
	time.Sleep(300 * time.Millisecond)
	if l := src.late.Load(); l > 0 {
		t.Fatalf("Read was called %d times after Close", l)
	}
	if o := src.overlap.Load(); o > 0 {
		t.Fatalf("Close was called %d times while a Read ran", o)
	}
	// Everything released: the same configuration opens again and goes on.
	r2 := start(t, h, v, dir, nil)
	if err := sendAsync(ctx, h, v, n, h.n())(); err != nil {
		t.Fatal(err)
	}
	from := n
	if h.Send == nil {
		from = 0
	}
	await(t, r2.cl, from, h.n())
}

func reportsBadInput(t *testing.T, h Harness) {
	v := h.Setup(t)
	r := start(t, h, v, t.TempDir(), nil)
	n := h.n() / 2
	ctx := sendContext(t)
	if err := sendAsync(ctx, h, v, 0, n)(); err != nil {
		t.Fatal(err)
	}
	await(t, r.cl, 0, n)
	h.Bad(t, v, Reports{Logs: r.logs.String, Records: func() []client.Message {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		msgs, err := topictest.ReadAll(ctx, r.cl, topic)
		if err != nil {
			t.Fatal(err)
		}
		return msgs
	}})
	if t.Failed() {
		return
	}
	if err := sendAsync(ctx, h, v, n, h.n())(); err != nil {
		t.Fatal(err)
	}
	await(t, r.cl, 0, h.n())
}
