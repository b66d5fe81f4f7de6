// Command taildir is a Weir flow that takes the place of a Flume agent with a TAILDIR source and
// an interceptor chain: it tails the log files matching -files (following rotation by rename and
// by copytruncate), joins multi-line records such as stack traces, drops the lines that match
// -drop before they reach the network, takes each record's level into a header, stamps it with
// this host's name, and produces it to the topic "logs", which a consumer group prints.
//
//	taildir source -> regex filter -> regex extractor -> host -> topic "logs" -> group -> stdout
//
// It runs an embedded node whose data is in -data, until Ctrl-C. Run it again with the same
// -data and it goes on where it stopped: the source resumes at its committed position in each
// file, and the printer at its group's committed offsets.
//
//	go run ./examples/taildir -files '/var/log/app/*.log' -multiline '^\d{4}-\d{2}-\d{2}'
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/interceptor"
	"github.com/weirhq/weir/connectors/sink/logger"
	"github.com/weirhq/weir/connectors/source/taildir"
	"github.com/weirhq/weir/flow"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "taildir:", err)
		os.Exit(1)
	}
}

// run is the program: flags in args, the records on stdout.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fl := flag.NewFlagSet("taildir", flag.ContinueOnError)
	data := fl.String("data", "data/taildir", "directory of the embedded node")
	files := fl.String("files", "", "comma-separated globs of the files to tail (required)")
	multiline := fl.String("multiline", "", "regular expression of the first line of a record; other lines join the record before them (empty: one record per line)")
	drop := fl.String("drop", `\bDEBUG\b`, "regular expression of the records to drop before they reach the network (empty: keep all)")
	startAtEnd := fl.Bool("start-at-end", false, "on the first run, start at the end of the files found")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fl.Arg(0))
	}
	if *files == "" {
		return fmt.Errorf("-files: no file pattern given")
	}
	cfg := taildir.Config{Patterns: strings.Split(*files, ","), PathHeader: "file", StartAtEnd: *startAtEnd}
	if *multiline != "" {
		re, err := regexp.Compile(*multiline)
		if err != nil {
			return fmt.Errorf("-multiline: %w", err)
		}
		cfg.Multiline = &taildir.Multiline{Start: re}
	}
	src, err := taildir.New(cfg)
	if err != nil {
		return err
	}
	var chain []connectors.Interceptor
	if *drop != "" {
		f, err := interceptor.RegexFilter(*drop, true)
		if err != nil {
			return fmt.Errorf("-drop: %w", err)
		}
		chain = append(chain, f)
	}
	level, err := interceptor.RegexExtractor(`^\S+ \S+ (ERROR|WARN|INFO|DEBUG)\b`, "level")
	if err != nil {
		return err
	}
	host, err := interceptor.Host(interceptor.HostConfig{Header: "host"})
	if err != nil {
		return err
	}
	chain = append(chain, level, host)

	node, err := flow.StartNode(flow.NodeConfig{DataDir: *data})
	if err != nil {
		return err
	}
	defer node.Close()
	rt := flow.New(node)
	defer rt.Stop()
	if err := rt.Source("tail", src, "logs", flow.Intercept(chain...), flow.Bound()); err != nil {
		return err
	}
	printer := logger.New(stdout, func(m connectors.Message) string {
		return fmt.Sprintf("%s level=%s: %s", m.Headers["file"], m.Headers["level"], strings.ReplaceAll(string(m.Value), "\n", "\n    | "))
	})
	if err := rt.Sink("print", printer, flow.FromTopics("logs")); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}
