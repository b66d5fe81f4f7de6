package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/weirhq/weir/cluster/wire"
)

// call is one request. It is pending from start until its answer, the failure of the
// connection it was written on, the Client's Close, or its abandonment by the caller; whoever
// removes it from Client.pending completes it (exactly once).
type call struct {
	corr   uint32
	api    wire.API
	frame  []byte          // the whole frame
	cn     *conn           // the connection it was written on; nil while queued (guarded by Client.mu)
	done   chan struct{}   // closed when body or err is set
	body   []byte          // the answer's body (owned by the caller: never reused)
	err    error           // *ConnError, ErrClosed or a protocol error
	notify chan<- struct{} // optional, signalled without blocking on completion
}

// frames holds written request frames for reuse, so that a producer does not allocate a
// frame the size of its batches for every request.
var frames sync.Pool

// maxPooledFrame is the largest frame kept for reuse.
const maxPooledFrame = 4 << 20

func getFrame() []byte {
	if b, ok := frames.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return nil
}

func putFrame(b []byte) {
	if cap(b) > 0 && cap(b) <= maxPooledFrame {
		b = b[:0]
		frames.Put(&b)
	}
}

// conn is one TCP connection; a Client has at most one live at a time.
type conn struct {
	nc   net.Conn
	dead bool // guarded by Client.mu
}

// start registers a request and queues it for the writer. It blocks while the queue is full
// (the writer is held up by TCP: backpressure), until ctx is done.
func (c *Client) start(ctx context.Context, api wire.API, req any, notify chan<- struct{}) (*call, error) {
	corr := c.corr.Add(1)
	if corr == 0 { // 0 is the node's id for errors about no request in particular
		corr = c.corr.Add(1)
	}
	frame, err := wire.EncodeFrameTo(getFrame(), api, corr, req)
	if err != nil {
		return nil, fmt.Errorf("client: encode %s request: %w", api, err)
	}
	if len(frame)-4 > wire.MaxFrameSize {
		return nil, wire.Errorf(wire.CodeRecordTooLarge, "%s request of %d bytes exceeds the %d-byte frame limit", api, len(frame)-wire.HeaderSize, wire.MaxFrameSize)
	}
	cl := &call{corr: corr, api: api, done: make(chan struct{}), notify: notify, frame: frame}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	c.pending[corr] = cl
	c.mu.Unlock()
	select {
	case c.queue <- cl:
		return cl, nil
	case <-ctx.Done():
		c.abandon(cl)
		return nil, ctx.Err()
	case <-c.ctx.Done():
		c.abandon(cl)
		return nil, ErrClosed
	}
}

// wait waits for a call's answer for up to timeout; a call not answered in time or whose ctx
// ends is abandoned.
func (c *Client) wait(ctx context.Context, cl *call, timeout time.Duration) ([]byte, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-cl.done:
		return cl.body, cl.err
	case <-ctx.Done():
		c.abandon(cl)
		return nil, ctx.Err()
	case <-t.C:
		c.abandon(cl)
		return nil, wire.Errorf(wire.CodeTimeout, "%s: no answer from %s within %v", cl.api, c.addr, timeout)
	}
}

// roundTrip sends req and decodes the answer into resp. Errors are transport errors; the
// node's error is in resp.
func (c *Client) roundTrip(ctx context.Context, api wire.API, req, resp any, timeout time.Duration) error {
	cl, err := c.start(ctx, api, req, nil)
	if err != nil {
		return err
	}
	body, err := c.wait(ctx, cl, timeout)
	if err != nil {
		return err
	}
	return wire.Decode(api, body, resp)
}

// abandon forgets a call whose answer is no longer wanted.
func (c *Client) abandon(cl *call) {
	c.mu.Lock()
	delete(c.pending, cl.corr)
	c.mu.Unlock()
}

// finish completes a call that its finisher has removed from pending.
func finish(cl *call, body []byte, err error) {
	cl.body, cl.err = body, err
	close(cl.done)
	if cl.notify != nil {
		select {
		case cl.notify <- struct{}{}:
		default:
		}
	}
}

// failPending completes a pending call with err, unless someone else did.
func (c *Client) failPending(cl *call, err error) {
	c.mu.Lock()
	_, ok := c.pending[cl.corr]
	delete(c.pending, cl.corr)
	c.mu.Unlock()
	if ok {
		finish(cl, nil, err)
	}
}

// writeLoop is the writer goroutine: it writes queued calls to the live connection, dialing a
// new one when there is none, and flushes whenever the queue is empty.
func (c *Client) writeLoop() {
	defer c.wg.Done()
	var (
		bw *bufio.Writer
		wc *conn // the connection bw writes to
		ds dialState
	)
	for {
		var cl *call
		select {
		case <-c.ctx.Done():
			return
		case cl = <-c.queue:
		}
		for attempt := 0; attempt < 2; attempt++ {
			if !c.isPending(cl) {
				break // abandoned while queued
			}
			cn, err := c.connection(&ds)
			if err != nil {
				c.failPending(cl, err)
				break
			}
			if cn != wc {
				wc, bw = cn, bufio.NewWriterSize(cn.nc, 64<<10)
			}
			c.mu.Lock()
			_, ok := c.pending[cl.corr]
			dead := cn.dead
			if ok && !dead {
				cl.cn = cn
			}
			c.mu.Unlock()
			if !ok {
				break
			}
			if dead {
				continue // lost while we looked: redial once
			}
			if _, err := bw.Write(cl.frame); err != nil {
				c.connDead(cn, err)
			}
			// Written (bufio copied it or wrote it through) or failed with its connection: not
			// needed while the answer is awaited.
			putFrame(cl.frame)
			cl.frame = nil
			break
		}
		if bw != nil && bw.Buffered() > 0 && len(c.queue) == 0 {
			if err := bw.Flush(); err != nil {
				c.connDead(wc, err)
			}
		}
	}
}

func (c *Client) isPending(cl *call) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.pending[cl.corr]
	return ok
}

// dialState is the writer's memory of its last failed dial: for a short while after one,
// requests fail at once with its error instead of each waiting for a dial of its own.
type dialState struct {
	err     error
	retryAt time.Time
}

// connection returns the live connection, dialing one if there is none.
func (c *Client) connection(ds *dialState) (*conn, error) {
	c.mu.Lock()
	cn, closed := c.cur, c.closed
	if cn != nil && cn.dead {
		cn = nil
	}
	c.mu.Unlock()
	switch {
	case closed:
		return nil, ErrClosed
	case cn != nil:
		return cn, nil
	case ds.err != nil && time.Now().Before(ds.retryAt):
		return nil, ds.err
	}
	cn, err := c.dial()
	if err != nil {
		ds.err, ds.retryAt = err, time.Now().Add(c.cfg.retry.backoffMin)
		return nil, err
	}
	ds.err = nil
	return cn, nil
}

// dial connects and starts the connection's reader goroutine.
func (c *Client) dial() (*conn, error) {
	d := net.Dialer{Timeout: c.cfg.dialTimeout}
	c.mu.Lock()
	first := c.next
	c.mu.Unlock()
	var nc net.Conn
	var err error
	addr := ""
	for i := range c.addrs {
		idx := (first + i) % len(c.addrs)
		addr = c.addrs[idx]
		if nc, err = d.DialContext(c.ctx, "tcp", addr); err == nil {
			c.mu.Lock()
			c.next = idx
			c.mu.Unlock()
			break
		}
		if c.ctx.Err() != nil {
			return nil, ErrClosed
		}
	}
	if err != nil {
		return nil, &ConnError{Addr: c.addr, Err: err}
	}
	cn := &conn{nc: nc}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		_ = nc.Close()
		return nil, ErrClosed
	}
	c.cur = cn
	c.wg.Add(1)
	c.mu.Unlock()
	c.cfg.logger.Debug("client: connected", "addr", addr, "local", nc.LocalAddr().String())
	go c.readLoop(cn)
	return cn, nil
}

// readLoop is a connection's reader goroutine: it hands each answer to its call, and on a
// read error fails the calls written on the connection.
func (c *Client) readLoop(cn *conn) {
	defer c.wg.Done()
	r := bufio.NewReaderSize(cn.nc, 64<<10)
	for {
		f, _, err := wire.ReadFrame(r, nil, wire.MaxFrameSize)
		if err != nil {
			c.connDead(cn, err)
			return
		}
		if f.API == wire.ApiError && f.Corr == 0 {
			// The node could not read a frame of ours, or refuses the connection; it closes it.
			var resp wire.AdminResponse
			if derr := wire.Decode(f.API, f.Body, &resp); derr != nil || resp.Err == nil {
				err = errors.New("node closed the connection with an unreadable error")
			} else {
				err = resp.Err
			}
			c.connDead(cn, err)
			return
		}
		c.mu.Lock()
		cl, ok := c.pending[f.Corr]
		if ok && cl.cn == cn {
			delete(c.pending, f.Corr)
		} else {
			ok = false
		}
		c.mu.Unlock()
		if !ok {
			continue // abandoned: its caller gave up
		}
		if f.API != cl.api && f.API != wire.ApiError {
			finish(cl, nil, &ConnError{Addr: c.addr, Err: fmt.Errorf("answer of API %s to a %s request", f.API, cl.api)})
			continue
		}
		finish(cl, f.Body, nil)
	}
}

// connDead closes a connection (once) and fails the calls written on it.
func (c *Client) connDead(cn *conn, cause error) {
	c.mu.Lock()
	if cn.dead {
		c.mu.Unlock()
		return
	}
	cn.dead = true
	if c.cur == cn {
		c.cur = nil
		c.next++ // the node may be gone: try the next one first
	}
	closed := c.closed
	var failed []*call
	for corr, cl := range c.pending {
		if cl.cn == cn {
			delete(c.pending, corr)
			failed = append(failed, cl)
		}
	}
	c.mu.Unlock()
	_ = cn.nc.Close()
	var err error = &ConnError{Addr: c.addr, Err: cause}
	if closed {
		err = ErrClosed
	} else {
		c.cfg.logger.Info("client: connection lost", "addr", c.addr, "err", cause, "requests_failed", len(failed))
	}
	for _, cl := range failed {
		finish(cl, nil, err)
	}
}
