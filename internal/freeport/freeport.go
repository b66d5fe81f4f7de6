// Package freeport hands out loopback addresses for servers that a test or a benchmark
// harness starts in another process, where the port must be chosen before the process binds
// it.
//
// Asking the kernel for a free port (listening on port 0 and closing) leaves a window in
// which any outgoing connection on the machine may be given the same port as its source
// port, since both come from the kernel's ephemeral range: with tests running in parallel
// this happens (a `weir node` of a cluster test once failed with "address already in use").
// The ports handed out here lie outside the ephemeral range, so only a server that asked for
// that port by number can take it; each is checked free for TCP and UDP (memberlist gossips
// over both) and is never handed out twice by one process.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// lowest is the lowest port handed out: below it are ports that other services often use.
const lowest = 10000

var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// Addr returns 127.0.0.1:P with P free for TCP and UDP a moment ago, outside the kernel's
// ephemeral port range, and not returned before by this process.
func Addr() (string, error) {
	lo, hi := ephemeralRange()
	// Candidates: [lowest, lo) and (hi, 65535].
	below := max(lo-lowest, 0)
	above := max(65535-hi, 0)
	if below+above == 0 {
		return "", fmt.Errorf("freeport: no port outside the ephemeral range %d-%d", lo, hi)
	}
	mu.Lock()
	defer mu.Unlock()
	for range 2000 {
		n := rand.IntN(below + above)
		port := lowest + n
		if n >= below {
			port = hi + 1 + (n - below)
		}
		if given[port] || !free(port) {
			continue
		}
		given[port] = true
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
	}
	return "", fmt.Errorf("freeport: no free port found outside the ephemeral range %d-%d", lo, hi)
}

// free reports whether port can be bound on 127.0.0.1 for TCP and for UDP.
func free(port int) bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	pc.Close()
	return true
}

// ephemeralRange is the kernel's range of source ports for outgoing connections (Linux's
// default if it cannot be read).
func ephemeralRange() (lo, hi int) {
	lo, hi = 32768, 60999
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return lo, hi
	}
	l, err1 := strconv.Atoi(f[0])
	h, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || l < 1 || h < l || h > 65535 {
		return lo, hi
	}
	return l, h
}
