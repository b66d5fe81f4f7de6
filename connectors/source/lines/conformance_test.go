package lines

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/source/sourcetest"
)

// The reader is a named pipe that the program (here the harness) opens and closes, as a program
// owns its standard input; records are lines written into it. Lines in the pipe or the source
// when its process dies are lost (the package documents it), so the harness is not Lossless;
// an actor restart keeps the batch in flight. Bad input is an overlong line, cut and marked.
var harness = sourcetest.Harness{
	Name:  "lines",
	Batch: 50,
	Setup: func(t testing.TB) sourcetest.Vars {
		path := filepath.Join(t.TempDir(), "in.fifo")
		if err := syscall.Mkfifo(path, 0o600); err != nil {
			t.Fatal(err)
		}
		return sourcetest.Vars{"fifo": path}
	},
	New: func(v sourcetest.Vars, _ *slog.Logger) (connectors.Source, error) {
		f, err := os.OpenFile(v["fifo"], os.O_RDWR, 0) // read and write: it never sees an end
		if err != nil {
			return nil, err
		}
		s, err := New(Config{Reader: f, Batch: 50, MaxLine: 100})
		if err != nil {
			f.Close()
			return nil, err
		}
		return &ownedReader{Source: s, f: f}, nil
	},
	Release: func(s connectors.Source) { s.(*ownedReader).f.Close() },
	Send: func(ctx context.Context, v sourcetest.Vars, from, to int) error {
		f, err := openWriter(ctx, v["fifo"])
		if err != nil {
			return err
		}
		defer f.Close()
		var b strings.Builder
		for i := from; i < to; i++ {
			b.WriteString(sourcetest.Value(i) + " a line\n")
		}
		_, err = f.WriteString(b.String())
		return err
	},
	Bad: func(t testing.TB, v sourcetest.Vars, r sourcetest.Reports) {
		f, err := openWriter(context.Background(), v["fifo"])
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(strings.Repeat("x", 300) + "\n")
		f.Close()
		deadline := time.Now().Add(10 * time.Second)
		for ; ; time.Sleep(20 * time.Millisecond) {
			for _, m := range r.Records() {
				if m.Headers[HeaderTruncated] == "300" {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no record marked %s=300", HeaderTruncated)
			}
		}
	},
}

// ownedReader is a lines source with the pipe it reads, which Release closes.
type ownedReader struct {
	*Source
	f *os.File
}

// openWriter opens the pipe for writing once a reader has it open (a child process may be
// starting), until ctx is done.
func openWriter(ctx context.Context, path string) (*os.File, error) {
	var f *os.File
	err := sourcetest.Retry(ctx, func() error {
		var err error
		f, err = os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		return err
	})
	if err != nil {
		return nil, err
	}
	// Writes block when the pipe is full, as a program's output does.
	if err := syscall.SetNonblock(int(f.Fd()), false); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func TestMain(m *testing.M) { sourcetest.Main(m, harness) }

func TestConformance(t *testing.T) { sourcetest.Run(t, harness) }
