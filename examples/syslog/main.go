// Command syslog is a Weir flow that takes the place of a Flume agent with a syslog source and
// a multiplexing channel selector: it receives syslog messages (RFC 5424 and RFC 3164, over UDP
// and TCP), stamps each with this host's name, routes errors (severity 0 to 3) to the topic
// "syslog-errors" and everything else to "syslog", and prints both topics through a consumer
// group.
//
//	syslog source -> host interceptor -> multiplexing selector -> "syslog-errors" | "syslog" -> group -> stdout
//
// It runs an embedded node whose data is in -data, until Ctrl-C.
//
//	go run ./examples/syslog -udp 127.0.0.1:5514 -tcp 127.0.0.1:5514
//	logger --server 127.0.0.1 --port 5514 --udp -p user.err "disk full"
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/interceptor"
	"github.com/weirhq/weir/connectors/selector"
	"github.com/weirhq/weir/connectors/sink/logger"
	"github.com/weirhq/weir/connectors/source/syslog"
	"github.com/weirhq/weir/flow"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "syslog:", err)
		os.Exit(1)
	}
}

// run is the program: flags in args, the records (and the addresses listened on) on stdout.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fl := flag.NewFlagSet("syslog", flag.ContinueOnError)
	data := fl.String("data", "data/syslog", "directory of the embedded node")
	udp := fl.String("udp", "127.0.0.1:5514", "UDP address to listen on (empty: none)")
	tcp := fl.String("tcp", "127.0.0.1:5514", "TCP address to listen on (empty: none)")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fl.Arg(0))
	}
	src, err := syslog.New(syslog.Config{UDP: *udp, TCP: *tcp})
	if err != nil {
		return err
	}
	host, err := interceptor.Host(interceptor.HostConfig{Header: "received_by"})
	if err != nil {
		return err
	}
	errs := []string{"syslog-errors"}
	route, err := selector.Multiplexing(selector.MultiplexingConfig{
		Header:  "severity",
		Routes:  map[string][]string{"0": errs, "1": errs, "2": errs, "3": errs},
		Default: []string{"syslog"},
	})
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
	if err := rt.SourceTo("syslog", src, route, flow.Intercept(host)); err != nil {
		return err
	}
	printer := logger.New(stdout, func(m connectors.Message) string {
		return fmt.Sprintf("%s severity=%s host=%s app=%s: %s", m.Topic, m.Headers["severity"], m.Headers["host"], m.Headers["app"], m.Value)
	})
	if err := rt.Sink("print", printer, flow.FromTopics(route.Topics()...)); err != nil {
		return err
	}
	if err := waitListening(ctx, src, stdout); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// waitListening reports the addresses once the source (started by the flow) listens.
func waitListening(ctx context.Context, src *syslog.Source, stdout io.Writer) error {
	for {
		u, t := src.Addrs()
		if u != nil || t != nil {
			fmt.Fprintf(stdout, "listening: udp %v tcp %v\n", u, t)
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New("stopped before the source listened")
		case <-time.After(20 * time.Millisecond):
		}
	}
}
