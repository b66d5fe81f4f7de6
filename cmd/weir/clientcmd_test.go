package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/actors"
	"github.com/weirhq/weir/storage"
)

// startClientNode starts an embedded node for the client commands and returns its address.
func startClientNode(t *testing.T) string {
	t.Helper()
	cfg := actors.NodeConfig{DataDir: t.TempDir(), ClientAddr: "127.0.0.1:0"}
	cfg.Log = storage.DefaultConfig()
	cfg.Log.Sync = storage.SyncNever
	n, err := actors.StartNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n.ClientAddr()
}

// weirIn runs the CLI with stdin and an environment holding only vars.
func weirIn(stdin string, vars map[string]string, args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = runEnv(args, cli{stdin: strings.NewReader(stdin), stdout: &o, stderr: &e,
		getenv: func(k string) string { return vars[k] }})
	return code, o.String(), e.String()
}

// weirAt runs the CLI against the node at addr.
func weirAt(t *testing.T, addr, stdin string, args ...string) (stdout, stderr string) {
	t.Helper()
	code, out, errOut := weirIn(stdin, nil, append([]string{"--server", addr}, args...)...)
	if code != 0 {
		t.Fatalf("weir %v exited %d:\n%s%s", args, code, out, errOut)
	}
	return out, errOut
}

func lines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// TestTopicRetentionFlags: a topic's own retention goes through the client and __meta (and
// survives in describe); bad values are refused naming the flag.
func TestTopicRetentionFlags(t *testing.T) {
	addr := startClientNode(t)
	out, _ := weirAt(t, addr, "", "topic", "create", "short", "--retention-age", "90m", "--retention-bytes", "1048576")
	if !strings.Contains(out, "retention age 1h30m0s, retention size 1048576 bytes") {
		t.Fatalf("create: %q", out)
	}
	weirAt(t, addr, "", "topic", "create", "forever", "--retention-age", "unlimited", "--retention-bytes", "unlimited")
	for name, want := range map[string]string{
		"short":   "retention age 1h30m0s, retention size 1048576 bytes",
		"forever": "retention age unlimited, retention size unlimited",
	} {
		out, _ := weirAt(t, addr, "", "topic", "describe", name)
		if !strings.Contains(lines(out)[0], want) {
			t.Fatalf("describe %s: %q, want %q", name, lines(out)[0], want)
		}
	}
	for _, c := range []struct{ flag, value, want string }{
		{"--retention-age", "soon", `--retention-age "soon": want a duration`},
		{"--retention-age", "0s", `--retention-age "0s": want a duration`},
		{"--retention-bytes", "-5", `--retention-bytes "-5": want a positive number`},
	} {
		var errOut bytes.Buffer
		code := runEnv([]string{"--server", addr, "topic", "create", "bad", c.flag, c.value},
			cli{stdin: strings.NewReader(""), stdout: io.Discard, stderr: &errOut, getenv: func(string) string { return "" }})
		if code != 2 || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("topic create %s %s: exit %d, %q", c.flag, c.value, code, errOut.String())
		}
	}
}

func TestTopicCommands(t *testing.T) {
	addr := startClientNode(t)
	out, _ := weirAt(t, addr, "", "topic", "create", "orders", "--partitions", "3")
	if !strings.Contains(out, "created topic orders: 3 partitions") {
		t.Fatalf("create: %q", out)
	}
	weirAt(t, addr, "", "topic", "create", "--partitions", "1", "audit", "--replicas", "1")
	out, _ = weirAt(t, addr, "", "topic", "list")
	if want := []string{"TOPIC", "audit", "orders"}; len(lines(out)) != 3 || !strings.HasPrefix(lines(out)[0], want[0]) ||
		!strings.HasPrefix(lines(out)[1], "audit ") || !strings.HasPrefix(lines(out)[2], "orders ") || !strings.Contains(lines(out)[2], " 3 ") {
		t.Fatalf("list:\n%s", out)
	}
	weirAt(t, addr, "a,b\nc,d\n", "produce", "orders", "--key-separator", ",")
	out, _ = weirAt(t, addr, "", "topic", "describe", "orders")
	ls := lines(out)
	if len(ls) != 5 || ls[0] != "topic orders: 3 partitions, replication factor 1, retention age node default, retention size node default" {
		t.Fatalf("describe:\n%s", out)
	}
	if f := strings.Fields(ls[1]); strings.Join(f, " ") != "PARTITION LEADER REPLICAS GROUP HIGH-WATERMARK START END" {
		t.Fatalf("describe header %q", ls[1])
	}
	total := 0
	for i, l := range ls[2:] {
		f := strings.Fields(l)
		var hw, start, end int
		if len(f) != 7 || f[0] != fmt.Sprint(i) || f[1] != "node-1" || f[2] != "node-1" || f[3] != "node-1" {
			t.Fatalf("describe row %q", l)
		}
		fmt.Sscan(f[4], &hw)
		fmt.Sscan(f[5], &start)
		fmt.Sscan(f[6], &end)
		if start != 0 || end < hw {
			t.Fatalf("describe row %q", l)
		}
		total += hw
	}
	if total != 2 {
		t.Fatalf("describe shows %d records, want 2:\n%s", total, out)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"topic", "create", "orders"}, "topic exists"},
		{[]string{"topic", "describe", "nope"}, "unknown topic"},
		{[]string{"topic", "delete", "nope"}, "unknown topic"},
		{[]string{"consume", "nope", "--idle-exit", "1s"}, "unknown topic"},
	} {
		code, _, errOut := weirIn("", nil, append([]string{"--server", addr}, tc.args...)...)
		if code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("weir %v: exit %d, %q; want exit 1 mentioning %q", tc.args, code, errOut, tc.want)
		}
	}
	out, _ = weirAt(t, addr, "", "topic", "delete", "audit")
	if !strings.Contains(out, "deleted topic audit") {
		t.Fatalf("delete: %q", out)
	}
	if out, _ = weirAt(t, addr, "", "topic", "list"); len(lines(out)) != 2 {
		t.Fatalf("list after delete:\n%s", out)
	}
}

func TestProduceConsumeCommands(t *testing.T) {
	addr := startClientNode(t)
	weirAt(t, addr, "", "topic", "create", "events", "--partitions", "3")
	var in strings.Builder
	var values []string
	for i := range 100 {
		v := fmt.Sprintf("value-%03d", i)
		fmt.Fprintf(&in, "user-%d:%s\n", i%7, v)
		values = append(values, v)
	}
	for _, acks := range []string{"none", "leader", "all"} {
		t.Run("acks "+acks, func(t *testing.T) {
			topic := "plain-" + acks
			weirAt(t, addr, "", "topic", "create", topic)
			_, errOut := weirAt(t, addr, "one\ntwo\n\nthree", "produce", topic, "--acks", acks)
			if !strings.Contains(errOut, "produced 4 of 4 records (11 bytes) to "+topic) || !strings.Contains(errOut, "0 errors") {
				t.Fatalf("summary: %q", errOut)
			}
			out, _ := weirAt(t, addr, "", "consume", topic, "--max", "4")
			if out != "one\ntwo\n\nthree\n" {
				t.Fatalf("consumed %q", out)
			}
		})
	}

	_, errOut := weirAt(t, addr, in.String(), "produce", "events", "--key-separator", ":")
	if !strings.Contains(errOut, "produced 100 of 100 records") {
		t.Fatalf("summary: %q", errOut)
	}
	// All partitions, up to --max.
	out, _ := weirAt(t, addr, "", "consume", "events", "--max", "100")
	got := lines(out)
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(values, ",") {
		t.Fatalf("consumed %d values:\n%s", len(got), out)
	}
	// One partition holds exactly the keys that hash to it, in order.
	for p := range 3 {
		var want []string
		for i := range 100 {
			h := fnv.New32a()
			fmt.Fprintf(h, "user-%d", i%7)
			if int(h.Sum32()%3) == p {
				want = append(want, values[i])
			}
		}
		out, _ := weirAt(t, addr, "", "consume", "events", "--partition", fmt.Sprint(p), "--from", "0", "--idle-exit", "200ms")
		if strings.Join(lines(out), ",") != strings.Join(want, ",") {
			t.Fatalf("partition %d: %q, want %q", p, lines(out), want)
		}
		if len(want) > 1 {
			out, _ := weirAt(t, addr, "", "consume", "events", "--partition", fmt.Sprint(p), "--from", "1", "--max", "1")
			if out != want[1]+"\n" {
				t.Fatalf("partition %d from offset 1: %q, want %q", p, out, want[1])
			}
		}
	}
	// From the end: nothing until the idle exit.
	start := time.Now()
	out, _ = weirAt(t, addr, "", "consume", "events", "--from", "latest", "--idle-exit", "300ms")
	if out != "" || time.Since(start) < 300*time.Millisecond || time.Since(start) > 5*time.Second {
		t.Fatalf("from latest: %q after %v", out, time.Since(start))
	}

	// A group reads 40, commits exactly what it printed, and a second run reads the other 60.
	out, _ = weirAt(t, addr, "", "consume", "events", "--group", "g", "--from", "earliest", "--max", "40")
	first := lines(out)
	out, _ = weirAt(t, addr, "", "consume", "events", "--group", "g", "--idle-exit", "500ms")
	second := lines(out)
	if len(first) != 40 || len(second) != 60 {
		t.Fatalf("group runs read %d and %d values, want 40 and 60", len(first), len(second))
	}
	all := append(first, second...)
	sort.Strings(all)
	if strings.Join(all, ",") != strings.Join(values, ",") {
		t.Fatalf("the two group runs read %v", all)
	}
	// A new group starting at the end reads nothing of the past.
	if out, _ = weirAt(t, addr, "", "consume", "events", "--group", "late", "--from", "latest", "--idle-exit", "300ms"); out != "" {
		t.Fatalf("group from latest: %q", out)
	}
}

func TestServerFlagAndEnv(t *testing.T) {
	addr := startClientNode(t)
	for _, tc := range []struct {
		name string
		vars map[string]string
		args []string
	}{
		{"flag before", nil, []string{"--server", addr, "topic", "list"}},
		{"flag= before", nil, []string{"--server=" + addr, "topic", "list"}},
		{"flag after", nil, []string{"topic", "list", "--server", addr}},
		{"env", map[string]string{"WEIR_SERVER": addr}, []string{"topic", "list"}},
		{"flag over env", map[string]string{"WEIR_SERVER": "127.0.0.1:1"}, []string{"-server", addr, "topic", "list"}},
	} {
		if code, out, errOut := weirIn("", tc.vars, tc.args...); code != 0 || !strings.HasPrefix(out, "TOPIC") {
			t.Errorf("%s: exit %d, %q %q", tc.name, code, out, errOut)
		}
	}
	code, _, errOut := weirIn("", map[string]string{"WEIR_SERVER": "127.0.0.1:1"}, "topic", "list")
	if code != 1 || !strings.Contains(errOut, "cannot reach the node at 127.0.0.1:1") {
		t.Errorf("unreachable server: exit %d, %q", code, errOut)
	}
}

func TestProduceToMissingTopic(t *testing.T) {
	addr := startClientNode(t)
	start := time.Now()
	code, _, errOut := weirIn("a\nb\n", nil, "--server", addr, "produce", "missing")
	if code != 1 || !strings.Contains(errOut, "produce missing: unknown topic") {
		t.Fatalf("produce to a missing topic: exit %d, %q", code, errOut)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("a missing topic was reported after %v", el)
	}
}

func TestClientCommandUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--server"}, "flag needs an argument: --server"},
		{[]string{"--server", "x:1"}, "no command"},
		{[]string{"topic"}, "topic needs a subcommand"},
		{[]string{"topic", "frob"}, `unknown topic subcommand "frob"`},
		{[]string{"topic", "create"}, "topic create takes one topic name"},
		{[]string{"topic", "create", "t", "--partitions", "0"}, "--partitions 0"},
		{[]string{"topic", "create", "t", "--partitions", "many"}, "-partitions"},
		{[]string{"topic", "create", "t", "--replicas", "0"}, "--replicas 0"},
		{[]string{"topic", "list", "extra"}, "topic list takes no arguments"},
		{[]string{"produce"}, "produce takes one topic name"},
		{[]string{"produce", "t", "--acks", "maybe"}, "--acks"},
		{[]string{"produce", "t", "--linger", "-1s"}, "--linger"},
		{[]string{"consume"}, "consume takes one topic name"},
		{[]string{"consume", "t", "--from", "yesterday"}, `--from "yesterday"`},
		{[]string{"consume", "t", "--from", "-5"}, `--from "-5"`},
		{[]string{"consume", "t", "--group", "g", "--from", "7"}, "--from 7 with --group"},
		{[]string{"consume", "t", "--group", "g", "--partition", "1"}, "--partition with --group"},
		{[]string{"consume", "t", "--partition", "-2"}, "--partition -2"},
		{[]string{"consume", "t", "--max", "-1"}, "--max -1"},
		{[]string{"consume", "t", "--idle-exit", "-1s"}, "--idle-exit"},
		{[]string{"consume", "t", "--idle-exit", "soon"}, "-idle-exit"},
		{[]string{"consume", "t", "--bogus"}, "-bogus"},
	}
	for _, c := range cases {
		code, _, errOut := weirIn("", nil, c.args...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("weir %v: exit %d, %q; want exit 2 mentioning %q", c.args, code, errOut, c.want)
		}
	}
}

// TestProduceInterrupted: when its context ends (SIGINT or SIGTERM in runProduce), produce
// stops reading standard input, sends the records it buffered (a long linger holds them until
// then) and prints its summary.
func TestProduceInterrupted(t *testing.T) {
	addr := startClientNode(t)
	weirAt(t, addr, "", "topic", "create", "intr")
	pr, pw := io.Pipe()
	defer pw.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errOut bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- produce(ctx, []string{"--server", addr, "intr", "--linger", "1h"},
			cli{stdin: pr, stdout: io.Discard, stderr: &errOut, getenv: func(string) string { return "" }})
	}()
	// produce takes the lines one at a time: once a write returns, the lines before it were taken.
	for _, l := range []string{"one\n", "two\n", "three\n", "four\n"} {
		if _, err := io.WriteString(pw, l); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("interrupted produce: %v\n%s", err, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("produce did not return after its context ended")
	}
	if !strings.Contains(errOut.String(), "interrupted") ||
		!(strings.Contains(errOut.String(), "produced 3 of 3 records") || strings.Contains(errOut.String(), "produced 4 of 4 records")) {
		t.Fatalf("summary: %q", errOut.String())
	}
	out, _ := weirAt(t, addr, "", "consume", "intr", "--idle-exit", "300ms")
	if got := strings.Join(lines(out), ","); got != "one,two,three" && got != "one,two,three,four" {
		t.Fatalf("the topic holds %q, want one,two,three (and perhaps four)", got)
	}
}

// failingWriter fails every write, as standard output on a full disk does.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("no space left on device") }

// TestConsumeWriteError: consume fails (exit 1) when it cannot write to standard output, and a
// group does not commit what was not written.
func TestConsumeWriteError(t *testing.T) {
	addr := startClientNode(t)
	weirAt(t, addr, "", "topic", "create", "w")
	weirAt(t, addr, "a\nb\nc\n", "produce", "w")
	for _, args := range [][]string{
		{"consume", "w", "--idle-exit", "2s"},
		{"consume", "w", "--group", "g", "--idle-exit", "2s"},
	} {
		var errOut bytes.Buffer
		code := runEnv(append([]string{"--server", addr}, args...),
			cli{stdin: strings.NewReader(""), stdout: failingWriter{}, stderr: &errOut, getenv: func(string) string { return "" }})
		if code != 1 || !strings.Contains(errOut.String(), "weir: writing to standard output: no space left on device") {
			t.Errorf("weir %v to a failing standard output: exit %d, %q", args, code, errOut.String())
		}
	}
	// The group committed nothing it could not write: it reads every record again.
	out, _ := weirAt(t, addr, "", "consume", "w", "--group", "g", "--idle-exit", "2s")
	if got := strings.Join(lines(out), ","); got != "a,b,c" {
		t.Fatalf("after a failed write the group read %q, want a,b,c again", got)
	}
}

// TestNodeDrainCommand: `weir node drain` names what is wrong with a node that is not in a
// cluster and with stray arguments (draining itself is covered by TestClusterMovesReplicas).
func TestNodeDrainCommand(t *testing.T) {
	addr := startClientNode(t)
	code, _, errOut := weirIn("", nil, "--server", addr, "node", "drain")
	if code != 1 || !strings.Contains(errOut, "not in a cluster") {
		t.Fatalf("drain of a node alone: exit %d, %q", code, errOut)
	}
	code, _, errOut = weirIn("", nil, "--server", addr, "node", "drain", "n1")
	if code != 2 || !strings.Contains(errOut, "unexpected argument") {
		t.Fatalf("drain with an argument: exit %d, %q", code, errOut)
	}
	code, out, _ := weirIn("", nil, "node", "drain", "-h")
	if code != 0 || !strings.Contains(out, "-undo") {
		t.Fatalf("drain -h: exit %d, %q", code, out)
	}
}
