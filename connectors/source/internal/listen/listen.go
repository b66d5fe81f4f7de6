// Package listen is the network plumbing the syslog and netcat sources share: a UDP socket and
// a TCP listener (optionally TLS) whose datagrams and connections go to the source's handlers,
// started by Open and stopped, connections and all, by Close.
package listen

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"
)

// Config says what to listen on. Empty addresses are not listened on.
type Config struct {
	UDP, TCP string
	TLS      *tls.Config // for the TCP listener
	// Name names the source in errors ("syslog source").
	Name string
	// ReadBuffer is the UDP socket's receive buffer in bytes (0: DefaultReadBuffer; negative:
	// the system's default).
	ReadBuffer int
}

// DefaultReadBuffer is the UDP receive buffer asked for by default: 4 MiB, room for about 4,000
// small datagrams (each takes about 1 KiB of kernel memory), so that a burst or a pause of the
// reader loses nothing. Linux grants at most net.core.rmem_max (often 208 KiB: raise it with
// sysctl for high rates).
const DefaultReadBuffer = 4 << 20

// Handlers receive the traffic. Datagram gets each datagram (its buffer is reused after it
// returns); Conn serves one TCP connection until the client goes or stop is closed, and the
// connection is closed after it returns.
type Handlers struct {
	Datagram func(b []byte)
	Conn     func(c net.Conn, stop <-chan struct{})
}

// Server listens. Its zero value is ready; Open and Close may alternate.
type Server struct {
	mu    sync.Mutex
	udp   net.PacketConn
	tcp   net.Listener
	conns map[net.Conn]struct{}
	stop  chan struct{}
	wg    sync.WaitGroup
}

// Open starts listening, unless it is open already.
func (s *Server) Open(cfg Config, h Handlers) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stop != nil {
		return nil
	}
	var pc net.PacketConn
	if cfg.UDP != "" {
		var err error
		if pc, err = net.ListenPacket("udp", cfg.UDP); err != nil {
			return fmt.Errorf("%s: listen on udp %s: %w", cfg.Name, cfg.UDP, err)
		}
		rb := cfg.ReadBuffer
		if rb == 0 {
			rb = DefaultReadBuffer
		}
		if rb > 0 {
			// The kernel caps it at net.core.rmem_max; a burst beyond it is dropped there.
			_ = pc.(*net.UDPConn).SetReadBuffer(rb)
		}
	}
	var ln net.Listener
	if cfg.TCP != "" {
		var err error
		if ln, err = net.Listen("tcp", cfg.TCP); err != nil {
			if pc != nil {
				pc.Close()
			}
			return fmt.Errorf("%s: listen on tcp %s: %w", cfg.Name, cfg.TCP, err)
		}
		if cfg.TLS != nil {
			ln = tls.NewListener(ln, cfg.TLS)
		}
	}
	s.udp, s.tcp, s.conns, s.stop = pc, ln, map[net.Conn]struct{}{}, make(chan struct{})
	if pc != nil {
		s.wg.Add(1)
		go s.serveUDP(pc, h.Datagram)
	}
	if ln != nil {
		s.wg.Add(1)
		go s.serveTCP(ln, h.Conn, s.stop)
	}
	return nil
}

// Addrs returns the addresses listened on (nil for one not configured), once open.
func (s *Server) Addrs() (udp, tcp net.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.udp != nil {
		udp = s.udp.LocalAddr()
	}
	if s.tcp != nil {
		tcp = s.tcp.Addr()
	}
	return udp, tcp
}

// Close stops listening, closes the connections and waits for the handlers to return.
func (s *Server) Close() {
	s.mu.Lock()
	if s.stop == nil {
		s.mu.Unlock()
		return
	}
	close(s.stop)
	if s.udp != nil {
		s.udp.Close()
	}
	if s.tcp != nil {
		s.tcp.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.udp, s.tcp, s.conns, s.stop = nil, nil, nil, nil
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Server) serveUDP(pc net.PacketConn, datagram func([]byte)) {
	defer s.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			return // closed
		}
		datagram(buf[:n])
	}
}

func (s *Server) serveTCP(ln net.Listener, serve func(net.Conn, <-chan struct{}), stop chan struct{}) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return // closed
		}
		s.mu.Lock()
		if s.stop != stop { // closed meanwhile
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			serve(c, stop)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}
