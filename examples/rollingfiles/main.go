// Command rollingfiles stores the lines of standard input in rolling files through a topic, the
// way a Flume agent with an exec source, a file channel and a rolling file sink is used, but with
// the lines kept in a replayable topic between the two halves:
//
//	stdin -> lines source -> topic (-topic) -> consumer group -> rolling file sink (-out)
//
// Each line is a record; the file sink (package connectors/sink/file) writes each partition's
// records to its own sequence of files, <topic>-<partition>-<first offset>-<last offset>.txt, and
// rolls to a new file at -roll-size bytes, at -roll-count lines, when a file is -roll-every old
// and when it has had no line for -idle. A file appears under its name only when it is complete.
//
// It runs an embedded node whose data (the topic, the group's committed offsets, the source's
// position) is in -data. When standard input ends, it waits until every line is in the files,
// stops (the files in progress are finished) and lists the files. Run it again with the same
// -data and -out and it goes on: the new lines are added after the old ones, none written twice.
//
//	seq 1 100000 | go run ./examples/rollingfiles -roll-count 10000
//	tail -F app.log | go run ./examples/rollingfiles -roll-every 1h -idle 1m
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
		fmt.Fprintln(os.Stderr, "rollingfiles:", err)
		os.Exit(1)
	}
}

// run is the program: flags in args, lines from stdin, a report on stdout.
func run(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	fl := flag.NewFlagSet("rollingfiles", flag.ContinueOnError)
	data := fl.String("data", "data/rollingfiles", "directory of the embedded node (topic, offsets, source position)")
	out := fl.String("out", "out/rollingfiles", "directory of the files")
	topic := fl.String("topic", "lines", "topic between the source and the sink")
	partitions := fl.Int("partitions", 2, "partitions of the topic (a new topic only)")
	rollSize := fl.Int64("roll-size", 64<<20, "roll a file at this many bytes")
	rollCount := fl.Int("roll-count", 0, "roll a file at this many lines (0: no limit)")
	rollEvery := fl.Duration("roll-every", 5*time.Minute, "roll a file at this age (0: never by age)")
	idle := fl.Duration("idle", 30*time.Second, "roll a file that has had no line for this long (0: never)")
	drain := fl.Duration("drain", 10*time.Second, "after the input ends, how long to wait for lines still on their way")
	fl.SetOutput(stdout)
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fl.Arg(0))
	}
	if *partitions < 1 {
		return fmt.Errorf("-partitions %d: want 1 or more", *partitions)
	}

	cfg := file.DefaultConfig(*out)
	cfg.RollSize, cfg.RollCount, cfg.RollInterval, cfg.IdleTimeout = *rollSize, *rollCount, *rollEvery, *idle
	sink, err := file.New(cfg)
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
	if err := rt.Source("stdin", input, *topic, flow.Partitions(int32(*partitions))); err != nil {
		return err
	}
	if err := rt.Sink("files", sink, flow.FromTopics(*topic)); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "rollingfiles: reading standard input into topic %q and the files in %s (node data in %s)\n", *topic, *out, *data)

	select {
	case <-ctx.Done():
		fmt.Fprintln(stdout, "rollingfiles: stopped before the end of the input")
	case <-input.eof:
		// The source reports the end only once its last lines are in the topic, and the sink's
		// group commits a line only once it is in a synced file.
		if left := waitCommitted(ctx, node, "sink:files", *topic, *drain); left != 0 {
			fmt.Fprintf(stdout, "rollingfiles: %d lines had not reached the files within %v; they follow on the next run\n", left, *drain)
		}
	}
	rt.Stop() // the sink closes: its files in progress are finished
	return list(stdout, *out)
}

// waitCommitted waits until group has committed everything in topic, as long as its lag keeps
// falling within drain; it returns the lag left (-1 if it could never be read).
func waitCommitted(ctx context.Context, node *flow.Node, group, topic string, drain time.Duration) int64 {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	last, since := int64(-1), time.Now()
	for {
		lag, err := node.GroupLag(group, topic)
		switch {
		case err != nil:
			lag = -1 // the group may not have started yet: ask again
		case lag == 0:
			return 0
		case lag != last:
			last, since = lag, time.Now()
		}
		if time.Since(since) > drain {
			return lag
		}
		select {
		case <-ctx.Done():
			return lag
		case <-t.C:
		}
	}
}

// list prints the finished files of dir with their sizes.
func list(w io.Writer, dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue // the sink's manifest, locks, state and files in progress
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		names = append(names, fmt.Sprintf("%s (%d bytes)", filepath.Join(dir, e.Name()), info.Size()))
	}
	sort.Strings(names)
	fmt.Fprintf(w, "rollingfiles: %d files in %s\n", len(names), dir)
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
