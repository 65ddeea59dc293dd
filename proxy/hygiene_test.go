package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// exchange sends raw bytes on one connection, reads one response and
// reports whether the server then closed the connection.
func exchange(t *testing.T, addr, raw string) (status int, hdr http.Header, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no response to %q: %v", raw, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// Anything more than EOF here is either a second response (smuggled)
	// or a connection kept open (timeout).
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	rest, err := io.ReadAll(br)
	switch {
	case len(rest) > 0:
		t.Errorf("after the response to %q the server sent more: %q", raw, rest)
	case errors.Is(err, os.ErrDeadlineExceeded):
		closed = false
	default:
		closed = true
	}
	return resp.StatusCode, resp.Header, closed
}

func TestAmbiguousRequestsCloseTheConnection(t *testing.T) {
	up := startUpstream(t, true)
	_, addr := proxyTo(t, up.target, nil)
	smuggled := "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, raw := range []string{
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
		"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + smuggled,
		"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + smuggled,
	} {
		status, hdr, closed := exchange(t, addr, raw)
		if status != 200 || !closed {
			t.Errorf("%q: status %d, closed %v (Connection %q); want the connection closed after the response", raw, status, closed, hdr.Get("Connection"))
		}
	}
	// A plain keep-alive request is not closed: the check above can fail.
	if _, _, closed := exchange(t, addr, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"); closed {
		t.Errorf("a keep-alive GET was closed")
	}
}

func TestMalformedRequests(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"index.html": "hi"})
	_, addr := startServer(t, envConfig(t, map[string]string{"ROOT": root}), Deps{})
	for _, raw := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n folded: y\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n",
		"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
		"GET /\r\n\r\n",
		"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Big: "+strings.Repeat("a", 1000)+"\r\n", 40) + "\r\n",
		"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /a%00b HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		status, _, closed := exchange(t, addr, raw)
		if status < 400 || status >= 600 || !closed {
			t.Errorf("%q: status %d, closed %v; want 4xx/5xx and the connection closed", trim(raw), status, closed)
		}
	}
}

func trim(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

func TestTraceRefusedAndServerHeader(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"index.html": "hi"})
	_, addr := startServer(t, envConfig(t, map[string]string{"ROOT": root}), Deps{})
	for _, m := range []string{"TRACE", "CONNECT"} {
		target := "/"
		if m == "CONNECT" {
			target = "example.com:443"
		}
		resp := rawRequest(t, addr, m+" "+target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if resp.status != http.StatusMethodNotAllowed {
			t.Errorf("%s: %d, want 405", m, resp.status)
		}
		if resp.header.Get("Server") != "onebox" {
			t.Errorf("%s: Server %q, want onebox without a version", m, resp.header.Get("Server"))
		}
	}
}
