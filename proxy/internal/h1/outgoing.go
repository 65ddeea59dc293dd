package h1

import (
	"io"
	"net/http"
	"net/http/httputil"
	"strconv"
)

// Outgoing is the head of a request as it goes to an upstream: the
// client's method, target and host, and the header fields the caller
// chose to send. UpConn.WriteRequest frames it with its body.
type Outgoing struct {
	Method        string
	Target        string  // in origin form: see Target
	Host          string  // see Target
	Fields        []Field // every other header field, in order; no framing fields
	ContentLength int64   // of the body; negative: unknown (chunked)
}

// Target returns the request target and Host an upstream is sent for r:
// the origin form (an absolute-form target, "GET http://x/p", or an
// HTTP/2 request, become "/p"), and "localhost" for a request without a
// Host (HTTP/1.0), as an HTTP/1.1 upstream requires one.
func Target(r *http.Request) (target, host string) {
	target = r.RequestURI
	if target == "" || target[0] != '/' || r.ProtoMajor != 1 {
		target = r.URL.RequestURI()
	}
	host = r.Host
	if host == "" {
		host = "localhost"
	}
	return target, host
}

// WriteRequest sends the request head and body as HTTP/1.1 and flushes
// them. At most one of body and spooled is set: body is streamed,
// q.ContentLength bytes of it, or all of it chunked when the length is
// unknown; spooled writes exactly q.ContentLength bytes. A POST, PUT or
// PATCH without a body says Content-Length: 0 (RFC 9110 §8.6).
func (c *UpConn) WriteRequest(q *Outgoing, body io.Reader, spooled io.WriterTo) error {
	bw := c.bw
	bw.WriteString(q.Method)
	bw.WriteByte(' ')
	bw.WriteString(q.Target)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(q.Host)
	bw.WriteString("\r\n")
	for _, f := range q.Fields {
		bw.WriteString(f.Name)
		bw.WriteString(": ")
		bw.WriteString(f.Value)
		bw.WriteString("\r\n")
	}
	switch {
	case spooled != nil:
		c.writeLength(q.ContentLength)
		bw.WriteString("\r\n")
		if _, err := spooled.WriteTo(bw); err != nil {
			return err
		}
		return bw.Flush()
	case body == nil:
		if q.Method == http.MethodPost || q.Method == http.MethodPut || q.Method == http.MethodPatch {
			bw.WriteString("Content-Length: 0\r\n")
		}
	case q.ContentLength > 0:
		c.writeLength(q.ContentLength)
	default:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	bw.WriteString("\r\n")
	if body != nil {
		if err := c.writeBody(body, q.ContentLength); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// writeLength writes a Content-Length field.
func (c *UpConn) writeLength(n int64) {
	c.bw.WriteString("Content-Length: ")
	c.bw.Write(strconv.AppendInt(c.bw.AvailableBuffer(), n, 10))
	c.bw.WriteString("\r\n")
}

// writeBody streams n bytes of body, or all of it chunked when n is not
// positive.
func (c *UpConn) writeBody(body io.Reader, n int64) error {
	if n > 0 {
		_, err := io.CopyN(c.bw, body, n)
		return err
	}
	cw := httputil.NewChunkedWriter(c.bw)
	if _, err := io.Copy(cw, body); err != nil {
		return err
	}
	cw.Close()
	c.bw.WriteString("\r\n")
	return nil
}
