package proxy

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The upstream client is our own rather than http.Transport: persistent
// connections kept in a channel, requests written with bufio, responses read
// with http.ReadResponse, buffers pooled. Prototyping showed this takes a
// net/http proxy from 0.43× to 0.70–0.78× nginx's throughput (issue 3).
const (
	maxIdlePerUpstream = 256
	idleMaxAge         = 50 * time.Second // under the 60–75 s idle timeouts common upstreams use
	// startupWait is how long, counted from Run, a refused or failed
	// connect to the upstream is retried with backoff instead of being
	// answered with 502: the pool may still be binding its socket.
	startupWait    = 10 * time.Second
	bufferSize     = 16 << 10
	copyBufferSize = 32 << 10
)

type upstream struct {
	network, addr string
	label         string
	srv           *Server
	connect       time.Duration
	readTimeout   time.Duration
	sendTimeout   time.Duration
	idle          chan *upConn
	dialer        net.Dialer
	dialFailures  atomic.Int64 // for /status and the start-up test
}

func newUpstream(network, addr string, cfg Config, s *Server) *upstream {
	u := &upstream{
		network: network, addr: addr, srv: s,
		connect: cfg.ConnectTimeout, readTimeout: cfg.ReadTimeout, sendTimeout: cfg.SendTimeout,
		idle: make(chan *upConn, maxIdlePerUpstream),
	}
	u.label = addr
	if network == "unix" {
		u.label = "unix:" + addr
	}
	return u
}

func (u *upstream) String() string { return u.label }

// upConn is one persistent upstream connection. It is the io.Reader and
// io.Writer under its bufio pair, so that every read and write of the
// socket refreshes its deadline (nginx's proxy_read_timeout and
// proxy_send_timeout are between two operations, not for the whole
// response).
type upConn struct {
	nc       net.Conn
	readDL   time.Time // deadlines currently set on nc
	rerr     error     // the first read error, returned by every later Read
	writeDL  time.Time
	br       *bufio.Reader
	bw       *bufio.Writer
	u        *upstream
	idleFrom time.Time
	reused   bool
	resp     upResponse // the current response head, reused per exchange
	scratch  []byte     // buffer for reading response heads
	// client is the plain-HTTP client connection of the current exchange,
	// or nil. While a read waits on the upstream, it is checked every
	// clientCheckInterval: a client that went away ends the exchange
	// (nginx's 499) instead of holding the upstream to the end.
	client net.Conn
	// stopWatch, on the TLS listener (net/http), undoes the hook that
	// fails the upstream read when the request's context ends (the
	// client left); it reports false when the hook has run.
	stopWatch func() bool
}

// aLongTimeAgo is a read deadline that fails a read at once.
var aLongTimeAgo = time.Unix(1, 0)

// watchContext makes the end of ctx (net/http cancels it when the client
// goes away) fail a pending upstream read at once.
func (c *upConn) watchContext(ctx context.Context) {
	if ctx.Done() == nil {
		return // a context that cannot end needs no hook
	}
	nc := c.nc
	c.stopWatch = context.AfterFunc(ctx, func() { _ = nc.SetReadDeadline(aLongTimeAgo) })
}

// unwatch removes the context hook; false means it ran and the
// connection's read deadline is no longer the one readDL records.
func (c *upConn) unwatch() bool {
	if c.stopWatch == nil {
		return true
	}
	ok := c.stopWatch()
	c.stopWatch = nil
	return ok
}

const clientCheckInterval = time.Second

// errClientGone ends an upstream read whose client closed its connection.
var errClientGone = errors.New("client closed the connection")

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufferSize) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, bufferSize) }}
)

func (c *upConn) Read(p []byte) (int, error) {
	if c.rerr != nil {
		// Sticky: bufio retries a read after returning its error, and a
		// fresh deadline would make a read timeout fire twice.
		return 0, c.rerr
	}
	t := c.u.readTimeout
	var start time.Time
	for {
		now := time.Now()
		if start.IsZero() {
			start = now
		}
		// With a client to watch, the deadline is the next check, or the
		// read timeout (counted here, from the start of the read) when
		// that comes first.
		step := t
		if c.client != nil && (t <= 0 || t > clientCheckInterval) {
			step = clientCheckInterval
			if left := t - now.Sub(start); t > 0 && left < step {
				step = left
			}
		}
		if step <= 0 && !c.readDL.IsZero() {
			// No read timeout: drop a deadline left by a watched exchange.
			c.readDL = time.Time{}
			_ = c.nc.SetReadDeadline(c.readDL)
		}
		if step > 0 && (needsRefresh(c.readDL, now, step) || c.readDL.Sub(now) > step) {
			// (The second case: a longer deadline left by an exchange
			// without a client to watch.)
			c.readDL = now.Add(step)
			_ = c.nc.SetReadDeadline(c.readDL)
		}
		n, err := c.nc.Read(p)
		if err != nil && n == 0 && c.client != nil && step != t && isTimeout(err) {
			switch {
			case clientGone(c.client):
				err = errClientGone
			case t <= 0 || time.Since(start) < t:
				c.readDL = time.Time{} // the upstream is slow, the client still there
				continue
			}
		}
		if err != nil {
			c.rerr = err
		}
		return n, err
	}
}

// clientGone reports, without blocking, whether the client closed (or
// reset) its connection. Bytes waiting (a pipelined request) mean it is
// still there.
func clientGone(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	gone := false
	var buf [1]byte
	peek := func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		gone = n == 0 && err == nil || err != nil && err != syscall.EAGAIN && err != syscall.EWOULDBLOCK && err != syscall.EINTR
		return true
	}
	err = rc.Read(peek)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// The head's or the idle deadline has passed while the request
		// runs: not the client's doing. The connection loop sets its
		// own again before it next reads.
		_ = nc.SetReadDeadline(time.Time{})
		err = rc.Read(peek)
	}
	return gone || err != nil // an error: closed on our side (the drain's end)
}

func (c *upConn) Write(p []byte) (int, error) {
	if t := c.u.sendTimeout; t > 0 {
		if now := time.Now(); needsRefresh(c.writeDL, now, t) {
			c.writeDL = now.Add(t)
			_ = c.nc.SetWriteDeadline(c.writeDL)
		}
	}
	return c.nc.Write(p)
}

// needsRefresh reports whether a deadline set earlier is too close to
// stand for "timeout from now". Moving a deadline costs a runtime timer
// update, so it is moved only when it has drifted by more than a quarter
// of the timeout or a second, whichever is less: the effective timeout
// between two operations stays within that slack of the setting, and a
// busy connection updates its timer about once a second instead of on
// every read.
func needsRefresh(dl, now time.Time, t time.Duration) bool {
	slack := min(t/4, time.Second)
	return dl.Sub(now) < t-slack
}

// close drops the connection for good.
func (c *upConn) close() {
	c.unwatch()
	_ = c.nc.Close()
	c.release()
}

// release returns the buffers; the connection must not be used after.
func (c *upConn) release() {
	if c.br != nil {
		c.br.Reset(nil)
		readerPool.Put(c.br)
		c.br = nil
	}
	if c.bw != nil {
		c.bw.Reset(nil)
		writerPool.Put(c.bw)
		c.bw = nil
	}
}

// get returns an idle connection, or dials one. With fresh set it always
// dials (the retry after a failed reused connection).
func (u *upstream) get(ctx context.Context, fresh bool) (*upConn, error) {
	if !fresh {
		for {
			var c *upConn
			select {
			case c = <-u.idle:
			default:
			}
			if c == nil {
				break
			}
			if time.Since(c.idleFrom) > idleMaxAge {
				c.close()
				continue
			}
			c.reused = true
			return c, nil
		}
	}
	return u.dial(ctx)
}

// put keeps a connection whose exchange finished cleanly.
func (u *upstream) put(c *upConn) {
	c.client = nil
	if !c.unwatch() { // the client left just as the exchange ended
		c.close()
		return
	}
	if c.br.Buffered() > 0 { // the upstream sent more than the response: unusable
		c.close()
		return
	}
	c.idleFrom = time.Now()
	select {
	case u.idle <- c:
	default:
		c.close()
	}
}

func (u *upstream) closeIdle() {
	for {
		select {
		case c := <-u.idle:
			c.close()
		default:
			return
		}
	}
}

func (u *upstream) dial(ctx context.Context) (*upConn, error) {
	backoff := 25 * time.Millisecond
	for {
		dctx, cancel := context.WithTimeout(ctx, u.connect)
		nc, err := u.dialer.DialContext(dctx, u.network, u.addr)
		cancel()
		if err == nil {
			c := &upConn{nc: nc, u: u}
			c.br = readerPool.Get().(*bufio.Reader)
			c.br.Reset(c)
			c.bw = writerPool.Get().(*bufio.Writer)
			c.bw.Reset(c)
			return c, nil
		}
		u.dialFailures.Add(1)
		// During start-up the pool may not listen yet: a refused or
		// missing socket is retried, bounded by startupWait.
		left := time.Duration(u.srv.startedAt.Load()+int64(startupWait)) - time.Duration(time.Now().UnixNano())
		if ctx.Err() != nil || left <= 0 || !(errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)) {
			return nil, err
		}
		t := time.NewTimer(min(backoff, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
}

// alive checks, without blocking, that the upstream has not closed an idle
// connection. Used before sending a request that cannot be retried.
func (c *upConn) alive() bool {
	if !c.readDL.IsZero() && time.Now().After(c.readDL) {
		// The last exchange's deadline has passed (it is a second away
		// while a client is watched): the peek would fail on it.
		c.readDL = time.Time{}
		_ = c.nc.SetReadDeadline(time.Time{})
	}
	return alive(c.nc)
}

// alive reports whether a peek at nc would block, which means the peer
// has not closed it.
func alive(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	var buf [1]byte
	_ = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
		return true
	})
	return ok
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
