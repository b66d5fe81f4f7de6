package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	hdfsclient "github.com/colinmarc/hdfs/v2"

	"github.com/weirhq/weir/actors"
	"github.com/weirhq/weir/cluster/wire"
	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/sink/file"
	"github.com/weirhq/weir/connectors/sink/hdfs"
	httpsink "github.com/weirhq/weir/connectors/sink/http"
	"github.com/weirhq/weir/connectors/sink/logger"
	"github.com/weirhq/weir/connectors/sink/null"
	topicsink "github.com/weirhq/weir/connectors/sink/topic"
	"github.com/weirhq/weir/flow"
)

// sinkFlags are the flags every `weir sink KIND` takes besides the node's.
type sinkFlags struct {
	topics     string
	group      string
	members    int
	partitions int
	replicas   int
	fetchBytes int
}

func (f *sinkFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.topics, "topics", "", "comma-separated topics to read (required)")
	fs.StringVar(&f.group, "group", "", "consumer group of the sink's members (default: weir-KIND)")
	fs.IntVar(&f.members, "members", 1, "members of the group this node defines, flows GROUP-0 ... GROUP-(N-1); in a cluster each runs on one node")
	fs.IntVar(&f.partitions, "partitions", 0, "create each topic that does not exist with this many partitions (0: the topics must exist)")
	fs.IntVar(&f.replicas, "replicas", 1, "replication factor of topics created with --partitions")
	fs.IntVar(&f.fetchBytes, "fetch-bytes", 0, "bytes a member fetches at most per request (0: the runtime's default)")
}

func (f *sinkFlags) check(kind string) ([]string, error) {
	var topics []string
	for _, t := range strings.Split(f.topics, ",") {
		if t = strings.TrimSpace(t); t != "" {
			topics = append(topics, t)
		}
	}
	switch {
	case len(topics) == 0:
		return nil, fmt.Errorf("%w: sink %s: --topics is required", errUsage, kind)
	case f.members < 1 || f.members > 1000:
		return nil, fmt.Errorf("%w: sink %s: --members %d: want 1 to 1000", errUsage, kind, f.members)
	case f.partitions < 0 || f.partitions > actors.MaxPartitions:
		return nil, fmt.Errorf("%w: sink %s: --partitions %d: want 0 to %d", errUsage, kind, f.partitions, actors.MaxPartitions)
	case f.replicas < 1 || f.replicas > actors.MaxReplicas:
		return nil, fmt.Errorf("%w: sink %s: --replicas %d: want 1 to %d", errUsage, kind, f.replicas, actors.MaxReplicas)
	case f.fetchBytes < 0 || f.fetchBytes > math.MaxInt32:
		return nil, fmt.Errorf("%w: sink %s: --fetch-bytes %d: want 0 to %d", errUsage, kind, f.fetchBytes, math.MaxInt32)
	}
	if f.group == "" {
		f.group = "weir-" + kind
	}
	return topics, nil
}

// runSink is `weir sink KIND`: a node (alone or in a cluster) that runs a group of sinks reading
// topics, the way a Flume agent runs a sink group on a channel. Every node of a cluster runs the
// same command; the cluster runs each member once and moves it when its node goes away.
func runSink(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return fmt.Errorf("%w: sink: name the kind of sink: hdfs, file, null, logger, http or topic", errUsage)
	}
	kind := args[0]
	fs := flag.NewFlagSet("sink "+kind, flag.ContinueOnError)
	var nf nodeFlags
	nf.register(fs, "./data/sink")
	var sf sinkFlags
	sf.register(fs)
	var newSink func(member int, logger *slog.Logger) (connectors.Sink, error)
	var where func() string
	switch kind {
	case "hdfs":
		namenode := fs.String("namenode", "", "NameNode addresses, host:port, comma-separated (required)")
		user := fs.String("hdfs-user", "weir", "HDFS user")
		path := fs.String("path", "/weir/%{topic}/%Y-%m-%d/%H", "directory template: %Y %m %d %H %M %S of the record's time, %{topic}, %{partition}, %{HEADER}")
		format := fs.String("format", "text", "file format: text, json, avro or parquet")
		gz := fs.Bool("gzip", false, "gzip text and json files")
		prefix := fs.String("prefix", "", "before the names of finished files")
		suffix := fs.String("suffix", "", "after the names of finished files (default by format)")
		roll := rollFlags(fs)
		retryFor := fs.Duration("retry-for", 10*time.Second, "how long one HDFS operation is retried before the staged records are abandoned and read again")
		newSink = func(_ int, logger *slog.Logger) (connectors.Sink, error) {
			if *namenode == "" {
				return nil, fmt.Errorf("%w: sink hdfs: --namenode is required", errUsage)
			}
			f, ok := map[string]hdfs.Format{"text": hdfs.Text, "json": hdfs.JSON, "avro": hdfs.Avro, "parquet": hdfs.Parquet}[*format]
			if !ok {
				return nil, fmt.Errorf("%w: sink hdfs: --format %q: want text, json, avro or parquet", errUsage, *format)
			}
			s, err := hdfs.New(hdfs.Config{
				Client: hdfsclient.ClientOptions{Addresses: strings.Split(*namenode, ","), User: *user},
				Path:   *path, Prefix: *prefix, Suffix: *suffix, Format: f, Gzip: *gz,
				RollSize: roll.size, RollCount: roll.count, RollInterval: roll.interval, IdleTimeout: roll.idle,
				RetryFor: *retryFor, Logger: logger,
			})
			if err != nil {
				return nil, fmt.Errorf("%w: sink hdfs: %v", errUsage, err)
			}
			return s, nil
		}
		where = func() string { return "hdfs://" + *namenode + *path }
	case "file":
		dir := fs.String("dir", "", "directory of the files, shared by every member: a partition's state and files move with it between members, "+
			"exactly once (required; in a cluster, a filesystem every node mounts, with working flock)")
		format := fs.String("format", "lines", "file format: lines (value, newline) or length-prefixed (4-byte big-endian length, value)")
		suffix := fs.String("suffix", "", "after the names of finished files (default .txt for lines, .bin for length-prefixed)")
		rollSize := fs.Int64("roll-size", 128<<20, "bytes per file at most")
		rollInterval := fs.Duration("roll-interval", 5*time.Minute, "roll a file this old (0: never by age)")
		syncSize := fs.Int64("file-sync-size", file.DefaultSyncSize, "make a partition durable (fsync, state, commit) once this many bytes were appended to it (1: after every write)")
		syncInterval := fs.Duration("file-sync-interval", file.DefaultSyncInterval, "make a partition durable once its oldest record not yet durable is this old")
		newSink = func(_ int, logger *slog.Logger) (connectors.Sink, error) {
			if *dir == "" {
				return nil, fmt.Errorf("%w: sink file: --dir is required", errUsage)
			}
			f, ok := map[string]file.Format{"lines": file.Lines, "length-prefixed": file.LengthPrefixed}[*format]
			if !ok {
				return nil, fmt.Errorf("%w: sink file: --format %q: want lines or length-prefixed", errUsage, *format)
			}
			s, err := file.New(file.Config{Dir: *dir, Format: f, Suffix: *suffix, RollSize: *rollSize, RollInterval: *rollInterval,
				SyncSize: *syncSize, SyncInterval: *syncInterval, Logger: logger})
			if err != nil {
				return nil, fmt.Errorf("%w: sink file: %v", errUsage, err)
			}
			return s, nil
		}
		where = func() string { return *dir }
	case "null":
		logEvery := fs.Int64("log-every", 0, "log the count of records discarded every this many (0: never)")
		newSink = func(_ int, logger *slog.Logger) (connectors.Sink, error) {
			s, err := null.New(null.Config{LogEvery: *logEvery, Logger: logger})
			if err != nil {
				return nil, fmt.Errorf("%w: sink null: %v", errUsage, err)
			}
			return s, nil
		}
		where = func() string { return "nothing (null sink)" }
	case "logger":
		newSink = func(int, *slog.Logger) (connectors.Sink, error) { return logger.New(stdout, nil), nil }
		where = func() string { return "standard output" }
	case "http":
		url := fs.String("url", "", "endpoint the records are sent to (required)")
		method := fs.String("method", "POST", "HTTP method: POST, PUT or PATCH")
		format := fs.String("format", "json", "request body: json (an array) or ndjson")
		batch := fs.Int("batch-size", 100, "records per request")
		timeout := fs.Duration("timeout", 10*time.Second, "bound of one attempt")
		retryFor := fs.Duration("retry-for", 30*time.Second, "how long a Write retries after its first failure")
		dlq := fs.String("dead-letter-topic", "", "topic for requests refused for good or out of retries (empty: the flow retries them)")
		newSink = func(_ int, lg *slog.Logger) (connectors.Sink, error) {
			f, ok := map[string]httpsink.Format{"json": httpsink.JSON, "ndjson": httpsink.NDJSON}[*format]
			if !ok {
				return nil, fmt.Errorf("%w: sink http: --format %q: want json or ndjson", errUsage, *format)
			}
			cfg := httpsink.Config{URL: *url, Method: *method, Format: f, BatchSize: *batch, Timeout: *timeout, RetryFor: *retryFor, Logger: lg}
			if *dlq != "" {
				cfg.DeadLetterTopic, cfg.DeadLetterAddr = *dlq, nf.listen
			}
			s, err := httpsink.New(cfg)
			if err != nil {
				return nil, fmt.Errorf("%w: sink http: %v", errUsage, err)
			}
			return s, nil
		}
		where = func() string { return *url }
	case "topic":
		to := fs.String("to", "", "topic the records are forwarded to (required; it must exist)")
		origin := fs.String("origin-header", "", "header naming each record's origin, topic/partition/offset (empty: none)")
		newSink = func(int, *slog.Logger) (connectors.Sink, error) {
			s, err := topicsink.New(topicsink.Config{Addr: nf.listen, Topic: *to, OriginHeader: *origin})
			if err != nil {
				return nil, fmt.Errorf("%w: sink topic: %v", errUsage, err)
			}
			return s, nil
		}
		where = func() string { return "topic " + *to }
	default:
		return fmt.Errorf("%w: sink: unknown kind %q: want hdfs, file, null, logger, http or topic", errUsage, kind)
	}
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: sink %s takes no arguments, got %q", errUsage, kind, pos)
	}
	topics, err := sf.check(kind)
	if err != nil {
		return err
	}
	cfg, err := nf.config(stderr)
	if err != nil {
		return err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// Build every member before the node starts, so that a bad flag fails fast.
	sinks := make([]connectors.Sink, sf.members)
	for i := range sinks {
		if sinks[i], err = newSink(i, logger.With("flow", fmt.Sprintf("%s-%d", sf.group, i))); err != nil {
			return err
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	node, err := flow.StartNode(cfg)
	if err != nil {
		return err
	}
	defer node.Close()
	if sf.partitions > 0 {
		for _, t := range topics {
			if _, ok := node.Topic(t); ok {
				continue
			}
			err := node.CreateReplicatedTopic(t, int32(sf.partitions), int32(sf.replicas), wire.TopicConfig{})
			if err != nil && !errors.Is(err, wire.ErrTopicExists) {
				return fmt.Errorf("sink %s: create topic %s: %w", kind, t, err)
			}
		}
	}
	rt := flow.New(node)
	defer rt.Stop()
	opts := []flow.SinkOption{flow.FromTopics(topics...), flow.Group(sf.group)}
	if sf.fetchBytes > 0 {
		opts = append(opts, flow.FetchBytes(int32(sf.fetchBytes)))
	}
	for i, s := range sinks {
		if err := rt.Sink(fmt.Sprintf("%s-%d", sf.group, i), s, opts...); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "weir sink %s: node %s, data %s, client port %s; group %s (%d members) reads %s into %s\n",
		kind, node.ID(), cfg.DataDir, node.ClientAddr(), sf.group, sf.members, strings.Join(topics, ","), where())
	<-ctx.Done()
	fmt.Fprintf(stdout, "weir sink %s: stopping (members roll their files)\n", kind)
	rt.Stop()
	return nil
}

// rollTriggers are the roll flags of the HDFS sink.
type rollTriggers struct {
	size     int64
	count    int
	interval time.Duration
	idle     time.Duration
}

func rollFlags(fs *flag.FlagSet) *rollTriggers {
	r := &rollTriggers{}
	fs.Int64Var(&r.size, "roll-size", 0, "roll a partition's files at this many bytes (before compression; 0: not by size)")
	fs.IntVar(&r.count, "roll-count", 0, "roll a partition's files at this many records (0: not by count; with no trigger set, 100000)")
	fs.DurationVar(&r.interval, "roll-interval", 0, "roll a partition's files this old (0: not by age)")
	fs.DurationVar(&r.idle, "idle", 30*time.Second, "roll a partition's files after this long without records (negative: never)")
	return r
}
