package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The lines are 100 to 200 bytes, end in one newline, and carry their sequence number.
func TestW5Line(t *testing.T) {
	var buf []byte
	lengths := map[int]bool{}
	for seq := range int64(5000) {
		buf = w5Line(buf, seq)
		l := string(buf)
		if len(l) < 100 || len(l) > 200 || strings.Count(l, "\n") != 1 || !strings.HasSuffix(l, "\n") {
			t.Fatalf("line %d: %d bytes %q", seq, len(l), l)
		}
		if !strings.Contains(l, "seq="+leftPad(seq)) {
			t.Fatalf("line %d lacks its number: %q", seq, l)
		}
		lengths[len(l)] = true
	}
	if !lengths[100] || !lengths[200] {
		t.Fatalf("lengths do not span 100 to 200: %v", lengths)
	}
}

func leftPad(seq int64) string {
	s := strings.Repeat("0", 10) + itoa(seq)
	return s[len(s)-10:]
}

func itoa(n int64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// The counter counts a file renamed as it grows once, and skips the file sink's metadata.
func TestLineCounter(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(text); err != nil {
			t.Fatal(err)
		}
	}
	c := newLineCounter(dir)
	write(".t-0-00.inprogress", "a\nb\n")
	write(".manifest", "{\"version\":2}\n")
	if err := os.Mkdir(filepath.Join(dir, ".state"), 0o755); err != nil {
		t.Fatal(err)
	}
	if n := c.update(); n != 2 {
		t.Fatalf("got %d lines, want 2", n)
	}
	write(".t-0-00.inprogress", "c\npartial")
	if err := os.Rename(filepath.Join(dir, ".t-0-00.inprogress"), filepath.Join(dir, "t-0-00-02.txt")); err != nil {
		t.Fatal(err)
	}
	write("other", "d\n")
	if n := c.update(); n != 4 {
		t.Fatalf("got %d lines after the rename, want 4", n)
	}
}

// checkW5 tells lines lost, doubled and garbled apart.
func TestCheckW5(t *testing.T) {
	cases := []struct {
		name   string
		files  map[string][]int64 // file -> sequence numbers; -1 is a garbled line
		total  int64
		expect w5Check
	}{
		{"all once", map[string][]int64{"a": {0, 2}, "b": {1, 3}}, 4, w5Check{}},
		{"one lost", map[string][]int64{"a": {0, 1}}, 3, w5Check{lost: 1}},
		{"doubled across files", map[string][]int64{"a": {0, 1}, "b": {1, 1}}, 2, w5Check{doubled: 2}},
		{"garbled", map[string][]int64{"a": {0, -1}}, 1, w5Check{garbled: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, seqs := range tc.files {
				var b []byte
				for _, s := range seqs {
					if s < 0 {
						b = append(b, "no number here\n"...)
						continue
					}
					b = append(b, w5Line(nil, s)...)
				}
				if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := checkW5(dir, tc.total)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.expect {
				t.Fatalf("got %+v, want %+v", got, tc.expect)
			}
		})
	}
}

// The section replaces the old one and leaves the rest of the file alone.
func TestReplaceSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.md")
	if err := os.WriteFile(path, []byte("# Benchmarks\n\nother text\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"one\n", "two\n"} {
		if err := replaceSection(path, mdBegin+"\n"+body+mdEnd+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(path)
	want := "# Benchmarks\n\nother text\n\n" + mdBegin + "\ntwo\n" + mdEnd + "\n"
	if string(b) != want {
		t.Fatalf("got\n%s\nwant\n%s", b, want)
	}
}

// The consumer holds a sender that is ahead of its rate, and not one that is behind it.
func TestConsumerRate(t *testing.T) {
	c := &consumer{rate: 1000}
	ctx := context.Background()
	start := time.Now()
	for range 5 {
		c.take(ctx, 100) // 500 events at 1,000/s: the last batch may start at 400 ms
	}
	if d := time.Since(start); d < 350*time.Millisecond || d > 2*time.Second {
		t.Fatalf("5 batches of 100 at 1,000/s took %v, want about 400 ms", d)
	}
	time.Sleep(300 * time.Millisecond)
	start = time.Now()
	c.take(ctx, 1)
	if d := time.Since(start); d > 150*time.Millisecond {
		t.Fatalf("a sender behind the rate waited %v", d)
	}
	if n := c.taken.Load(); n != 501 {
		t.Fatalf("taken %d, want 501", n)
	}
}
