package h1

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
// by ReadResponse, buffers pooled. Prototyping showed this takes a
// net/http proxy from 0.43× to 0.70–0.78× nginx's throughput (issue 3).
const (
	maxIdlePerUpstream = 256
	idleMaxAge         = 50 * time.Second // under the 60–75 s idle timeouts common upstreams use
	// startupWait is how long, counted from UpstreamOptions.Started, a
	// refused or failed connect to the upstream is retried with backoff
	// instead of failing: the pool may still be binding its socket.
	startupWait = 10 * time.Second
	bufferSize  = 16 << 10
)

// UpstreamOptions are an upstream's timeouts (nginx's proxy_connect_timeout,
// proxy_read_timeout and proxy_send_timeout; 0 means none for read and send)
// and the start-up clock.
type UpstreamOptions struct {
	Connect, Read, Send time.Duration
	// Started returns when the server started serving (zero before): a
	// connect refused within startupWait of it is retried.
	Started func() time.Time
	// MaxConns, when set, bounds the connections open to the upstream
	// (in use and idle; nginx's max_conns) to what it returns now, <= 0
	// meaning no bound. A request past it waits for a free connection, at
	// most the Read timeout. See connLimit.
	MaxConns func() int
}

// Upstream is one upstream address and its pool of idle connections.
type Upstream struct {
	network, addr string
	label         string
	opts          UpstreamOptions
	idle          chan *UpConn
	limit         *connLimit // nil: no bound
	dialer        net.Dialer
	dialFailures  atomic.Int64 // for /status and the start-up test
}

// NewUpstream returns the pool of network ("tcp" or "unix") addr; it dials
// nothing yet.
func NewUpstream(network, addr string, opts UpstreamOptions) *Upstream {
	u := &Upstream{
		network: network, addr: addr, opts: opts,
		idle: make(chan *UpConn, maxIdlePerUpstream),
	}
	if opts.MaxConns != nil {
		u.limit = &connLimit{max: opts.MaxConns}
	}
	u.label = addr
	if network == "unix" {
		u.label = "unix:" + addr
	}
	return u
}

// String is the address as logged: host:port or unix:/path.
func (u *Upstream) String() string { return u.label }

// DialFailures is how many connects have failed so far.
func (u *Upstream) DialFailures() int64 { return u.dialFailures.Load() }

// UpConn is one persistent upstream connection. It is the io.Reader and
// io.Writer under its bufio pair, so that every read and write of the
// socket refreshes its deadline (nginx's proxy_read_timeout and
// proxy_send_timeout are between two operations, not for the whole
// response).
type UpConn struct {
	nc       net.Conn
	readDL   time.Time // deadlines currently set on nc
	rerr     error     // the first read error, returned by every later Read
	writeDL  time.Time
	br       *bufio.Reader
	bw       *bufio.Writer
	u        *Upstream
	idleFrom time.Time
	reused   bool
	counted  bool         // holds a slot of u.limit until released
	resp     Response     // the current response head, reused per exchange
	chunked  *chunkedBody // the current response's body when chunked
	scratch  []byte       // buffer for reading response heads
	// client is the plain-HTTP client connection of the current exchange,
	// or nil. While a read waits on the upstream, it is checked every
	// clientCheckInterval: a client that went away ends the exchange
	// (nginx's 499) instead of holding the upstream to the end.
	client net.Conn
	// stopWatch, on the TLS listener (net/http), undoes the hook that
	// fails the upstream read when the request's context ends (the
	// client left); it reports false when the hook has run.
	stopWatch func() bool
	// left is set by that hook before it moves the deadline: Read checks
	// it after setting a deadline of its own, which could otherwise
	// overwrite the hook's and wait out the upstream.
	left atomic.Bool
}

// aLongTimeAgo is a read deadline that fails a read at once.
var aLongTimeAgo = time.Unix(1, 0)

// WatchContext makes the end of ctx (net/http cancels it when the client
// goes away) fail a pending upstream read at once.
func (c *UpConn) WatchContext(ctx context.Context) {
	if ctx.Done() == nil {
		return // a context that cannot end needs no hook
	}
	c.left.Store(false)
	c.stopWatch = context.AfterFunc(ctx, func() {
		c.left.Store(true)
		_ = c.nc.SetReadDeadline(aLongTimeAgo)
	})
}

// unwatch removes the context hook; false means it ran and the
// connection's read deadline is no longer the one readDL records.
func (c *UpConn) unwatch() bool {
	if c.stopWatch == nil {
		return true
	}
	ok := c.stopWatch()
	c.stopWatch = nil
	return ok
}

const clientCheckInterval = time.Second

// ErrClientGone ends an upstream read whose client closed its connection.
var ErrClientGone = errors.New("client closed the connection")

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufferSize) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, bufferSize) }}
)

// Read reads from the upstream with the read timeout, watching the client
// (WatchClient) while it waits.
func (c *UpConn) Read(p []byte) (int, error) {
	if c.rerr != nil {
		// Sticky: bufio retries a read after returning its error, and a
		// fresh deadline would make a read timeout fire twice.
		return 0, c.rerr
	}
	t := c.u.opts.Read
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
		if c.left.Load() {
			// The client left (WatchContext) and the deadline set
			// above may have replaced the hook's: fail the read now.
			c.readDL = aLongTimeAgo
			_ = c.nc.SetReadDeadline(c.readDL)
		}
		n, err := c.nc.Read(p)
		if err != nil && n == 0 && c.client != nil && step != t && IsTimeout(err) {
			switch {
			case clientGone(c.client):
				err = ErrClientGone
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
	st, err := peek(nc)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// The head's or the idle deadline has passed while the request
		// runs: not the client's doing. The connection loop sets its
		// own again before it next reads.
		_ = nc.SetReadDeadline(time.Time{})
		st, _ = peek(nc)
	}
	return st == peekClosed // also closed on our side (the drain's end)
}

// peekState is what a non-blocking peek at a connection found.
type peekState int

const (
	peekOpen   peekState = iota // nothing to read: the peer is there and quiet
	peekData                    // bytes are waiting
	peekClosed                  // the peer closed or reset it, or it cannot be read
)

// peek looks at nc without blocking and without consuming anything
// (MSG_PEEK). A connection that is not a socket reads as open. err is
// the poller's, for instance os.ErrDeadlineExceeded when nc's read
// deadline has passed (the state is then peekClosed).
func peek(nc net.Conn) (peekState, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return peekOpen, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return peekClosed, err
	}
	st := peekClosed
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		for {
			n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
				st = peekOpen
			case err == nil && n > 0:
				st = peekData
			}
			return true // n == 0 (end of stream) or another error: closed
		}
	})
	if err != nil {
		return peekClosed, err
	}
	return st, nil
}

// Write writes to the upstream with the send timeout.
func (c *UpConn) Write(p []byte) (int, error) {
	if t := c.u.opts.Send; t > 0 {
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

// Close drops the connection for good.
func (c *UpConn) Close() {
	c.unwatch()
	_ = c.nc.Close()
	c.release()
}

// release returns the buffers; the connection must not be used after.
func (c *UpConn) release() {
	if c.counted {
		c.counted = false
		c.u.limit.release()
	}
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

// Get returns an idle connection, or dials one. With fresh set it always
// dials (the retry after a failed reused connection). client, when not
// nil, is the plain-HTTP client connection: a request queued past the
// bound on connections gives up with ErrClientGone when it leaves.
func (u *Upstream) Get(ctx context.Context, fresh bool, client net.Conn) (*UpConn, error) {
	if !fresh {
		for {
			var c *UpConn
			select {
			case c = <-u.idle:
			default:
			}
			if c == nil {
				break
			}
			if time.Since(c.idleFrom) > idleMaxAge {
				c.Close()
				continue
			}
			c.reused = true
			return c, nil
		}
	}
	return u.open(ctx, fresh, client)
}

// open dials a connection, or, with a bound on connections, waits for a
// slot or (unless fresh) a connection another request hands back.
func (u *Upstream) open(ctx context.Context, fresh bool, client net.Conn) (*UpConn, error) {
	if u.limit == nil {
		return u.dial(ctx)
	}
	for {
		c, err := u.limit.acquire(ctx, u.idle, fresh, u.opts.Read, client)
		if err != nil {
			return nil, err
		}
		if c == nil { // a slot: dial in it
			if c, err = u.dial(ctx); err != nil {
				u.limit.release()
				return nil, err
			}
			c.counted = true
			return c, nil
		}
		if time.Since(c.idleFrom) > idleMaxAge {
			c.Close()
			continue
		}
		c.reused = true
		return c, nil
	}
}

// put keeps a connection whose exchange finished cleanly.
func (u *Upstream) put(c *UpConn) {
	c.client = nil
	if !c.unwatch() { // the client left just as the exchange ended
		c.Close()
		return
	}
	if c.br.Buffered() > 0 { // the upstream sent more than the response: unusable
		c.Close()
		return
	}
	c.idleFrom = time.Now()
	if u.limit != nil {
		u.putLimited(c)
		return
	}
	select {
	case u.idle <- c:
	default:
		c.Close()
	}
}

// putLimited pools c under a bound on connections: handed straight to a
// request waiting for one, or closed to give its slot to a request that
// waits for a new one, or kept idle, or closed when the bound has come
// down below the connections open.
func (u *Upstream) putLimited(c *UpConn) {
	l := u.limit
	l.mu.Lock()
	if l.over() {
		l.mu.Unlock()
		c.Close()
		return
	}
	if l.handOver(c) {
		l.mu.Unlock()
		return
	}
	if c.counted && l.handSlot() {
		// Only requests that want a new connection wait: kept idle, c
		// would hold the slot one of them waits for.
		c.counted = false
		l.mu.Unlock()
		c.Close()
		return
	}
	select {
	case u.idle <- c:
		l.mu.Unlock()
	default:
		l.mu.Unlock()
		c.Close()
	}
}

// CloseIdle closes the pooled connections (at shutdown).
func (u *Upstream) CloseIdle() {
	for {
		select {
		case c := <-u.idle:
			c.Close()
		default:
			return
		}
	}
}

// Dial connects a new connection, retrying a refused connect during
// start-up (see UpstreamOptions.Started); under a bound on connections it
// first waits for a free slot (client as for Get).
func (u *Upstream) Dial(ctx context.Context, client net.Conn) (*UpConn, error) {
	return u.open(ctx, true, client)
}

func (u *Upstream) dial(ctx context.Context) (*UpConn, error) {
	backoff := 25 * time.Millisecond
	for {
		dctx, cancel := context.WithTimeout(ctx, u.opts.Connect)
		nc, err := u.dialer.DialContext(dctx, u.network, u.addr)
		cancel()
		if err == nil {
			c := &UpConn{nc: nc, u: u}
			c.br = readerPool.Get().(*bufio.Reader)
			c.br.Reset(c)
			c.bw = writerPool.Get().(*bufio.Writer)
			c.bw.Reset(c)
			return c, nil
		}
		u.dialFailures.Add(1)
		// During start-up the pool may not listen yet: a refused or
		// missing socket is retried, bounded by startupWait.
		var left time.Duration
		if started := u.opts.Started(); !started.IsZero() {
			left = time.Until(started.Add(startupWait))
		}
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

// Alive checks, without blocking, that the upstream has not closed an idle
// connection. Used before sending a request that cannot be retried.
func (c *UpConn) Alive() bool {
	if !c.readDL.IsZero() && time.Now().After(c.readDL) {
		// The last exchange's deadline has passed (it is a second away
		// while a client is watched): the peek would fail on it.
		c.readDL = time.Time{}
		_ = c.nc.SetReadDeadline(time.Time{})
	}
	// Bytes waiting on an idle connection are not a response to the
	// request about to be sent: not usable either.
	st, _ := peek(c.nc)
	return st == peekOpen
}

// IsTimeout reports whether err is a timeout (a deadline, the context's
// or the network's).
func IsTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Idle is how many connections wait in the pool.
func (u *Upstream) Idle() int { return len(u.idle) }
