package group_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/sink/group"
	"github.com/weirhq/weir/connectors/sink/logger"
	"github.com/weirhq/weir/storage"
)

// down is a sink whose store is unreachable.
type down struct{}

func (down) Open(context.Context) error { return nil }
func (down) Close() error               { return nil }
func (down) Write(context.Context, []connectors.Message) error {
	return errors.New("connection refused")
}

// A Failover group gives each batch to its member of highest priority that works. In a flow it
// is the sink of rt.Sink("out", g, flow.FromTopics("events")).
func ExampleNewFailover() {
	g, err := group.NewFailover(group.FailoverConfig{Members: []group.Member{
		{Name: "primary", Sink: down{}, Priority: 10},
		{Name: "backup", Sink: logger.New(os.Stdout, nil), Priority: 5},
	}})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if err := g.Open(ctx); err != nil {
		panic(err)
	}
	defer g.Close()
	msgs := []connectors.Message{{Topic: "events", Offset: 7, Record: storage.Record{Value: []byte("hello")}}}
	if err := g.Write(ctx, msgs); err != nil {
		panic(err)
	}
	for _, m := range g.State() {
		fmt.Printf("%s: failures %d, penalised %t, records %d, last error %v\n",
			m.Name, m.Failures, !m.PenalisedUntil.IsZero(), m.Records, m.LastError)
	}
	// Output:
	// events/0@7 hello
	// primary: failures 1, penalised true, records 0, last error connection refused
	// backup: failures 0, penalised false, records 1, last error <nil>
}
