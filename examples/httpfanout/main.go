// Command httpfanout is a Weir flow that takes the place of a Flume agent with an HTTP source
// and a multiplexing channel selector: clients POST JSON events, and each goes to the topic its
// "type" header names ("click" to "clicks", "view" to "views", anything else to "other"). Every
// event is also given a UUID header, and the three topics are printed through a consumer group.
// A client gets 200 only once its events are stored.
//
//	http source -> UUID interceptor -> multiplexing selector on "type" -> clicks | views | other -> group -> stdout
//
//	go run ./examples/httpfanout -addr 127.0.0.1:8080
//	curl -H 'Content-Type: application/json' --data '[{"headers":{"type":"click"},"body":"button=buy"}]' http://127.0.0.1:8080/
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
	httpsource "github.com/weirhq/weir/connectors/source/http"
	"github.com/weirhq/weir/flow"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "httpfanout:", err)
		os.Exit(1)
	}
}

// run is the program: flags in args, the events (and the address listened on) on stdout.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fl := flag.NewFlagSet("httpfanout", flag.ContinueOnError)
	data := fl.String("data", "data/httpfanout", "directory of the embedded node")
	addr := fl.String("addr", "127.0.0.1:8080", "address to take events on")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fl.Arg(0))
	}
	src, err := httpsource.New(httpsource.Config{Addr: *addr})
	if err != nil {
		return err
	}
	route, err := selector.Multiplexing(selector.MultiplexingConfig{
		Header:  "type",
		Routes:  map[string][]string{"click": {"clicks"}, "view": {"views"}},
		Default: []string{"other"},
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
	if err := rt.SourceTo("events", src, route, flow.Intercept(interceptor.UUID(interceptor.UUIDConfig{}))); err != nil {
		return err
	}
	printer := logger.New(stdout, func(m connectors.Message) string {
		return fmt.Sprintf("%s id=%s: %s", m.Topic, m.Headers["id"], m.Value)
	})
	if err := rt.Sink("print", printer, flow.FromTopics(route.Topics()...)); err != nil {
		return err
	}
	for src.Addr() == nil {
		select {
		case <-ctx.Done():
			return errors.New("stopped before the source listened")
		case <-time.After(20 * time.Millisecond):
		}
	}
	fmt.Fprintf(stdout, "listening: http://%v/\n", src.Addr())
	<-ctx.Done()
	return nil
}
