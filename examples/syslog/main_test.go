package main

import (
	"context"
	"github.com/weirhq/weir/internal/syncbuf"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

func waitOutput(t *testing.T, out *syncbuf.Buffer, what string, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not in the output:\n%s", what, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEndToEnd: messages sent with `logger` (or, without it, written to the sockets) go to the
// errors topic or the other by severity, with their fields.
func TestEndToEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncbuf.Buffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-data", t.TempDir(), "-udp", "127.0.0.1:0", "-tcp", "127.0.0.1:0"}, out)
	}()
	m := waitOutput(t, out, "the addresses", regexp.MustCompile(`listening: udp (\S+) tcp (\S+)`))
	udp, tcp := m[1], m[2]

	send := func(network, addr, msg string) {
		c, err := net.Dial(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	if logger, err := exec.LookPath("logger"); err == nil {
		_, port, _ := net.SplitHostPort(udp)
		if out, err := exec.Command(logger, "--server", "127.0.0.1", "--port", port, "--udp", "--tag", "disk", "-p", "user.err", "disk full").CombinedOutput(); err != nil {
			t.Fatalf("logger: %v: %s", err, out)
		}
	} else {
		send("udp", udp, "<11>1 - h disk - - - disk full")
	}
	send("tcp", tcp, "<14>Dec  1 10:00:00 web1 nginx[7]: GET / 200\n")
	waitOutput(t, out, "the error", regexp.MustCompile(`syslog-errors severity=3 host=\S+ app=disk: disk full`))
	waitOutput(t, out, "the info message", regexp.MustCompile(`syslog severity=6 host=web1 app=nginx: GET / 200`))
	if strings.Contains(out.String(), "syslog-errors severity=6") {
		t.Fatalf("an info message went to the errors topic:\n%s", out.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestBadFlags(t *testing.T) {
	err := run(context.Background(), []string{"-udp", "", "-tcp", ""}, &syncbuf.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "UDP or a TCP address") {
		t.Fatalf("no address: %v", err)
	}
	if err := run(context.Background(), []string{"extra"}, &syncbuf.Buffer{}); err == nil || !strings.Contains(err.Error(), `unexpected argument "extra"`) {
		t.Fatalf("extra argument: %v", err)
	}
}
