package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestAddrOutsideEphemeralRange: every address is on 127.0.0.1, outside the ephemeral range,
// bindable for TCP and UDP, and none is handed out twice.
func TestAddrOutsideEphemeralRange(t *testing.T) {
	lo, hi := ephemeralRange()
	seen := map[string]bool{}
	for range 300 {
		a, err := Addr()
		if err != nil {
			t.Fatal(err)
		}
		if seen[a] {
			t.Fatalf("%s handed out twice", a)
		}
		seen[a] = true
		host, p, err := net.SplitHostPort(a)
		if err != nil || host != "127.0.0.1" {
			t.Fatalf("address %q", a)
		}
		port, _ := strconv.Atoi(p)
		if port >= lo && port <= hi || port < lowest {
			t.Fatalf("port %d: in the ephemeral range %d-%d or below %d", port, lo, hi, lowest)
		}
	}
	// A port in use is not reported free.
	a, _ := Addr()
	ln, err := net.Listen("tcp", a)
	if err != nil {
		t.Fatalf("bind %s: %v", a, err)
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp", a)
	if err != nil {
		t.Fatalf("bind udp %s: %v", a, err)
	}
	pc.Close()
	if free(mustPort(t, a)) {
		t.Fatalf("%s reported free while bound", a)
	}
}

func mustPort(t *testing.T, a string) int {
	_, p, _ := net.SplitHostPort(a)
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
