package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	nethttp "net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weirhq/weir/client"
	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/internal/hdfstest"
	"github.com/weirhq/weir/internal/syncbuf"
)

// runningFlows reads, from what a node logged since it last started, the flows placed on it and
// not stopped since.
func runningFlows(cn *clusterNode) map[string]bool {
	b, _ := os.ReadFile(cn.dir + ".log")
	if int64(len(b)) >= cn.logStart {
		b = b[cn.logStart:]
	}
	out := map[string]bool{}
	re := regexp.MustCompile(`(?m)msg="flow (placed|stopped) here" flow=(\S+)`)
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		if m[1] == "placed" {
			out[m[2]] = true
		} else {
			delete(out, m[2])
		}
	}
	return out
}

// sinkMembersOn counts the members of group running on each node (nil entries for nodes not
// running).
func sinkMembersOn(nodes []*clusterNode, group string) []int {
	counts := make([]int, len(nodes))
	for i, cn := range nodes {
		if cn.cmd == nil {
			continue
		}
		for f := range runningFlows(cn) {
			if strings.HasPrefix(f, "flow/"+group+"-") && strings.HasSuffix(f, "/sink") {
				counts[i]++
			}
		}
	}
	return counts
}

// committedSum is the sum of group's committed offsets over the topic's partitions (-1 counts 0).
func committedSum(c *client.Client, group, topic string, parts int32) (int64, error) {
	var ps []int32
	for p := range parts {
		ps = append(ps, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := c.FetchCommitted(ctx, group, wire.TopicPartitions{Topic: topic, Partitions: ps})
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, o := range offs {
		sum += max(o.Offset, 0)
	}
	return sum, nil
}

// TestHDFSSinkGroupAcceptance is the sinks issue's acceptance run. Three `weir sink hdfs`
// processes form a cluster; each defines the same HDFS sink group of 4 members reading a topic
// of 6 partitions (replication factor 3) into a real HDFS (a MiniDFSCluster with 2 DataNodes),
// as JSON lines that carry each record's partition and offset. An idempotent producer writes
// 1,000,000 records with acks=all. While the sinks work, the node running the most of them is
// SIGKILLed (and started again 5 s later) twice, and a DataNode is restarted once. Afterwards
// HDFS must hold every record of the topic exactly once (every offset of every partition, read
// back from the files), every acknowledged record must be among them, and no in-progress file
// may remain. WEIR_ACCEPTANCE_RECORDS changes the count (for a quicker run).
func TestHDFSSinkGroupAcceptance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts weir processes and HDFS")
	}
	total := 1_000_000
	if s := os.Getenv("WEIR_ACCEPTANCE_RECORDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1000 {
			t.Fatalf("WEIR_ACCEPTANCE_RECORDS=%q: want a number of at least 1000", s)
		}
		total = n
	}
	const (
		topic = "acc"
		group = "acc"
		parts = 6
	)
	dfs := hdfstest.Start(t, 2)
	bin := buildWeir(t)
	nodes := clusterOf(t, 3, "sink hdfs", "--topics", topic, "--partitions", "6", "--replicas", "3",
		"--group", group, "--members", "4", "--namenode", dfs.Addr, "--path", "/acc/%{topic}/p%{partition}",
		"--format", "json", "--roll-count", "20000", "--idle", "2s", "--retry-for", "5s",
		"--dead-after", "4s", "--log-level", "info")
	startNodes(t, bin, nodes)
	c, err := client.Dial(clientAddrs(nodes), client.RequestTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, "the sink nodes to create the topic and place the 4 members", 90*time.Second, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n, err := c.Partitions(ctx, topic)
		on := sinkMembersOn(nodes, group)
		sum := 0
		for _, k := range on {
			sum += k
		}
		return err == nil && n == parts && sum == 4, fmt.Sprintf("partitions %d (%v), members placed %v", n, err, on)
	})

	start := time.Now()
	l := startLoadN(t, c, topic, total)
	progress := func() int64 {
		s, err := committedSum(c, group, topic, parts)
		if err != nil {
			t.Logf("committed offsets: %v", err)
		}
		return s
	}
	killSinks := func(round int) {
		on := sinkMembersOn(nodes, group)
		victim := 0
		for i, k := range on {
			if k > on[victim] {
				victim = i
			}
		}
		t.Logf("kill %d at %v: %d records committed, %d acknowledged; members per node %v; SIGKILL %s",
			round, time.Since(start).Round(time.Millisecond), progress(), l.acknowledged(), on, nodes[victim].name)
		nodes[victim].kill()
		time.Sleep(5 * time.Second)
		nodes[victim].start(t, bin)
	}
	steps := []struct {
		at   int64
		what string
		do   func()
	}{
		{int64(total) / 5, "kill 1", func() { killSinks(1) }},
		{int64(total) * 9 / 20, "DataNode restart", func() {
			t.Logf("restart DataNode 0 at %v: %d committed", time.Since(start).Round(time.Millisecond), progress())
			if err := dfs.Do("restart-datanode 0"); err != nil {
				t.Fatal(err)
			}
		}},
		{int64(total) * 7 / 10, "kill 2", func() { killSinks(2) }},
	}
	for _, s := range steps {
		waitFor(t, fmt.Sprintf("%d records committed by the sinks before the %s", s.at, s.what), 5*time.Minute, func() (bool, string) {
			p := progress()
			return p >= s.at, fmt.Sprintf("%d committed, %d acknowledged", p, l.acknowledged())
		})
		s.do()
	}
	l.finish()
	produced := time.Since(start)
	ends := make([]int64, parts)
	var sumEnds int64
	for p := range int32(parts) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ends[p], err = c.ListOffsets(ctx, topic, p, client.Latest())
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		sumEnds += ends[p]
	}
	waitFor(t, "the sinks to commit every record", 5*time.Minute, func() (bool, string) {
		p := progress()
		return p == sumEnds, fmt.Sprintf("%d of %d committed", p, sumEnds)
	})
	t.Logf("%d records acknowledged (%d failed) in %v; all committed to HDFS after %v",
		l.acknowledged(), l.failed, produced.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if res := l.check(c, topic, parts); res.lost > 0 || res.dups > 0 {
		t.Errorf("the topic itself: %v", res)
	}

	// Read HDFS back: every offset of every partition exactly once, no in-progress file.
	hc := dfs.Client(t)
	seen := make([][]uint8, parts)
	for p := range seen {
		seen[p] = make([]uint8, ends[p])
	}
	values := map[int]bool{}
	files, lines := 0, 0
	var bad []string
	err = hc.Walk("/acc", func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if strings.Contains(fi.Name(), ".inprogress") {
			bad = append(bad, "in-progress file left: "+path)
		}
		if fi.IsDir() || strings.HasPrefix(fi.Name(), ".") || strings.Contains(path, "/.weir-state/") {
			return nil
		}
		files++
		f, err := hc.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines++
			var r struct {
				Partition int32  `json:"partition"`
				Offset    int64  `json:"offset"`
				Value     string `json:"value"`
			}
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				return fmt.Errorf("%s: %q: %v", path, sc.Text(), err)
			}
			if r.Partition < 0 || r.Partition >= parts || r.Offset < 0 || r.Offset >= ends[r.Partition] {
				bad = append(bad, fmt.Sprintf("%s: record %d@%d is outside the topic", path, r.Partition, r.Offset))
				continue
			}
			if seen[r.Partition][r.Offset] < 255 {
				seen[r.Partition][r.Offset]++
			}
			id, err := strconv.Atoi(r.Value)
			if err != nil {
				return fmt.Errorf("%s: value %q", path, r.Value)
			}
			values[id] = true
		}
		return sc.Err()
	})
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("reading HDFS back: %v", err)
	}
	missing, doubled := 0, 0
	for p := range seen {
		for o, n := range seen[p] {
			switch {
			case n == 0:
				if missing < 5 {
					bad = append(bad, fmt.Sprintf("record %d@%d is not in HDFS", p, o))
				}
				missing++
			case n > 1:
				if doubled < 5 {
					bad = append(bad, fmt.Sprintf("record %d@%d is in HDFS %d times", p, o, n))
				}
				doubled++
			}
		}
	}
	lostAcked := 0
	l.mu.Lock()
	for id := range l.acked {
		if !values[id] {
			lostAcked++
		}
	}
	acked := len(l.acked)
	l.mu.Unlock()
	t.Logf("HDFS: %d finished files, %d lines; topic %d records; %d missing, %d doubled; %d of %d acknowledged records not in HDFS",
		files, lines, sumEnds, missing, doubled, lostAcked, acked)
	if missing > 0 || doubled > 0 || lostAcked > 0 || len(bad) > 0 || int64(lines) != sumEnds {
		t.Errorf("HDFS does not hold the topic exactly once:\n%s", strings.Join(bad, "\n"))
	}
	if acked < total*99/100 {
		t.Errorf("only %d of %d records were acknowledged", acked, total)
	}
}

// TestSinkUsageErrors: every bad flag of weir sink is refused, naming it, before a node starts.
func TestSinkUsageErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"sink"}, "name the kind of sink"},
		{[]string{"sink", "--topics", "t"}, "name the kind of sink"},
		{[]string{"sink", "kafka"}, `unknown kind "kafka"`},
		{[]string{"sink", "kafka"}, "want hdfs, file, null, logger, http or topic"},
		{[]string{"sink", "hdfs", "--namenode", "x:1"}, "--topics is required"},
		{[]string{"sink", "hdfs", "--topics", "t"}, "--namenode is required"},
		{[]string{"sink", "hdfs", "--topics", "t", "--namenode", "x:1", "--format", "csv"}, `--format "csv"`},
		{[]string{"sink", "hdfs", "--topics", "t", "--namenode", "x:1", "--path", "relative/%Y"}, "absolute"},
		{[]string{"sink", "hdfs", "--topics", "t", "--namenode", "x:1", "--path", "/a/%q"}, "unknown escape"},
		{[]string{"sink", "hdfs", "--topics", "t", "--namenode", "x:1", "--format", "avro", "--gzip"}, "Gzip is for Text and JSON"},
		{[]string{"sink", "hdfs", "--topics", "t", "--namenode", "x:1", "--members", "0"}, "--members 0"},
		{[]string{"sink", "hdfs", "--topics", "t", "--namenode", "x:1", "--partitions", "-1"}, "--partitions -1"},
		{[]string{"sink", "hdfs", "--topics", "t", "--namenode", "x:1", "--replicas", "0"}, "--replicas 0"},
		{[]string{"sink", "hdfs", "--topics", "t", "--namenode", "x:1", "--roll-count", "x"}, "-roll-count"},
		{[]string{"sink", "hdfs", "--topics", "t", "--namenode", "x:1", "--partitions", "4294967297"}, "--partitions 4294967297"},
		{[]string{"sink", "hdfs", "--topics", "t", "--namenode", "x:1", "--fetch-bytes", "3000000000"}, "--fetch-bytes 3000000000"},
		{[]string{"sink", "file", "--topics", "t"}, "--dir is required"},
		{[]string{"sink", "file", "--topics", "t", "--dir", dir, "--format", "csv"}, `--format "csv"`},
		{[]string{"sink", "file", "--topics", "t", "--dir", dir, "--roll-size", "0"}, "RollSize 0"},
		{[]string{"sink", "file", "--topics", "t", "--dir", dir, "--file-sync-size", "-1"}, "negative SyncSize"},
		{[]string{"sink", "file", "--topics", "t", "--dir", dir, "--file-sync-interval", "-1s"}, "negative SyncInterval"},
		{[]string{"sink", "file", "--topics", "t", "--dir", dir, "extra"}, "takes no arguments"},
		{[]string{"sink", "http", "--topics", "t"}, "URL"},
		{[]string{"sink", "http", "--topics", "t", "--url", "http://x", "--format", "xml"}, `--format "xml"`},
		{[]string{"sink", "http", "--topics", "t", "--url", "http://x", "--batch-size", "-1"}, "BatchSize"},
		{[]string{"sink", "topic", "--topics", "t"}, "Topic"},
		{[]string{"sink", "null", "--topics", "t", "--log-every", "-5"}, "LogEvery"},
	}
	for _, c := range cases {
		code, _, errOut := weirIn("", nil, append(c.args, "--data", dir+"/node", "--http", "")...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("weir %v: exit %d, %q; want exit 2 mentioning %q", c.args, code, errOut, c.want)
		}
	}
}

// TestSinkFileCommand runs `weir sink file` with 2 members as a process, produces 30,000 lines
// with `weir produce`, SIGKILLs it while its members write, starts it again, produces 3,000
// more, stops it with SIGTERM (the members roll their files), and reads every line back from the
// members' shared directory exactly once.
func TestSinkFileCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a weir process")
	}
	bin := buildWeir(t)
	root := t.TempDir()
	addr := freeAddr(t)
	run := func() (*exec.Cmd, *syncbuf.Buffer) {
		var out syncbuf.Buffer
		cmd := exec.Command(bin, "sink", "file", "--topics", "lines", "--partitions", "3", "--members", "2",
			"--dir", root+"/files", "--roll-size", "10000", "--data", root+"/node", "--listen", addr, "--http", "")
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		waitFor(t, "weir sink file to start", 30*time.Second, func() (bool, string) {
			return strings.Contains(out.String(), "group weir-file (2 members) reads lines into"), out.String()
		})
		return cmd, &out
	}
	stop := func(cmd *exec.Cmd, out *syncbuf.Buffer) {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("weir sink file: %v\n%s", err, out.String())
		}
	}
	readAll := func() map[string]int {
		got := map[string]int{}
		d := root + "/files"
		ents, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") {
				if strings.HasSuffix(e.Name(), ".inprogress") {
					t.Errorf("in-progress file left: %s", e.Name())
				}
				continue
			}
			b, err := os.ReadFile(d + "/" + e.Name())
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range lines(string(b)) {
				got[l]++
			}
		}
		return got
	}
	produce := func(from, to int) {
		var in strings.Builder
		for i := from; i < to; i++ {
			fmt.Fprintf(&in, "line-%d\n", i)
		}
		weirAt(t, addr, in.String(), "produce", "lines")
	}
	check := func(n int64) {
		c, err := client.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		waitFor(t, fmt.Sprintf("%d lines committed", n), 30*time.Second, func() (bool, string) {
			sum, err := committedSum(c, "weir-file", "lines", 3)
			return sum == n, fmt.Sprintf("%d committed (%v)", sum, err)
		})
	}

	// Run 1 is SIGKILLed while its members write (some lines committed, not all): run 2
	// replays from the committed offsets, and the sink skips what it had written.
	cmd, _ := run()
	produce(0, 30000)
	c, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "some lines committed", 30*time.Second, func() (bool, string) {
		sum, err := committedSum(c, "weir-file", "lines", 3)
		return sum > 0, fmt.Sprintf("%d committed (%v)", sum, err)
	})
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	c.Close()
	cmd, out := run()
	produce(30000, 33000)
	check(33000)
	stop(cmd, out)
	got := readAll()
	for i := range 33000 {
		if n := got[fmt.Sprintf("line-%d", i)]; n != 1 {
			t.Errorf("line-%d is in the files %d times", i, n)
		}
	}
	if len(got) != 33000 {
		t.Errorf("%d distinct lines in the files, want 33000", len(got))
	}
}

// TestSinkTopicAndHTTPCommands runs `weir sink topic` (topic a -> topic b) and then `weir sink
// http` (topic b -> an HTTP endpoint in this test) as processes on one node's data, and counts
// every line at the endpoint.
func TestSinkTopicAndHTTPCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts weir processes")
	}
	bin := buildWeir(t)
	root := t.TempDir()
	addr := freeAddr(t)
	var mu sync.Mutex
	got := map[string]int{}
	srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		var recs []struct {
			Value string `json:"value"`
		}
		if err := json.NewDecoder(r.Body).Decode(&recs); err != nil {
			w.WriteHeader(400)
			return
		}
		mu.Lock()
		for _, rec := range recs {
			got[rec.Value]++
		}
		mu.Unlock()
	}))
	defer srv.Close()
	start := func(args ...string) *exec.Cmd {
		var out syncbuf.Buffer
		cmd := exec.Command(bin, append(args, "--data", root+"/node", "--listen", addr, "--http", "")...)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		waitFor(t, "weir "+args[1]+" to start", 30*time.Second, func() (bool, string) {
			return strings.Contains(out.String(), "reads "), out.String()
		})
		return cmd
	}
	stop := func(cmd *exec.Cmd) {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
	// The topic sink's process creates topic a; b must exist first: a bare node makes it.
	node := startNode(t, bin, root+"/node", addr)
	weirAt(t, addr, "", "topic", "create", "b", "--partitions", "2")
	_ = node.Process.Signal(syscall.SIGTERM)
	_ = node.Wait()

	fwd := start("sink", "topic", "--topics", "a", "--partitions", "2", "--to", "b", "--origin-header", "from")
	var in strings.Builder
	for i := range 500 {
		fmt.Fprintf(&in, "v-%d\n", i)
	}
	weirAt(t, addr, in.String(), "produce", "a")
	c, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every line forwarded to b", 30*time.Second, func() (bool, string) {
		var sum int64
		for p := range int32(2) {
			end, _ := c.ListOffsets(context.Background(), "b", p, client.Latest())
			sum += end
		}
		return sum >= 500, fmt.Sprintf("%d in b", sum)
	})
	c.Close()
	stop(fwd)
	post := start("sink", "http", "--topics", "b", "--url", srv.URL, "--batch-size", "50")
	waitFor(t, "every line at the endpoint", 30*time.Second, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 500, fmt.Sprintf("%d distinct lines", len(got))
	})
	stop(post)
	for i := range 500 {
		if got[fmt.Sprintf("v-%d", i)] == 0 {
			t.Errorf("v-%d never reached the endpoint", i)
		}
	}
}
