package netcat

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/connectors"
	"github.com/weirhq/weir/connectors/source/sourcetest"
)

// Records are TCP lines with acknowledgements: the sender has at most 50 lines without an OK at
// a time, and sends again, on a new connection, every line it saw no OK for, so nothing is lost
// across crashes (and a crash repeats at most those 50). Bad input is an overlong line,
// cut and marked with a header.
var harness = sourcetest.Harness{
	Name:     "netcat",
	Lossless: true,
	Batch:    50,
	Setup: func(t testing.TB) sourcetest.Vars {
		return sourcetest.Vars{"addr": sourcetest.FreeAddr(t, "tcp")}
	},
	New: func(v sourcetest.Vars, _ *slog.Logger) (connectors.Source, error) {
		return New(Config{TCP: v["addr"], Ack: true, Batch: 50, MaxLine: 100})
	},
	Send: func(ctx context.Context, v sourcetest.Vars, from, to int) error {
		next := from // first line with no OK yet
		return sourcetest.Retry(ctx, func() error {
			c, err := net.Dial("tcp", v["addr"])
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			w, br := bufio.NewWriter(c), bufio.NewReader(c)
			for next < to {
				end := min(next+50, to)
				for i := next; i < end; i++ {
					fmt.Fprintf(w, "%s a line\n", sourcetest.Value(i))
				}
				if err := w.Flush(); err != nil {
					return err
				}
				for next < end {
					l, err := br.ReadString('\n')
					if err != nil {
						return err
					}
					if l != "OK\n" {
						return fmt.Errorf("answer %q", l)
					}
					next++
				}
			}
			return nil
		})
	},
	Bad: func(t testing.TB, v sourcetest.Vars, r sourcetest.Reports) {
		c, err := net.Dial("tcp", v["addr"])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "%s\n", strings.Repeat("x", 300))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if l, err := bufio.NewReader(c).ReadString('\n'); l != "OK\n" {
			t.Fatalf("answer %q, %v", l, err)
		}
		for _, m := range r.Records() {
			if m.Headers["netcat.truncated"] == "300" {
				return
			}
		}
		t.Fatal("no record marked netcat.truncated=300")
	},
}

func TestMain(m *testing.M) { sourcetest.Main(m, harness) }

func TestConformance(t *testing.T) { sourcetest.Run(t, harness) }
