package h1

import (
	"bufio"
	"io"
	"net"
	"net/http"
)

// One exchange on an upstream connection, as the proxy drives it:
//
//	c, err := u.Get(ctx, false, h1.ClientConn(w))
//	c.WatchClient(h1.ClientConn(w)) // or c.WatchContext(ctx) on TLS
//	c.WriteRequest(&h1.Outgoing{...}, body, spooled)
//	resp, err := c.ReadResponse(w.Header(), r.Method)
//	copy c.Body(), then c.Trailer()
//	c.Done(complete)                // pooled, or closed

// Reused reports whether the connection came from the pool (it may have
// been closed by the upstream while idle).
func (c *UpConn) Reused() bool { return c.reused }

// Upstream is the pool the connection belongs to.
func (c *UpConn) Upstream() *Upstream { return c.u }

// WatchClient makes a read that waits on the upstream check, each
// clientCheckInterval, that the plain-HTTP client nc is still there: a
// client that went away ends the exchange with ErrClientGone (nginx's 499)
// instead of holding the upstream to the end. nil watches nothing.
func (c *UpConn) WatchClient(nc net.Conn) { c.client = nc }

// Writer is the buffered writer of the request; the caller flushes it.
func (c *UpConn) Writer() *bufio.Writer { return c.bw }

// ReadResponse reads the response head into dst (see readResponse); the
// Response stays valid until the connection is reused or closed.
func (c *UpConn) ReadResponse(dst http.Header, method string) (*Response, error) {
	c.chunked = nil
	err := readResponse(c.br, dst, method, &c.resp, &c.scratch)
	return &c.resp, err
}

// Body returns a reader of the current response's body.
func (c *UpConn) Body() io.Reader {
	b := bodyOf(c.br, &c.resp)
	c.chunked, _ = b.(*chunkedBody)
	return b
}

// Trailer returns the trailer fields of a chunked body read to its end.
func (c *UpConn) Trailer() []Field {
	if c.chunked == nil {
		return nil
	}
	return c.chunked.trailer
}

// Done ends the exchange: a complete one on a connection that may be
// reused goes back to the pool, anything else is closed.
func (c *UpConn) Done(complete bool) {
	if complete && !c.resp.Close {
		c.u.put(c)
		return
	}
	c.Close()
}
