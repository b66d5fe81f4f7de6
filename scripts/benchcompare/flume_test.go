//go:build linux

package main

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The subsection of a workload is cut out of benchflume's markdown without its heading, the
// other workloads' subsections or the commands at the end.
func TestFlumeSubsection(t *testing.T) {
	md := strings.Join([]string{
		"<!-- benchflume: begin (written by go run ./scripts/benchflume; edits here are lost) -->",
		"## Apache Flume as a peer",
		"",
		"| date | x |",
		"",
		"### W5: tail files into rolling files",
		"",
		"W5 text",
		"| weir | 1 |",
		"",
		"### W6: topic to HDFS",
		"",
		"W6 text",
		"![p](bench/flume-w6-throughput.png)",
		"",
		"Commands (the first fetches Flume):",
		"```sh",
		"go run ./scripts/benchflume",
		"```",
		"<!-- benchflume: end -->",
	}, "\n")
	if got, want := flumeSubsection(md, "W5"), "W5 text\n| weir | 1 |"; got != want {
		t.Errorf("W5: got %q, want %q", got, want)
	}
	if got, want := flumeSubsection(md, "W6"), "W6 text\n![p](bench/flume-w6-throughput.png)"; got != want {
		t.Errorf("W6: got %q, want %q", got, want)
	}
	if got := flumeSubsection(md, "W4"); got != "" {
		t.Errorf("W4, absent: got %q", got)
	}
}

// The progress display's count: the end offsets of all the topic's partitions, or nothing
// while one is missing or in error.
func TestSumEndOffsets(t *testing.T) {
	resp := func(offsets ...int64) *kmsg.ListOffsetsResponse {
		r := kmsg.NewPtrListOffsetsResponse()
		t := kmsg.NewListOffsetsResponseTopic()
		for i, o := range offsets {
			p := kmsg.NewListOffsetsResponseTopicPartition()
			p.Partition, p.Offset = int32(i), o
			if o == -2 {
				p.ErrorCode, p.Offset = 6, -1 // NOT_LEADER_OR_FOLLOWER
			}
			t.Partitions = append(t.Partitions, p)
		}
		r.Topics = append(r.Topics, t)
		return r
	}
	for _, c := range []struct {
		offsets []int64
		parts   int
		sum     int64
		ok      bool
	}{
		{[]int64{100, 250, 0}, 3, 350, true},
		{[]int64{100, 250}, 3, 0, false},
		{[]int64{100, -2, 7}, 3, 0, false},
		{nil, 0, 0, true},
	} {
		sum, ok := sumEndOffsets(resp(c.offsets...), c.parts)
		if sum != c.sum || ok != c.ok {
			t.Errorf("sumEndOffsets(%v, %d) = %d, %v; want %d, %v", c.offsets, c.parts, sum, ok, c.sum, c.ok)
		}
	}
}

// The JSON figures of produce and fan-out rows: NaN left out, a failed run one "failed".
func TestFigures(t *testing.T) {
	rows := []result{
		{workload: "W1", round: 1, system: "Weir", client: clientWeirBench, acks: "1", producers: 4,
			measure: measure{recordsPerSec: 1000, mbPerSec: 0.1, p50: 1, p95: math.NaN(), p99: 2, max: 3}},
		{workload: "W3", round: 1, system: "Kafka", client: clientConsumerPerf, groups: 10, measure: measure{recordsPerSec: 500, p50: math.NaN()}},
		{workload: "W1", round: 1, system: "Kafka", client: clientProducerPerf, acks: "all", producers: 1, err: "broken"},
	}
	got := map[string]float64{}
	for _, f := range figures(rows) {
		got[f.Workload+"|"+f.System+"|"+f.Variant+"|"+f.Metric] = f.Value
	}
	want := map[string]float64{
		"W1|Weir|weir bench produce acks=1 producers=4 round=1|throughput_records": 1000,
		"W1|Weir|weir bench produce acks=1 producers=4 round=1|latency_p99":        2,
		"W3|Kafka|ConsumerPerformance groups=10 round=1|throughput_records":        500,
		"W1|Kafka|ProducerPerformance acks=all producers=1 round=1|failed":         1,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	for _, absent := range []string{
		"W1|Weir|weir bench produce acks=1 producers=4 round=1|latency_p95",
		"W3|Kafka|ConsumerPerformance groups=10 round=1|latency_p50",
		"W1|Kafka|ProducerPerformance acks=all producers=1 round=1|throughput_records",
	} {
		if _, ok := got[absent]; ok {
			t.Errorf("%s is there, want it left out", absent)
		}
	}
}

// W3's progress count: every group's committed offsets of the topic, other topics and
// partitions without a commit (-1) left out; nothing when a group's fetch failed.
func TestCommittedIn(t *testing.T) {
	off := func(topic string, p int32, at int64, err error) kadm.OffsetResponse {
		return kadm.OffsetResponse{Offset: kadm.Offset{Topic: topic, Partition: p, At: at}, Err: err}
	}
	rs := kadm.FetchOffsetsResponses{
		"g1": {Group: "g1", Fetched: kadm.OffsetResponses{
			"w3-r1": {0: off("w3-r1", 0, 100, nil), 1: off("w3-r1", 1, -1, nil), 2: off("w3-r1", 2, 50, nil)},
			"other": {0: off("other", 0, 1000, nil)},
		}},
		"g2": {Group: "g2", Fetched: kadm.OffsetResponses{"w3-r1": {0: off("w3-r1", 0, 7, nil), 1: off("w3-r1", 1, 9, errors.New("unknown"))}}},
		"g3": {Group: "g3"}, // nothing committed yet
	}
	if sum, ok := committedIn(rs, "w3-r1"); sum != 157 || !ok {
		t.Errorf("committedIn = %d, %v; want 157, true", sum, ok)
	}
	rs["g4"] = kadm.FetchOffsetsResponse{Group: "g4", Err: errors.New("coordinator not available")}
	if sum, ok := committedIn(rs, "w3-r1"); sum != 0 || ok {
		t.Errorf("with a failed group: committedIn = %d, %v; want 0, false", sum, ok)
	}
}
