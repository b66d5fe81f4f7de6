package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// finished is a finished file read back.
type finished struct {
	partition   int
	first, last int64
	lines       []string
}

// readFiles reads the finished files of dir (topic "lines"), in partition and offset order,
// and fails on a name that does not parse, a file whose line count does not match the offsets
// in its name, or, once the program has stopped, a file left in progress.
func readFiles(t *testing.T, dir string, stopped bool) []finished {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []finished
	for _, e := range ents {
		name := e.Name()
		if stopped && strings.HasSuffix(name, ".inprogress") {
			t.Fatalf("%s left in progress", name)
		}
		if strings.HasPrefix(name, ".") {
			continue
		}
		f := strings.Split(strings.TrimSuffix(name, ".txt"), "-") // lines-P-FIRST-LAST.txt
		if len(f) != 4 || f[0] != "lines" || !strings.HasSuffix(name, ".txt") {
			t.Fatalf("file name %s", name)
		}
		p, err1 := strconv.Atoi(f[1])
		first, err2 := strconv.ParseInt(f[2], 10, 64)
		last, err3 := strconv.ParseInt(f[3], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			t.Fatalf("file name %s", name)
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		ls := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		if int64(len(ls)) != last-first+1 {
			t.Fatalf("%s holds %d lines, its name says %d", name, len(ls), last-first+1)
		}
		out = append(out, finished{partition: p, first: first, last: last, lines: ls})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].partition != out[j].partition {
			return out[i].partition < out[j].partition
		}
		return out[i].first < out[j].first
	})
	return out
}

func input(from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	return b.String()
}

// TestTwoRuns runs the program twice on the same directories with -roll-count 100: the second
// run goes on from the first, and in the end every line is in the files exactly once, each
// partition's files cover its offsets from 0 without a gap or an overlap, no file holds more than
// 100 lines, and only the file each run finished by stopping may hold fewer.
func TestTwoRuns(t *testing.T) {
	dir := t.TempDir()
	data, out := filepath.Join(dir, "data"), filepath.Join(dir, "out")
	args := []string{"-data", data, "-out", out, "-partitions", "3", "-roll-count", "100", "-roll-every", "0", "-idle", "0"}
	var stdout bytes.Buffer
	if err := run(context.Background(), args, strings.NewReader(input(0, 1000)), &stdout); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "files in "+out) || strings.Contains(stdout.String(), "had not reached") {
		t.Fatalf("first run:\n%s", stdout.String())
	}
	first := readFiles(t, out, true)

	stdout.Reset()
	if err := run(context.Background(), args, strings.NewReader(input(1000, 1500)), &stdout); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stdout.String(), "had not reached") {
		t.Fatalf("second run:\n%s", stdout.String())
	}
	files := readFiles(t, out, true)
	if len(files) <= len(first) {
		t.Fatalf("the second run added no file: %d, then %d", len(first), len(files))
	}
	seen := map[string]int{}
	next := map[int]int64{} // per partition, the offset the next file must start at
	short := map[int]int{}  // per partition, files of fewer than 100 lines
	for _, f := range files {
		if f.first != next[f.partition] {
			t.Fatalf("partition %d: a file starts at %d, want %d", f.partition, f.first, next[f.partition])
		}
		next[f.partition] = f.last + 1
		switch n := len(f.lines); {
		case n > 100:
			t.Fatalf("partition %d: a file of %d lines", f.partition, n)
		case n < 100:
			short[f.partition]++
		}
		for _, l := range f.lines {
			seen[l]++
		}
	}
	for p, n := range short {
		if n > 2 {
			t.Fatalf("partition %d has %d files of fewer than 100 lines; want at most one a run", p, n)
		}
	}
	for i := range 1500 {
		if n := seen[fmt.Sprintf("line %d", i)]; n != 1 {
			t.Fatalf("line %d is in the files %d times", i, n)
		}
	}
	if len(seen) != 1500 {
		t.Fatalf("%d distinct lines in the files, want 1500", len(seen))
	}
}

// TestIdleRoll: while the input is still open, the lines already read reach a finished file
// once their partition has had no line for -idle.
func TestIdleRoll(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	r, w := io.Pipe()
	done := make(chan error, 1)
	var stdout bytes.Buffer
	go func() {
		done <- run(context.Background(), []string{"-data", filepath.Join(dir, "data"), "-out", out, "-partitions", "1",
			"-roll-every", "0", "-idle", "200ms"}, r, &stdout)
	}()
	if _, err := io.WriteString(w, input(0, 5)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if _, err := os.Stat(out); err == nil {
			for _, f := range readFiles(t, out, false) {
				n += len(f.lines)
			}
		}
		if n == 5 {
			break
		}
		if time.Now().After(deadline) {
			w.Close()
			t.Fatalf("%d of 5 lines in finished files while the input is open", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if files := readFiles(t, out, true); len(files) != 1 || strings.Join(files[0].lines, ",") != "line 0,line 1,line 2,line 3,line 4" {
		t.Fatalf("files: %+v", files)
	}
}

func TestBadFlags(t *testing.T) {
	dir := t.TempDir()
	for args, want := range map[string]string{
		"-roll-size 0":    "RollSize 0",
		"-roll-count -1":  "negative RollCount",
		"-partitions 0":   "-partitions 0",
		"-nosuchflag":     "not defined",
		"-roll-count 1 x": `unexpected argument "x"`,
	} {
		a := append([]string{"-data", filepath.Join(dir, "d"), "-out", filepath.Join(dir, "o")}, strings.Fields(args)...)
		err := run(context.Background(), a, strings.NewReader(""), &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error with %q", args, err, want)
		}
	}
}
