package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// lastLag takes the last complete "w6 lag=N" line of the agent's log.
func TestLastLag(t *testing.T) {
	for _, c := range []struct {
		log  string
		lag  int64
		seen bool
	}{
		{"", 0, false},
		{"starting\n", 0, false},
		{"w6 lag=300\nw6 lag=120\n", 120, true},
		{"w6 lag=300\nsome warning\nw6 lag=0\n", 0, true},
		{"w6 lag=300\nw6 lag=1", 1, true},     // a line being written: its digits so far
		{"xw6 lag=5\nw6 lag=7 x\n", 0, false}, // not at a line's start, or followed by more
	} {
		lag, seen := lastLag([]byte(c.log))
		if lag != c.lag || seen != c.seen {
			t.Errorf("lastLag(%q) = %d, %v; want %d, %v", c.log, lag, seen, c.lag, c.seen)
		}
	}
}

// flumeCounter reads Flume's HTTP monitoring JSON (counters as strings), and says what is
// missing.
func TestFlumeCounter(t *testing.T) {
	body := []byte(`{"CHANNEL.c":{"ChannelSize":"0","EventPutSuccessCount":"133334","Type":"CHANNEL"},
		"SINK.h":{"BatchCompleteCount":"133","EventDrainSuccessCount":"133000","Type":"SINK"},
		"SOURCE.k":{"EventAcceptedCount":133334}}`)
	if v, err := flumeCounter(body, "SINK.h", "EventDrainSuccessCount"); err != nil || v != 133000 {
		t.Errorf("SINK.h EventDrainSuccessCount = %d, %v; want 133000", v, err)
	}
	if v, err := flumeCounter(body, "SOURCE.k", "EventAcceptedCount"); err != nil || v != 133334 {
		t.Errorf("a counter as a number = %d, %v; want 133334", v, err)
	}
	for _, c := range []struct {
		body, component, counter, want string
	}{
		{string(body), "SINK.x", "EventDrainSuccessCount", "no component SINK.x"},
		{string(body), "SINK.h", "Nothing", "SINK.h has no Nothing"},
		{string(body), "SINK.h", "Type", "SINK.h Type"},
		{"<html>starting</html>", "SINK.h", "EventDrainSuccessCount", "flume metrics"},
	} {
		if _, err := flumeCounter([]byte(c.body), c.component, c.counter); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("flumeCounter(%s, %s) error %v, want one with %q", c.component, c.counter, err, c.want)
		}
	}
}

// The files read back are the finished ones: not Weir's in-progress files and state, nor
// Flume's in-use files.
func TestFinishedFile(t *testing.T) {
	for name, want := range map[string]bool{
		"events.1733100000000":                               true,
		"w6-0-00000000000000000000-00000000000000044444.txt": true,
		"p0": true,
		".w6-0-00000000000000000000.abc.inprogress": false,
		".weir-state":              false,
		"events.1733100000000.tmp": false,
		"_SUCCESS":                 false,
	} {
		if got := finishedFile(name); got != want {
			t.Errorf("finishedFile(%q) = %v, want %v", name, got, want)
		}
	}
}

// The Flume agent of W6: Kafka source from the earliest offset, the channel asked for, an HDFS
// sink that rolls by size and idleness only and does not roll at every batch with one DataNode.
func TestFlumeW6Conf(t *testing.T) {
	conf := flumeW6Conf("127.0.0.1:9092", "127.0.0.1:8020", "/w6/flume-file", "/work", "file", "flume-file")
	for _, want := range []string{
		"a.sources.k.type = org.apache.flume.source.kafka.KafkaSource\n",
		"a.sources.k.kafka.bootstrap.servers = 127.0.0.1:9092\n",
		"a.sources.k.kafka.topics = w6\n",
		"a.sources.k.kafka.consumer.group.id = flume-file\n",
		"a.sources.k.kafka.consumer.auto.offset.reset = earliest\n",
		"a.channels.c.type = file\n",
		"a.channels.c.checkpointDir = /work/checkpoint\n",
		"a.sinks.h.hdfs.path = hdfs://127.0.0.1:8020/w6/flume-file\n",
		"a.sinks.h.hdfs.fileType = DataStream\n",
		"a.sinks.h.hdfs.rollSize = 134217728\n",
		"a.sinks.h.hdfs.rollCount = 0\n",
		"a.sinks.h.hdfs.rollInterval = 0\n",
		"a.sinks.h.hdfs.idleTimeout = 1\n",
		"a.sinks.h.hdfs.minBlockReplicas = 1\n",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("the configuration lacks %q:\n%s", want, conf)
		}
	}
	mem := flumeW6Conf("k:1", "n:2", "/d", "/work", "memory", "g")
	if !strings.Contains(mem, "a.channels.c.type = memory\n") || strings.Contains(mem, "checkpointDir") {
		t.Errorf("memory channel configuration:\n%s", mem)
	}
}

func TestParseOnly(t *testing.T) {
	all, err := parseOnly("")
	if err != nil || !all["w4"] || !all["w5"] || !all["w6"] {
		t.Fatalf("parseOnly(\"\") = %v, %v; want all three", all, err)
	}
	some, err := parseOnly("W6, w4")
	if err != nil || !some["w4"] || some["w5"] || !some["w6"] {
		t.Fatalf("parseOnly(\"W6, w4\") = %v, %v", some, err)
	}
	if _, err := parseOnly("w4,w7"); err == nil || !strings.Contains(err.Error(), `"w7"`) {
		t.Fatalf("parseOnly(\"w4,w7\") error %v, want one naming w7", err)
	}
}

// W6's table has as many cells in each row as in its head, every figure rendered (a format
// with too few verbs printed "%!(EXTRA ...)" into the table once).
func TestMarkdownW6(t *testing.T) {
	b := &bench{cfg: config{stall: time.Minute, plotRef: "bench"}, w6in: w5Input{lines: 1000, bytes: 150_000}}
	runs := []w6Run{{system: "weir", variant: "hdfs-sink", total: 2 * time.Second, first: time.Second, delivered: 1000, cpu: 0.5, files: 3},
		{system: "flume", variant: "kafka-source-file-channel", total: 9 * time.Second, first: 4 * time.Second, delivered: 1000, cpu: 12, nodeCPU: 0.3, files: 1, stalled: true}}
	for i := range runs {
		b.w6Results(b.w6in, &runs[i])
	}
	var s strings.Builder
	b.markdownW6(func(format string, args ...any) { fmt.Fprintf(&s, format+"\n", args...) }, runs, []string{"flume-w6-throughput.png"})
	md := s.String()
	if strings.Contains(md, "%!") {
		t.Fatalf("a bad format in the markdown:\n%s", md)
	}
	var rows []string
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "|") {
			rows = append(rows, line)
		}
	}
	if len(rows) != 5 { // head, rule, two runs, the stalled note
		t.Fatalf("%d table lines, want 5:\n%s", len(rows), md)
	}
	for _, r := range rows {
		if got, want := strings.Count(r, "|"), strings.Count(rows[0], "|"); got != want {
			t.Errorf("%d cells in %q, want %d", got-1, r, want-1)
		}
	}
	for _, want := range []string{"| weir | hdfs-sink | **0.1** |", "| 8000.0 | 200.0 | **8200.0** |", "![flume-w6-throughput.png](bench/flume-w6-throughput.png)", "stalled"} {
		if !strings.Contains(md, want) {
			t.Errorf("the markdown lacks %q:\n%s", want, md)
		}
	}
}

// TestFlumeChannel: the file channel keeps its checkpoint and data under the work directory;
// the memory channel gets the capacity and transaction size asked for.
func TestFlumeChannel(t *testing.T) {
	conf := func(channel string) string {
		var b strings.Builder
		flumeChannel(func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }, channel, "/w", 500, 20)
		return b.String()
	}
	if got, want := conf("file"), "a.channels.c.type = file\na.channels.c.checkpointDir = /w/checkpoint\na.channels.c.dataDirs = /w/data\n"; got != want {
		t.Errorf("file channel:\n%s\nwant\n%s", got, want)
	}
	if got, want := conf("memory"), "a.channels.c.type = memory\na.channels.c.capacity = 500\na.channels.c.transactionCapacity = 20\n"; got != want {
		t.Errorf("memory channel:\n%s\nwant\n%s", got, want)
	}
}
