package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/colinmarc/hdfs/v2"

	"github.com/weirhq/weir/internal/progress"
)

// W6: topic -> HDFS. The records are W5's lines (100 to 200 bytes, each with its sequence
// number), put once, untimed, into a topic "w6" of an embedded node (w6Partitions partitions).
// A MiniDFSCluster (scripts/hdfs-minicluster/run.sh, one DataNode, 128 MiB blocks) receives
// every run's files, each run under a directory of its own:
//
//   - Weir: an embedded node on a copy of the filled data directory with an HDFS sink flow (text,
//     one file per partition, rolled at 128 MiB or after w6Idle without records) reading the
//     topic: the node and the sink in one process, as a `weir sink hdfs` node runs them.
//   - Flume: Flume's Kafka source reading the same topic through the Kafka listener of an
//     embedded Weir node (a process of its own) on the filled data directory -> file channel or
//     memory channel -> Flume's HDFS sink (DataStream, text, rolled at 128 MiB or after w6Idle
//     idle). Flume's CPU and memory are the agent's; the Weir node serving its fetches is
//     reported beside them.
//
// A run is timed from its agent's start until every record is in a closed HDFS file: for Weir
// when the sink group's lag is 0 (the sink commits a partition's offset only once its file is
// closed and renamed); for Flume when its HDFS sink has drained every event (its counters, over
// Flume's HTTP monitoring) and no in-use (.tmp) file is left. Then the agent is stopped and every
// file is read back from HDFS and checked by the lines' sequence numbers.

const (
	w6Topic      = "w6"
	w6Partitions = 3
	w6Idle       = time.Second
	w6RollBytes  = 128 << 20
	w6Batch      = 1000 // Flume's source, channel transaction and sink batch
)

// w6Run is one agent's run.
type w6Run struct {
	system, variant string
	dir             string        // the run's HDFS directory
	total           time.Duration // agent start to every record in a closed file
	first           time.Duration // agent start to its first file in HDFS
	delivered       int64
	files           int
	check           w5Check
	rss             []rssSample
	cpu             float64 // the agent's CPU seconds from its start to the end of the run
	// Flume runs: the Weir node that served the Kafka source, from Flume's start on.
	nodeCPU  float64
	nodeRSS  []rssSample
	stalled  bool
	progress []rssSample // records done over time (Bytes holds records)
	// Set by w6Results: MB/s (0 when stalled) and the CPU seconds per 100 MB of the agent and
	// of the Weir node serving Flume together.
	mbps, cpuPer100MB, agentPer100MB float64
}

// miniDFS is the MiniDFSCluster of a W6 run: it runs until its standard input closes.
type miniDFS struct {
	p      *proc
	stdin  io.WriteCloser
	addr   string
	reader chan struct{} // closed when the reader of its standard output is done
}

// startMiniDFS starts scripts/hdfs-minicluster/run.sh with one DataNode and Hadoop's default
// block size, and waits for its NameNode address.
func (b *bench) startMiniDFS(ctx context.Context, dir string) (*miniDFS, error) {
	logf, err := os.Create(filepath.Join(dir, "minidfs.log"))
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	cmd := exec.Command(b.cfg.hdfsRun, "0", "1", filepath.Join(dir, "dfs"), fmt.Sprintf("dfs.blocksize=%d", w6RollBytes))
	cmd.Stdout, cmd.Stderr = w, logf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		logf.Close()
		r.Close()
		w.Close()
		return nil, err
	}
	p, err := launch("minidfs", cmd, logf)
	w.Close()
	if err != nil {
		r.Close()
		return nil, err
	}
	m := &miniDFS{p: p, stdin: stdin, reader: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		defer close(m.reader)
		defer r.Close()
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "namenode "); ok {
				select {
				case addr <- a:
				default:
				}
			}
			fmt.Fprintln(logf, sc.Text())
		}
	}()
	select {
	case m.addr = <-addr:
		return m, nil
	case <-p.done:
		<-m.reader
		return nil, fmt.Errorf("the MiniDFSCluster exited before it served (%v): see %s", p.err, filepath.Join(dir, "minidfs.log"))
	case <-time.After(5 * time.Minute):
	case <-ctx.Done():
	}
	m.stop()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("the MiniDFSCluster did not serve within 5 minutes: see %s", filepath.Join(dir, "minidfs.log"))
}

// stop closes the cluster's input (it shuts down), then signals it if it has not within a
// minute.
func (m *miniDFS) stop() {
	m.stdin.Close()
	select {
	case <-m.p.done:
	case <-time.After(time.Minute):
		m.p.stop(10 * time.Second)
	}
	<-m.reader
}

// w6 runs the agents of W6 and returns their results.
func (b *bench) w6(ctx context.Context) ([]w6Run, error) {
	dir := filepath.Join(b.work, "w6")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	in, err := generateW5(filepath.Join(dir, "input"), 1, b.cfg.w6MB)
	if err != nil {
		return nil, err
	}
	b.w6in = in
	input := filepath.Join(in.dir, "app-0.log")
	b.logf("W6: %d lines, %d bytes; putting them into topic %s (%d partitions)", in.lines, in.bytes, w6Topic, w6Partitions)
	filled := filepath.Join(dir, "filled")
	if err := b.runChild(ctx, "weir-w6-fill", filepath.Join(dir, "fill.log"), "-data", filled, "-input", input); err != nil {
		return nil, err
	}
	b.logf("W6: starting the MiniDFSCluster (%s)", b.cfg.hdfsRun)
	dfs, err := b.startMiniDFS(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer dfs.stop()
	cl, err := hdfs.NewClient(hdfs.ClientOptions{Addresses: []string{dfs.addr}, User: "weir"})
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	b.logf("W6: NameNode at %s", dfs.addr)
	type agent struct {
		system, variant string
		run             func(work string) (w6Run, error)
	}
	agents := []agent{
		{"weir", "hdfs-sink", func(work string) (w6Run, error) {
			data := filepath.Join(work, "node")
			if out, err := exec.Command("cp", "-a", filled, data).CombinedOutput(); err != nil {
				return w6Run{}, fmt.Errorf("cp -a %s %s: %w: %s", filled, data, err, out)
			}
			return b.runW6Weir(ctx, cl, in, dfs.addr, work, data)
		}},
	}
	for _, channel := range []string{"file", "memory"} {
		agents = append(agents, agent{"flume", "kafka-source-" + channel + "-channel", func(work string) (w6Run, error) {
			return b.runW6Flume(ctx, cl, in, dfs.addr, work, filled, channel)
		}})
	}
	var runs []w6Run
	for _, a := range agents {
		work := filepath.Join(dir, a.system+"-"+a.variant)
		if err := os.MkdirAll(work, 0o755); err != nil {
			return runs, err
		}
		b.logf("W6: %s %s", a.system, a.variant)
		r, err := a.run(work)
		if err != nil {
			return runs, fmt.Errorf("%s %s: %w", a.system, a.variant, err)
		}
		b.logf("W6: %s %s: %d of %d records in %.2f s, %d files, lost %d, doubled %d, garbled %d", a.system, a.variant,
			r.delivered, in.lines, r.total.Seconds(), r.files, r.check.lost, r.check.doubled, r.check.garbled)
		b.w6Results(in, &r)
		runs = append(runs, r)
	}
	return runs, nil
}

// runChild runs this program in a child mode to its end, its output in logPath.
func (b *bench) runChild(ctx context.Context, mode, logPath string, args ...string) error {
	p, err := startProc("weir "+mode, logPath, nil, append([]string{b.self, mode}, args...)...)
	if err != nil {
		return err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		p.stop(10 * time.Second)
		return ctx.Err()
	}
	if p.err != nil {
		return fmt.Errorf("%s: %w: see %s", mode, p.err, logPath)
	}
	return nil
}

// runW6Weir runs Weir's agent: node and HDFS sink in one process, on data (a copy of the
// filled node), until its group's lag is 0.
func (b *bench) runW6Weir(ctx context.Context, cl *hdfs.Client, in w5Input, nn, work, data string) (w6Run, error) {
	r := w6Run{system: "weir", variant: "hdfs-sink", dir: "/w6/weir"}
	logPath := filepath.Join(work, "agent.log")
	p, err := startProc("weir weir-w6", logPath, nil, b.self, "weir-w6", "-data", data, "-namenode", nn, "-path", r.dir)
	if err != nil {
		return r, err
	}
	defer p.stop(30 * time.Second)
	writing := false
	err = b.waitW6(ctx, &r, p, in.lines, func() (w6State, error) {
		log, err := os.ReadFile(logPath)
		if err != nil {
			return w6State{}, err
		}
		if !writing {
			writing = hasFiles(cl, r.dir)
		}
		lag, ok := lastLag(log)
		if !ok {
			return w6State{writing: writing}, nil
		}
		return w6State{done: in.lines - lag, writing: writing, complete: lag == 0}, nil
	})
	if err != nil {
		return r, fmt.Errorf("%w (its log: %s)", err, logPath)
	}
	if !p.stop(30 * time.Second) {
		b.logf("W6: weir did not stop within 30 s of SIGTERM: killed")
	}
	r.files, r.check, err = checkHDFS(cl, r.dir, in.lines)
	return r, err
}

// runW6Flume runs a Flume agent whose Kafka source reads the topic from a Weir node's Kafka
// listener on the filled data directory (the node is started first and stopped last).
func (b *bench) runW6Flume(ctx context.Context, cl *hdfs.Client, in w5Input, nn, work, filled, channel string) (w6Run, error) {
	r := w6Run{system: "flume", variant: "kafka-source-" + channel + "-channel", dir: "/w6/flume-" + channel}
	kafka, err := freeAddr()
	if err != nil {
		return r, err
	}
	node, err := startProc("weir weir-w6-kafka", filepath.Join(work, "node.log"), nil, b.self, "weir-w6-kafka", "-data", filled, "-kafka", kafka)
	if err != nil {
		return r, err
	}
	defer node.stop(30 * time.Second)
	if err := waitListening(node, kafka, 2*time.Minute); err != nil {
		return r, err
	}
	monitor, err := freeAddr()
	if err != nil {
		return r, err
	}
	_, port, _ := net.SplitHostPort(monitor)
	conf := flumeW6Conf(kafka, nn, r.dir, work, channel, "flume-"+channel)
	nodeCPU0, _ := readCPU(node.pid())
	nodeRSS := sampleRSS(node.pid(), 250*time.Millisecond)
	p, err := b.startFlume(work, conf, "FLUME_JAVA_OPTS=-Dflume.monitoring.type=http -Dflume.monitoring.port="+port)
	if err != nil {
		nodeRSS.stop()
		return r, err
	}
	defer p.stop(30 * time.Second)
	url := "http://" + monitor + "/metrics"
	hc := &http.Client{Timeout: 5 * time.Second}
	writing := false
	err = b.waitW6(ctx, &r, p, in.lines, func() (w6State, error) {
		if !writing {
			writing = hasFiles(cl, r.dir)
		}
		resp, err := hc.Get(url)
		if err != nil {
			return w6State{writing: writing}, nil // not serving yet
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return w6State{writing: writing}, nil
		}
		n, err := flumeCounter(body, "SINK.h", "EventDrainSuccessCount")
		if err != nil {
			return w6State{writing: writing}, nil
		}
		st := w6State{done: n, writing: writing || n > 0}
		if n >= in.lines {
			open, err := inUseFiles(cl, r.dir)
			st.complete = err == nil && open == 0
		}
		return st, nil
	})
	nodeCPU1, _ := readCPU(node.pid())
	r.nodeCPU, r.nodeRSS = nodeCPU1-nodeCPU0, nodeRSS.stop()
	if err != nil {
		return r, fmt.Errorf("%w (its log: %s)", err, filepath.Join(work, "agent.log"))
	}
	if !p.stop(30 * time.Second) {
		b.logf("W6: flume did not stop within 30 s of SIGTERM: killed")
	}
	node.stop(30 * time.Second)
	r.files, r.check, err = checkHDFS(cl, r.dir, in.lines)
	return r, err
}

// w6State is what a W6 run's poll found.
type w6State struct {
	done     int64 // records done (Weir: committed; Flume: drained by its sink)
	writing  bool  // a file of the run exists in HDFS
	complete bool  // every record is in a closed file
}

// waitW6 polls count every 250 ms while sampling p's memory and showing the progress, until
// the run is complete, stalled for b.cfg.stall, or p exits; then it reads p's CPU time.
func (b *bench) waitW6(ctx context.Context, r *w6Run, p *proc, total int64, count func() (w6State, error)) error {
	rss := sampleRSS(p.pid(), 250*time.Millisecond)
	var done atomic.Int64
	meter := progress.Start(os.Stderr, fmt.Sprintf("W6 %s %s", r.system, r.variant), total, func() (int64, bool) { return done.Load(), true })
	defer meter.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	last, lastAt := int64(-1), time.Now()
	for {
		select {
		case <-ctx.Done():
			r.rss = rss.stop()
			return ctx.Err()
		case <-tick.C:
		}
		if p.exited() {
			r.rss = rss.stop()
			return fmt.Errorf("%s exited during the run (%v)", p.name, p.err)
		}
		st, err := count()
		if err != nil {
			r.rss = rss.stop()
			return err
		}
		n := st.done
		now := time.Since(p.started)
		done.Store(n)
		r.delivered = n
		r.progress = append(r.progress, rssSample{At: now, Bytes: n})
		if (st.writing || n > 0) && r.first == 0 {
			r.first = now
		}
		if st.complete {
			r.total = now
			break
		}
		if n != last {
			last, lastAt = n, time.Now()
		} else if time.Since(lastAt) > b.cfg.stall {
			r.stalled = true
			r.total = now
			break
		}
	}
	r.cpu, _ = readCPU(p.pid())
	r.rss = rss.stop()
	return nil
}

// lagLine is what Weir's W6 agent prints every 250 ms.
var lagLine = regexp.MustCompile(`(?m)^w6 lag=(\d+)$`)

// lastLag returns the last lag Weir's W6 agent printed into its log.
func lastLag(log []byte) (int64, bool) {
	m := lagLine.FindAllSubmatch(log, -1)
	if len(m) == 0 {
		return 0, false
	}
	v, err := strconv.ParseInt(string(m[len(m)-1][1]), 10, 64)
	return v, err == nil
}

// flumeCounter reads a counter of a component from Flume's HTTP monitoring answer, a JSON
// object of components ("SINK.h") whose counters are strings of digits.
func flumeCounter(body []byte, component, counter string) (int64, error) {
	var all map[string]map[string]json.RawMessage
	if err := json.Unmarshal(body, &all); err != nil {
		return 0, fmt.Errorf("flume metrics: %w", err)
	}
	c, ok := all[component]
	if !ok {
		return 0, fmt.Errorf("flume metrics: no component %s", component)
	}
	raw, ok := c[counter]
	if !ok {
		return 0, fmt.Errorf("flume metrics: %s has no %s", component, counter)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		s = string(raw) // a number, not a string
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("flume metrics: %s %s: %w", component, counter, err)
	}
	return v, nil
}

// hasFiles reports whether dir, or a directory in it, holds a file (in progress or not); a
// hidden directory's entries do not count.
func hasFiles(cl *hdfs.Client, dir string) bool {
	ents, err := cl.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if !e.IsDir() {
			return true
		}
		if strings.HasPrefix(e.Name(), ".") {
			continue // Weir's sink state, written before its files
		}
		if sub, err := cl.ReadDir(path.Join(dir, e.Name())); err == nil && len(sub) > 0 {
			return true
		}
	}
	return false
}

// inUseFiles counts the files Flume's HDFS sink is still writing in dir (".tmp" names); a dir
// not created yet has none.
func inUseFiles(cl *hdfs.Client, dir string) (int, error) {
	ents, err := cl.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			n++
		}
	}
	return n, nil
}

// finishedFile reports whether a file name in a run's HDFS directory holds finished records:
// not Weir's hidden in-progress files or state, nor Flume's in-use files.
func finishedFile(name string) bool {
	return !strings.HasPrefix(name, ".") && !strings.HasPrefix(name, "_") && !strings.HasSuffix(name, ".tmp")
}

// checkHDFS reads every finished file under dir and checks its lines against total records.
func checkHDFS(cl *hdfs.Client, dir string, total int64) (int, w5Check, error) {
	var c w5Check
	seen := make([]uint8, total)
	files := 0
	var walk func(dir string) error
	walk = func(dir string) error {
		ents, err := cl.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if !finishedFile(e.Name()) {
				continue
			}
			p := path.Join(dir, e.Name())
			if e.IsDir() {
				if err := walk(p); err != nil {
					return err
				}
				continue
			}
			f, err := cl.Open(p)
			if err != nil {
				return err
			}
			err = checkLines(f, seen, &c)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			files++
		}
		return nil
	}
	if err := walk(dir); err != nil {
		return files, c, err
	}
	c.countLost(seen)
	return files, c, nil
}

// flumeW6Conf is the agent "a": Kafka source (group, from the earliest offset) -> channel ->
// HDFS sink writing text files into dir of the NameNode nn.
func flumeW6Conf(bootstrap, nn, dir, work, channel, group string) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("a.sources = k")
	p("a.channels = c")
	p("a.sinks = h")
	p("a.sources.k.type = org.apache.flume.source.kafka.KafkaSource")
	p("a.sources.k.channels = c")
	p("a.sources.k.kafka.bootstrap.servers = %s", bootstrap)
	p("a.sources.k.kafka.topics = %s", w6Topic)
	p("a.sources.k.kafka.consumer.group.id = %s", group)
	p("a.sources.k.kafka.consumer.auto.offset.reset = earliest")
	p("a.sources.k.batchSize = %d", w6Batch)
	p("a.sources.k.batchDurationMillis = 1000")
	flumeChannel(p, channel, work, 100000, w6Batch)
	p("a.sinks.h.type = hdfs")
	p("a.sinks.h.channel = c")
	p("a.sinks.h.hdfs.path = hdfs://%s%s", nn, dir)
	p("a.sinks.h.hdfs.filePrefix = events")
	p("a.sinks.h.hdfs.fileType = DataStream")
	p("a.sinks.h.hdfs.writeFormat = Text")
	p("a.sinks.h.hdfs.batchSize = %d", w6Batch)
	p("a.sinks.h.hdfs.rollSize = %d", w6RollBytes)
	p("a.sinks.h.hdfs.rollCount = 0")
	p("a.sinks.h.hdfs.rollInterval = 0")
	p("a.sinks.h.hdfs.idleTimeout = %d", int(w6Idle/time.Second))
	// One DataNode: without this the sink sees every block under-replicated (Hadoop's default
	// replication is 3) and rolls its file after each batch.
	p("a.sinks.h.hdfs.minBlockReplicas = 1")
	return b.String()
}

// w6Results records a run's figures.
func (b *bench) w6Results(in w5Input, r *w6Run) {
	add := func(metric string, v float64, unit string) {
		b.add(result{Workload: "W6", System: r.system, Variant: r.variant, Metric: metric, Value: v, Unit: unit})
	}
	secs := r.total.Seconds()
	if secs > 0 && !r.stalled {
		r.mbps = float64(in.bytes) / 1e6 / secs
		add("throughput", r.mbps, "MB/s")
		add("throughput_records", float64(in.lines)/secs, "records/s")
		if d := (r.total - r.first).Seconds(); r.first > 0 && d > 0 {
			add("throughput_after_first_record", float64(in.bytes)/1e6/d, "MB/s")
		}
	}
	add("time_to_first_record", r.first.Seconds(), "s")
	add("time_to_all_records", secs, "s")
	add("records_in", float64(in.lines), "records")
	add("records_delivered", float64(r.delivered), "records")
	add("records_lost", float64(r.check.lost), "records")
	add("records_doubled", float64(r.check.doubled), "records")
	add("records_garbled", float64(r.check.garbled), "records")
	add("files", float64(r.files), "files")
	add("cpu", r.cpu, "s")
	mb100 := float64(in.bytes) / 1e8
	r.cpuPer100MB = (r.cpu + r.nodeCPU) / mb100
	r.agentPer100MB = r.cpu / mb100
	add("cpu_per_100mb", r.cpu/mb100, "s")
	peak, mean := rssStats(r.rss)
	add("rss_peak", float64(peak)/(1<<20), "MiB")
	add("rss_mean", float64(mean)/(1<<20), "MiB")
	if r.system == "flume" {
		add("node_cpu", r.nodeCPU, "s")
		add("node_cpu_per_100mb", r.nodeCPU/mb100, "s")
		add("total_cpu_per_100mb", (r.cpu+r.nodeCPU)/mb100, "s")
		peak, _ := rssStats(r.nodeRSS)
		add("node_rss_peak", float64(peak)/(1<<20), "MiB")
	} else {
		add("total_cpu_per_100mb", r.cpu/mb100, "s")
	}
}
