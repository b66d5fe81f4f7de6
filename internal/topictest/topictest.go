// Package topictest reads topics back for tests.
package topictest

import (
	"context"

	"github.com/weirhq/weir/client"
)

// ReadAll returns every record of a topic, partition by partition, up to each partition's end
// when it is called.
func ReadAll(ctx context.Context, cl *client.Client, topic string) ([]client.Message, error) {
	np, err := cl.Partitions(ctx, topic)
	if err != nil {
		return nil, err
	}
	var out []client.Message
	for p := range np {
		end, err := cl.ListOffsets(ctx, topic, p, client.Latest())
		if err != nil {
			return nil, err
		}
		if end == 0 {
			continue
		}
		c, err := cl.NewConsumer(topic, p)
		if err != nil {
			return nil, err
		}
		for c.Position() < end {
			msgs, err := c.Poll(ctx)
			if err != nil {
				c.Close()
				return nil, err
			}
			out = append(out, msgs...)
		}
		c.Close()
	}
	return out, nil
}
