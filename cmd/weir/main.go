// Command weir is Weir's binary. It parses flags and dispatches to the packages that do the work.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `weir: a stream runtime — a replicated partitioned log with sources and sinks.

Usage:
  weir node --data DIR [--listen HOST:PORT] [--http HOST:PORT] [--sync always|interval|never]
                                           run a node (client port 7420, metrics 7421 by default)
  weir demo [--data DIR] [--rate N] [--duration D]
                                           run a node with a demo flow: generator -> topic -> printer
  weir log demo [--data DIR] [--records N] append records to a bare log, reopen it, read them back
  weir log dump DIR [--from OFFSET] [--max N] [--records]
                                           print the batches (and records) of a partition log
  weir log verify DIR                      recover a partition log and check every checksum
  weir version                             print the version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks an error in the command line; run prints the usage after it.
var errUsage = errors.New("usage")

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "demo":
		err = runDemo(args[1:], stdout, stderr)
	case "node":
		err = runNode(args[1:], stdout, stderr)
	case "log":
		err = runLog(args[1:], stdout)
	case "version":
		fmt.Fprintln(stdout, "weir", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		err = fmt.Errorf("%w: unknown command %q", errUsage, args[0])
	}
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, "weir:", err)
	if errors.Is(err, errUsage) {
		fmt.Fprint(stderr, "\n"+usage)
		return 2
	}
	return 1
}

// parseFlags parses a subcommand's flags, allowing positional arguments before and after them.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
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
