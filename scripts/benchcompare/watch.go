//go:build linux

package main

import (
	"context"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir/scripts/internal/progress"
)

// watchTopic shows, a line a second while a producing client runs, how many records topic
// holds (its partitions' end offsets, through the Kafka protocol both systems serve), the rate
// and the time left to total: the harness's live display for clients whose own output it only
// reads at their end. The returned function stops it. A count that fails (the topic's leaders
// not known yet, say) skips that second's line.
func (h *harness) watchTopic(ctx context.Context, c *cluster, topic, what string, total int64) (stop func()) {
	cl, err := kafkaClient(c.bootstrap)
	if err != nil {
		return func() {}
	}
	var parts []int32 // learnt at the first count that finds the topic
	count := func() (int64, bool) {
		rctx, cancel := context.WithTimeout(ctx, 900*time.Millisecond)
		defer cancel()
		if parts == nil {
			req := kmsg.NewPtrMetadataRequest()
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(topic)
			req.Topics = append(req.Topics, rt)
			resp, err := req.RequestWith(rctx, cl)
			if err != nil || len(resp.Topics) != 1 || kerr.ErrorForCode(resp.Topics[0].ErrorCode) != nil || len(resp.Topics[0].Partitions) == 0 {
				return 0, false
			}
			for _, p := range resp.Topics[0].Partitions {
				parts = append(parts, p.Partition)
			}
		}
		req := kmsg.NewPtrListOffsetsRequest()
		req.ReplicaID = -1
		t := kmsg.NewListOffsetsRequestTopic()
		t.Topic = topic
		for _, p := range parts {
			rp := kmsg.NewListOffsetsRequestTopicPartition()
			rp.Partition, rp.Timestamp = p, -1 // the end offset
			t.Partitions = append(t.Partitions, rp)
		}
		req.Topics = append(req.Topics, t)
		resp, err := req.RequestWith(rctx, cl)
		if err != nil {
			return 0, false
		}
		return sumEndOffsets(resp, len(parts))
	}
	m := progress.Start(os.Stderr, what, total, count)
	return func() {
		m.Stop()
		cl.Close()
	}
}

// sumEndOffsets adds up the end offsets of a ListOffsets answer; false unless it answers for
// all parts partitions without an error.
func sumEndOffsets(resp *kmsg.ListOffsetsResponse, parts int) (int64, bool) {
	var sum int64
	n := 0
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode != 0 || p.Offset < 0 {
				return 0, false
			}
			sum += p.Offset
			n++
		}
	}
	if n != parts {
		return 0, false
	}
	return sum, true
}
