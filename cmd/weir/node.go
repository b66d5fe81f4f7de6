package main

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/weirhq/weir/actors"
	"github.com/weirhq/weir/storage"
)

// nodeFlags are the flags of `weir node`, shared with the embedded node of `weir demo`.
type nodeFlags struct {
	data, listen, gossip, join, http, sync, logLevel string
	kafka, kafkaAdvertise, kafkaCert, kafkaKey       string
	kafkaUsers                                       string
	id, cluster, gossipKey                           string
	tlsCert, tlsKey, tlsCA                           string
	syncEvery, deadAfter                             time.Duration
	pprof                                            bool
	segmentBytes, retentionBytes, kafkaFetchMemory   int64
	retentionAge, retentionCheck, segmentAge         time.Duration
}

func (f *nodeFlags) register(fs *flag.FlagSet, defaultData string) {
	fs.StringVar(&f.data, "data", defaultData, "data directory")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:7420", "client port address")
	fs.StringVar(&f.id, "id", "", "the node's name (default node-1 alone, node-<port> in a cluster)")
	fs.StringVar(&f.cluster, "cluster", "", "address the other nodes reach this node's actors at (host:port); setting it or --gossip makes the node a cluster member")
	fs.StringVar(&f.gossip, "gossip", "", "gossip (membership) address, host:port, UDP and TCP")
	fs.StringVar(&f.join, "join", "", "comma-separated gossip addresses of members to join (none, on an empty data directory: start a new cluster)")
	fs.StringVar(&f.gossipKey, "gossip-key", "", "encrypt gossip with this key: 16, 24 or 32 bytes, hex-encoded (or $WEIR_GOSSIP_KEY); every node needs the same")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "in a cluster: PEM certificate (server and client authentication) for mutual TLS between nodes; needs --tls-key and --tls-ca")
	fs.StringVar(&f.tlsKey, "tls-key", "", "the PEM private key of --tls-cert")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "PEM certificate of the cluster's CA: a node accepts only peers with a certificate it signed")
	fs.DurationVar(&f.deadAfter, "dead-after", actors.DefaultDeadAfter, "in a cluster: how long a node may be away before its replicas are re-created on other nodes")
	fs.StringVar(&f.http, "http", "127.0.0.1:7421", "metrics and health address (empty: none)")
	fs.StringVar(&f.kafka, "kafka", "", "Kafka protocol listener address, host:port (empty: none; see docs/kafka.md)")
	fs.StringVar(&f.kafkaAdvertise, "kafka-advertise", "", "host:port Kafka clients are told to connect to (default: --kafka, which then must name a host)")
	fs.StringVar(&f.kafkaCert, "kafka-tls-cert", "", "PEM certificate for TLS on the Kafka listener (with --kafka-tls-key)")
	fs.StringVar(&f.kafkaKey, "kafka-tls-key", "", "the PEM private key of --kafka-tls-cert")
	fs.StringVar(&f.kafkaUsers, "kafka-sasl-users", "", "file of USER:PASSWORD lines: the Kafka listener requires SASL/PLAIN as one of them")
	fs.Int64Var(&f.kafkaFetchMemory, "kafka-fetch-memory", actors.DefaultKafkaFetchMemory, "bytes that the Kafka listener's fetches may read and hold until answered, over all connections: a fetch reads less, or waits, when they are in use")
	fs.BoolVar(&f.pprof, "pprof", false, "also serve Go runtime profiles at the --http address under /debug/pprof/")
	fs.StringVar(&f.sync, "sync", "always", "log durability: always (fsync every write), interval, never")
	fs.DurationVar(&f.syncEvery, "sync-interval", time.Second, "fsync period with --sync interval")
	fs.StringVar(&f.logLevel, "log-level", "warn", "log level: debug, info, warn, error")
	fs.Int64Var(&f.segmentBytes, "segment-bytes", storage.DefaultConfig().SegmentBytes, "bytes at which a partition's active segment is rolled")
	fs.DurationVar(&f.segmentAge, "segment-age", 0, "age at which a partition's active segment is rolled (0: the larger of --retention-age and --retention-check if a retention age is set, else never)")
	fs.DurationVar(&f.retentionAge, "retention-age", 0, "delete a topic partition's segments whose newest record is older than this (0: keep)")
	fs.Int64Var(&f.retentionBytes, "retention-bytes", 0, "delete a topic partition's oldest segments while it is larger than this (0: no limit)")
	fs.DurationVar(&f.retentionCheck, "retention-check", time.Minute, "how often each partition applies --retention-age and --retention-bytes")
}

// config turns the flags into a node config, with an error naming the flag that is wrong.
func (f *nodeFlags) config(stderr io.Writer) (actors.NodeConfig, error) {
	var cfg actors.NodeConfig
	if f.data == "" {
		return cfg, fmt.Errorf("%w: --data is required", errUsage)
	}
	cfg.NodeID = f.id
	if f.cluster != "" || f.gossip != "" || f.join != "" {
		if f.cluster == "" || f.gossip == "" {
			return cfg, fmt.Errorf("%w: a cluster member needs both --cluster and --gossip addresses", errUsage)
		}
		for _, a := range []struct{ flag, v string }{{"--cluster", f.cluster}, {"--gossip", f.gossip}} {
			if _, _, err := net.SplitHostPort(a.v); err != nil {
				return cfg, fmt.Errorf("%w: %s %q: want host:port", errUsage, a.flag, a.v)
			}
		}
		if f.deadAfter < time.Second {
			return cfg, fmt.Errorf("%w: --dead-after %v: want at least 1s", errUsage, f.deadAfter)
		}
		cc := &actors.ClusterConfig{RemoteAddr: f.cluster, GossipAddr: f.gossip, DeadAfter: f.deadAfter}
		for _, j := range strings.Split(f.join, ",") {
			if j = strings.TrimSpace(j); j != "" {
				if _, _, err := net.SplitHostPort(j); err != nil {
					return cfg, fmt.Errorf("%w: --join %q: want host:port", errUsage, j)
				}
				cc.Join = append(cc.Join, j)
			}
		}
		key := f.gossipKey
		if key == "" {
			key = os.Getenv("WEIR_GOSSIP_KEY")
		}
		if key != "" {
			b, err := hex.DecodeString(key)
			if err != nil || (len(b) != 16 && len(b) != 24 && len(b) != 32) {
				return cfg, fmt.Errorf("%w: --gossip-key: want 16, 24 or 32 bytes in hex (32, 48 or 64 hex digits)", errUsage)
			}
			cc.GossipKey = b
		}
		switch n := countSet(f.tlsCert, f.tlsKey, f.tlsCA); n {
		case 0:
		case 3:
			cc.TLS = &actors.ClusterTLS{CertFile: f.tlsCert, KeyFile: f.tlsKey, CAFile: f.tlsCA}
		default:
			return cfg, fmt.Errorf("%w: cluster TLS needs all of --tls-cert, --tls-key and --tls-ca (%d of 3 given)", errUsage, n)
		}
		cfg.Cluster = cc
		if cfg.NodeID == "" {
			_, port, _ := net.SplitHostPort(f.listen)
			cfg.NodeID = "node-" + port
		}
	}
	if cfg.Cluster == nil && countSet(f.tlsCert, f.tlsKey, f.tlsCA) > 0 {
		return cfg, fmt.Errorf("%w: --tls-cert, --tls-key and --tls-ca secure the transport between cluster nodes: they need --cluster and --gossip", errUsage)
	}
	mode, err := storage.ParseSyncMode(f.sync)
	if err != nil {
		return cfg, fmt.Errorf("%w: --sync: %v", errUsage, err)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return cfg, fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", errUsage, f.logLevel)
	}
	cfg.DataDir, cfg.ClientAddr, cfg.HTTPAddr, cfg.KafkaAddr, cfg.KafkaAdvertise = f.data, f.listen, f.http, f.kafka, f.kafkaAdvertise
	if cfg.KafkaSecurity, err = f.kafkaSecurity(); err != nil {
		return cfg, err
	}
	if f.kafkaFetchMemory < 1<<20 || f.kafkaFetchMemory > 1<<40 {
		return cfg, fmt.Errorf("%w: --kafka-fetch-memory %d: want 1 MiB (1048576) or more", errUsage, f.kafkaFetchMemory)
	}
	cfg.KafkaFetchMemory = int(f.kafkaFetchMemory)
	if f.pprof && f.http == "" {
		return cfg, fmt.Errorf("%w: --pprof needs an --http address", errUsage)
	}
	cfg.Profiling = f.pprof
	cfg.Log = storage.DefaultConfig()
	cfg.Log.Sync, cfg.Log.SyncInterval = mode, f.syncEvery
	switch {
	case f.segmentBytes < 4096:
		return cfg, fmt.Errorf("%w: --segment-bytes %d: want at least 4096", errUsage, f.segmentBytes)
	case f.retentionAge < 0:
		return cfg, fmt.Errorf("%w: --retention-age %v: must not be negative", errUsage, f.retentionAge)
	case f.retentionBytes < 0:
		return cfg, fmt.Errorf("%w: --retention-bytes %d: must not be negative", errUsage, f.retentionBytes)
	case f.retentionCheck <= 0:
		return cfg, fmt.Errorf("%w: --retention-check %v: must be positive", errUsage, f.retentionCheck)
	case f.segmentAge < 0:
		return cfg, fmt.Errorf("%w: --segment-age %v: must not be negative", errUsage, f.segmentAge)
	}
	// Retention deletes only sealed segments: without rolling by age, a quiet topic's active
	// segment would keep records for as long as it takes to fill it.
	cfg.Log.SegmentAge = f.segmentAge
	if cfg.Log.SegmentAge == 0 && f.retentionAge > 0 {
		// Not more often than retention runs: a tiny age would roll a segment per append.
		cfg.Log.SegmentAge = max(f.retentionAge, f.retentionCheck)
	}
	cfg.Log.SegmentBytes = f.segmentBytes
	cfg.Log.RetentionAge, cfg.Log.RetentionBytes = f.retentionAge, f.retentionBytes
	cfg.Replica.RetentionEvery = f.retentionCheck // also for topics with retention of their own
	if err := cfg.Log.Validate(); err != nil {
		return cfg, fmt.Errorf("%w: %v", errUsage, err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	return cfg, nil
}

// runNode runs a node until SIGINT or SIGTERM.
func runNode(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	var f nodeFlags
	f.register(fs, "")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: node: unexpected argument %q", errUsage, strings.Join(pos, " "))
	}
	cfg, err := f.config(stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := actors.StartNode(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "weir node %s: data %s, client port %s, metrics %s\n", n.ID(), cfg.DataDir, n.ClientAddr(), orNone(n.HTTPAddr()))
	if n.KafkaAddr() != "" {
		fmt.Fprintf(stdout, "weir node %s: Kafka protocol on %s\n", n.ID(), n.KafkaAddr())
	}
	<-ctx.Done()
	fmt.Fprintln(stderr, "weir node: stopping")
	if err := n.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return "http://" + s + "/metrics"
}

// runDrain is `weir node drain`: the node at --server (its first address) is marked draining,
// or no longer draining with --undo.
func runDrain(args []string, env cli) error {
	fs := flag.NewFlagSet("node drain", flag.ContinueOnError)
	server := serverFlag(fs, env)
	undo := fs.Bool("undo", false, "mark the node as not draining")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: node drain: unexpected argument %q (name the node with --server)", errUsage, strings.Join(pos, " "))
	}
	addr := strings.TrimSpace(strings.Split(*server, ",")[0])
	c, err := connect(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := c.Drain(ctx, *undo); err != nil {
		return err
	}
	if *undo {
		fmt.Fprintf(env.stdout, "node at %s: no longer draining\n", addr)
	} else {
		fmt.Fprintf(env.stdout, "node at %s: draining; its replicas move to other nodes (weir topic describe shows where they are)\n", addr)
	}
	return nil
}

// countSet counts the non-empty strings.
func countSet(ss ...string) int {
	n := 0
	for _, s := range ss {
		if s != "" {
			n++
		}
	}
	return n
}

// kafkaSecurity reads the Kafka listener's TLS certificate and SASL users.
func (f *nodeFlags) kafkaSecurity() (actors.KafkaSecurity, error) {
	var sec actors.KafkaSecurity
	if f.kafka == "" {
		if countSet(f.kafkaCert, f.kafkaKey, f.kafkaUsers) > 0 {
			return sec, fmt.Errorf("%w: --kafka-tls-cert, --kafka-tls-key and --kafka-sasl-users need --kafka", errUsage)
		}
		return sec, nil
	}
	switch countSet(f.kafkaCert, f.kafkaKey) {
	case 0:
	case 2:
		cert, err := tls.LoadX509KeyPair(f.kafkaCert, f.kafkaKey)
		if err != nil {
			return sec, fmt.Errorf("%w: --kafka-tls-cert/--kafka-tls-key: %v", errUsage, err)
		}
		sec.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	default:
		return sec, fmt.Errorf("%w: TLS on the Kafka listener needs both --kafka-tls-cert and --kafka-tls-key", errUsage)
	}
	if f.kafkaUsers != "" {
		b, err := os.ReadFile(f.kafkaUsers)
		if err != nil {
			return sec, fmt.Errorf("%w: --kafka-sasl-users: %v", errUsage, err)
		}
		sec.Users = map[string]string{}
		for i, line := range strings.Split(string(b), "\n") {
			line = strings.TrimRight(line, "\r")
			if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
				continue
			}
			user, pass, ok := strings.Cut(line, ":")
			if !ok || user == "" || pass == "" {
				return sec, fmt.Errorf("%w: --kafka-sasl-users %s: line %d: want USER:PASSWORD", errUsage, f.kafkaUsers, i+1)
			}
			sec.Users[user] = pass
		}
		if len(sec.Users) == 0 {
			return sec, fmt.Errorf("%w: --kafka-sasl-users %s: no users", errUsage, f.kafkaUsers)
		}
	}
	return sec, nil
}
