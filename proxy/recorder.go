package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"onebox/proxy/internal/h1"
)

// recorder wraps the ResponseWriter to learn the status and the body size
// for the access log and metrics. It is pooled: one per request in flight.
type recorder struct {
	w            http.ResponseWriter
	status       int
	bytes        int64
	clientIP     string        // the client address after real_ip, set by the proxy path or the log
	upstreamTime time.Duration // time to the upstream's response header, -1 when not proxied
	upstreamAddr string
	abort        bool // end the connection without completing the response
	// fields is the buffer of the header fields a proxied request sends
	// upstream, kept with the pooled recorder so that a request costs no
	// allocation for it (on the stack it would escape: see h1.Outgoing).
	fields []h1.Field
	// reqBody and respBody hold the request's buffered bodies (their
	// memory buffers are pooled by the spoolers), closed before the
	// recorder goes back to its pool.
	reqBody, respBody spool
}

var recorderPool = sync.Pool{New: func() any { return new(recorder) }}

func getRecorder(w http.ResponseWriter) *recorder {
	r := recorderPool.Get().(*recorder)
	*r = recorder{w: w, upstreamTime: -1, fields: r.fields[:0]}
	return r
}

func putRecorder(r *recorder) {
	r.w = nil
	clear(r.fields) // the strings are the request's
	recorderPool.Put(r)
}

func (r *recorder) Header() http.Header { return r.w.Header() }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		r.status = code
	}
	r.w.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.w.Write(p)
	r.bytes += int64(n)
	return n, err
}

// ReadFrom keeps sendfile working for large static files.
func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := r.w.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{r.w}, src)
	}
	r.bytes += n
	return n, err
}

// Flush sends buffered data to the client (streamed responses).
func (r *recorder) Flush() {
	if f, ok := r.w.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack hands the connection over (websockets).
func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(r.w).Hijack()
}

// Unwrap lets http.ResponseController reach the real writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.w }
