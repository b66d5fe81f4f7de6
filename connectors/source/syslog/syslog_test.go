package syslog

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/internal/testcert"
	"github.com/weirhq/weir/storage"
)

type frame struct {
	msg  string
	full int
}

func frames(t *testing.T, in string, maxLen int) ([]frame, error) {
	t.Helper()
	var out []frame
	err := Frames(strings.NewReader(in), maxLen, func(m []byte, full int) bool {
		out = append(out, frame{string(m), full})
		return true
	})
	return out, err
}

func TestFrames(t *testing.T) {
	got, err := frames(t, "5 <1>ab<13>line one\r\n\n10 <13>x\ny\nzz<13>last", 100)
	want := []frame{{"<1>ab", 5}, {"<13>line one", 12}, {"<13>x\ny\nzz", 10}, {"<13>last", 8}}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("frames %v, %v; want %v", got, err, want)
	}
	// Cut to 4 bytes, with the full lengths.
	got, err = frames(t, "10 <13>abcdef<13>ghijkl\n<13>mn\r\n", 4)
	want = []frame{{"<13>", 10}, {"<13>", 10}, {"<13>", 6}}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("cut frames %v, %v; want %v", got, err, want)
	}
	if _, err := frames(t, "12x <13>a", 100); err == nil || !strings.Contains(err.Error(), "length is not a number") {
		t.Fatalf("bad octet count: %v", err)
	}
	// A stream that ends inside a frame ends quietly.
	if got, err := frames(t, "20 <13>short", 100); err != nil || len(got) != 0 {
		t.Fatalf("cut-off frame: %v, %v", got, err)
	}
}

func FuzzFrames(f *testing.F) {
	for _, s := range []string{"5 <1>ab", "<13>a\n<13>b\r\n", "12x", "99999999999 x", "\n\n3 abc4 defg"} {
		f.Add([]byte(s), 8)
	}
	f.Fuzz(func(t *testing.T, b []byte, maxLen int) {
		if maxLen <= 0 || maxLen > 1<<16 {
			return
		}
		total := 0
		_ = Frames(strings.NewReader(string(b)), maxLen, func(m []byte, full int) bool {
			if len(m) > maxLen || full < len(m) {
				t.Fatalf("message of %d bytes (full %d) with max %d", len(m), full, maxLen)
			}
			total += len(m)
			return true
		})
		if total > len(b) {
			t.Fatalf("%d message bytes from %d input bytes", total, len(b))
		}
	})
}

// readN reads records from s until it has n or the time is up.
func readN(t *testing.T, s *Source, n int) []storage.Record {
	t.Helper()
	var out []storage.Record
	deadline := time.Now().Add(10 * time.Second)
	for len(out) < n && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		recs, pos, err := s.Read(ctx)
		cancel()
		if err != nil || pos != nil {
			t.Fatalf("read: %v (position %x)", err, pos)
		}
		out = append(out, recs...)
	}
	if len(out) != n {
		t.Fatalf("%d records, want %d: %v", len(out), n, out)
	}
	return out
}

// TestLoggerPeer: util-linux `logger` sends RFC 5424 and RFC 3164 messages over UDP, and over
// TCP with octet counting and with newline framing; every one arrives with its fields.
func TestLoggerPeer(t *testing.T) {
	logger, err := exec.LookPath("logger")
	if err != nil {
		t.Skip("logger (util-linux) is not installed")
	}
	s, err := New(Config{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0", Location: time.Local})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	udp, tcp := s.Addrs()
	uport := strconv.Itoa(udp.(*net.UDPAddr).Port)
	tport := strconv.Itoa(tcp.(*net.TCPAddr).Port)
	cases := []struct {
		args    []string
		version string
	}{
		{[]string{"--udp", "--port", uport, "--rfc5424"}, "1"},
		{[]string{"--udp", "--port", uport, "--rfc3164"}, "0"},
		{[]string{"--tcp", "--port", tport, "--rfc5424", "--octet-count"}, "1"},
		{[]string{"--tcp", "--port", tport, "--rfc3164"}, "0"},
	}
	for i, c := range cases {
		text := fmt.Sprintf("weir test message %d", i)
		args := append([]string{"--server", "127.0.0.1", "--tag", "weirtest", "--id=4242", "-p", "local3.warning"}, c.args...)
		if out, err := exec.Command(logger, append(args, text)...).CombinedOutput(); err != nil {
			t.Fatalf("logger %v: %v: %s", args, err, out)
		}
		r := readN(t, s, 1)[0]
		h := r.Headers
		if string(r.Value) != text || h["app"] != "weirtest" || h["procid"] != "4242" || h["facility"] != "19" ||
			h["severity"] != "4" || h[HeaderVersion] != c.version || h["host"] == "" || h[HeaderInvalid] != "" {
			t.Fatalf("logger %v: record %q, headers %v", c.args, r.Value, h)
		}
		if d := time.Since(time.UnixMilli(r.Timestamp)); d < -time.Second || d > time.Minute {
			t.Fatalf("logger %v: timestamp %v off by %v", c.args, time.UnixMilli(r.Timestamp), d)
		}
	}
}

// TestBadMessages: a message that does not parse arrives whole, marked with the reason; an
// overlong one is cut and marked with its length; a bad octet count closes the connection.
func TestBadMessages(t *testing.T) {
	s, err := New(Config{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0", MaxMessage: 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	udp, tcp := s.Addrs()
	u, err := net.Dial("udp", udp.String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.Write([]byte("not syslog at all"))
	r := readN(t, s, 1)[0]
	if string(r.Value) != "not syslog at all" || !strings.Contains(r.Headers[HeaderInvalid], "no <priority>") {
		t.Fatalf("bad message: %q %v", r.Value, r.Headers)
	}
	u.Write([]byte("<13>" + strings.Repeat("x", 40)))
	r = readN(t, s, 1)[0]
	if len(r.Value) != 16 || r.Headers[HeaderTruncated] != "44" {
		t.Fatalf("overlong message: %q %v", r.Value, r.Headers)
	}
	c, err := net.Dial("tcp", tcp.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("7 <13>abc12x <13>z"))
	r = readN(t, s, 1)[0]
	if string(r.Value) != "abc" {
		t.Fatalf("first frame: %q", r.Value)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("the connection with a bad octet count stayed open")
	}
}

func TestNewNeedsAnAddress(t *testing.T) {
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "UDP or a TCP address") {
		t.Fatalf("no address: %v", err)
	}
	s, _ := New(Config{TCP: "127.0.0.1:99999"})
	if err := s.Open(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "listen on tcp 127.0.0.1:99999") {
		t.Fatalf("bad port: %v", err)
	}
}

// TestTLS: with Config.TLS the TCP listener speaks TLS (RFC 5425: octet-counted frames).
func TestTLS(t *testing.T) {
	cert := testcert.New(t)
	s, err := New(Config{TCP: "127.0.0.1:0", TLS: cert.Server})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, tcp := s.Addrs()
	c, err := tls.Dial("tcp", tcp.String(), &tls.Config{RootCAs: cert.Pool})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := "<13>1 - host app - - - over tls"
	fmt.Fprintf(c, "%d %s", len(msg), msg)
	if r := readN(t, s, 1)[0]; string(r.Value) != "over tls" || r.Headers["host"] != "host" {
		t.Fatalf("record %q %v", r.Value, r.Headers)
	}
}
