package main

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/weirhq/weir/internal/hdfstest"
)

// TestEndToEnd: lines on standard input end up in finished HDFS files, each once, and a second
// run with the same data and paths adds its own lines and writes nothing twice.
func TestEndToEnd(t *testing.T) {
	c := hdfstest.Start(t, 1)
	data := t.TempDir()
	args := []string{"-data", data, "-namenode", c.Addr, "-idle", "1s", "-roll-count", "300"}
	input := func(from, to int) *strings.Reader {
		var b strings.Builder
		for i := from; i < to; i++ {
			fmt.Fprintf(&b, "line %d\n", i)
		}
		return strings.NewReader(b.String())
	}
	var out bytes.Buffer
	if err := run(context.Background(), args, input(0, 1000), &out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "had not reached") || !regexp.MustCompile(`hdfs: \d+ files under /weir/`).MatchString(out.String()) {
		t.Fatalf("first run:\n%s", out.String())
	}
	out.Reset()
	if err := run(context.Background(), args, input(1000, 1500), &out); err != nil {
		t.Fatal(err)
	}
	cl := c.Client(t)
	seen := map[string]int{}
	for _, l := range regexp.MustCompile(`(?m)^  (\S+) \(`).FindAllStringSubmatch(out.String(), -1) {
		b, err := cl.ReadFile(l[1])
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			seen[line]++
		}
	}
	for i := range 1500 {
		if n := seen[fmt.Sprintf("line %d", i)]; n != 1 {
			t.Fatalf("line %d is in the files %d times; second run's output:\n%s", i, n, out.String())
		}
	}
	if len(seen) != 1500 {
		t.Fatalf("%d distinct lines in the files, want 1500", len(seen))
	}
}

func TestBadFlags(t *testing.T) {
	for args, want := range map[string]string{
		"":                             "-namenode: no NameNode address given",
		"-namenode x:1 -path relative": `path "relative" is not absolute`,
		"-namenode x:1 extra":          `unexpected argument "extra"`,
	} {
		err := run(context.Background(), strings.Fields(args), strings.NewReader(""), &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", args, err, want)
		}
	}
}
