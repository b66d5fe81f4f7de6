//go:build linux

package main

import (
	"context"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir/internal/progress"
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

// watchGroups shows, a line a second while consumer groups read topic, the records they have
// committed between them (their committed offsets summed, through the Kafka protocol), the
// rate and the time left to total. Clients commit every few seconds (ConsumerPerformance and
// franz-go every 5 s by default), so the count moves in steps. The returned function stops it.
func (h *harness) watchGroups(ctx context.Context, c *cluster, topic string, groups []string, what string, total int64) (stop func()) {
	cl, err := kafkaClient(c.bootstrap)
	if err != nil {
		return func() {}
	}
	adm := kadm.NewClient(cl)
	count := func() (int64, bool) {
		rctx, cancel := context.WithTimeout(ctx, 900*time.Millisecond)
		defer cancel()
		return committedIn(adm.FetchManyOffsets(rctx, groups...), topic)
	}
	m := progress.Start(os.Stderr, what, total, count)
	return func() {
		m.Stop()
		cl.Close()
	}
}

// committedIn sums the offsets the groups of rs committed for topic's partitions (a
// partition without a commit counts 0); false if a group's fetch failed.
func committedIn(rs kadm.FetchOffsetsResponses, topic string) (int64, bool) {
	var sum int64
	for _, r := range rs {
		if r.Err != nil {
			return 0, false
		}
		for _, o := range r.Fetched[topic] {
			if o.Err == nil && o.At > 0 {
				sum += o.At
			}
		}
	}
	return sum, true
}
