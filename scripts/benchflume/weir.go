package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/sink/file"
	sinkhttp "github.com/weirhq/weir/connectors/sink/http"
	srchttp "github.com/weirhq/weir/connectors/source/http"
	"github.com/weirhq/weir/connectors/source/taildir"
	"github.com/weirhq/weir/flow"
)

// The Weir side of each workload runs in a process of its own, as a Flume agent does, so that
// its resident memory is measured alone: this program started again with a child mode as its
// first argument. A child runs an embedded node with default settings (every write fsynced,
// acks=all) and one flow until SIGTERM, then stops the flow (the file sink finishes its files)
// and closes the node.

// childModes maps the first argument to the flow it runs.
var childModes = map[string]func(ctx context.Context, args []string) error{
	"weir-w5":   weirTailToFiles,
	"weir-w4":   weirHTTPToHTTP,
	"weir-node": weirNode,
}

// weirGC sets the collector as the weir command does (GOGC=400 unless $GOGC is set, a soft
// memory limit of 512 MiB unless $GOMEMLIMIT is set), so that the child's memory is that of a
// weir node.
func weirGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(512 << 20)
	}
}

// weirTailToFiles is W5's Weir agent: taildir source -> topic "w5" (3 partitions) -> file sink
// (lines, its default rolls: 128 MiB or 5 minutes).
func weirTailToFiles(ctx context.Context, args []string) error {
	fl := flag.NewFlagSet("weir-w5", flag.ContinueOnError)
	data := fl.String("data", "", "node data directory")
	glob := fl.String("files", "", "glob of the files to tail")
	out := fl.String("out", "", "directory of the rolling files")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *data == "" || *glob == "" || *out == "" {
		return fmt.Errorf("weir-w5: -data, -files and -out are required")
	}
	weirGC()
	src, err := taildir.New(taildir.Config{Patterns: []string{*glob}})
	if err != nil {
		return err
	}
	sink, err := file.New(file.DefaultConfig(*out))
	if err != nil {
		return err
	}
	return runFlow(ctx, *data, src, "w5", 3, sink)
}

// weirHTTPToHTTP is W4's Weir agent: http source (Flume's JSON format) -> topic "spike" (1
// partition) -> http sink posting to the benchmark's rate-limited consumer.
func weirHTTPToHTTP(ctx context.Context, args []string) error {
	fl := flag.NewFlagSet("weir-w4", flag.ContinueOnError)
	data := fl.String("data", "", "node data directory")
	listen := fl.String("listen", "", "address of the http source")
	url := fl.String("url", "", "URL of the consumer")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *data == "" || *listen == "" || *url == "" {
		return fmt.Errorf("weir-w4: -data, -listen and -url are required")
	}
	weirGC()
	src, err := srchttp.New(srchttp.Config{Addr: *listen})
	if err != nil {
		return err
	}
	sink, err := sinkhttp.New(sinkhttp.Config{URL: *url})
	if err != nil {
		return err
	}
	return runFlow(ctx, *data, src, "spike", 1, sink)
}

// runFlow runs source -> topic (of parts partitions) -> sink on an embedded node whose data is
// in dir, until ctx ends.
func runFlow(ctx context.Context, dir string, src connectors.Source, topic string, parts int32, sink connectors.Sink) error {
	node, err := flow.StartNode(flow.NodeConfig{DataDir: dir})
	if err != nil {
		return err
	}
	defer node.Close()
	rt := flow.New(node)
	defer rt.Stop()
	if err := rt.Source("in", src, topic, flow.Partitions(parts)); err != nil {
		return err
	}
	if err := rt.Sink("out", sink, flow.FromTopics(topic)); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// weirNode is a bare node whose client port listens at -listen: W4's native variant, where the
// benchmark produces and consumes with the Weir client.
func weirNode(ctx context.Context, args []string) error {
	fl := flag.NewFlagSet("weir-node", flag.ContinueOnError)
	data := fl.String("data", "", "node data directory")
	listen := fl.String("listen", "", "address of the client port")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *data == "" || *listen == "" {
		return fmt.Errorf("weir-node: -data and -listen are required")
	}
	weirGC()
	node, err := flow.StartNode(flow.NodeConfig{DataDir: *data, ClientAddr: *listen})
	if err != nil {
		return err
	}
	defer node.Close()
	<-ctx.Done()
	return nil
}
