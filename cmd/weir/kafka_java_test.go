package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/client"
)

// The Java tools of Apache Kafka 4.4 (scripts/kafka-tools/run.sh fetches them from Maven Central).
const (
	javaConsoleProducer     = "org.apache.kafka.tools.ConsoleProducer"
	javaConsoleConsumer     = "org.apache.kafka.tools.consumer.ConsoleConsumer"
	javaProducerPerformance = "org.apache.kafka.tools.ProducerPerformance"
	javaConsumerPerformance = "org.apache.kafka.tools.ConsumerPerformance"
)

// kafkaToolsScript returns scripts/kafka-tools/run.sh, failing the test with what to install
// when Java or Maven is missing.
func kafkaToolsScript(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"java", "mvn"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the Kafka Java tool tests need %s: install a JDK 17 (Debian: openjdk-17-jdk-headless) and Maven (maven)", tool)
		}
	}
	run, err := filepath.Abs(filepath.Join("..", "..", "scripts", "kafka-tools", "run.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(run); err != nil {
		t.Fatal(err)
	}
	return run
}

// javaTool runs one of Kafka's Java tools with stdin and returns its standard output; it fails
// the test, with the tool's standard error, when the tool fails or takes over 5 minutes (the
// first run fetches the jars).
func javaTool(t *testing.T, run, stdin, class string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, run, append([]string{class}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\nstdout:\n%s\nstderr:\n%s", class, args, err, out.String(), errOut.String())
	}
	t.Logf("%s ran for %v", class[strings.LastIndex(class, ".")+1:], time.Since(start).Round(time.Millisecond))
	return out.String()
}

// readTopic reads every partition of topic from the beginning with Weir's client, until each
// has been idle for a while.
func readTopic(t *testing.T, c *client.Client, topic string, partitions int32) []client.Message {
	t.Helper()
	var all []client.Message
	for p := range partitions {
		wc, err := c.NewConsumer(topic, p, client.From(client.Earliest()), client.MaxWait(300*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		for idle := 0; idle < 3; {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			msgs, err := wc.Poll(ctx)
			cancel()
			if err != nil || len(msgs) == 0 {
				idle++
				continue
			}
			all = append(all, msgs...)
		}
		wc.Close()
	}
	return all
}

// producerPerfSummary matches ProducerPerformance's last line, e.g. "100000 records sent,
// 30330.603579 records/sec (2.89 MB/sec), 971.07 ms avg latency, 1490.00 ms max latency, 1142 ms
// 50th, 1428 ms 95th, 1475 ms 99th, 1490 ms 99.9th."
var producerPerfSummary = regexp.MustCompile(`(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, ([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th`)

// consumerPerfStats parses ConsumerPerformance's output: a header line of comma-separated names
// (start.time, ..., data.consumed.in.nMsg, nMsg.sec, ...) and a line of values.
func consumerPerfStats(out string) (map[string]string, error) {
	ls := lines(out)
	for i, l := range ls {
		if !strings.HasPrefix(l, "start.time,") || i+1 >= len(ls) {
			continue
		}
		names, values := strings.Split(l, ","), strings.Split(ls[i+1], ",")
		if len(names) != len(values) {
			return nil, fmt.Errorf("%d names and %d values: %q", len(names), len(values), ls[i+1])
		}
		stats := map[string]string{}
		for j := range names {
			stats[strings.TrimSpace(names[j])] = strings.TrimSpace(values[j])
		}
		return stats, nil
	}
	return nil, fmt.Errorf("no statistics in %q", out)
}

// TestKafkaJavaTools runs Apache Kafka's own Java tools (kafka-tools 4.4 from Maven Central)
// against a `weir node --kafka` process: the console producer sends 1,000 keyed lines that
// `weir consume` and Weir's client read with their keys, and 250 lines with each of its codecs
// (gzip, snappy, lz4, zstd) that Weir reads; the console consumer reads 1,000 lines
// `weir produce` sent; a console consumer group reads them all and commits offsets that `weir
// consume --group` then finds read; ProducerPerformance writes 100,000 records of 100 bytes
// (acks=all), all of which are in the topic, and ConsumerPerformance reads them all back. The
// perf tools' numbers are logged.
func TestKafkaJavaTools(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a weir process and Java tools")
	}
	run := kafkaToolsScript(t)
	bin := buildWeir(t)
	dir := t.TempDir()
	addr, kafka := freeAddr(t), freeAddr(t)
	startNode(t, bin, filepath.Join(dir, "n"), addr, "--kafka", kafka)
	c, err := client.Dial(addr, client.RequestTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, topic := range []string{"lines", "fromweir", "perf"} {
		weirAt(t, addr, "", "topic", "create", topic, "--partitions", "3")
	}

	// The console producer: 1,000 keyed lines; Weir reads every one with its key.
	const n = 1000
	var in strings.Builder
	for i := range n {
		fmt.Fprintf(&in, "k%d:line-%d\n", i%10, i)
	}
	javaTool(t, run, in.String(), javaConsoleProducer, "--bootstrap-server", kafka, "--topic", "lines",
		"--reader-property", "parse.key=true", "--reader-property", "key.separator=:")
	out, _ := weirAt(t, addr, "", "consume", "lines", "--from", "earliest", "--idle-exit", "1s")
	if got := lines(out); len(got) != n {
		t.Fatalf("weir consume read %d lines of what the console producer sent, want %d", len(got), n)
	}
	keyed := map[string]bool{}
	for _, m := range readTopic(t, c, "lines", 3) {
		i, err := strconv.Atoi(strings.TrimPrefix(string(m.Value), "line-"))
		if err != nil || string(m.Key) != "k"+strconv.Itoa(i%10) {
			t.Fatalf("partition %d offset %d: key %q value %q, want key k%d", m.Partition, m.Offset, m.Key, m.Value, i%10)
		}
		keyed[string(m.Value)] = true
	}
	if len(keyed) != n {
		t.Fatalf("Weir's client read %d distinct lines with their keys, want %d", len(keyed), n)
	}

	// The Java client's own codecs: 250 lines with each, read back by Weir.
	weirAt(t, addr, "", "topic", "create", "codecs", "--partitions", "1")
	codecs := []string{"gzip", "snappy", "lz4", "zstd"}
	for _, codec := range codecs {
		var cin strings.Builder
		for i := range 250 {
			fmt.Fprintf(&cin, "%s-%d\n", codec, i)
		}
		javaTool(t, run, cin.String(), javaConsoleProducer, "--bootstrap-server", kafka, "--topic", "codecs", "--compression-codec", codec)
	}
	out, _ = weirAt(t, addr, "", "consume", "codecs", "--from", "earliest", "--idle-exit", "1s")
	perCodec := map[string]int{}
	for _, l := range lines(out) {
		codec, _, _ := strings.Cut(l, "-")
		perCodec[codec]++
	}
	for _, codec := range codecs {
		if perCodec[codec] != 250 {
			t.Fatalf("weir consume read %d lines the console producer sent with %s, want 250 (all: %v)", perCodec[codec], codec, perCodec)
		}
	}

	// The console consumer reads what `weir produce` sent, keys included.
	weirAt(t, addr, in.String(), "produce", "fromweir", "--key-separator", ":")
	out = javaTool(t, run, "", javaConsoleConsumer, "--bootstrap-server", kafka, "--topic", "fromweir",
		"--from-beginning", "--max-messages", strconv.Itoa(n), "--timeout-ms", "30000",
		"--formatter-property", "print.key=true", "--formatter-property", "key.separator=:")
	read := map[string]bool{}
	for _, l := range lines(out) {
		key, value, _ := strings.Cut(l, ":")
		i, err := strconv.Atoi(strings.TrimPrefix(value, "line-"))
		if err != nil || key != "k"+strconv.Itoa(i%10) {
			t.Fatalf("the console consumer read %q: want k%d:line-%d", l, i%10, i)
		}
		read[value] = true
	}
	if len(read) != n {
		t.Fatalf("the console consumer read %d distinct lines of what weir produce sent, want %d", len(read), n)
	}

	// A console consumer group reads every line and commits; a Weir member of the same group
	// then has nothing left to read.
	out = javaTool(t, run, "", javaConsoleConsumer, "--bootstrap-server", kafka, "--topic", "lines",
		"--group", "java-group", "--from-beginning", "--max-messages", strconv.Itoa(n), "--timeout-ms", "30000")
	group := map[string]bool{}
	for _, l := range lines(out) {
		group[l] = true
	}
	if len(group) != n || len(lines(out)) != n {
		t.Fatalf("the console consumer group read %d lines, %d distinct, want %d", len(lines(out)), len(group), n)
	}
	committed, err := c.FetchCommitted(context.Background(), "java-group")
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, po := range committed {
		if po.Topic == "lines" {
			sum += po.Offset
		}
	}
	if sum != n {
		t.Fatalf("java-group's committed offsets in Weir add up to %d (%+v), want %d", sum, committed, n)
	}
	out, _ = weirAt(t, addr, "", "consume", "lines", "--group", "java-group", "--idle-exit", "1s")
	if got := lines(out); len(got) != 0 {
		t.Fatalf("a Weir member of java-group read %d lines after the console consumer's commits, want 0", len(got))
	}

	// kafka-producer-perf-test: 100,000 records of 100 bytes, acks=all, as fast as it goes.
	const perfRecords = 100000
	out = javaTool(t, run, "", javaProducerPerformance, "--topic", "perf", "--num-records", strconv.Itoa(perfRecords),
		"--record-size", "100", "--throughput", "-1",
		"--command-property", "bootstrap.servers="+kafka, "acks=all")
	m := producerPerfSummary.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary line in ProducerPerformance's output:\n%s", out)
	}
	t.Logf("ProducerPerformance: %s records sent, %s records/sec (%s MB/sec), avg latency %s ms, p50 %s ms, p99 %s ms, max %s ms",
		m[1], m[2], m[3], m[4], m[6], m[8], m[5])
	if m[1] != strconv.Itoa(perfRecords) {
		t.Fatalf("ProducerPerformance sent %s records, want %d", m[1], perfRecords)
	}
	var inTopic int64
	for p := range int32(3) {
		end, err := c.ListOffsets(context.Background(), "perf", p, client.Latest())
		if err != nil {
			t.Fatal(err)
		}
		inTopic += end
	}
	if inTopic != perfRecords {
		t.Fatalf("the perf topic holds %d records after ProducerPerformance, want %d", inTopic, perfRecords)
	}

	// kafka-consumer-perf-test reads them all back.
	out = javaTool(t, run, "", javaConsumerPerformance, "--bootstrap-server", kafka, "--topic", "perf",
		"--num-records", strconv.Itoa(perfRecords), "--timeout", "30000")
	stats, err := consumerPerfStats(out)
	if err != nil {
		t.Fatalf("ConsumerPerformance's output: %v", err)
	}
	t.Logf("ConsumerPerformance: %s records (%s MB) in %s to %s: %s records/sec, %s MB/sec; fetch time %s ms (%s records/sec), rebalance %s ms",
		stats["data.consumed.in.nMsg"], stats["data.consumed.in.MB"], stats["start.time"], stats["end.time"],
		stats["nMsg.sec"], stats["MB.sec"], stats["fetch.time.ms"], stats["fetch.nMsg.sec"], stats["rebalance.time.ms"])
	if stats["data.consumed.in.nMsg"] != strconv.Itoa(perfRecords) {
		t.Fatalf("ConsumerPerformance read %s records, want %d", stats["data.consumed.in.nMsg"], perfRecords)
	}
}

// TestKafkaJavaToolsCluster: Kafka's perf tools against three nodes (replication factor 3):
// ProducerPerformance writes 50,000 records (acks=all) through the Metadata of one node, all of
// them are in the topic, and ConsumerPerformance, bootstrapped from another node, reads them all.
func TestKafkaJavaToolsCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts weir processes and Java tools")
	}
	run := kafkaToolsScript(t)
	bin := buildWeir(t)
	nodes, kafka := kafkaCluster(t, bin)
	c, err := client.Dial(clientAddrs(nodes), client.RequestTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	createClusterTopic(t, c, "perf", 3, 3)
	k := strings.Split(kafka, ",")

	const records = 50000
	out := javaTool(t, run, "", javaProducerPerformance, "--topic", "perf", "--num-records", strconv.Itoa(records),
		"--record-size", "100", "--throughput", "-1",
		"--command-property", "bootstrap.servers="+k[0], "acks=all")
	m := producerPerfSummary.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary line in ProducerPerformance's output:\n%s", out)
	}
	t.Logf("ProducerPerformance, 3 nodes: %s records sent, %s records/sec (%s MB/sec), avg latency %s ms, p50 %s ms, p99 %s ms, max %s ms",
		m[1], m[2], m[3], m[4], m[6], m[8], m[5])
	var inTopic int64
	for p := range int32(3) {
		end, err := c.ListOffsets(context.Background(), "perf", p, client.Latest())
		if err != nil {
			t.Fatal(err)
		}
		inTopic += end
	}
	if m[1] != strconv.Itoa(records) || inTopic != records {
		t.Fatalf("ProducerPerformance sent %s records and the topic holds %d, want %d", m[1], inTopic, records)
	}
	out = javaTool(t, run, "", javaConsumerPerformance, "--bootstrap-server", k[1], "--topic", "perf",
		"--num-records", strconv.Itoa(records), "--timeout", "30000")
	stats, err := consumerPerfStats(out)
	if err != nil {
		t.Fatalf("ConsumerPerformance's output: %v", err)
	}
	t.Logf("ConsumerPerformance, 3 nodes: %s records, %s records/sec, %s MB/sec; fetch %s records/sec, rebalance %s ms",
		stats["data.consumed.in.nMsg"], stats["nMsg.sec"], stats["MB.sec"], stats["fetch.nMsg.sec"], stats["rebalance.time.ms"])
	if stats["data.consumed.in.nMsg"] != strconv.Itoa(records) {
		t.Fatalf("ConsumerPerformance read %s records, want %d", stats["data.consumed.in.nMsg"], records)
	}
}
