package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// Server serves the plain-HTTP listener: HTTP/1.0 and HTTP/1.1 with
// keep-alive, one goroutine per connection, requests parsed by
// parseRequest and answered through writer. TLS (and with it HTTP/2)
// stays on net/http's server.
//
// Why not net/http here too: on a proxied request its HTTP/1 server costs
// about as much CPU as the whole of nginx. Per request it starts a
// goroutine for a background read (to notice a client that goes away),
// aborts it with a deadline once the handler returns, updates deadlines
// some six times, and clones headers; measured with ../shared/bench, a
// minimal proxy on net/http reached 0.5× nginx's requests per second
// where the same proxy on this loop reached 0.75× (README, docs/proxy.md).
// What it does instead of the background read: a client that disconnects
// while the upstream works is found by a peek each second that an
// upstream read waits (UpConn.Read), and otherwise when its response is
// written; the request's context is the connection's.
type Server struct {
	handler      http.Handler
	log          zerolog.Logger
	shuttingDown atomic.Bool
	// Refused, when set, hears of each request refused before the
	// handler (for the access log and metrics): the peer, the request
	// line as received (cut to 2 KiB), the status and the bytes sent.
	Refused func(remote, line string, status int, bytes int64)
	// Pages are the bodies of the answers to refused requests, by
	// status; a status without one gets a line of text.
	Pages map[int][]byte
	// Timeouts are the client timeouts, DefaultTimeouts unless changed
	// before Serve.
	Timeouts Timeouts

	mu      sync.Mutex
	lns     []net.Listener
	conns   map[*conn]struct{} // not hijacked
	tunnels map[*conn]struct{} // hijacked (websockets)
}

func NewServer(h http.Handler, log zerolog.Logger) *Server {
	return &Server{handler: h, log: log, Timeouts: DefaultTimeouts, conns: map[*conn]struct{}{}, tunnels: map[*conn]struct{}{}}
}

// Connection states, for Shutdown: an idle connection (waiting for the
// next request) is closed at once, a new one once it has had newConnGrace
// to send its first request, and an active one finishes its response
// first.
const (
	stateActive int32 = iota
	stateIdle
	stateNew
	stateClosed
)

// Serve accepts connections until Shutdown or Close, then returns
// http.ErrServerClosed; any other accept failure is returned.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.shuttingDown.Load() {
		s.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	s.lns = append(s.lns, ln)
	s.mu.Unlock()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.shuttingDown.Load() {
				return http.ErrServerClosed
			}
			if isTemporaryAccept(err) {
				// Out of file descriptors or memory: wait and retry, as
				// net/http does, rather than stop serving.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn().Err(err).Dur("retry_in", delay).Msg("accept failed")
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := newConn(s, nc)
		if !s.track(c) {
			nc.Close()
			return http.ErrServerClosed
		}
		go c.serve()
	}
}

func isTemporaryAccept(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shuttingDown.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	delete(s.tunnels, c)
	s.mu.Unlock()
}

// hijacked moves a connection to the tunnels: Shutdown does not wait for
// them, it closes them once the ordinary connections are done.
func (s *Server) hijacked(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.tunnels[c] = struct{}{}
	s.mu.Unlock()
}

// closeListeners marks the server as shutting down and stops accepting.
func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shuttingDown.Store(true)
	for _, ln := range s.lns {
		ln.Close()
	}
	s.lns = nil
}

// Shutdown stops accepting, closes idle connections, lets active ones
// finish their response (which says "Connection: close" when its head is
// still to be sent) and returns once none is left or ctx ends. Hijacked
// connections (websockets) are not waited for: they are closed once the
// others are done, as the process is about to exit.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeListeners()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if s.closeIdle() == 0 {
			s.closeTunnels()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// closeIdle closes the idle connections, and new ones past their grace,
// and returns how many are left.
func (s *Server) closeIdle() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.CompareAndSwap(stateIdle, stateClosed) ||
			time.Since(c.accepted) > newConnGrace && c.state.CompareAndSwap(stateNew, stateClosed) {
			c.nc.Close()
		}
	}
	return len(s.conns)
}

func (s *Server) closeTunnels() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.tunnels {
		c.nc.Close()
	}
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	s.closeListeners()
	s.closeTunnels()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.state.Store(stateClosed)
		c.nc.Close()
		c.cancel()
	}
	return nil
}

// conn is one client connection and the request state it reuses: the
// request, its URL and header map, and the response writer.
type conn struct {
	srv      *Server
	nc       net.Conn
	raw      *connIO
	br       *bufio.Reader
	bw       *bufio.Writer
	remote   string
	accepted time.Time
	state    atomic.Int32
	readDL   time.Time    // the read deadline currently set on nc
	served   int          // requests answered
	body     *requestBody // the current request's body, nil without one
	linger   bool         // the client may still be sending: close gently
	hijacked bool
	ctx      context.Context
	cancel   context.CancelFunc

	base    http.Request // carries ctx; copied into req per request
	req     http.Request
	url     url.URL
	header  http.Header
	respHdr http.Header
	vals    []string
	head    []byte
	w       writer
}

var (
	connReaderPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	connWriterPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{srv: s, nc: nc, remote: nc.RemoteAddr().String(), accepted: time.Now(), header: http.Header{}, respHdr: http.Header{}}
	c.state.Store(stateNew)
	c.raw = &connIO{nc: nc, timeout: s.Timeouts.Send}
	c.br = connReaderPool.Get().(*bufio.Reader)
	c.br.Reset(nc)
	c.bw = connWriterPool.Get().(*bufio.Writer)
	c.bw.Reset(c.raw)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.base = *(&http.Request{}).WithContext(c.ctx)
	return c
}

func (c *conn) serve() {
	defer func() {
		if p := recover(); p != nil && p != http.ErrAbortHandler {
			c.srv.log.Error().Str("client", c.remote).Interface("panic", p).Str("stack", string(debug.Stack())).Msg("panic serving a request")
		}
		c.cancel()
		c.srv.untrack(c)
		if c.hijacked {
			return // the handler owns the connection and its reader
		}
		c.lingerClose()
		c.br.Reset(nil)
		connReaderPool.Put(c.br)
		c.bw.Reset(nil)
		connWriterPool.Put(c.bw)
	}()
	for c.waitRequest() {
		if !c.serveRequest() {
			return
		}
	}
}

// waitRequest waits, idle, for the first byte of the next request, within
// the idle timeout (the header timeout before the first request, as
// net/http counts it from accept); false means the connection is done.
func (c *conn) waitRequest() bool {
	if c.br.Buffered() == 0 {
		if c.served == 0 {
			c.setReadDeadline(c.accepted.Add(c.srv.Timeouts.Header))
		} else if now := time.Now(); needsRefresh(c.readDL, now, c.srv.Timeouts.Idle) {
			c.setReadDeadline(now.Add(c.srv.Timeouts.Idle))
		}
		if c.served > 0 {
			c.state.Store(stateIdle)
		}
		if c.served > 0 && c.srv.shuttingDown.Load() {
			return false // a new connection keeps its grace (closeIdle)
		}
		if _, err := c.br.Peek(1); err != nil {
			return false
		}
	}
	return c.state.CompareAndSwap(stateIdle, stateActive) || c.state.CompareAndSwap(stateNew, stateActive) ||
		c.state.Load() == stateActive
}

func (c *conn) setReadDeadline(t time.Time) {
	c.readDL = t
	_ = c.nc.SetReadDeadline(t)
}

// serveRequest reads one request, runs the handler and finishes the
// response; false means the connection is to be closed.
func (c *conn) serveRequest() bool {
	if c.served > 0 && !headBuffered(c.br) {
		// The head is still arriving: bound the wait for the rest (the
		// first request's bound counts from accept, set by waitRequest).
		c.setReadDeadline(time.Now().Add(c.srv.Timeouts.Header))
	}
	head, err := readRequestHead(c.br, c.head, MaxHeaderBytes)
	c.head = head[:0]
	if cap(c.head) > 4<<10 {
		c.head = nil // a rare large head: do not keep its buffer for the connection's life
	}
	if cap(c.vals) > 64 {
		c.vals = nil
	}
	if err != nil {
		c.reject(err, head)
		return false
	}
	defer c.endRequest()
	r := &c.req
	*r = c.base
	r.Header = c.header
	r.RemoteAddr = c.remote
	if err := parseRequest(string(head), c.br, r, &c.url, &c.vals); err != nil {
		c.reject(err, head)
		return false
	}
	c.body, _ = r.Body.(*requestBody)
	c.served++
	if ex := r.Header["Expect"]; ex != nil {
		if len(ex) != 1 || !TokenEqual(ex[0], "100-continue") {
			c.reject(&RequestError{http.StatusExpectationFailed, "unsupported Expect"}, head)
			return false
		}
		if c.body != nil && r.ProtoMinor > 0 { // HTTP/1.0 has no 100 Continue: ignored (RFC 9110 §10.1.1)
			c.body.continue100 = c.send100
		}
	}
	w := &c.w
	*w = writer{c: c, req: r, header: c.respHdr}
	c.srv.handler.ServeHTTP(w, r)
	if c.hijacked {
		return false
	}
	w.finish()
	keep := !w.closeAfter && c.bodyDone()
	if !keep && c.body != nil && !c.body.eof {
		c.linger = true // the client may still be sending its body
	}
	if err := c.bw.Flush(); err != nil {
		return false
	}
	return keep
}

// endRequest drops what the request held, so an idle connection keeps no
// head, URL or header strings, and its maps no table grown by an unusual
// request.
func (c *conn) endRequest() {
	if c.hijacked {
		return
	}
	for _, m := range []*http.Header{&c.header, &c.respHdr} {
		if len(*m) > 64 {
			*m = http.Header{}
		} else {
			clear(*m)
		}
	}
	clear(c.vals[:cap(c.vals)])
	c.raw.endRequest()
	c.req, c.url, c.body, c.w = http.Request{}, url.URL{}, nil, writer{}
}

// headBuffered reports whether the reader already holds a whole request
// head, so that reading it cannot block.
func headBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	b = bytes.TrimLeft(b, "\r\n") // empty lines before the request line end nothing
	return bytes.Contains(b, []byte("\n\r\n")) || bytes.Contains(b, []byte("\n\n"))
}

// bodyDone reports whether the request body is read to its end, reading
// and dropping a small unread rest; false means the next request cannot be
// found and the connection must close.
func (c *conn) bodyDone() bool {
	rb := c.body // the body as parsed, whatever the handler put in r.Body
	if rb == nil || rb.eof {
		return true
	}
	if rb.skipped() {
		return false
	}
	c.setReadDeadline(time.Now().Add(c.srv.Timeouts.Header))
	_, _ = io.CopyN(io.Discard, rb, maxDiscard+1)
	return rb.eof
}

// lingerClose closes the connection. When the client may still be sending
// (a refused request, an unread body), it first ends the writing side and
// reads what arrives for a moment, so that the response is not destroyed
// by the reset a close with unread data sends (nginx's lingering_close,
// net/http's closeWriteAndWait).
func (c *conn) lingerClose() {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok && c.linger && cw.CloseWrite() == nil {
		_ = c.nc.SetReadDeadline(time.Now().Add(lingerTimeout))
		_, _ = io.Copy(io.Discard, c.nc) // until the client's EOF or the deadline
	}
	c.nc.Close()
}

// send100 tells a client that waits with its body to send it.
func (c *conn) send100() {
	if c.w.headSent || c.w.wroteHeader {
		return // the answer is already decided: no invitation to send
	}
	c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	_ = c.bw.Flush()
}

// reject answers a request that could not be read with a small page and
// "Connection: close"; a connection that simply ended gets nothing.
func (c *conn) reject(err error, head []byte) {
	c.linger = true
	code := 0
	var re *RequestError
	switch {
	case errors.As(err, &re):
		code = re.Status
		c.srv.log.Debug().Str("client", c.remote).Err(err).Msg("request refused")
	case IsTimeout(err) && len(head) > 0:
		// Part of a head, then silence; a connection that never sent a
		// byte is closed without a word (browsers' preconnects).
		code = http.StatusRequestTimeout
	}
	if code == 0 {
		return
	}
	page, ok := c.srv.Pages[code]
	if !ok {
		page = []byte(strconv.Itoa(code) + " " + http.StatusText(code) + "\n")
	}
	bw := c.bw
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(code))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(code))
	bw.WriteString("\r\nServer: onebox\r\nDate: ")
	bw.Write(httpDate())
	bw.WriteString("\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: ")
	bw.WriteString(strconv.Itoa(len(page)))
	bw.WriteString("\r\nConnection: close\r\n\r\n")
	bw.Write(page)
	_ = c.bw.Flush()
	if c.srv.Refused != nil {
		line, _, _ := bytes.Cut(head, []byte("\n"))
		line = bytes.TrimSuffix(line[:min(len(line), 2<<10)], []byte("\r"))
		c.srv.Refused(c.remote, string(line), code, int64(len(page)))
	}
}

// connIO is the writing side of a client connection under its bufio
// writer. A write fails after SendTimeout without progress (nginx's
// send_timeout: between two successful writes, not for the whole
// response); the deadline is moved lazily, as UpConn's are, and a write
// that timed out after sending something goes on with a new one. A
// deadline the handler set (http.ResponseController) is kept as it is
// until the next request.
type connIO struct {
	nc      net.Conn
	timeout time.Duration // the send timeout
	writeDL time.Time
	fixed   bool // the handler's deadline is in force
}

func (x *connIO) Write(p []byte) (int, error) {
	if x.fixed {
		return x.nc.Write(p)
	}
	written := 0
	for {
		if now := time.Now(); needsRefresh(x.writeDL, now, x.timeout) {
			x.writeDL = now.Add(x.timeout)
			_ = x.nc.SetWriteDeadline(x.writeDL)
		}
		n, err := x.nc.Write(p[written:])
		written += n
		if err == nil || n == 0 || !IsTimeout(err) {
			return written, err
		}
		x.writeDL = time.Time{} // a slow reader, not a stalled one
	}
}

// setHandlerDeadline is SetWriteDeadline for the handler.
func (x *connIO) setHandlerDeadline(t time.Time) error {
	x.fixed, x.writeDL = true, t
	return x.nc.SetWriteDeadline(t)
}

// endRequest returns to the send timeout after a handler's deadline.
func (x *connIO) endRequest() {
	if x.fixed {
		x.fixed, x.writeDL = false, time.Time{}
	}
}

// sendFile copies at most n bytes of a file (or a LimitedReader of one)
// to the connection with sendfile(2), with the same timeout rule as Write.
func (x *connIO) sendFile(src io.Reader, n int64) (int64, error) {
	f := src
	lr, isLimited := src.(*io.LimitedReader)
	if isLimited {
		f = lr.R
		n = min(n, lr.N)
	}
	var total int64
	var err error
	for n > 0 {
		if !x.fixed {
			x.writeDL = time.Now().Add(x.timeout)
			_ = x.nc.SetWriteDeadline(x.writeDL)
		}
		var m int64
		m, err = io.Copy(x.nc, &io.LimitedReader{R: f, N: n})
		total += m
		n -= m
		if err != nil && m > 0 && !x.fixed && IsTimeout(err) {
			continue // progress: a slow reader
		}
		if err == nil && n > 0 {
			err = io.ErrUnexpectedEOF // the file is shorter than its length
		}
		break
	}
	if isLimited {
		lr.N -= total
	}
	return total, err
}
