// Command weir is Weir's binary. It parses flags and dispatches to the packages that do the work.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `weir: a stream runtime — a replicated partitioned log with sources and sinks.

Usage:
  weir node --data DIR [--listen HOST:PORT] [--http HOST:PORT] [--sync always|interval|never]
                                           run a node (client port 7420, metrics 7421 by default)
  weir [--server HOST:PORT] node drain [--undo]
                                           move the replicas of the node at --server to other nodes
  weir demo [--data DIR] [--rate N] [--duration D]
                                           run a node with a demo flow: generator -> topic -> printer
  weir sink hdfs --topics T[,T...] --namenode HOST:PORT [--path TEMPLATE] [--format text|json|avro|parquet]
                 [--gzip] [--roll-size B] [--roll-count N] [--roll-interval D] [--idle D] [--members N]
  weir sink file --topics T[,T...] --dir DIR [--roll-size B] [--roll-interval D] [--members N]
  weir sink null|logger|http|topic --topics T[,T...] [--url URL | --to TOPIC] [--members N]
                                           run a node with a sink group reading topics into HDFS or
                                           rolling files (node flags as for weir node)
  weir log demo [--data DIR] [--records N] append records to a bare log, reopen it, read them back
  weir log dump DIR [--from OFFSET] [--max N] [--records]
                                           print the batches (and records) of a partition log
  weir log verify DIR                      recover a partition log and check every checksum
  weir [--server HOST:PORT] topic create NAME [--partitions N] [--replicas R]
                                           create a topic (1 partition, 1 replica by default)
  weir [--server HOST:PORT] topic list | describe NAME | delete NAME
                                           list topics; per partition: leader, replicas, offsets
  weir [--server HOST:PORT] produce TOPIC [--acks all|leader|none] [--key-separator S]
                                           one record per stdin line (key before S if given)
  weir [--server HOST:PORT] consume TOPIC [--group G] [--partition P] [--from earliest|latest|OFFSET]
                                         [--max N] [--idle-exit DURATION]
                                           print one value per line (all partitions by default)
  weir [--server HOST:PORT] bench produce --topic T [--embedded [--loopback]] [--partitions N]
                   [--records N | --duration D] [--record-size B] [--acks all|leader|none] [--rate R]
                   [--producers K] [--batch-size BYTES] [--linger D] [--max-in-flight N]
  weir [--server HOST:PORT] bench consume --topic T [--embedded [--loopback]] [--records N] [--group G]
                                           measure records/s, MB/s and produce latency (p50..max);
                                           --embedded: an in-process node, fsync off, no client port;
                                           --cpuprofile FILE writes a CPU profile of the measurement
  weir version                             print the version
  weir COMMAND -h                          a command's subcommands and flags

--server (before or after the command) is the node's client port: 127.0.0.1:7420 by default,
or $WEIR_SERVER. The Go garbage collector runs at GOGC=400 unless $GOGC is set, with a soft
memory limit of 512 MiB unless $GOMEMLIMIT is set.
`

func main() {
	tuneGC(os.Getenv)
	os.Exit(runEnv(os.Args[1:], cli{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}))
}

// gcPercent is the GOGC of weir processes unless $GOGC is set. A node's live heap is small
// (tens of MB) while it allocates several copies of every produced byte, so at Go's default
// of 100 it collected about 120 times a second at 1 M records/s, and the collections showed
// in the produce latency tail: p99 at 1.3 M records/s, acks=all, over loopback went from
// 13-33 ms to 6.7-7.6 ms with GOGC=400 for node and client (docs/benchmarks.md). The heap
// may grow to about five times the live data instead of two, which memLimit caps.
const gcPercent = 400

// memLimit is the soft memory limit of weir processes unless $GOMEMLIMIT is set: near it the
// collector runs more often than gcPercent asks. Without it, ten Kafka consumer groups reading
// one node at once took its RSS to 0.7-0.9 GiB with a live heap of about 200 MiB, garbage of
// the fetches' copies. A live heap above the limit is not refused; it costs collector time
// (capped by Go at about half the CPU).
const memLimit = 512 << 20

// tuneGC sets the collector's target to gcPercent unless GOGC is set, and its soft memory
// limit to memLimit unless GOMEMLIMIT is set.
func tuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memLimit)
	}
}

// cli is what a command may use of its process: its streams, its environment, and the global
// flags given before the command.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	server         string // --server before the command ("" if not given)
}

// errUsage marks an error in the command line; run prints the usage after it.
var errUsage = errors.New("usage")

// run runs a command with no standard input.
func run(args []string, stdout, stderr io.Writer) int {
	return runEnv(args, cli{stdin: strings.NewReader(""), stdout: stdout, stderr: stderr, getenv: os.Getenv})
}

// runEnv runs the command line args and returns the exit code: 0, 1 for a failure, 2 for a
// usage error.
func runEnv(args []string, env cli) int {
	stderr := env.stderr
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	args, server, err := globalFlags(args)
	env.server = server
	if err == nil {
		err = dispatch(args, env)
	}
	if err == nil {
		return 0
	}
	if h := (*helpError)(nil); errors.As(err, &h) {
		fmt.Fprint(env.stdout, h.text)
		return 0
	}
	fmt.Fprintln(stderr, "weir:", err)
	if errors.Is(err, errUsage) {
		fmt.Fprint(stderr, "\n"+usage)
		return 2
	}
	return 1
}

// dispatch runs the command args[0].
func dispatch(args []string, env cli) error {
	stdout, stderr := env.stdout, env.stderr
	switch args[0] {
	case "demo":
		return runDemo(args[1:], stdout, stderr)
	case "node":
		if len(args) > 1 && args[1] == "drain" {
			return runDrain(args[2:], env)
		}
		return runNode(args[1:], stdout, stderr)
	case "sink":
		return runSink(args[1:], stdout, stderr)
	case "log":
		return runLog(args[1:], stdout)
	case "topic":
		return runTopic(args[1:], env)
	case "produce":
		return runProduce(args[1:], env)
	case "consume":
		return runConsume(args[1:], env)
	case "bench":
		return runBench(args[1:], env)
	case "version":
		fmt.Fprintln(stdout, "weir", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
	}
	return nil
}

// parseFlags parses a subcommand's flags, allowing positional arguments before and after them.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, &helpError{text: fmt.Sprintf("Usage of weir %s:\n%s", fs.Name(), flagDefaults(fs))}
			}
			return nil, fmt.Errorf("%w: %s: %v", errUsage, fs.Name(), err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// helpError is a subcommand's -h or --help: its flags, printed to standard output.
type helpError struct{ text string }

func (e *helpError) Error() string { return "help requested" }

// flagDefaults returns the flags of fs as the flag package prints them.
func flagDefaults(fs *flag.FlagSet) string {
	var b strings.Builder
	fs.SetOutput(&b)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	return b.String()
}

// isHelp says whether arg asks for help, as the flag package reads -h and -help.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--h", "--help":
		return true
	}
	return false
}

// subcommand is one subcommand of a command, for the command's help.
type subcommand struct {
	synopsis string        // e.g. "create NAME [--partitions N]", after "weir COMMAND "
	summary  string        // what it does
	flags    *flag.FlagSet // nil if it has no flags
}

// groupHelp is the help of a command with subcommands (`weir topic -h`): a line per
// subcommand, then the flags of each; subcommands with the same flags share their list.
func groupHelp(command string, subs []subcommand) *helpError {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage of weir %s:\n", command)
	width := 0
	for _, s := range subs {
		width = max(width, len(s.synopsis))
	}
	for _, s := range subs {
		fmt.Fprintf(&b, "  weir %s %-*s  %s\n", command, width, s.synopsis, s.summary)
	}
	var order []string             // distinct flag lists, in the order of their first subcommand
	names := map[string][]string{} // flag list -> its subcommands
	for _, s := range subs {
		if s.flags == nil {
			continue
		}
		d := flagDefaults(s.flags)
		if d == "" {
			continue
		}
		if _, ok := names[d]; !ok {
			order = append(order, d)
		}
		names[d] = append(names[d], strings.TrimPrefix(s.flags.Name(), command+" "))
	}
	for _, d := range order {
		fmt.Fprintf(&b, "\nFlags of weir %s %s:\n%s", command, strings.Join(names[d], ", "), d)
	}
	return &helpError{text: b.String()}
}
