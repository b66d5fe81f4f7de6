package listen

import (
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestOpenServeClose: datagrams and connections reach their handlers; Close closes a
// connection a handler is blocked on and waits for it; Open works again after Close; a failed
// Open leaves nothing listening.
func TestOpenServeClose(t *testing.T) {
	var s Server
	grams := make(chan string, 1)
	conns := make(chan string, 1)
	h := Handlers{
		Datagram: func(b []byte) { grams <- string(b) },
		Conn: func(c net.Conn, stop <-chan struct{}) {
			b, _ := io.ReadAll(c) // until the client or Close closes it
			conns <- string(b)
		},
	}
	for round := range 2 {
		if err := s.Open(Config{UDP: "127.0.0.1:0", TCP: "127.0.0.1:0", Name: "test"}, h); err != nil {
			t.Fatal(err)
		}
		udp, tcp := s.Addrs()
		u, _ := net.Dial("udp", udp.String())
		u.Write([]byte("gram"))
		u.Close()
		if g := <-grams; g != "gram" {
			t.Fatalf("round %d: datagram %q", round, g)
		}
		c, err := net.Dial("tcp", tcp.String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("held open"))
		time.Sleep(50 * time.Millisecond)
		done := make(chan struct{})
		go func() { s.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not return while a connection was open")
		}
		if got := <-conns; got != "held open" {
			t.Fatalf("round %d: connection read %q", round, got)
		}
		c.Close()
		if u, t2 := s.Addrs(); u != nil || t2 != nil {
			t.Fatalf("addresses after Close: %v %v", u, t2)
		}
	}
	err := s.Open(Config{UDP: "127.0.0.1:0", TCP: "127.0.0.1:99999", Name: "test"}, h)
	if err == nil || !strings.Contains(err.Error(), "test: listen on tcp 127.0.0.1:99999") {
		t.Fatalf("bad port: %v", err)
	}
	if u, t2 := s.Addrs(); u != nil || t2 != nil {
		t.Fatalf("a failed Open left %v %v listening", u, t2)
	}
}

// The UDP socket gets the receive buffer asked for. Linux grants at most net.core.rmem_max and
// reports twice what it granted; a new socket starts at rmem_default, which on a stock kernel
// equals rmem_max, so only the doubled value tells that the buffer was set.
func TestUDPReadBuffer(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		t.Skip("no /proc/sys/net/core/rmem_max: not Linux")
	}
	max, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	for _, ask := range []int{0, 512 << 10} {
		var s Server
		if err := s.Open(Config{UDP: "127.0.0.1:0", Name: "test", ReadBuffer: ask}, Handlers{Datagram: func([]byte) {}}); err != nil {
			t.Fatal(err)
		}
		want := ask
		if ask == 0 {
			want = DefaultReadBuffer
		}
		want = 2 * min(want, max)
		s.mu.Lock()
		raw, err := s.udp.(*net.UDPConn).SyscallConn()
		s.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		var got int
		raw.Control(func(fd uintptr) { got, err = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF) })
		s.Close()
		if err != nil || got < want {
			t.Fatalf("asked %d: SO_RCVBUF %d (%v), want at least %d", ask, got, err, want)
		}
	}
}
