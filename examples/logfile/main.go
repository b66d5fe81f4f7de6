// Command logfile is a whole Weir flow in one program, the way a Flume agent with an exec
// source and a rolling file sink is used: it reads lines from standard input, drops blank and
// comment lines, stamps each with the time it was read, and stores them through a topic and a
// consumer group in rolling files.
//
//	stdin -> lines source -> interceptor -> topic "lines" -> group -> rolling file sink
//
// It runs an embedded node (package flow) whose data (the topic, committed offsets and the
// source's position) is in -data, and writes the files to -out: one sequence of files per
// partition, named <topic>-<partition>-<first offset>-<last offset>.txt, each line
// "<RFC 3339 time> <line>". A file appears under its final name only when it is complete (see
// package connectors/sink/file). When standard input ends, the program waits until every line
// has reached the files, closes them and lists them; Ctrl-C stops it earlier, and a later run
// with the same -data and -out continues where it stopped.
//
//	go run ./examples/logfile -out /tmp/weir-out < /var/log/syslog
//	tail -F app.log | go run ./examples/logfile -data /tmp/weir-data -out /tmp/weir-out
package main

import (
	"bytes"
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

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/sink/file"
	"github.com/weirhq/weir/connectors/source/lines"
	"github.com/weirhq/weir/flow"
	"github.com/weirhq/weir/storage"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "logfile:", err)
		os.Exit(1)
	}
}

// run is the program: flags in args, lines from stdin, a report on stdout.
func run(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	fl := flag.NewFlagSet("logfile", flag.ContinueOnError)
	data := fl.String("data", "data/logfile", "directory of the embedded node (topic, offsets, source position)")
	out := fl.String("out", "out/logfile", "directory of the output files")
	partitions := fl.Int("partitions", 2, "partitions of the topic (a new topic only)")
	rollSize := fl.Int64("roll-size", 64<<20, "roll an output file at this many bytes")
	rollEvery := fl.Duration("roll-every", time.Minute, "roll an output file at this age (0: only by size)")
	drain := fl.Duration("drain", 10*time.Second, "after the input ends, how long to wait for lines still on their way")
	fl.SetOutput(stdout)
	if err := fl.Parse(args); err != nil {
		return err
	}

	src, err := lines.New(lines.Config{Reader: stdin})
	if err != nil {
		return err
	}
	input := &eofSignal{Source: src, eof: make(chan struct{})}
	stamp := connectors.InterceptorFunc(func(r storage.Record) (storage.Record, bool) {
		line := bytes.TrimSpace(r.Value)
		if len(line) == 0 || line[0] == '#' {
			return r, false
		}
		ts := time.UnixMilli(r.Timestamp).UTC().Format("2006-01-02T15:04:05.000Z07:00")
		r.Value = append([]byte(ts+" "), line...)
		return r, true
	})
	cfg := file.DefaultConfig(*out)
	cfg.RollSize, cfg.RollInterval = *rollSize, *rollEvery
	sink, err := file.New(cfg)
	if err != nil {
		return err
	}

	node, err := flow.StartNode(flow.NodeConfig{DataDir: *data})
	if err != nil {
		return err
	}
	defer node.Close()
	rt := flow.New(node)
	defer rt.Stop()

	if err := rt.Source("stdin", input, "lines", flow.Partitions(int32(*partitions)), flow.Intercept(stamp)); err != nil {
		return err
	}
	if err := rt.Sink("files", sink, flow.FromTopics("lines")); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "logfile: reading standard input into %s (node data in %s)\n", *out, *data)

	// Wait for the end of the input, then for its lines to reach the files.
	select {
	case <-ctx.Done():
		fmt.Fprintln(stdout, "logfile: stopped before the end of the input")
	case <-input.eof:
		// The source reports the end only after its last lines are in the topic.
		if left, err := waitDrained(ctx, node, *drain); err != nil {
			return err
		} else if left > 0 {
			fmt.Fprintf(stdout, "logfile: %d lines had not reached the files within %v; they follow on the next run\n", left, *drain)
		}
	}
	rt.Stop() // the sink closes: its files in progress roll into place
	return list(stdout, *out)
}

// waitDrained waits until the sink's group has committed everything in the topic (the file
// sink commits a record only once it is in a synced file), as long as the lag keeps falling
// within drain. It returns the lag left.
func waitDrained(ctx context.Context, node *flow.Node, drain time.Duration) (int64, error) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	last, since := int64(-1), time.Now()
	for {
		lag, err := node.GroupLag("sink:files", "lines")
		switch {
		case err != nil && time.Since(since) > drain:
			return lag, err
		case err != nil:
			// A partition of a topic just created may not have started yet: ask again.
		case lag == 0:
			return 0, nil
		case lag != last:
			last, since = lag, time.Now()
		case time.Since(since) > drain:
			return lag, nil
		}
		select {
		case <-ctx.Done():
			return lag, nil
		case <-t.C:
		}
	}
}

// list prints the finished files of dir.
func list(w io.Writer, dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	fmt.Fprintf(w, "logfile: %d files in %s\n", len(names), dir)
	for _, n := range names {
		fmt.Fprintln(w, "  "+filepath.Join(dir, n))
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
