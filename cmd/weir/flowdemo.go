package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/weirhq/weir/actors"
	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/sink/logger"
	"github.com/weirhq/weir/connectors/source/seq"
	"github.com/weirhq/weir/flow"
	"github.com/weirhq/weir/storage"
)

// runDemo starts an embedded node with a demo flow: a sequence generator, an interceptor that
// drops multiples of 10 and keys the rest by their last digit, the topic "demo" (3 partitions),
// and a printer sink in the group "demo-printer". The node's client port stays open so that
// `weir consume demo` and `weir topic describe demo` work beside it.
func runDemo(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	var nf nodeFlags
	nf.register(fs, "./data/node")
	rate := fs.Float64("rate", 5, "records per second from the generator")
	duration := fs.Duration("duration", 0, "stop after this long (0: on Ctrl-C)")
	replicas := fs.Int("replicas", 1, "replication factor of the topic demo, if it is created (in a cluster: up to the number of nodes)")
	bound := fs.Bool("bound", false, "in a cluster: keep the generator on the node that defined it first, as a source of that node's files would be")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: demo takes no arguments, got %q", errUsage, pos)
	}
	if *rate <= 0 {
		return fmt.Errorf("%w: --rate must be positive", errUsage)
	}
	if *replicas < 1 || *replicas > actors.MaxReplicas {
		return fmt.Errorf("%w: --replicas %d: want 1 to %d", errUsage, *replicas, actors.MaxReplicas)
	}
	cfg, err := nf.config(stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	node, err := flow.StartNode(cfg)
	if err != nil {
		return err
	}
	defer node.Close()
	fmt.Fprintf(stdout, "weir demo: node %s, data %s, client port %s, metrics %s\n", node.ID(), cfg.DataDir, node.ClientAddr(), orNone(node.HTTPAddr()))
	fmt.Fprintln(stdout, "flow: seq generator -> drop multiples of 10, key by last digit -> topic demo (3 partitions) -> printer")
	fmt.Fprintln(stdout, "try, in another terminal: weir topic describe demo; weir consume demo --from earliest --max 5")
	fmt.Fprintln(stdout, "stop it with Ctrl-C and start it again: the generator and the printer resume where they left off")

	rt := flow.New(node)
	defer rt.Stop()
	src, err := seq.New(seq.Config{Rate: *rate, Batch: 10, Prefix: "event-"})
	if err != nil {
		return err
	}
	keep := connectors.InterceptorFunc(func(r storage.Record) (storage.Record, bool) {
		n, _ := strconv.Atoi(strings.TrimPrefix(string(r.Value), "event-"))
		if n%10 == 0 {
			return r, false
		}
		r.Key = []byte(strconv.Itoa(n % 10))
		r.Headers = map[string]string{"source": "demo"}
		return r, true
	})
	srcOpts := []flow.SourceOption{flow.Partitions(3), flow.Replicas(int32(*replicas)), flow.Intercept(keep)}
	if *bound {
		srcOpts = append(srcOpts, flow.Bound())
	}
	if err := rt.Source("demo-gen", src, "demo", srcOpts...); err != nil {
		return err
	}
	printer := logger.New(stdout, nil)
	if err := rt.Sink("demo-printer", printer, flow.FromTopics("demo")); err != nil {
		return err
	}
	<-ctx.Done()
	fmt.Fprintln(stdout, "weir demo: stopping")
	return nil
}
