package netcat

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"testing"
	"time"
)

// TestHalfCloseGetsOKs: a client that half-closes after sending (nc -N, shutdown(SHUT_WR)) and
// waits for its OKs gets them (the connection used to be closed at EOF, before the answers).
func TestHalfCloseGetsOKs(t *testing.T) {
	s := open(t, Config{TCP: "127.0.0.1:0", Ack: true})
	tcp, _ := s.Addrs()
	c, err := net.Dial("tcp", tcp.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "a\nb\n")
	c.(*net.TCPConn).CloseWrite()
	readN(t, s, 2)
	time.Sleep(100 * time.Millisecond)
	s.Acked(nil)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	br := bufio.NewReader(c)
	for i := range 2 {
		if line, err := br.ReadString('\n'); line != "OK\n" {
			t.Fatalf("OK %d: %q, %v", i, line, err)
		}
	}
}

// TestRestartReadsBatchInFlightAgain: after an actor restart (Close, then Open) in the same
// process, the batch that was in flight (read, not acknowledged) is read again, as package lines
// does (it used to be lost).
func TestRestartReadsBatchInFlightAgain(t *testing.T) {
	s := open(t, Config{TCP: "127.0.0.1:0"})
	tcp, _ := s.Addrs()
	c, err := net.Dial("tcp", tcp.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "in-flight\n")
	readN(t, s, 1) // not acknowledged
	s.Close()
	if err := s.Open(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if recs, _, _ := s.Read(ctx); len(recs) != 1 {
		t.Fatalf("after a restart, the unacknowledged line is gone: %d records", len(recs))
	}
}

// TestCRLFAcrossBuffer: a "\r\n" split across the 64 KiB read buffer is one line ending (the
// '\r' used to stay in the value).
func TestCRLFAcrossBuffer(t *testing.T) {
	s := open(t, Config{TCP: "127.0.0.1:0"})
	tcp, _ := s.Addrs()
	c, err := net.Dial("tcp", tcp.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	line := bytes.Repeat([]byte("x"), 64<<10-1)
	c.Write(append(bytes.Clone(line), "\r\nz\n"...))
	recs := readN(t, s, 2)
	if !bytes.Equal(recs[0].Value, line) || recs[0].Headers != nil {
		t.Fatalf("value of %d bytes ending %q, headers %v; want %d bytes", len(recs[0].Value), recs[0].Value[len(recs[0].Value)-2:], recs[0].Headers, len(line))
	}
}
