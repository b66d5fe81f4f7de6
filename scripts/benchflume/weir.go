package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"

	hdfsclient "github.com/colinmarc/hdfs/v2"

	"github.com/weirhq/weir/client"
	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/sink/file"
	"github.com/weirhq/weir/connectors/sink/hdfs"
	sinkhttp "github.com/weirhq/weir/connectors/sink/http"
	srchttp "github.com/weirhq/weir/connectors/source/http"
	"github.com/weirhq/weir/connectors/source/taildir"
	"github.com/weirhq/weir/flow"
	"github.com/weirhq/weir/storage"
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
	// W6
	"weir-w6-fill":  weirW6Fill,
	"weir-w6":       weirW6Sink,
	"weir-w6-kafka": weirW6Kafka,
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

// weirW6Fill puts every line of -input, one record each, into the topic of W6 of a new node at
// -data (created with w6Partitions partitions), through the node's client port, and ends.
func weirW6Fill(ctx context.Context, args []string) error {
	fl := flag.NewFlagSet("weir-w6-fill", flag.ContinueOnError)
	data := fl.String("data", "", "node data directory")
	input := fl.String("input", "", "file of the lines")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *data == "" || *input == "" {
		return fmt.Errorf("weir-w6-fill: -data and -input are required")
	}
	weirGC()
	node, err := flow.StartNode(flow.NodeConfig{DataDir: *data, ClientAddr: "127.0.0.1:0"})
	if err != nil {
		return err
	}
	defer node.Close()
	if err := node.CreateTopic(w6Topic, w6Partitions); err != nil {
		return err
	}
	cl, err := client.Dial(node.ClientAddr())
	if err != nil {
		return err
	}
	defer cl.Close()
	p, err := cl.NewProducer(w6Topic)
	if err != nil {
		return err
	}
	f, err := os.Open(*input)
	if err != nil {
		return err
	}
	defer f.Close()
	var failed atomic.Int64
	var firstErr atomic.Value
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if ctx.Err() != nil {
			break
		}
		p.ProduceAsync(ctx, storage.Record{Value: append([]byte(nil), sc.Bytes()...)}, func(_ int64, err error) {
			if err != nil && failed.Add(1) == 1 {
				firstErr.Store(err)
			}
		})
		n++
	}
	if err := p.Close(); err != nil {
		return err
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if k := failed.Load(); k > 0 {
		return fmt.Errorf("%d of %d records failed, the first: %v", k, n, firstErr.Load())
	}
	fmt.Printf("weir-w6-fill: %d records in topic %s\n", n, w6Topic)
	return ctx.Err()
}

// weirW6Sink is W6's Weir agent: a node on -data (filled by weirW6Fill) with an HDFS sink flow
// reading the topic into -path/p<partition> of the NameNode -namenode (text, rolled at 128 MiB
// or after w6Idle idle). Every 250 ms it prints "w6 lag=N", the records of the topic its group
// has not committed (a partition's records are committed once their file is closed).
func weirW6Sink(ctx context.Context, args []string) error {
	fl := flag.NewFlagSet("weir-w6", flag.ContinueOnError)
	data := fl.String("data", "", "node data directory")
	nn := fl.String("namenode", "", "NameNode address")
	dir := fl.String("path", "", "HDFS directory of the files")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *data == "" || *nn == "" || *dir == "" {
		return fmt.Errorf("weir-w6: -data, -namenode and -path are required")
	}
	weirGC()
	sink, err := hdfs.New(hdfs.Config{Client: hdfsclient.ClientOptions{Addresses: []string{*nn}, User: "weir"},
		Path: *dir + "/p%{partition}", RollSize: w6RollBytes, IdleTimeout: w6Idle})
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
	if err := rt.Sink("w6", sink, flow.FromTopics(w6Topic), flow.Group(w6Topic)); err != nil {
		return err
	}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if lag, err := node.GroupLag(w6Topic, w6Topic); err == nil {
			fmt.Printf("w6 lag=%d\n", lag)
		}
	}
}

// weirW6Kafka serves the filled node at -data through a Kafka listener at -kafka, for Flume's
// Kafka source in W6.
func weirW6Kafka(ctx context.Context, args []string) error {
	fl := flag.NewFlagSet("weir-w6-kafka", flag.ContinueOnError)
	data := fl.String("data", "", "node data directory")
	kafka := fl.String("kafka", "", "address of the Kafka listener")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *data == "" || *kafka == "" {
		return fmt.Errorf("weir-w6-kafka: -data and -kafka are required")
	}
	weirGC()
	node, err := flow.StartNode(flow.NodeConfig{DataDir: *data, KafkaAddr: *kafka})
	if err != nil {
		return err
	}
	defer node.Close()
	<-ctx.Done()
	return nil
}
