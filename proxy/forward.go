package proxy

import (
	"compress/gzip"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"onebox/proxy/internal/h1"
)

// copyBufferSize is the buffer a response body is copied through.
const copyBufferSize = 32 << 10

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

// errBodyTooLarge ends a chunked request body past PROXY_CLIENT_MAX_BODY_SIZE.
var errBodyTooLarge = errors.New("request body too large")

var errBadUpstream = errors.New("bad upstream")

func isIdempotent(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// forward proxies r to the site's upstream, in three phases: the round
// trip (roundTrip: the request out, the response head in, one retry),
// the answer to a failure (answerFailure), and the relay of the
// response (relay, or tunnel for a websocket).
func (s *Server) forward(w *recorder, r *http.Request, st *site) {
	upgrade := upgradeFor(r)
	w.clientIP = s.clientIP(r)
	w.upstreamAddr = st.up.String()
	body, spooled, ok := s.requestBody(w, r, st, upgrade)
	if !ok {
		return
	}
	if spooled != nil {
		defer spooled.Close()
	}
	q := h1.Outgoing{Method: r.Method, ContentLength: r.ContentLength}
	q.Target, q.Host = h1.Target(r)
	peer := peerAddr(r.RemoteAddr)
	w.fields = upstreamFields(w.fields[:0], r.Header, forwarding{
		peer: peer, client: w.clientIP, trusted: s.isTrusted(peer),
		https: r.TLS != nil, host: r.Host, upgrade: upgrade,
	})
	q.Fields = w.fields
	start := time.Now()
	c, resp, err := s.roundTrip(w, r, st.up, &q, body, spooled)
	if err != nil {
		s.answerFailure(w, r, st, err)
		return
	}
	w.upstreamTime = time.Since(start)
	if resp.Status == http.StatusSwitchingProtocols {
		if upgrade == "" {
			c.Close()
			s.upstreamFailed(w, r, st, h1.ErrBadResponse, false)
			return
		}
		s.tunnel(w, r, c)
		return
	}
	s.relay(w, r, st, c, resp, start)
}

// upgradeFor returns the protocol an HTTP/1 request asks to upgrade to
// when it is passed on: only websockets pass. Upgrade: h2c (or any other)
// would let a client open a tunnel to the app past the proxy's rules; the
// header is hop-by-hop, so dropping it serves plain HTTP/1.1.
func upgradeFor(r *http.Request) string {
	if r.ProtoMajor != 1 {
		return ""
	}
	if up := upgradeOf(r.Header); h1.TokenEqual(up, "websocket") {
		return up
	}
	return ""
}

// connectError is a failure to get a connection to the upstream.
type connectError struct{ err error }

func (e *connectError) Error() string { return e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

// roundTrip sends q and reads the response head into the client's
// header map. A reused connection the upstream had closed fails before
// any response byte: the request is sent once more on a fresh one when
// that is safe: an idempotent request without a streamed body.
func (s *Server) roundTrip(w *recorder, r *http.Request, u *h1.Upstream, q *h1.Outgoing, body io.Reader, spooled *spool) (*h1.UpConn, *h1.Response, error) {
	retryable := isIdempotent(r.Method) && body == nil
	h := w.Header()
	nc := h1.ClientConn(w.w) // nil on the TLS listener
	for attempt := 0; ; attempt++ {
		c, err := s.upstreamConn(r, nc, u, attempt > 0, retryable)
		if err != nil {
			return nil, nil, &connectError{err}
		}
		if nc != nil {
			c.WatchClient(nc) // watched while the upstream is slow
		} else {
			c.WatchContext(r.Context()) // net/http ends it when the client leaves
		}
		err = c.WriteRequest(q, body, spooledBody(spooled))
		var resp *h1.Response
		if err == nil {
			resp, err = c.ReadResponse(h, r.Method)
		}
		if err == nil {
			return c, resp, nil
		}
		reused := c.Reused()
		c.Close()
		// A head that failed half-way may have left upstream headers
		// (Set-Cookie…) in the client's map: they must not reach the
		// error page or pile up on the retry.
		for k := range h {
			if k != "Server" && k != "Connection" {
				delete(h, k)
			}
		}
		if !(reused && retryable && attempt == 0 && retryAfter(err)) {
			return nil, nil, err
		}
	}
}

// spooledBody is sp as the writer of a buffered body, nil without one
// (a nil *spool in an interface would not be nil).
func spooledBody(sp *spool) io.WriterTo {
	if sp == nil {
		return nil
	}
	return sp
}

// upstreamConn returns a connection for the request: a pooled one, or a
// fresh one on the retry (fresh) and for a request that cannot be retried
// when the pooled one turns out closed by the upstream while idle. A
// request queued for a connection (APP_WORKER_CONNECTIONS) watches its
// plain-HTTP client nc there: on that listener r's context does not end
// when the client leaves.
func (s *Server) upstreamConn(r *http.Request, nc net.Conn, u *h1.Upstream, fresh, retryable bool) (*h1.UpConn, error) {
	c, err := u.Get(r.Context(), fresh, nc)
	if err != nil {
		return nil, err
	}
	if c.Reused() && !retryable && !c.Alive() {
		c.Close()
		return u.Dial(r.Context(), nc)
	}
	return c, nil
}

// retryAfter reports whether a failed exchange on a reused connection may
// be the upstream's close of an idle connection, worth a retry: not a
// timeout, a malformed response, a departed client or the client's own
// body.
func retryAfter(err error) bool {
	var re *h1.RequestError
	return !h1.IsTimeout(err) && !errors.Is(err, h1.ErrBadResponse) && !errors.Is(err, h1.ErrClientGone) &&
		!errors.Is(err, errBodyTooLarge) && !errors.As(err, &re)
}

// answerFailure answers a round trip that failed: the client's body
// (too large, malformed: the connection closes after), or the upstream
// (upstreamFailed).
func (s *Server) answerFailure(w *recorder, r *http.Request, st *site, err error) {
	var re *h1.RequestError
	var ce *connectError
	switch {
	case errors.Is(err, errBodyTooLarge):
		closeAfter(w, r)
		writeStatusPage(w, r, http.StatusRequestEntityTooLarge)
	case errors.As(err, &re):
		closeAfter(w, r) // the client's body was malformed
		writeStatusPage(w, r, re.Status)
	case errors.As(err, &ce):
		s.upstreamFailed(w, r, st, ce.err, true)
	default:
		s.upstreamFailed(w, r, st, err, false)
	}
}

// requestBody prepares the request body: buffered whole into spooled
// (PROXY_REQUEST_BUFFERING; it can be sent again on a retry, and
// r.ContentLength becomes its length), or streamed from body; both are nil
// without a body. ok is false when the client has been answered.
func (s *Server) requestBody(w *recorder, r *http.Request, st *site, upgrade string) (body io.Reader, spooled *spool, ok bool) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil, nil, true
	}
	if !st.reqBuffering || upgrade != "" {
		return &bodyReader{r: r.Body, rc: http.NewResponseController(w), timeout: s.cfg.ClientBodyTimeout, max: s.maxBody, limit: r.ContentLength < 0 && s.maxBody > 0}, nil, true
	}
	if spooled = s.bufferRequest(w, r, st); spooled == nil {
		return nil, nil, false
	}
	r.ContentLength = spooled.Len()
	return nil, spooled, true
}

// relay sends the upstream's response to the client: buffered (read whole
// first, the connection released, then sent) or streamed.
func (s *Server) relay(w *recorder, r *http.Request, st *site, c *h1.UpConn, resp *h1.Response, start time.Time) {
	h := w.Header()
	var body io.Reader
	if resp.ContentLength != 0 {
		body = c.Body()
	}
	if !s.responseBuffered(st, h, resp) {
		s.sendResponse(w, r, c, resp, nil, body, nil)
		return
	}
	sp, done := s.bufferResponse(w, r, st, c, body)
	if sp == nil {
		return
	}
	defer sp.Close()
	if !done {
		s.sendResponse(w, r, c, resp, sp, body, nil) // past the temp-file limit: the rest streams
		return
	}
	// The worker is free from here, however slowly the client reads.
	// resp and the trailer live in c: keep copies.
	snap := *resp
	trailer := append([]h1.Field(nil), c.Trailer()...)
	c.Done(true)
	w.upstreamTime = time.Since(start)
	setLength(h, &snap, sp.Len(), len(trailer) > 0)
	s.sendResponse(w, r, nil, &snap, sp, nil, trailer)
}

// sendResponse writes the head, then the buffered part of the body (sp,
// may be nil), then streams what is left of body from c (nil when all is
// buffered and c already released), then the trailer (c's when c is set).
func (s *Server) sendResponse(w *recorder, r *http.Request, c *h1.UpConn, resp *h1.Response, sp *spool, body io.Reader, trailer []h1.Field) {
	h := w.Header()
	var zw *gzip.Writer
	if s.cfg.Gzip && resp.ContentLength != 0 && gzipProxied(r, resp) {
		delete(h, "Content-Length")
		h["Content-Encoding"] = hdrGzip
		h["Vary"] = append(h["Vary"], "Accept-Encoding")
		if et := h["Etag"]; len(et) == 1 && !strings.HasPrefix(et[0], "W/") {
			h["Etag"] = []string{"W/" + et[0]} // no longer the same bytes
		}
		zw = gzipPool.Get().(*gzip.Writer)
		zw.Reset(w)
	}
	w.WriteHeader(resp.Status)
	ok := true
	if sp != nil {
		ok = writeSpool(w, sp, zw)
	}
	if ok && body != nil {
		ok = s.copyBody(w, body, resp.ContentLength < 0, zw)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			ok = false
		}
		zw.Reset(io.Discard)
		gzipPool.Put(zw)
	}
	if ok {
		if c != nil {
			trailer = c.Trailer()
		}
		for _, t := range trailer {
			h[http.TrailerPrefix+t.Name] = append(h[http.TrailerPrefix+t.Name], t.Value)
		}
	}
	if !ok {
		// The head is out and the body stopped short (the upstream
		// failed or went silent, or the client left): the client must
		// see a cut connection, not a body that looks complete.
		w.abort = true
	}
	if c != nil {
		c.Done(ok)
	}
}

// copyBody streams the response body; unknown-length bodies (chunked,
// server-sent events) are flushed as they arrive. It reports whether the
// body was read to its end.
func (s *Server) copyBody(w *recorder, br io.Reader, flush bool, zw *gzip.Writer) bool {
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := *bp
	var dst io.Writer = w
	if zw != nil {
		dst = zw
	}
	for {
		n, err := br.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return false
			}
			if flush {
				if zw != nil {
					_ = zw.Flush()
				}
				w.Flush()
			}
		}
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
}

var gzipPool = sync.Pool{New: func() any {
	// Level 1, as nginx's gzip_comp_level default: most of the gain for
	// little CPU.
	zw, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	return zw
}}

// gzipProxied decides whether to compress an upstream response: the client
// accepts gzip, the upstream has not encoded it, the type compresses well
// and it is not tiny or partial.
func gzipProxied(r *http.Request, resp *h1.Response) bool {
	if resp.Status != http.StatusOK || resp.HasEncoding || resp.HasRange || resp.NoTransform ||
		(resp.ContentLength >= 0 && resp.ContentLength < gzipMinSize) || !acceptsGzip(r) {
		return false
	}
	return resp.ContentType != "" && compressible(resp.ContentType)
}

// upstreamFailed answers 504 for timeouts and 502 for everything else.
func (s *Server) upstreamFailed(w *recorder, r *http.Request, st *site, err error, connecting bool) {
	kind, code := upErrReset, http.StatusBadGateway
	switch {
	case h1.IsTimeout(err):
		kind, code = upErrTimeout, http.StatusGatewayTimeout
	case connecting:
		kind = upErrConnect
	}
	if r.Context().Err() != nil || errors.Is(err, h1.ErrClientGone) {
		// The client went away: nginx logs 499 and answers nothing.
		w.status = 499
		w.abort = true
		return
	}
	st.m.upstreamError(kind)
	s.log.Warn().Err(err).Str("upstream", st.up.String()).Str("site", st.name).Str("uri", r.RequestURI).Msg("upstream " + kind)
	writeStatusPage(w, r, code)
}

// bodyReader reads the client's body with a deadline per read (nginx's
// client_body_timeout: a slow client is cut off, a slow but steady one is
// not) and enforces the size limit on chunked bodies.
type bodyReader struct {
	r       io.Reader
	rc      *http.ResponseController
	timeout time.Duration // PROXY_CLIENT_BODY_TIMEOUT
	n       int64
	max     int64
	limit   bool
	done    bool
}

func (b *bodyReader) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(b.timeout))
	n, err := b.r.Read(p)
	b.n += int64(n)
	if b.limit && b.n > b.max {
		return n, errBodyTooLarge
	}
	if err != nil && !b.done {
		// Clear the deadline so it cannot fire on net/http's background
		// read (the TLS listener) once the body is consumed; the plain
		// listener sets its own before it reads again.
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// tunnel hands a 101 response to the client and copies both ways until one
// side closes (websockets).
func (s *Server) tunnel(w *recorder, r *http.Request, c *h1.UpConn) {
	cc, brw, err := http.NewResponseController(w.w).Hijack()
	if err != nil {
		c.Close()
		writeStatusPage(w, r, http.StatusInternalServerError)
		return
	}
	w.status = http.StatusSwitchingProtocols
	w.bytes += c.Tunnel(cc, brw.Reader)
}
