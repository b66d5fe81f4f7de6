package netcat

import (
	"bufio"
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

func open(t *testing.T, cfg Config) *Source {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func readN(t *testing.T, s *Source, n int) []storage.Record {
	t.Helper()
	var out []storage.Record
	for deadline := time.Now().Add(10 * time.Second); len(out) < n && time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		recs, pos, err := s.Read(ctx)
		cancel()
		if err != nil || pos != nil {
			t.Fatalf("read: %v, position %x", err, pos)
		}
		out = append(out, recs...)
	}
	if len(out) != n {
		t.Fatalf("%d records, want %d", len(out), n)
	}
	return out
}

// TestTCPLinesAndAcks: each line is a record; with Ack the client gets one OK per line, and only
// once the lines are acknowledged.
func TestTCPLinesAndAcks(t *testing.T) {
	s := open(t, Config{TCP: "127.0.0.1:0", Ack: true})
	tcp, _ := s.Addrs()
	c, err := net.Dial("tcp", tcp.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "one\r\ntwo\n\nthree\n")
	recs := readN(t, s, 4)
	if got := fmt.Sprintf("%s|%s|%s|%s", recs[0].Value, recs[1].Value, recs[2].Value, recs[3].Value); got != "one|two||three" {
		t.Fatalf("lines %q", got)
	}
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _ := c.Read(make([]byte, 8)); n > 0 {
		t.Fatal("OK before the topic acknowledged")
	}
	s.Acked(nil)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	for i := range 4 {
		if line, err := br.ReadString('\n'); err != nil || line != "OK\n" {
			t.Fatalf("answer %d: %q, %v", i, line, err)
		}
	}
}

// TestTruncationAndUDP: an overlong line is cut and marked with its length; a datagram is a
// record.
func TestTruncationAndUDP(t *testing.T) {
	s := open(t, Config{TCP: "127.0.0.1:0", UDP: "127.0.0.1:0", MaxLine: 5})
	tcp, udp := s.Addrs()
	c, err := net.Dial("tcp", tcp.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "abcdefgh\r\nxy\n")
	recs := readN(t, s, 2)
	if string(recs[0].Value) != "abcde" || recs[0].Headers[HeaderTruncated] != "8" || string(recs[1].Value) != "xy" || recs[1].Headers != nil {
		t.Fatalf("records %+v", recs)
	}
	u, err := net.Dial("udp", udp.String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.Write([]byte("dgram\n"))
	if r := readN(t, s, 1)[0]; string(r.Value) != "dgram" {
		t.Fatalf("datagram %+v", r)
	}
}

// TestBashPeer: another process (bash's /dev/tcp) sends lines.
func TestBashPeer(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	s := open(t, Config{TCP: "127.0.0.1:0"})
	tcp, _ := s.Addrs()
	port := tcp.(*net.TCPAddr).Port
	cmd := exec.Command(bash, "-c", fmt.Sprintf(`for i in $(seq 1 500); do echo "line $i"; done > /dev/tcp/127.0.0.1/%d`, port))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bash: %v: %s", err, out)
	}
	recs := readN(t, s, 500)
	for i, r := range recs {
		if string(r.Value) != fmt.Sprintf("line %d", i+1) {
			t.Fatalf("record %d: %q", i, r.Value)
		}
	}
}

func TestNewNeedsAnAddress(t *testing.T) {
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "TCP or a UDP address") {
		t.Fatalf("no address: %v", err)
	}
	s, _ := New(Config{TCP: "127.0.0.1:99999"})
	if err := s.Open(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "listen on tcp 127.0.0.1:99999") {
		t.Fatalf("bad port: %v", err)
	}
}

// TestTLS: with Config.TLS the TCP listener speaks TLS.
func TestTLS(t *testing.T) {
	cert := testcert.New(t)
	s := open(t, Config{TCP: "127.0.0.1:0", TLS: cert.Server, Ack: true})
	tcp, _ := s.Addrs()
	c, err := tls.Dial("tcp", tcp.String(), &tls.Config{RootCAs: cert.Pool})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "over tls\n")
	if r := readN(t, s, 1)[0]; string(r.Value) != "over tls" {
		t.Fatalf("record %q", r.Value)
	}
	s.Acked(nil)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "OK\n" {
		t.Fatalf("answer %q, %v", line, err)
	}
}

// TestNcPeer: OpenBSD netcat (`nc`, installed by make test) sends 500 lines over TCP and reads
// one OK per line once they are acknowledged, then sends a datagram over UDP.
func TestNcPeer(t *testing.T) {
	nc, err := exec.LookPath("nc")
	if err != nil {
		t.Fatal("nc is not installed: make test installs it (Debian package netcat-openbsd)")
	}
	s := open(t, Config{TCP: "127.0.0.1:0", UDP: "127.0.0.1:0", Ack: true})
	tcp, udp := s.Addrs()
	var in strings.Builder
	for i := 1; i <= 500; i++ {
		fmt.Fprintf(&in, "line %d\n", i)
	}
	cmd := exec.Command(nc, "-N", "127.0.0.1", strconv.Itoa(tcp.(*net.TCPAddr).Port))
	cmd.Stdin = strings.NewReader(in.String())
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var recs []storage.Record
	for deadline := time.Now().Add(10 * time.Second); len(recs) < 500 && time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		got, _, err := s.Read(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, got...)
		s.Acked(nil) // the topic acknowledged them: the OKs go out
	}
	if len(recs) != 500 {
		t.Fatalf("%d lines, want 500", len(recs))
	}
	for i, r := range recs {
		if string(r.Value) != fmt.Sprintf("line %d", i+1) {
			t.Fatalf("record %d: %q", i, r.Value)
		}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("nc: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("nc did not end after its OKs; it printed %d bytes", out.Len())
	}
	if out.String() != strings.Repeat("OK\n", 500) {
		t.Fatalf("nc got %d bytes of answers, want 500 OKs: %.60q", out.Len(), out.String())
	}
	u := exec.Command(nc, "-u", "-w", "1", "127.0.0.1", strconv.Itoa(udp.(*net.UDPAddr).Port))
	u.Stdin = strings.NewReader("a datagram\n")
	if b, err := u.CombinedOutput(); err != nil {
		t.Fatalf("nc -u: %v: %s", err, b)
	}
	if r := readN(t, s, 1); string(r[0].Value) != "a datagram" {
		t.Fatalf("datagram %q", r[0].Value)
	}
}
