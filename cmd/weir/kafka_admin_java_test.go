package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/client"
)

// Kafka 4.4's admin tools (scripts/kafka-tools/run.sh).
const (
	javaTopicCommand  = "org.apache.kafka.tools.TopicCommand"
	javaGroupCommand  = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
	javaConfigCommand = "org.apache.kafka.tools.ConfigCommand"
	javaGetOffsets    = "org.apache.kafka.tools.GetOffsetShell"
)

// toolTable parses the table a Kafka tool prints (kafka-consumer-groups --describe): the rows
// after the header line that starts with first, as maps from column name to value. Values have
// no spaces (the tools print "-" for none).
func toolTable(t *testing.T, out, first string) []map[string]string {
	t.Helper()
	var header []string
	var rows []map[string]string
	for _, l := range lines(out) {
		f := strings.Fields(l)
		switch {
		case len(f) == 0:
		case f[0] == first:
			header = f
		case header != nil:
			if len(f) != len(header) {
				t.Fatalf("row %q has %d columns, the header %d (%v)", l, len(f), len(header), header)
			}
			row := map[string]string{}
			for i, h := range header {
				row[h] = f[i]
			}
			rows = append(rows, row)
		}
	}
	if header == nil {
		t.Fatalf("no table with a %s column in:\n%s", first, out)
	}
	return rows
}

// describeTopicLine matches kafka-topics --describe's topic line, e.g. "Topic: adm\tTopicId:
// ...\tPartitionCount: 3\tReplicationFactor: 1\tConfigs: retention.ms=3600000,segment.ms=3600000".
var describeTopicLine = regexp.MustCompile(`^Topic: (\S+)\s.*PartitionCount: (\d+)\s+ReplicationFactor: (\d+)\s+Configs: ?(\S*)`)

// describePartitionLine matches its partition lines.
var describePartitionLine = regexp.MustCompile(`^\s+Topic: (\S+)\s+Partition: (\d+)\s+Leader: (\d+)\s+Replicas: (\S+)\s+Isr: (\S+)`)

// TestKafkaJavaAdminTools runs Kafka 4.4's admin tools against a `weir node --kafka` process:
// kafka-topics creates a topic with a retention config, lists and describes it (partitions,
// leader, replicas, its config); a console consumer group reads part of 300 records and
// kafka-consumer-groups lists the group and describes its offsets, log end offsets and lag,
// which must be Weir's; with a console consumer running, --describe --members shows it (client
// id, host, partitions) and --describe its partitions; --reset-offsets moves the empty group's
// offsets back and --delete deletes it; kafka-get-offsets finds the latest, earliest-local and
// max-timestamp offsets; kafka-configs describes the topic's configs, its own and all.
func TestKafkaJavaAdminTools(t *testing.T) {
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
	ctx := context.Background()

	// kafka-topics: create, list, describe.
	out := javaTool(t, run, "", javaTopicCommand, "--bootstrap-server", kafka, "--create", "--topic", "adm",
		"--partitions", "3", "--replication-factor", "1", "--config", "retention.ms=3600000")
	if !strings.Contains(out, "Created topic adm.") {
		t.Fatalf("kafka-topics --create printed %q", out)
	}
	weirAt(t, addr, "", "topic", "create", "other", "--partitions", "1")
	out = javaTool(t, run, "", javaTopicCommand, "--bootstrap-server", kafka, "--list")
	if got := lines(out); !slices.Equal(got, []string{"adm", "other"}) {
		t.Fatalf("kafka-topics --list printed %q, want adm and other", got)
	}
	out = javaTool(t, run, "", javaTopicCommand, "--bootstrap-server", kafka, "--describe", "--topic", "adm")
	var topicLines, partitionLines int
	for _, l := range lines(out) {
		if m := describeTopicLine.FindStringSubmatch(l); m != nil {
			topicLines++
			if m[1] != "adm" || m[2] != "3" || m[3] != "1" || !slices.Contains(strings.Split(m[4], ","), "retention.ms=3600000") {
				t.Errorf("kafka-topics --describe: %q: want adm, 3 partitions, replication factor 1, retention.ms=3600000", l)
			}
		}
		if m := describePartitionLine.FindStringSubmatch(l); m != nil {
			partitionLines++
			if m[1] != "adm" || m[2] != strconv.Itoa(partitionLines-1) || m[4] != m[3] || m[5] != m[3] {
				t.Errorf("kafka-topics --describe: %q: want partition %d led by its one replica, in sync", l, partitionLines-1)
			}
		}
	}
	if topicLines != 1 || partitionLines != 3 {
		t.Fatalf("kafka-topics --describe printed %d topic and %d partition lines, want 1 and 3:\n%s", topicLines, partitionLines, out)
	}

	// 300 keyed records; a console consumer group reads part of them and commits.
	var in strings.Builder
	for i := range 300 {
		fmt.Fprintf(&in, "k%d:v%d\n", i%10, i)
	}
	javaTool(t, run, in.String(), javaConsoleProducer, "--bootstrap-server", kafka, "--topic", "adm",
		"--reader-property", "parse.key=true", "--reader-property", "key.separator=:")
	ends := map[string]int64{}
	var total int64
	for p := range int32(3) {
		end, err := c.ListOffsets(ctx, "adm", p, client.Latest())
		if err != nil {
			t.Fatal(err)
		}
		ends[strconv.Itoa(int(p))] = end
		total += end
	}
	if total != 300 {
		t.Fatalf("adm holds %d records, want 300", total)
	}
	javaTool(t, run, "", javaConsoleConsumer, "--bootstrap-server", kafka, "--topic", "adm", "--group", "part",
		"--from-beginning", "--max-messages", "120", "--timeout-ms", "30000", "--consumer-property", "max.poll.records=10")
	committed := map[string]int64{}
	offs, err := c.FetchCommitted(ctx, "part")
	if err != nil {
		t.Fatal(err)
	}
	var read int64
	for _, o := range offs {
		committed[strconv.Itoa(int(o.Partition))] = o.Offset
		read += o.Offset
	}
	if read < 120 || read >= 300 {
		t.Fatalf("the console consumer group committed offsets adding up to %d (%+v), want 120 to 299", read, offs)
	}

	// kafka-consumer-groups: the group, its offsets and lag, as Weir has them.
	out = javaTool(t, run, "", javaGroupCommand, "--bootstrap-server", kafka, "--list")
	if got := lines(out); !slices.Contains(got, "part") {
		t.Fatalf("kafka-consumer-groups --list printed %q, want part", got)
	}
	out = javaTool(t, run, "", javaGroupCommand, "--bootstrap-server", kafka, "--describe", "--group", "part")
	rows := toolTable(t, out, "GROUP")
	if len(rows) != 3 {
		t.Fatalf("kafka-consumer-groups --describe --group part: %d rows, want 3:\n%s", len(rows), out)
	}
	var lag int64
	for _, r := range rows {
		p := r["PARTITION"]
		want := map[string]string{"GROUP": "part", "TOPIC": "adm", "CURRENT-OFFSET": strconv.FormatInt(committed[p], 10),
			"LOG-END-OFFSET": strconv.FormatInt(ends[p], 10), "LAG": strconv.FormatInt(ends[p]-committed[p], 10), "CONSUMER-ID": "-"}
		for col, w := range want {
			if r[col] != w {
				t.Errorf("kafka-consumer-groups --describe, partition %s: %s %q, want %q (row %v)", p, col, r[col], w, r)
			}
		}
		n, _ := strconv.ParseInt(r["LAG"], 10, 64)
		lag += n
	}
	if lag != 300-read {
		t.Errorf("kafka-consumer-groups shows a lag of %d, want %d", lag, 300-read)
	}
	t.Logf("kafka-consumer-groups --describe --group part:\n%s", out)

	// A console consumer that stays in its group: --describe --members and --describe show it.
	ctxBg, cancel := context.WithCancel(ctx)
	defer cancel()
	member := exec.CommandContext(ctxBg, run, javaConsoleConsumer, "--bootstrap-server", kafka, "--topic", "adm",
		"--group", "live", "--from-beginning", "--consumer-property", "client.id=java-member")
	memberLog, err := os.Create(filepath.Join(dir, "member.log")) // read only by a person, after a failure
	if err != nil {
		t.Fatal(err)
	}
	defer memberLog.Close()
	member.Stdout, member.Stderr = io.Discard, memberLog
	if err := member.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = member.Wait() }()
	var members []map[string]string
	waitFor(t, "the console consumer in group live", 60*time.Second, func() (bool, string) {
		out = javaTool(t, run, "", javaGroupCommand, "--bootstrap-server", kafka, "--describe", "--group", "live", "--members")
		if !strings.Contains(out, "CONSUMER-ID") {
			return false, out
		}
		members = toolTable(t, out, "GROUP")
		// While the group rebalances its member has no partitions yet.
		return len(members) == 1 && members[0]["#PARTITIONS"] != "0", out + "(the consumer's log: " + memberLog.Name() + ")"
	})
	m := members[0]
	if m["CLIENT-ID"] != "java-member" || m["HOST"] != "/127.0.0.1" || m["#PARTITIONS"] != "3" || !strings.HasPrefix(m["CONSUMER-ID"], "m-") {
		t.Errorf("kafka-consumer-groups --describe --members: %v, want client id java-member, host /127.0.0.1, 3 partitions", m)
	}
	waitFor(t, "group live to read and commit all 300 records", 60*time.Second, func() (bool, string) {
		out = javaTool(t, run, "", javaGroupCommand, "--bootstrap-server", kafka, "--describe", "--group", "live")
		rows = toolTable(t, out, "GROUP")
		var lag int64
		for _, r := range rows {
			n, err := strconv.ParseInt(r["LAG"], 10, 64)
			if err != nil {
				return false, out
			}
			lag += n
		}
		return len(rows) == 3 && lag == 0, out
	})
	for _, r := range rows {
		if r["CONSUMER-ID"] != m["CONSUMER-ID"] || r["CLIENT-ID"] != "java-member" || r["HOST"] != "/127.0.0.1" ||
			r["CURRENT-OFFSET"] != strconv.FormatInt(ends[r["PARTITION"]], 10) {
			t.Errorf("kafka-consumer-groups --describe --group live: %v, want member %s at the end offset %d", r, m["CONSUMER-ID"], ends[r["PARTITION"]])
		}
	}
	t.Logf("kafka-consumer-groups --describe --group live:\n%s", out)
	out = javaTool(t, run, "", javaGroupCommand, "--bootstrap-server", kafka, "--describe", "--group", "live", "--state")
	if st := toolTable(t, out, "GROUP"); len(st) != 1 || st[0]["STATE"] != "Stable" || st[0]["ASSIGNMENT-STRATEGY"] != "range" || st[0]["#MEMBERS"] != "1" {
		t.Errorf("kafka-consumer-groups --describe --state:\n%s\nwant Stable, range, 1 member", out)
	}

	// --reset-offsets moves the empty group's offsets (commits from outside the group).
	javaTool(t, run, "", javaGroupCommand, "--bootstrap-server", kafka, "--reset-offsets", "--group", "part",
		"--topic", "adm", "--to-earliest", "--execute")
	offs, err = c.FetchCommitted(ctx, "part")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range offs {
		if o.Offset != 0 {
			t.Errorf("after --reset-offsets --to-earliest, part's offset of adm/%d is %d, want 0", o.Partition, o.Offset)
		}
	}

	// --delete deletes the empty group: it is listed no more and its offsets are gone.
	out = javaTool(t, run, "", javaGroupCommand, "--bootstrap-server", kafka, "--delete", "--group", "part")
	if !strings.Contains(out, "Deletion of requested consumer groups ('part') was successful.") {
		t.Errorf("kafka-consumer-groups --delete --group part printed %q", out)
	}
	out = javaTool(t, run, "", javaGroupCommand, "--bootstrap-server", kafka, "--list")
	if got := lines(out); slices.Contains(got, "part") || !slices.Contains(got, "live") {
		t.Errorf("kafka-consumer-groups --list after deleting part printed %q, want live and not part", got)
	}
	if offs, err = c.FetchCommitted(ctx, "part"); err != nil || len(offs) != 0 {
		t.Errorf("part's offsets after its deletion: %+v, %v", offs, err)
	}

	// kafka-get-offsets: latest, earliest-local (-4) and max-timestamp (-3), as Weir has them.
	maxTS := map[string]string{} // partition -> "offset" of its first record with its largest timestamp
	best := map[int32]client.Message{}
	for _, m := range readTopic(t, c, "adm", 3) {
		if b, ok := best[m.Partition]; !ok || m.Timestamp.After(b.Timestamp) || m.Timestamp.Equal(b.Timestamp) && m.Offset < b.Offset {
			best[m.Partition] = m
		}
	}
	for p, m := range best {
		maxTS[strconv.Itoa(int(p))] = strconv.FormatInt(m.Offset, 10)
	}
	for _, c := range []struct {
		time string
		want map[string]string
	}{
		{"latest", map[string]string{"0": strconv.FormatInt(ends["0"], 10), "1": strconv.FormatInt(ends["1"], 10), "2": strconv.FormatInt(ends["2"], 10)}},
		{"-4", map[string]string{"0": "0", "1": "0", "2": "0"}},
		{"max-timestamp", maxTS},
	} {
		out = javaTool(t, run, "", javaGetOffsets, "--bootstrap-server", kafka, "--topic", "adm", "--time", c.time)
		got := map[string]string{}
		for _, l := range lines(out) {
			f := strings.Split(l, ":")
			if len(f) == 3 && f[0] == "adm" {
				got[f[1]] = f[2]
			}
		}
		if len(got) != 3 || len(c.want) != 3 {
			t.Errorf("kafka-get-offsets --time %s printed %q, want 3 partitions (%v)", c.time, out, c.want)
			continue
		}
		for p, w := range c.want {
			if got[p] != w {
				t.Errorf("kafka-get-offsets --time %s: adm:%s:%s, want %s", c.time, p, got[p], w)
			}
		}
	}

	// kafka-configs: the topic's own configs, then all of them.
	out = javaTool(t, run, "", javaConfigCommand, "--bootstrap-server", kafka, "--describe", "--entity-type", "topics", "--entity-name", "adm")
	if !strings.Contains(out, "retention.ms=3600000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=3600000}") {
		t.Errorf("kafka-configs --describe of adm:\n%s\nwant retention.ms=3600000, the topic's own", out)
	}
	out = javaTool(t, run, "", javaConfigCommand, "--bootstrap-server", kafka, "--describe", "--entity-type", "topics", "--entity-name", "adm", "--all")
	for _, want := range []string{"cleanup.policy=delete ", "segment.bytes=134217728 ", "retention.bytes=-1 ", "min.insync.replicas=1 "} {
		if !strings.Contains(out, want) {
			t.Errorf("kafka-configs --describe --all of adm:\n%s\nwant %q", out, want)
		}
	}
}
