package main

import (
	"bytes"
	"flag"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/actors"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

func TestDemoThenLogTools(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	code, out, errOut := runCLI("log", "demo", "--data", dir, "--records", "5000", "--batch", "100")
	if code != 0 {
		t.Fatalf("demo exited %d: %s", code, errOut)
	}
	for _, want := range []string{"appended 5000 records", "read back and decoded 5000 records"} {
		if !strings.Contains(out, want) {
			t.Fatalf("demo output lacks %q:\n%s", want, out)
		}
	}
	// A second run appends after what the first left.
	if code, out, errOut = runCLI("log", "demo", "--data", dir, "--records", "300"); code != 0 || !strings.Contains(out, "offsets [0, 5000)") {
		t.Fatalf("second demo exited %d: %s%s", code, out, errOut)
	}
	code, out, _ = runCLI("log", "verify", dir)
	if code != 0 || !strings.Contains(out, "ok: 51 batches, 5300 records, offsets [0, 5300)") {
		t.Fatalf("verify exited %d: %s", code, out)
	}
	code, out, _ = runCLI("log", "dump", dir, "--from", "150", "--max", "1", "--records")
	if code != 0 || !strings.Contains(out, "offsets=[100,200)") || !strings.Contains(out, "offset=150 ") || strings.Contains(out, "offset=149 ") {
		t.Fatalf("dump exited %d:\n%s", code, out)
	}
}

func TestLogVerifyReportsCorruption(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	if code, _, e := runCLI("log", "demo", "--data", dir, "--records", "3000", "--batch", "100"); code != 0 {
		t.Fatal(e)
	}
	seg := filepath.Join(dir, "00000000000000000000.log")
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	os.WriteFile(seg, b, 0o644)
	code, _, errOut := runCLI("log", "verify", dir)
	if code != 1 || !strings.Contains(errOut, "log corrupted") || !strings.Contains(errOut, "00000000000000000000.log") {
		t.Fatalf("verify of a corrupted log exited %d: %s", code, errOut)
	}
}

func TestCLIErrors(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "Usage"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"log", "demo", "--records", "-1"}, 2, "must be positive"},
		{[]string{"log", "demo", "--records", "many"}, 2, "invalid value"},
		{[]string{"demo", "--bogus"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"demo", "extra"}, 2, "takes no arguments"},
		{[]string{"log"}, 2, "needs a subcommand"},
		{[]string{"log", "shred", "x"}, 2, `unknown log subcommand "shred"`},
		{[]string{"log", "dump"}, 2, "takes one log directory"},
		{[]string{"log", "verify", "/dev/null/nope"}, 1, "/dev/null/nope"},
		{[]string{"log", "dump", "/no/such/log"}, 1, "no such file or directory"},
		{[]string{"log", "dump", "/etc/hostname"}, 1, "is not a directory"},
		{[]string{"node", "--data", "/tmp/unused", "--http", "", "--pprof"}, 2, "--pprof needs an --http address"},
		{[]string{"node", "--data", "/tmp/unused", "--segment-bytes", "100"}, 2, "--segment-bytes 100: want at least 4096"},
		{[]string{"node", "--data", "/tmp/unused", "--retention-age", "-1h"}, 2, "--retention-age -1h0m0s: must not be negative"},
		{[]string{"node", "--data", "/tmp/unused", "--retention-bytes", "-5"}, 2, "--retention-bytes -5: must not be negative"},
		{[]string{"node", "--data", "/tmp/unused", "--retention-check", "0s"}, 2, "--retention-check 0s: must be positive"},
		{[]string{"node", "--data", "/tmp/unused", "--segment-age", "-1s"}, 2, "--segment-age -1s: must not be negative"},
		{[]string{"node", "--data", "/tmp/unused", "--kafka-fetch-memory", "1000"}, 2, "--kafka-fetch-memory 1000: want 1 MiB"},
	}
	for _, c := range cases {
		code, _, errOut := runCLI(c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("weir %v: exit %d, stderr %q; want exit %d mentioning %q", c.args, code, errOut, c.code, c.want)
		}
	}
	if code, out, _ := runCLI("version"); code != 0 || !strings.Contains(out, "weir") {
		t.Errorf("version: %d %q", code, out)
	}
}

// TestSubcommandHelp: -h and --help of a subcommand print its flags to standard output and
// exit 0.
func TestSubcommandHelp(t *testing.T) {
	for _, args := range [][]string{
		{"node", "-h"}, {"bench", "produce", "--help"}, {"topic", "create", "-h"}, {"consume", "-h"}, {"log", "verify", "-h"},
	} {
		var out, errb strings.Builder
		if code := run(args, &out, &errb); code != 0 {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errb.String())
		}
		if !strings.Contains(out.String(), "Usage of weir "+args[0]) || !strings.Contains(out.String(), "  -") {
			t.Fatalf("%v: printed %q", args, out.String())
		}
	}
	// A command with subcommands lists them, and their flags.
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"bench", "-h"}, []string{"weir bench produce --topic T", "weir bench consume --topic T",
			"Flags of weir bench produce:", "-acks", "Flags of weir bench consume:", "-group", "-cpuprofile"}},
		{[]string{"bench", "--help"}, []string{"weir bench produce", "weir bench consume", "-embedded"}},
		{[]string{"topic", "-h"}, []string{"weir topic create NAME", "weir topic list", "weir topic describe NAME", "weir topic delete NAME",
			"Flags of weir topic create:", "-partitions", "Flags of weir topic list, describe, delete:", "-server"}},
		{[]string{"topic", "--help"}, []string{"weir topic create", "-replicas"}},
		{[]string{"log", "-h"}, []string{"weir log dump DIR", "weir log verify DIR", "weir log demo",
			"Flags of weir log dump, verify:", "-from", "Flags of weir log demo:", "-batch"}},
		{[]string{"log", "--help"}, []string{"weir log dump", "-records"}},
		{[]string{"--server", "127.0.0.1:1", "topic", "-help"}, []string{"weir topic create", "127.0.0.1:1"}},
	} {
		var out, errb strings.Builder
		code := run(c.args, &out, &errb)
		if code != 0 || errb.Len() > 0 {
			t.Fatalf("%v: exit %d, stderr %q", c.args, code, errb.String())
		}
		for _, w := range append([]string{"Usage of weir " + c.args[len(c.args)-2] + ":\n"}, c.want...) {
			if !strings.Contains(out.String(), w) {
				t.Fatalf("%v: no %q in:\n%s", c.args, w, out.String())
			}
		}
	}
}

// TestTuneGC: without $GOGC the collector's target is gcPercent, and without $GOMEMLIMIT its
// soft limit is memLimit; the variables win.
func TestTuneGC(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	oldLimit := debug.SetMemoryLimit(math.MaxInt64)
	defer debug.SetMemoryLimit(oldLimit)
	tuneGC(func(string) string { return "" })
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Fatalf("GOGC %d, want %d", got, gcPercent)
	}
	if got := debug.SetMemoryLimit(math.MaxInt64); got != memLimit {
		t.Fatalf("memory limit %d, want %d", got, memLimit)
	}
	tuneGC(func(k string) string { return map[string]string{"GOGC": "50", "GOMEMLIMIT": "1GiB"}[k] })
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("with $GOGC set, tuneGC changed GOGC to %d", got)
	}
	if got := debug.SetMemoryLimit(math.MaxInt64); got != math.MaxInt64 {
		t.Fatalf("with $GOMEMLIMIT set, tuneGC changed the memory limit to %d", got)
	}
}

// TestNodeRetentionFlags: the retention flags reach the topics' log config and turn the
// partitions' retention runs on.
func TestNodeRetentionFlags(t *testing.T) {
	parse := func(args ...string) actors.NodeConfig {
		t.Helper()
		fs := flag.NewFlagSet("node", flag.ContinueOnError)
		var f nodeFlags
		f.register(fs, "/tmp/unused")
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		cfg, err := f.config(io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	if cfg := parse(); cfg.Replica.RetentionEvery != time.Minute || cfg.Log.RetentionAge != 0 || cfg.Log.RetentionBytes != 0 || cfg.Log.SegmentBytes != 128<<20 || cfg.Log.SegmentAge != 0 {
		t.Fatalf("defaults: every %v, age %v, bytes %d, segment %d", cfg.Replica.RetentionEvery, cfg.Log.RetentionAge, cfg.Log.RetentionBytes, cfg.Log.SegmentBytes)
	}
	cfg := parse("--retention-age", "168h", "--retention-bytes", "1073741824", "--retention-check", "30s", "--segment-bytes", "1048576")
	if cfg.Replica.RetentionEvery != 30*time.Second || cfg.Log.RetentionAge != 168*time.Hour || cfg.Log.RetentionBytes != 1<<30 || cfg.Log.SegmentBytes != 1<<20 {
		t.Fatalf("set: every %v, age %v, bytes %d, segment %d", cfg.Replica.RetentionEvery, cfg.Log.RetentionAge, cfg.Log.RetentionBytes, cfg.Log.SegmentBytes)
	}
	if cfg := parse(); cfg.KafkaFetchMemory != actors.DefaultKafkaFetchMemory {
		t.Fatalf("default Kafka fetch memory %d", cfg.KafkaFetchMemory)
	}
	if cfg := parse("--kafka-fetch-memory", "134217728"); cfg.KafkaFetchMemory != 128<<20 {
		t.Fatalf("--kafka-fetch-memory 134217728: %d", cfg.KafkaFetchMemory)
	}
	// A quiet topic's active segment rolls by age, or retention could not delete it.
	if cfg.Log.SegmentAge != 168*time.Hour {
		t.Fatalf("segment age %v with --retention-age 168h, want 168h", cfg.Log.SegmentAge)
	}
	if cfg := parse("--retention-age", "24h", "--segment-age", "1h"); cfg.Log.SegmentAge != time.Hour {
		t.Fatalf("segment age %v with --segment-age 1h", cfg.Log.SegmentAge)
	}
	// Not a segment per append: a tiny age rolls no more often than retention runs.
	if cfg := parse("--retention-age", "1ms", "--retention-check", "30s"); cfg.Log.SegmentAge != 30*time.Second {
		t.Fatalf("segment age %v with --retention-age 1ms --retention-check 30s, want 30s", cfg.Log.SegmentAge)
	}
}

// TestNodeClusterFlags: the cluster flags become a ClusterConfig, and bad ones are named.
func TestNodeClusterFlags(t *testing.T) {
	parse := func(args ...string) (actors.NodeConfig, error) {
		fs := flag.NewFlagSet("node", flag.ContinueOnError)
		var f nodeFlags
		f.register(fs, "/tmp/unused")
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return f.config(io.Discard)
	}
	cfg, err := parse("--cluster", "127.0.0.1:1", "--gossip", "127.0.0.1:2", "--join", "127.0.0.1:3", "--dead-after", "30s")
	if err != nil || cfg.Cluster == nil || cfg.Cluster.DeadAfter != 30*time.Second || len(cfg.Cluster.Join) != 1 {
		t.Fatalf("config %+v, %v", cfg.Cluster, err)
	}
	if cfg, _ := parse("--cluster", "127.0.0.1:1", "--gossip", "127.0.0.1:2", "--tls-cert", "c", "--tls-key", "k", "--tls-ca", "a"); cfg.Cluster.TLS == nil || cfg.Cluster.TLS.KeyFile != "k" {
		t.Fatalf("tls %+v", cfg.Cluster.TLS)
	}
	if cfg, _ := parse("--cluster", "127.0.0.1:1", "--gossip", "127.0.0.1:2"); cfg.Cluster.DeadAfter != actors.DefaultDeadAfter {
		t.Fatalf("default dead-after %v", cfg.Cluster.DeadAfter)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--cluster", "127.0.0.1:1"}, "both --cluster and --gossip"},
		{[]string{"--cluster", "127.0.0.1:1", "--gossip", "127.0.0.1:2", "--dead-after", "100ms"}, "--dead-after 100ms"},
		{[]string{"--cluster", "x", "--gossip", "127.0.0.1:2"}, `--cluster "x"`},
		{[]string{"--cluster", "127.0.0.1:1", "--gossip", "127.0.0.1:2", "--gossip-key", "abc"}, "--gossip-key"},
		{[]string{"--cluster", "127.0.0.1:1", "--gossip", "127.0.0.1:2", "--tls-cert", "a.pem"}, "1 of 3 given"},
		{[]string{"--tls-cert", "a", "--tls-key", "b", "--tls-ca", "c"}, "need --cluster and --gossip"},
	} {
		if _, err := parse(c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error naming %q", c.args, err, c.want)
		}
	}
}
