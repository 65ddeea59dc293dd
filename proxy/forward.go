package proxy

import (
	"bufio"
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
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

// hopHeaders are dropped in both directions (RFC 9110 §7.6.1), with those
// named in Connection. Content-Length is rewritten by us.
var hopHeaders = map[string]bool{
	"Connection":          true,
	"Proxy-Connection":    true,
	"Keep-Alive":          true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
	"Proxy-Authorization": true,
	"Proxy-Authenticate":  true,
}

// forwardedHeaders are set by us; client-sent copies are dropped unless the
// peer is a trusted proxy.
var forwardedHeaders = map[string]bool{
	"X-Forwarded-For":   true,
	"X-Forwarded-Proto": true,
	"X-Forwarded-Host":  true,
	"X-Real-Ip":         true,
	"Forwarded":         true,
}

// peerAddr is the host part of RemoteAddr, without allocating.
func peerAddr(remote string) string {
	if i := strings.LastIndexByte(remote, ':'); i > 0 {
		remote = remote[:i]
	}
	return strings.TrimSuffix(strings.TrimPrefix(remote, "["), "]")
}

func (s *Server) isTrusted(a string) bool {
	if len(s.trusted) == 0 {
		return false
	}
	ip, err := netip.ParseAddr(a)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, p := range s.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// clientIP is nginx's real_ip with real_ip_recursive on: when the peer is
// trusted, the right-most X-Forwarded-For address that is not trusted.
func (s *Server) clientIP(r *http.Request) string {
	peer := peerAddr(r.RemoteAddr)
	if len(s.trusted) == 0 || !s.isTrusted(peer) {
		return peer
	}
	client := peer
	xff := strings.Join(r.Header["X-Forwarded-For"], ",")
	for xff != "" {
		var part string
		if i := strings.LastIndexByte(xff, ','); i >= 0 {
			part, xff = strings.TrimSpace(xff[i+1:]), xff[:i]
		} else {
			part, xff = strings.TrimSpace(xff), ""
		}
		if _, err := netip.ParseAddr(part); err != nil {
			break
		}
		client = part
		if !s.isTrusted(part) {
			break
		}
	}
	return client
}

func isIdempotent(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// upgradeOf returns the Upgrade protocol when the request asks for one.
func upgradeOf(h http.Header) string {
	up := h["Upgrade"]
	if len(up) == 0 {
		return ""
	}
	for _, v := range h["Connection"] {
		for t := range strings.SplitSeq(v, ",") {
			if h1.TokenEqual(t, "upgrade") {
				return up[0]
			}
		}
	}
	return ""
}

// forward proxies r to the site's upstream.
func (s *Server) forward(w *recorder, r *http.Request, st *site) {
	u := st.up
	upgrade := ""
	if r.ProtoMajor == 1 {
		upgrade = upgradeOf(r.Header)
		if upgrade != "" && !h1.TokenEqual(upgrade, "websocket") {
			// Only websockets pass: Upgrade: h2c (or any other) would let
			// a client open a tunnel to the app past the proxy's rules. The
			// header is hop-by-hop, so dropping it serves plain HTTP/1.1.
			upgrade = ""
		}
	}
	w.clientIP = s.clientIP(r)
	w.upstreamAddr = u.String()
	body, spooled, ok := s.requestBody(w, r, st, upgrade)
	if !ok {
		return
	}
	if spooled != nil {
		defer spooled.Close()
	}
	retryable := isIdempotent(r.Method) && body == nil
	start := time.Now()

	var c *h1.UpConn
	var resp *h1.Response
	h := w.Header()
	for attempt := 0; ; attempt++ {
		var err error
		c, err = u.Get(r.Context(), attempt > 0)
		if err != nil {
			s.upstreamFailed(w, r, st, err, true)
			return
		}
		if c.Reused() && !retryable && !c.Alive() {
			// Closed by the upstream while idle: a request that cannot be
			// retried must go on a connection known to be open.
			c.Close()
			if c, err = u.Dial(r.Context()); err != nil {
				s.upstreamFailed(w, r, st, err, true)
				return
			}
		}
		if nc := h1.ClientConn(w.w); nc != nil {
			c.WatchClient(nc) // watched while the upstream is slow
		} else {
			c.WatchContext(r.Context()) // net/http ends it when the client leaves
		}
		err = s.writeRequest(c, r, w.clientIP, upgrade, body, spooled)
		if err == nil {
			resp, err = c.ReadResponse(h, r.Method)
		}
		if err == nil {
			break
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
		if errors.Is(err, errBodyTooLarge) {
			closeAfter(w, r)
			writeStatusPage(w, r, http.StatusRequestEntityTooLarge)
			return
		}
		if re := (*h1.RequestError)(nil); errors.As(err, &re) {
			closeAfter(w, r) // the client's body was malformed
			writeStatusPage(w, r, re.Status)
			return
		}
		// A reused connection the upstream had closed fails before any
		// response byte: retry once on a fresh one when that is safe.
		if reused && retryable && attempt == 0 && !h1.IsTimeout(err) && !errors.Is(err, h1.ErrBadResponse) && !errors.Is(err, h1.ErrClientGone) {
			continue
		}
		s.upstreamFailed(w, r, st, err, false)
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

// writeRequest sends the request head and body: body is streamed, spooled
// was buffered whole (r.ContentLength is its length); one at most is set.
func (s *Server) writeRequest(c *h1.UpConn, r *http.Request, client, upgrade string, body io.Reader, spooled *spool) error {
	bw := c.Writer()
	uri := r.RequestURI
	if uri == "" || uri[0] != '/' || r.ProtoMajor != 1 {
		// HTTP/2, or an absolute-form target ("GET http://x/p"): the
		// upstream gets the origin form.
		uri = r.URL.RequestURI()
	}
	host := r.Host
	if host == "" {
		host = "localhost" // HTTP/1.0 without Host; HTTP/1.1 upstreams require one
	}
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	peer := peerAddr(r.RemoteAddr)
	trusted := len(s.trusted) > 0 && s.isTrusted(peer)
	conn := r.Header["Connection"]
	for k, vv := range r.Header {
		if hopHeaders[k] || k == "Content-Length" || k == "Host" || k == "Expect" || strings.IndexByte(k, '_') >= 0 {
			// nginx drops header names with underscores (underscores_in_headers
			// off): WSGI would read X_Forwarded_For as X-Forwarded-For.
			continue
		}
		if forwardedHeaders[k] && (!trusted || k != "X-Forwarded-Proto" && k != "X-Forwarded-Host" && k != "Forwarded") {
			continue
		}
		if conn != nil && h1.ConnectionListed(conn, k) {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	bw.WriteString("X-Forwarded-For: ")
	if trusted {
		for _, v := range r.Header["X-Forwarded-For"] {
			bw.WriteString(v)
			bw.WriteString(", ")
		}
	}
	bw.WriteString(peer)
	bw.WriteString("\r\nX-Real-IP: ")
	bw.WriteString(client)
	bw.WriteString("\r\n")
	if !trusted || r.Header["X-Forwarded-Proto"] == nil {
		if r.TLS != nil {
			bw.WriteString("X-Forwarded-Proto: https\r\n")
		} else {
			bw.WriteString("X-Forwarded-Proto: http\r\n")
		}
	}
	if !trusted || r.Header["X-Forwarded-Host"] == nil {
		bw.WriteString("X-Forwarded-Host: ")
		bw.WriteString(r.Host)
		bw.WriteString("\r\n")
	}
	if upgrade != "" {
		bw.WriteString("Connection: Upgrade\r\nUpgrade: ")
		bw.WriteString(upgrade)
		bw.WriteString("\r\n")
	}
	switch {
	case spooled != nil:
		return writeSpooled(bw, spooled)
	case body == nil:
		if r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
			bw.WriteString("Content-Length: 0\r\n")
		}
	case r.ContentLength > 0:
		bw.WriteString("Content-Length: ")
		var nb [20]byte
		bw.Write(strconv.AppendInt(nb[:0], r.ContentLength, 10))
		bw.WriteString("\r\n")
	default:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	bw.WriteString("\r\n")
	if body != nil {
		if r.ContentLength > 0 {
			if _, err := io.CopyN(bw, body, r.ContentLength); err != nil {
				return err
			}
		} else {
			cw := httputil.NewChunkedWriter(bw)
			if _, err := io.Copy(cw, body); err != nil {
				return err
			}
			cw.Close()
			bw.WriteString("\r\n")
		}
	}
	return bw.Flush()
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

// writeSpooled ends a request head with the length of a buffered body and
// sends the body.
func writeSpooled(bw *bufio.Writer, sp *spool) error {
	bw.WriteString("Content-Length: ")
	var nb [20]byte
	bw.Write(strconv.AppendInt(nb[:0], sp.Len(), 10))
	bw.WriteString("\r\n\r\n")
	if _, err := sp.WriteTo(bw); err != nil {
		return err
	}
	return bw.Flush()
}
