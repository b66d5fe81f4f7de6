package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// kcat runs kcat (librdkafka's command-line client) with stdin and returns its output.
func kcat(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatal("the Kafka tests need kcat (Debian package kcat; make test installs it)")
	}
	cmd := exec.Command(path, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kcat %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestKcat runs `weir node --kafka` and drives it with kcat: kcat produces 1,000 keyed lines,
// `weir consume` reads them, kcat consumes from the beginning and from an offset, and two kcat
// group consumers (-G) read every line between them and commit offsets that Weir's group
// offsets show.
func TestKcat(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a weir process")
	}
	bin := buildWeir(t)
	dir := t.TempDir()
	addr, kafka := freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, "node", "--data", filepath.Join(dir, "n"), "--listen", addr, "--kafka", kafka, "--http", "", "--log-level", "warn")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitFor(t, "the node's client port", 20*time.Second, func() (bool, string) {
		code, _, errOut := weirIn("", nil, "--server", addr, "topic", "list")
		return code == 0, errOut
	})
	weirAt(t, addr, "", "topic", "create", "lines", "--partitions", "3")

	var in strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&in, "k%d:line-%d\n", i%10, i)
	}
	kcat(t, in.String(), "-b", kafka, "-P", "-t", "lines", "-K", ":")
	out, _ := weirAt(t, addr, "", "consume", "lines", "--from", "earliest", "--idle-exit", "1s")
	if got := lines(out); len(got) != 1000 {
		t.Fatalf("weir consume read %d lines of what kcat produced, want 1000", len(got))
	}

	all := kcat(t, "", "-b", kafka, "-C", "-t", "lines", "-o", "beginning", "-e", "-q", "-f", "%p %o %k %s\n")
	seen := map[string]bool{}
	for _, l := range lines(all) {
		f := strings.Fields(l)
		if len(f) != 4 {
			t.Fatalf("kcat read %q", l)
		}
		n, err := strconv.Atoi(strings.TrimPrefix(f[3], "line-"))
		if err != nil || f[2] != "k"+strconv.Itoa(n%10) {
			t.Fatalf("kcat read %q: want key k%d", l, n%10)
		}
		seen[f[3]] = true
	}
	if len(seen) != 1000 {
		t.Fatalf("kcat read %d distinct lines from the beginning, want 1000", len(seen))
	}
	from := kcat(t, "", "-b", kafka, "-C", "-t", "lines", "-p", "0", "-o", "5", "-e", "-q", "-f", "%o\n")
	if offs := lines(from); len(offs) == 0 || offs[0] != "5" {
		t.Fatalf("kcat from offset 5 of partition 0 read offsets %v", offs)
	}

	// Two kcat group members, each stopping at the end of its partitions (-e).
	type res struct {
		out string
		err error
	}
	ch := make(chan res, 2)
	for range 2 {
		go func() {
			c := exec.Command("kcat", "-b", kafka, "-G", "kcat-group", "lines", "-e", "-q", "-f", "%s\n",
				"-X", "auto.offset.reset=earliest", "-X", "partition.assignment.strategy=range")
			o, err := c.CombinedOutput()
			ch <- res{string(o), err}
		}()
	}
	group := map[string]int{}
	for range 2 {
		r := <-ch
		if r.err != nil {
			t.Fatalf("kcat -G: %v\n%s", r.err, r.out)
		}
		for _, l := range lines(r.out) {
			group[l]++
		}
	}
	if len(group) != 1000 {
		t.Fatalf("the kcat group read %d distinct lines, want 1000", len(group))
	}
	// The group's commits are Weir's: a Weir member of the group has nothing left to read.
	waitFor(t, "the kcat group's offsets committed", 20*time.Second, func() (bool, string) {
		out, _ := weirAt(t, addr, "", "consume", "lines", "--group", "kcat-group", "--idle-exit", "1s")
		got := lines(out)
		return len(got) == 0, strconv.Itoa(len(got)) + " lines not committed"
	})
}
