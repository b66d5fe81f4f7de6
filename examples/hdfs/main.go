// Command hdfs is a Weir flow that takes the place of a Flume agent with an HDFS sink: it reads
// lines on standard input into the topic "events", and a consumer group writes them to HDFS,
// into hourly directories, exactly once: each line lands in exactly one finished file, and no
// in-progress file is left behind, whatever crashes in between.
//
//	stdin -> lines source -> topic "events" -> group -> HDFS sink (/weir/events/YYYY-MM-DD/HH)
//
// When the input ends it waits for the lines to reach finished files, stops, and lists them. It
// runs an embedded node whose data is in -data; run it again with the same -data and the same
// HDFS paths and it goes on, writing nothing twice.
//
//	tail -F app.log | go run ./examples/hdfs -namenode 127.0.0.1:9000
//	scripts/hdfs-minicluster/run.sh 9000 1 /tmp/minidfs   # a test HDFS on port 9000
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	hdfsclient "github.com/colinmarc/hdfs/v2"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/sink/hdfs"
	"github.com/weirhq/weir/connectors/source/lines"
	"github.com/weirhq/weir/flow"
	"github.com/weirhq/weir/storage"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "hdfs:", err)
		os.Exit(1)
	}
}

// run is the program: flags in args, the lines on stdin, what it did on stdout.
func run(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	fl := flag.NewFlagSet("hdfs", flag.ContinueOnError)
	data := fl.String("data", "data/hdfs", "directory of the embedded node")
	namenode := fl.String("namenode", "", "NameNode address, host:port (required)")
	user := fl.String("user", "weir", "HDFS user")
	path := fl.String("path", "/weir/%{topic}/%Y-%m-%d/%H", "directory template of the files")
	gz := fl.Bool("gzip", false, "gzip the files")
	rollCount := fl.Int("roll-count", 100_000, "lines per file at most")
	idle := fl.Duration("idle", 5*time.Second, "roll a partition's files after this long without lines")
	drain := fl.Duration("drain", time.Minute, "after the input ends, how long to wait for lines still on their way")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fl.Arg(0))
	}
	if *namenode == "" {
		return errors.New("-namenode: no NameNode address given")
	}
	sink, err := hdfs.New(hdfs.Config{Client: hdfsclient.ClientOptions{Addresses: []string{*namenode}, User: *user},
		Path: *path, Gzip: *gz, RollCount: *rollCount, IdleTimeout: *idle})
	if err != nil {
		return err
	}
	src, err := lines.New(lines.Config{Reader: stdin})
	if err != nil {
		return err
	}
	input := &eofSignal{Source: src, eof: make(chan struct{})}

	node, err := flow.StartNode(flow.NodeConfig{DataDir: *data})
	if err != nil {
		return err
	}
	defer node.Close()
	rt := flow.New(node)
	defer rt.Stop()
	if err := rt.Source("stdin", input, "events", flow.Partitions(2)); err != nil {
		return err
	}
	if err := rt.Sink("hdfs", sink, flow.FromTopics("events")); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "hdfs: reading standard input into hdfs://%s%s\n", *namenode, *path)

	select {
	case <-ctx.Done():
		fmt.Fprintln(stdout, "hdfs: stopped before the end of the input")
	case <-input.eof:
		// Committed means in a finished file: the sink reports a partition durable only
		// after the roll that renamed its files.
		if left := waitDrained(ctx, node, *drain); left > 0 {
			fmt.Fprintf(stdout, "hdfs: %d lines had not reached finished files within %v; they follow on the next run\n", left, *drain)
		}
	}
	rt.Stop()
	return list(stdout, *namenode, *user, *path)
}

// waitDrained waits until the sink's group has committed everything in the topic, at most
// drain; it returns the lag left.
func waitDrained(ctx context.Context, node *flow.Node, drain time.Duration) int64 {
	deadline := time.Now().Add(drain)
	for {
		lag, err := node.GroupLag("sink:hdfs", "events")
		if err == nil && lag == 0 {
			return 0
		}
		if time.Now().After(deadline) {
			return lag
		}
		select {
		case <-ctx.Done():
			return lag
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// list prints the finished files under the template's fixed part.
func list(w io.Writer, namenode, user, path string) error {
	root := path
	if i := strings.IndexByte(root, '%'); i >= 0 {
		root = root[:i]
	}
	cl, err := hdfsclient.NewClient(hdfsclient.ClientOptions{Addresses: []string{namenode}, User: user})
	if err != nil {
		return err
	}
	defer cl.Close()
	var names []string
	err = cl.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		base := fi.Name()
		if fi.IsDir() && strings.HasPrefix(base, ".") && p != root {
			return filepath.SkipDir // the sink's state
		}
		if !fi.IsDir() && !strings.HasPrefix(base, ".") {
			names = append(names, fmt.Sprintf("%s (%d bytes)", p, fi.Size()))
		}
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	sort.Strings(names)
	fmt.Fprintf(w, "hdfs: %d files under %s\n", len(names), root)
	for _, n := range names {
		fmt.Fprintln(w, "  "+n)
	}
	return nil
}

// eofSignal closes eof when its source reports the end of its input.
type eofSignal struct {
	connectors.Source
	once sync.Once
	eof  chan struct{}
}

func (s *eofSignal) Read(ctx context.Context) ([]storage.Record, []byte, error) {
	recs, pos, err := s.Source.Read(ctx)
	if errors.Is(err, io.EOF) {
		s.once.Do(func() { close(s.eof) })
	}
	return recs, pos, err
}
