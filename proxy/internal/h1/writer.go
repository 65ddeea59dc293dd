package h1

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

// writer is the http.ResponseWriter of the plain-HTTP listener. It frames
// the body as net/http would: the handler's Content-Length when it set one,
// else chunked on HTTP/1.1 and until close on HTTP/1.0; no body for HEAD,
// 1xx, 204 and 304. The head goes out with the first body byte, a Flush, or
// when the handler returns.
type writer struct {
	c      *conn
	req    *http.Request
	header http.Header

	status      int
	wroteHeader bool // WriteHeader was called (or implied)
	headSent    bool // the head is in the buffer
	noBody      bool // HEAD, 1xx, 204, 304
	chunked     bool
	length      int64 // Content-Length, -1 unknown
	written     int64 // body bytes accepted
	closeAfter  bool  // the connection ends after this response
	hijacked    bool
}

func (w *writer) Header() http.Header { return w.header }

func (w *writer) WriteHeader(code int) {
	if w.hijacked || w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		// An interim response (103 Early Hints): sent as is, the final
		// one follows. HTTP/1.0 has none.
		if w.req.ProtoMinor == 0 {
			return
		}
		w.writeStatusLine(code)
		w.writeHeaderLines()
		w.c.bw.WriteString("\r\n")
		_ = w.c.bw.Flush()
		return
	}
	w.wroteHeader = true
	w.status = code
}

// sendHead puts the status line and headers in the connection's buffer
// and settles the framing of the body.
func (w *writer) sendHead() {
	if w.headSent {
		return
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.headSent = true
	code := w.status
	w.noBody = w.req.Method == http.MethodHead || code < 200 || code == http.StatusNoContent || code == http.StatusNotModified
	h := w.header
	w.length = -1
	if cl := h["Content-Length"]; len(cl) == 1 {
		if n, err := strconv.ParseUint(cl[0], 10, 63); err == nil {
			w.length = int64(n)
		}
	}
	if len(h["Content-Length"]) > 0 && w.length < 0 || code < 200 || code == http.StatusNoContent {
		delete(h, "Content-Length")
	}
	delete(h, "Transfer-Encoding")
	if conn := h["Connection"]; conn != nil {
		if ConnectionListed(conn, "close") {
			w.closeAfter = true
		}
		delete(h, "Connection")
	}
	if w.req.Close || w.c.srv.shuttingDown.Load() {
		w.closeAfter = true
	}
	if rb := w.c.body; rb != nil && rb.skipped() {
		// The unread body will not be read past: say so before closing.
		w.closeAfter = true
	}
	switch {
	case w.noBody || w.length >= 0:
	case w.req.ProtoMinor >= 1:
		w.chunked = true
	default:
		w.closeAfter = true // HTTP/1.0 without a length: the body ends at close
	}

	w.writeStatusLine(code)
	w.writeHeaderLines()
	bw := w.c.bw
	if h["Date"] == nil {
		bw.WriteString("Date: ")
		bw.Write(httpDate())
		bw.WriteString("\r\n")
	}
	switch {
	case w.closeAfter:
		bw.WriteString("Connection: close\r\n")
	case w.req.ProtoMinor == 0:
		bw.WriteString("Connection: keep-alive\r\n")
	}
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	bw.WriteString("\r\n")
}

func (w *writer) writeStatusLine(code int) {
	bw := w.c.bw
	if line, ok := statusLines[code]; ok {
		bw.WriteString(line)
		return
	}
	bw.WriteString("HTTP/1.1 ")
	var b [3]byte
	bw.Write(strconv.AppendInt(b[:0], int64(code), 10))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(code))
	bw.WriteString("\r\n")
}

// statusLines holds the status lines of the codes the proxy answers most.
var statusLines = func() map[int]string {
	m := map[int]string{}
	for _, c := range []int{200, 201, 204, 206, 301, 302, 304, 307, 308, 400, 401, 403, 404, 405, 413, 416, 500, 502, 503, 504} {
		m[c] = "HTTP/1.1 " + strconv.Itoa(c) + " " + http.StatusText(c) + "\r\n"
	}
	return m
}()

func (w *writer) writeHeaderLines() {
	for k, vv := range w.header {
		if !isTrailerKey(k) {
			writeField(w.c.bw, k, vv)
		}
	}
}

// isTrailerKey reports whether a header key announces a trailer
// (http.TrailerPrefix), sent after a chunked body instead of in the head.
func isTrailerKey(k string) bool {
	return len(k) > len(http.TrailerPrefix) && k[:len(http.TrailerPrefix)] == http.TrailerPrefix
}

// writeField writes a header (or trailer) field with each of its values;
// a name that is not a token is left out.
func writeField(bw *bufio.Writer, k string, vv []string) {
	if !isToken(k) {
		return
	}
	for _, v := range vv {
		bw.WriteString(k)
		bw.WriteString(": ")
		writeHeaderValue(bw, v)
		bw.WriteString("\r\n")
	}
}

// writeHeaderValue writes v with CR and LF replaced by spaces, as net/http
// does, so that no header a handler copies can split the response.
func writeHeaderValue(bw *bufio.Writer, v string) {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\r' || c == '\n' {
			b := []byte(v)
			for j := i; j < len(b); j++ {
				if b[j] == '\r' || b[j] == '\n' {
					b[j] = ' '
				}
			}
			bw.Write(b)
			return
		}
	}
	bw.WriteString(v)
}

func (w *writer) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	w.sendHead()
	if w.noBody {
		if w.req.Method == http.MethodHead {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if len(p) == 0 {
		return 0, nil
	}
	if w.length >= 0 && w.written+int64(len(p)) > w.length {
		// More than the declared length: send what fits, then close.
		w.closeAfter = true
		fit := w.length - w.written
		n, err := w.c.bw.Write(p[:fit])
		w.written += int64(n)
		if err == nil {
			err = http.ErrContentLength
		}
		return n, err
	}
	bw := w.c.bw
	if w.chunked {
		var b [16]byte
		bw.Write(strconv.AppendInt(b[:0], int64(len(p)), 16))
		bw.WriteString("\r\n")
	}
	n, err := bw.Write(p)
	w.written += int64(n)
	if w.chunked && err == nil {
		_, err = bw.WriteString("\r\n")
	}
	if err != nil {
		w.closeAfter = true
	}
	return n, err
}

// ReadFrom sends a file with sendfile(2) when the body has a known length
// (static files); anything else goes through Write.
func (w *writer) ReadFrom(src io.Reader) (int64, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	w.sendHead()
	isFile := false
	switch s := src.(type) {
	case *os.File:
		isFile = true
	case *io.LimitedReader:
		_, isFile = s.R.(*os.File)
	}
	if !isFile || w.noBody || w.chunked || w.length < 0 {
		return io.Copy(writerOnly{w}, src)
	}
	if err := w.c.bw.Flush(); err != nil {
		w.closeAfter = true
		return 0, err
	}
	n, err := w.c.raw.sendFile(src, w.length-w.written)
	w.written += n
	if err != nil {
		w.closeAfter = true
	}
	return n, err
}

// writerOnly hides ReadFrom so io.Copy does not call it again.
type writerOnly struct{ io.Writer }

// Flush sends what is buffered (streamed responses, server-sent events).
func (w *writer) Flush() {
	if w.hijacked {
		return
	}
	w.sendHead()
	if err := w.c.bw.Flush(); err != nil {
		w.closeAfter = true
	}
}

// FlushError is Flush for http.ResponseController.
func (w *writer) FlushError() error {
	if w.hijacked {
		return http.ErrHijacked
	}
	w.sendHead()
	err := w.c.bw.Flush()
	if err != nil {
		w.closeAfter = true
	}
	return err
}

// Hijack hands the connection over (websockets). What is buffered for
// writing is sent first; the returned reader holds what the client sent
// past the request.
func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if err := w.c.bw.Flush(); err != nil {
		return nil, nil, err
	}
	w.hijacked = true
	w.c.hijacked = true
	w.c.srv.hijacked(w.c)
	return w.c.nc, bufio.NewReadWriter(w.c.br, bufio.NewWriter(w.c.nc)), nil
}

// SetReadDeadline and SetWriteDeadline serve http.ResponseController (the
// per-read body timeout).
func (w *writer) SetReadDeadline(t time.Time) error {
	w.c.readDL = t
	return w.c.nc.SetReadDeadline(t)
}

func (w *writer) SetWriteDeadline(t time.Time) error { return w.c.raw.setHandlerDeadline(t) }

// finish completes the response once the handler has returned: the head
// if none went out, the last chunk and trailers, and the decision whether
// the connection can carry another request.
func (w *writer) finish() {
	if w.hijacked {
		return
	}
	if !w.headSent && !w.noBodyFor() && w.header["Content-Length"] == nil && !w.hasTrailers() {
		// Nothing was written: the length is known to be zero.
		w.header["Content-Length"] = hdrZero
	}
	w.sendHead()
	bw := w.c.bw
	if w.chunked {
		bw.WriteString("0\r\n")
		for k, vv := range w.header {
			if isTrailerKey(k) {
				writeField(bw, k[len(http.TrailerPrefix):], vv)
			}
		}
		bw.WriteString("\r\n")
	}
	if !w.noBody && w.length >= 0 && w.written != w.length {
		w.closeAfter = true // a short body: the client cannot find the next response
	}
}

// noBodyFor reports, before the head is sent, whether the response will
// have no body.
func (w *writer) noBodyFor() bool {
	code := w.status
	if !w.wroteHeader {
		code = http.StatusOK
	}
	return w.req.Method == http.MethodHead || code < 200 || code == http.StatusNoContent || code == http.StatusNotModified
}

func (w *writer) hasTrailers() bool {
	for k := range w.header {
		if isTrailerKey(k) {
			return true
		}
	}
	return false
}

var hdrZero = []string{"0"}

// httpDate returns the current time in the Date header's format. It is
// formatted once a second, not per response.
func httpDate() []byte {
	now := time.Now().Unix()
	if d := dateCache.Load(); d != nil && d.sec == now {
		return d.text
	}
	d := &cachedDate{sec: now, text: time.Unix(now, 0).UTC().AppendFormat(nil, http.TimeFormat)}
	dateCache.Store(d)
	return d.text
}

type cachedDate struct {
	sec  int64
	text []byte
}

var dateCache atomic.Pointer[cachedDate]

// ClientConn returns the client connection under a ResponseWriter of this
// package's Server, or nil for any other writer (net/http's, on TLS).
func ClientConn(w http.ResponseWriter) net.Conn {
	if hw, ok := w.(*writer); ok {
		return hw.c.nc
	}
	return nil
}
