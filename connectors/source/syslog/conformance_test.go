package syslog

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

// Syslog has no acknowledgements: messages sent while the source is down or restarting are
// lost (the suite then checks those sent once it is back). The UDP sender paces itself (a
// burst would overflow the socket's buffer, which the kernel drops silently); the TCP sender
// reconnects when its connection breaks.
var (
	udpHarness = sourcetest.Harness{
		Name:  "syslog-udp",
		Batch: 50,
		N:     1000,
		Setup: func(t testing.TB) sourcetest.Vars {
			return sourcetest.Vars{"addr": sourcetest.FreeAddr(t, "udp")}
		},
		New: func(v sourcetest.Vars, log *slog.Logger) (connectors.Source, error) {
			return New(Config{UDP: v["addr"], Batch: 50, Logger: log})
		},
		Send: func(ctx context.Context, v sourcetest.Vars, from, to int) error {
			c, err := net.Dial("udp", v["addr"])
			if err != nil {
				return err
			}
			defer c.Close()
			for i := from; i < to; i++ {
				fmt.Fprintf(c, "<13>1 2026-12-01T10:00:00Z host app - - - %s a message", sourcetest.Value(i))
				if i%20 == 19 {
					time.Sleep(time.Millisecond)
				}
			}
			return nil
		},
		Bad: badOctetCount("udp"),
	}
	tcpHarness = sourcetest.Harness{
		Name:  "syslog-tcp",
		Batch: 50,
		Setup: func(t testing.TB) sourcetest.Vars {
			return sourcetest.Vars{"addr": sourcetest.FreeAddr(t, "tcp")}
		},
		New: func(v sourcetest.Vars, log *slog.Logger) (connectors.Source, error) {
			return New(Config{TCP: v["addr"], Batch: 50, Logger: log})
		},
		Send: func(ctx context.Context, v sourcetest.Vars, from, to int) error {
			next := from
			return sourcetest.Retry(ctx, func() error {
				c, err := net.Dial("tcp", v["addr"])
				if err != nil {
					return err
				}
				defer c.Close()
				w := bufio.NewWriter(c)
				for ; next < to; next++ {
					if _, err := fmt.Fprintf(w, "<13>1 2026-12-01T10:00:00Z host app - - - %s a message\n", sourcetest.Value(next)); err != nil {
						return err
					}
				}
				return w.Flush()
			})
		},
		Bad: badOctetCount("tcp"),
	}
)

// badOctetCount: an unparsable message is a record marked syslog.invalid; over TCP, a frame
// whose octet count is not a number also closes the connection with a warning.
func badOctetCount(network string) func(testing.TB, sourcetest.Vars, sourcetest.Reports) {
	return func(t testing.TB, v sourcetest.Vars, r sourcetest.Reports) {
		c, err := net.Dial(network, v["addr"])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprint(c, "<999>not syslog\n")
		if network == "tcp" {
			fmt.Fprint(c, "12x <13>bad frame\n")
		}
		deadline := time.Now().Add(10 * time.Second)
		for ; ; time.Sleep(20 * time.Millisecond) {
			invalid := false
			for _, m := range r.Records() {
				invalid = invalid || strings.Contains(m.Headers["syslog.invalid"], "999")
			}
			warned := network == "udp" || strings.Contains(r.Logs(), "closing a TCP connection")
			if invalid && warned {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("bad input not reported (an invalid record: %v; logs:\n%s)", invalid, r.Logs())
			}
		}
	}
}

func TestMain(m *testing.M) { sourcetest.Main(m, udpHarness, tcpHarness) }

func TestConformanceUDP(t *testing.T) { sourcetest.Run(t, udpHarness) }

func TestConformanceTCP(t *testing.T) { sourcetest.Run(t, tcpHarness) }
