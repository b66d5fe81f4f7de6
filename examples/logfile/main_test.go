package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// output returns the lines of the finished files in dir, without their timestamps, sorted, and
// fails on a line without a valid timestamp or on a file left in progress.
func output(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".inprogress") {
			t.Fatalf("%s left in progress", e.Name())
		}
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			ts, rest, ok := strings.Cut(l, " ")
			if _, err := time.Parse(time.RFC3339Nano, ts); !ok || err != nil {
				t.Fatalf("%s: line %q has no timestamp", e.Name(), l)
			}
			got = append(got, rest)
		}
	}
	sort.Strings(got)
	return got
}

// TestEndToEnd runs the program twice on the same directories, as a user would with two
// inputs: the files hold every kept line of both, once.
func TestEndToEnd(t *testing.T) {
	dir := t.TempDir()
	data, out := filepath.Join(dir, "data"), filepath.Join(dir, "out")
	args := []string{"-data", data, "-out", out, "-roll-size", "2000", "-partitions", "3"}

	var in1 strings.Builder
	var want []string
	for i := range 500 {
		fmt.Fprintf(&in1, "event %03d\n", i)
		want = append(want, fmt.Sprintf("event %03d", i))
		if i%50 == 0 {
			in1.WriteString("\n# a comment\n   \n")
		}
	}
	var stdout bytes.Buffer
	if err := run(context.Background(), args, strings.NewReader(in1.String()), &stdout); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), out) {
		t.Fatalf("the program did not say where the output goes:\n%s", stdout.String())
	}
	got := output(t, out)
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("after the first run: %d lines, want %d", len(got), len(want))
	}
	files := strings.Count(stdout.String(), ".txt")
	if files < 3 {
		t.Fatalf("%d files for 500 lines rolled at 2000 bytes:\n%s", files, stdout.String())
	}

	// The second run continues from the committed offsets: the new lines are added, none of the
	// old ones again. (A replay that the sink must skip is tested in connectors/sink/file.)
	want = append(want, "more  text", "the end")
	sort.Strings(want)
	stdout.Reset()
	if err := run(context.Background(), args, strings.NewReader("  more  text\n\nthe end"), &stdout); err != nil {
		t.Fatal(err)
	}
	if got := output(t, out); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("after the second run: %d lines, want %d", len(got), len(want))
	}
}

func TestBadFlags(t *testing.T) {
	var stdout bytes.Buffer
	dir := t.TempDir()
	if err := run(context.Background(), []string{"-data", dir, "-out", filepath.Join(dir, "o"), "-roll-size", "0"},
		strings.NewReader(""), &stdout); err == nil {
		t.Fatal("a roll size of 0 was accepted")
	}
	if err := run(context.Background(), []string{"-nosuchflag"}, strings.NewReader(""), &stdout); err == nil {
		t.Fatal("an unknown flag was accepted")
	}
}
