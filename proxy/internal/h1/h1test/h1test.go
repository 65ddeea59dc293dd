// Package h1test is a raw HTTP/1 client for tests of the engine and of the
// proxy on it: requests are written byte for byte, responses read one at
// a time, and the end of the connection is observed.
package h1test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"
)

// Conn is a raw client connection.
type Conn struct {
	T  testing.TB
	NC net.Conn
	BR *bufio.Reader
}

// Dial connects to addr for the rest of the test, with a 20 s deadline.
func Dial(t testing.TB, addr string) *Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { nc.Close() })
	return &Conn{T: t, NC: nc, BR: bufio.NewReader(nc)}
}

// Send writes s as it is.
func (c *Conn) Send(s string) {
	c.T.Helper()
	if _, err := io.WriteString(c.NC, s); err != nil {
		c.T.Fatalf("write %q: %v", Trim(s), err)
	}
}

// Response reads one response to a request of the given method, and its
// whole body.
func (c *Conn) Response(method string) (*http.Response, string) {
	c.T.Helper()
	resp, err := http.ReadResponse(c.BR, &http.Request{Method: method})
	if err != nil {
		c.T.Fatalf("read the response to %s: %v", method, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.T.Fatalf("read the body of the response to %s (%d): %v", method, resp.StatusCode, err)
	}
	return resp, string(b)
}

// ExpectClosed checks that the server ends the connection (EOF or reset)
// within wait and sends nothing more.
func (c *Conn) ExpectClosed(wait time.Duration) {
	c.T.Helper()
	_ = c.NC.SetReadDeadline(time.Now().Add(wait))
	rest, err := io.ReadAll(c.BR)
	switch {
	case len(rest) > 0:
		c.T.Errorf("the server sent more: %q", Trim(string(rest)))
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.T.Errorf("the connection is still open after %v", wait)
	case err != nil && !errors.Is(err, syscall.ECONNRESET):
		c.T.Errorf("reading the end of the connection: %v", err)
	}
}

// ExpectKept and ExpectClose check the response's "Connection: close"
// (http.ReadResponse turns it into resp.Close and drops the header; the
// engine's status lines all say HTTP/1.1, so nothing else sets resp.Close).
func ExpectKept(t testing.TB, resp *http.Response) {
	t.Helper()
	if resp.Close {
		t.Errorf("%d: the response says Connection: close", resp.StatusCode)
	}
}

// ExpectClose: see ExpectKept.
func ExpectClose(t testing.TB, resp *http.Response) {
	t.Helper()
	if !resp.Close {
		t.Errorf("%d: no Connection: close in the response", resp.StatusCode)
	}
}

// ExchangeRaw sends raw on a new connection, reads one response and
// reports whether the server then closed the connection.
func ExchangeRaw(t testing.TB, addr, raw string) (resp *http.Response, closed bool) {
	t.Helper()
	c := Dial(t, addr)
	defer c.NC.Close()
	go func() { _, _ = io.WriteString(c.NC, raw) }() // the server may close before reading it all
	resp, _ = c.Response("")
	_ = c.NC.SetReadDeadline(time.Now().Add(2 * time.Second))
	rest, err := io.ReadAll(c.BR)
	if len(rest) > 0 {
		t.Errorf("after the response to %q the server sent more: %q", Trim(raw), Trim(string(rest)))
	}
	return resp, !errors.Is(err, os.ErrDeadlineExceeded)
}

// Trim cuts s to 80 bytes for a test message.
func Trim(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
