package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// serveH1 serves h with the plain-HTTP connection loop alone (no Server
// around it) on a loopback port until the test ends.
func serveH1(t *testing.T, h http.Handler, log zerolog.Logger) (*h1Server, string) {
	t.Helper()
	srv := newH1Server(h, log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		select {
		case err := <-done:
			if !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("Serve returned %v after Close, want http.ErrServerClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return after Close")
		}
	})
	return srv, ln.Addr().String()
}

// clientConn is a raw client connection: requests are written byte for
// byte, responses read one at a time.
type clientConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialConn(t *testing.T, addr string) *clientConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { nc.Close() })
	return &clientConn{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (c *clientConn) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatalf("write %q: %v", trim(s), err)
	}
}

// response reads one response to a request of the given method, and its
// whole body.
func (c *clientConn) response(method string) (*http.Response, string) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		c.t.Fatalf("read the response to %s: %v", method, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("read the body of the response to %s (%d): %v", method, resp.StatusCode, err)
	}
	return resp, string(b)
}

// expectClosed checks that the server ends the connection (EOF or reset)
// within wait and sends nothing more.
func (c *clientConn) expectClosed(wait time.Duration) {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(wait))
	rest, err := io.ReadAll(c.br)
	switch {
	case len(rest) > 0:
		c.t.Errorf("the server sent more: %q", trim(string(rest)))
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.t.Errorf("the connection is still open after %v", wait)
	case err != nil && !errors.Is(err, syscall.ECONNRESET):
		c.t.Errorf("reading the end of the connection: %v", err)
	}
}

// expectKept and expectClose check the response's "Connection: close"
// (http.ReadResponse turns it into resp.Close and drops the header; our
// status lines all say HTTP/1.1, so nothing else sets resp.Close).
func expectKept(t *testing.T, resp *http.Response) {
	t.Helper()
	if resp.Close {
		t.Errorf("%d: the response says Connection: close", resp.StatusCode)
	}
}

func expectClose(t *testing.T, resp *http.Response) {
	t.Helper()
	if !resp.Close {
		t.Errorf("%d: no Connection: close in the response", resp.StatusCode)
	}
}

// exchangeRaw sends raw on a new connection, reads one response and
// reports whether the server then closed the connection.
func exchangeRaw(t *testing.T, addr, raw string) (resp *http.Response, closed bool) {
	t.Helper()
	c := dialConn(t, addr)
	defer c.nc.Close()
	go func() { _, _ = io.WriteString(c.nc, raw) }() // the server may close before reading it all
	resp, _ = c.response("")
	_ = c.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	rest, err := io.ReadAll(c.br)
	if len(rest) > 0 {
		t.Errorf("after the response to %q the server sent more: %q", trim(raw), trim(string(rest)))
	}
	return resp, !errors.Is(err, os.ErrDeadlineExceeded)
}

// staticServer serves a root with three small files through a Server.
func staticServer(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	all := map[string]string{"a.txt": "alpha\n", "b.txt": "bravo\n", "c.txt": "charlie\n"}
	for k, v := range files {
		all[k] = v
	}
	writeFiles(t, root, all)
	_, addr := startServer(t, envConfig(t, map[string]string{"ROOT": root}), Deps{})
	return addr
}

func TestH1KeepAlive(t *testing.T) {
	addr := staticServer(t, nil)
	c := dialConn(t, addr)
	for _, name := range []string{"a", "b", "c", "a", "b", "c"} {
		c.send("GET /" + name + ".txt HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, body := c.response("GET")
		want := map[string]string{"a": "alpha\n", "b": "bravo\n", "c": "charlie\n"}[name]
		if resp.StatusCode != 200 || body != want || resp.ContentLength != int64(len(want)) {
			t.Errorf("%s: %d %q (length %d), want 200 %q", name, resp.StatusCode, body, resp.ContentLength, want)
		}
		if _, err := http.ParseTime(resp.Header.Get("Date")); err != nil {
			t.Errorf("%s: Date %q: %v", name, resp.Header.Get("Date"), err)
		}
		expectKept(t, resp)
	}
}

func TestH1HTTP10(t *testing.T) {
	addr := staticServer(t, nil)
	t.Run("closes by default", func(t *testing.T) {
		c := dialConn(t, addr)
		c.send("GET /a.txt HTTP/1.0\r\n\r\n")
		resp, body := c.response("GET")
		if resp.StatusCode != 200 || body != "alpha\n" {
			t.Errorf("%d %q", resp.StatusCode, body)
		}
		expectClose(t, resp)
		c.expectClosed(5 * time.Second)
	})
	t.Run("keep-alive when asked", func(t *testing.T) {
		c := dialConn(t, addr)
		for _, name := range []string{"a", "b"} {
			c.send("GET /" + name + ".txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
			resp, body := c.response("GET")
			if resp.StatusCode != 200 || len(body) != 6 {
				t.Errorf("%s: %d %q", name, resp.StatusCode, body)
			}
			if got := resp.Header.Get("Connection"); got != "keep-alive" {
				t.Errorf("%s: Connection %q, want keep-alive", name, got)
			}
			if resp.ContentLength != 6 || resp.Header.Get("Content-Length") != "6" {
				t.Errorf("%s: Content-Length %q, want 6 (a kept HTTP/1.0 response needs a length)", name, resp.Header.Get("Content-Length"))
			}
		}
		c.send("GET /c.txt HTTP/1.0\r\n\r\n")
		resp, body := c.response("GET")
		if body != "charlie\n" {
			t.Errorf("third request: %q", body)
		}
		expectClose(t, resp)
		c.expectClosed(5 * time.Second)
	})
}

func TestH1ClientConnectionClose(t *testing.T) {
	addr := staticServer(t, nil)
	c := dialConn(t, addr)
	c.send("GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	resp, body := c.response("GET")
	if resp.StatusCode != 200 || body != "alpha\n" {
		t.Errorf("%d %q", resp.StatusCode, body)
	}
	expectClose(t, resp)
	c.expectClosed(5 * time.Second)
}

func TestH1Pipelining(t *testing.T) {
	addr := staticServer(t, nil)
	c := dialConn(t, addr)
	c.send("GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n" +
		"HEAD /b.txt HTTP/1.1\r\nHost: x\r\n\r\n" +
		"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n" +
		"POST /c.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz" +
		"GET /c.txt HTTP/1.1\r\nHost: x\r\n\r\n" +
		"GET /b.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" +
		"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n") // after the close: never answered
	for i, want := range []struct {
		method string
		status int
		body   string
	}{
		{"GET", 200, "alpha\n"},
		{"HEAD", 200, ""},
		{"GET", 404, ""},
		{"POST", 405, ""},
		{"GET", 200, "charlie\n"},
		{"GET", 200, "bravo\n"},
	} {
		resp, body := c.response(want.method)
		if resp.StatusCode != want.status || want.body != "" && body != want.body {
			t.Errorf("response %d: %d %q, want %d %q", i, resp.StatusCode, trim(body), want.status, want.body)
		}
		if want.method == "HEAD" && resp.ContentLength != 6 {
			t.Errorf("HEAD: Content-Length %d, want 6", resp.ContentLength)
		}
	}
	c.expectClosed(5 * time.Second)
}

// TestH1StreamedResponse: a body of unknown length (an upstream that
// streams) goes out chunked to HTTP/1.1 and until close to HTTP/1.0, as it
// arrives.
func TestH1StreamedResponse(t *testing.T) {
	up := startUpstream(t, true)
	_, addr := proxyTo(t, up.target, nil)
	const first, second = "data: first\n\n", "data: second\n\n"
	for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
		t.Run(proto, func(t *testing.T) {
			c := dialConn(t, addr)
			c.send("GET /stream " + proto + "\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(c.br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 || resp.ContentLength != -1 || resp.Header.Get("Content-Length") != "" {
				t.Errorf("%d, Content-Length %d; want 200 without a length", resp.StatusCode, resp.ContentLength)
			}
			if proto == "HTTP/1.1" {
				if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
					t.Errorf("Transfer-Encoding %q, want chunked", resp.TransferEncoding)
				}
				expectKept(t, resp)
			} else {
				if resp.TransferEncoding != nil {
					t.Errorf("Transfer-Encoding %q to HTTP/1.0", resp.TransferEncoding)
				}
				expectClose(t, resp)
			}
			// The first event arrives while the upstream still holds the
			// second one back.
			buf := make([]byte, len(first))
			if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != first {
				t.Fatalf("first event %q, %v", buf, err)
			}
			if r, _ := get(t, addr, "", "/release"); r.StatusCode != 200 {
				t.Fatalf("release: %d", r.StatusCode)
			}
			rest, err := io.ReadAll(resp.Body)
			if err != nil || string(rest) != second {
				t.Fatalf("rest %q, %v; want %q", rest, err, second)
			}
			if proto == "HTTP/1.0" {
				c.expectClosed(5 * time.Second)
				return
			}
			c.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
			if resp, body := c.response("GET"); resp.StatusCode != 200 || body != "hello from upstream\n" {
				t.Errorf("next request on the connection: %d %q", resp.StatusCode, body)
			}
		})
	}
}

func TestH1Head(t *testing.T) {
	big := randomBytes(300 << 10) // past the in-memory cache: served from the file
	addr := staticServer(t, map[string]string{"big.bin": string(big)})
	c := dialConn(t, addr)
	for _, tc := range []struct {
		path string
		size int
	}{{"/a.txt", 6}, {"/big.bin", len(big)}} {
		c.send("HEAD " + tc.path + " HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, body := c.response("HEAD")
		if resp.StatusCode != 200 || resp.ContentLength != int64(tc.size) || body != "" {
			t.Errorf("HEAD %s: %d, Content-Length %d, body %d bytes; want 200, %d, none", tc.path, resp.StatusCode, resp.ContentLength, len(body), tc.size)
		}
		expectKept(t, resp)
		// Had any body byte gone out, this response would not parse.
		c.send("GET /b.txt HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, body := c.response("GET"); resp.StatusCode != 200 || body != "bravo\n" {
			t.Errorf("after HEAD %s: %d %q", tc.path, resp.StatusCode, body)
		}
	}
}

func TestH1ExpectContinue(t *testing.T) {
	up := startUpstream(t, true)
	_, addr := proxyTo(t, up.target, nil)

	t.Run("100 Continue before the final response", func(t *testing.T) {
		c := dialConn(t, addr)
		c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
		// The body is sent only once the server asks for it.
		line, err := c.br.ReadString('\n')
		if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
			t.Fatalf("first line %q, %v; want 100 Continue", line, err)
		}
		if end, err := c.br.ReadString('\n'); err != nil || end != "\r\n" {
			t.Fatalf("after 100 Continue: %q, %v", end, err)
		}
		c.send("hello world")
		resp, body := c.response("POST")
		var e echoReply
		if err := json.Unmarshal([]byte(body), &e); err != nil || resp.StatusCode != 200 || e.Length != 11 {
			t.Fatalf("%d %q (%v); want the upstream to get 11 bytes", resp.StatusCode, body, err)
		}
		if _, ok := e.Header["Expect"]; ok {
			t.Errorf("the upstream got Expect: %q", e.Header["Expect"])
		}
		expectKept(t, resp)
		c.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, _ := c.response("GET"); resp.StatusCode != 200 {
			t.Errorf("next request: %d", resp.StatusCode)
		}
	})

	t.Run("body never read: no 100, connection closed", func(t *testing.T) {
		root := t.TempDir()
		writeFiles(t, root, map[string]string{"a.txt": "alpha\n"})
		_, saddr := startServer(t, envConfig(t, map[string]string{"ROOT": root}), Deps{})
		c := dialConn(t, saddr)
		c.send("POST /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
		resp, _ := c.response("POST")
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%d, want 405 (and no 100 Continue before it)", resp.StatusCode)
		}
		expectClose(t, resp)
		c.expectClosed(5 * time.Second)
	})

	for _, tc := range []struct{ name, expect string }{
		{"unknown expectation", "Expect: fancy\r\n"},
		{"two expectations", "Expect: 100-continue\r\nExpect: 100-continue\r\n"},
	} {
		t.Run(tc.name+" gets 417", func(t *testing.T) {
			resp, closed := exchangeRaw(t, addr, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"+tc.expect+"\r\nok")
			if resp.StatusCode != http.StatusExpectationFailed || !resp.Close || !closed {
				t.Errorf("status %d, Connection: close %v, closed %v; want 417 and closed", resp.StatusCode, resp.Close, closed)
			}
		})
	}

	// RFC 9110 §10.1.1: "A server that receives a 100-continue expectation
	// in an HTTP/1.0 request MUST ignore that expectation." net/http does.
	t.Run("ignored on HTTP/1.0", func(t *testing.T) {
		c := dialConn(t, addr)
		c.send("POST /echo HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello")
		resp, body := c.response("POST")
		var e echoReply
		if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &e) != nil || e.Length != 5 {
			t.Errorf("%d %q; want 200 with the 5-byte body echoed", resp.StatusCode, trim(body))
		}
	})
}

// TestH1UnreadBody: a body the handler leaves unread (a POST to a static
// file) is read and dropped up to 256 KiB to keep the connection; a larger
// one closes it, and the response says so.
func TestH1UnreadBody(t *testing.T) {
	addr := staticServer(t, nil)
	for _, tc := range []struct {
		size int
		keep bool
	}{{0, true}, {10, true}, {maxDiscard, true}, {maxDiscard + 1, false}, {300 << 10, false}} {
		t.Run(strconv.Itoa(tc.size), func(t *testing.T) {
			c := dialConn(t, addr)
			written := make(chan struct{})
			go func() {
				// The server may stop reading (and close) before it has
				// all of a large body: the write error is expected then.
				defer close(written)
				_, _ = io.WriteString(c.nc, "POST /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(tc.size)+"\r\n\r\n"+strings.Repeat("b", tc.size))
			}()
			resp, _ := c.response("POST")
			if resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("status %d, want 405", resp.StatusCode)
			}
			if tc.keep {
				expectKept(t, resp)
				<-written
				c.send("GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
				if resp, body := c.response("GET"); resp.StatusCode != 200 || body != "alpha\n" {
					t.Errorf("next request: %d %q", resp.StatusCode, trim(body))
				}
				return
			}
			expectClose(t, resp)
			c.expectClosed(5 * time.Second)
			<-written
		})
	}
}

// TestH1SlowHead: a head that arrives in pieces, split inside the request
// line, a header name and a CRLF, is read whole. The pauses are the input,
// not synchronisation: the test passes however the pieces are coalesced.
func TestH1SlowHead(t *testing.T) {
	addr := staticServer(t, nil)
	c := dialConn(t, addr)
	for _, piece := range []string{"GE", "T /a.t", "xt HTTP/1.", "1\r\nHo", "st: x\r", "\nX-A", ": 1\r\n", "\r", "\n"} {
		c.send(piece)
		time.Sleep(20 * time.Millisecond)
	}
	resp, body := c.response("GET")
	if resp.StatusCode != 200 || body != "alpha\n" {
		t.Errorf("%d %q", resp.StatusCode, body)
	}
	expectKept(t, resp)
	c.send("GET /b.txt HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := c.response("GET"); resp.StatusCode != 200 || body != "bravo\n" {
		t.Errorf("next request: %d %q", resp.StatusCode, body)
	}
}

// TestH1HeaderTimeout: a head that stops arriving is answered with 408
// after readHeaderTimeout, also when empty lines came before it (they
// must not make the head look complete and leave only the 75 s idle
// timeout). Slow: runs in parallel.
func TestH1HeaderTimeout(t *testing.T) {
	t.Parallel()
	addr := staticServer(t, nil)
	for _, tc := range []struct{ name, raw string }{
		{"head cut", "GET /a.txt HTTP/1.1\r\nHost: x\r\n"},
		{"after leading empty lines", "\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: x\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := dialConn(t, addr)
			start := time.Now()
			c.send(tc.raw)
			_ = c.nc.SetReadDeadline(start.Add(readHeaderTimeout + 5*time.Second))
			resp, err := http.ReadResponse(c.br, nil)
			if err != nil {
				t.Fatalf("no response within %v: %v", readHeaderTimeout+5*time.Second, err)
			}
			if took := time.Since(start); resp.StatusCode != http.StatusRequestTimeout || took < readHeaderTimeout-time.Second {
				t.Errorf("%d after %v, want 408 after %v", resp.StatusCode, took, readHeaderTimeout)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			expectClose(t, resp)
			c.expectClosed(5 * time.Second)
		})
	}
}

// TestH1ShutdownDrain: cancelling Serve's context closes an idle keep-alive
// connection at once, lets the request in flight finish with
// "Connection: close", and then returns.
func TestH1ShutdownDrain(t *testing.T) {
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var releaseOnce sync.Once
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			entered <- struct{}{}
			<-release
		}
		_, _ = io.WriteString(w, "done "+r.URL.Path)
	})}
	go func() { _ = up.Serve(upLn) }()
	t.Cleanup(func() { _ = up.Close() })
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })

	s, err := New(envConfig(t, map[string]string{"TRY_FILES": "@app", "UPSTREAM": "http://" + upLn.Addr().String()}), Deps{DrainTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, nil) }()

	idle := dialConn(t, addr)
	idle.send("GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := idle.response("GET"); resp.StatusCode != 200 || body != "done /fast" {
		t.Fatalf("idle connection's request: %d %q", resp.StatusCode, body)
	}
	busy := dialConn(t, addr)
	busy.send("GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the upstream")
	}

	cancel()
	// The idle connection ends while the other request is still held.
	idle.expectClosed(3 * time.Second)
	select {
	case err := <-done:
		t.Fatalf("Serve returned %v with a request in flight", err)
	default:
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("still accepting connections during the drain")
	}

	releaseOnce.Do(func() { close(release) })
	resp, body := busy.response("GET")
	if resp.StatusCode != 200 || body != "done /block" {
		t.Errorf("in-flight request: %d %q", resp.StatusCode, body)
	}
	expectClose(t, resp)
	busy.expectClosed(5 * time.Second)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the drain")
	}
}

// TestH1ShutdownLeavesHijacked: Shutdown does not wait for a connection a
// handler has hijacked and still holds (a websocket tunnel), as h1Server's
// doc and net/http promise: a server with an open websocket drains its
// requests and stops without sitting out the whole drain timeout.
func TestH1ShutdownLeavesHijacked(t *testing.T) {
	hijacked := make(chan struct{})
	srv, addr := serveH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nc, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer nc.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		_ = brw.Flush()
		close(hijacked)
		// Echo until the client goes away, as a tunnel does.
		_, _ = io.Copy(nc, brw)
	}), zerolog.Nop())
	c := dialConn(t, addr)
	c.send("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
	<-hijacked
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	c.send("ping\n")
	if line, err := c.br.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("tunnel: %q, %v", line, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown with a hijacked connection open: %v after %v, want nil at once", err, time.Since(start).Round(time.Millisecond))
	}
}

// randomBytes returns n reproducible bytes that do not compress.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(b)
	return b
}

// TestH1LargeFile: a static file over 4 MiB (sent with sendfile, in 4 MiB
// slices) arrives whole and byte-exact, and so do ranges across the
// slices; the connection carries on after each.
func TestH1LargeFile(t *testing.T) {
	data := randomBytes(9<<20 + 12345)
	addr := staticServer(t, map[string]string{"big.bin": string(data)})
	c := dialConn(t, addr)
	n := len(data)
	for _, tc := range []struct {
		rng        string
		start, end int // the slice of data expected
	}{
		{"", 0, n},
		{"bytes=100-4194404", 100, 4194405},
		{"bytes=4194300-", 4194300, n},
		{"bytes=-1000", n - 1000, n},
		{"bytes=8388600-8388700", 8388600, 8388701},
		{"", 0, n},
	} {
		req := "GET /big.bin HTTP/1.1\r\nHost: x\r\n"
		if tc.rng != "" {
			req += "Range: " + tc.rng + "\r\n"
		}
		c.send(req + "\r\n")
		resp, body := c.response("GET")
		want := data[tc.start:tc.end]
		status := 200
		if tc.rng != "" {
			status = 206
			if cr := fmt.Sprintf("bytes %d-%d/%d", tc.start, tc.end-1, n); resp.Header.Get("Content-Range") != cr {
				t.Errorf("%q: Content-Range %q, want %q", tc.rng, resp.Header.Get("Content-Range"), cr)
			}
		}
		if resp.StatusCode != status || resp.ContentLength != int64(len(want)) {
			t.Errorf("%q: %d, Content-Length %d; want %d, %d", tc.rng, resp.StatusCode, resp.ContentLength, status, len(want))
		}
		if !bytes.Equal([]byte(body), want) {
			i := 0
			for i < len(body) && i < len(want) && body[i] == want[i] {
				i++
			}
			t.Errorf("%q: body of %d bytes differs from the file's %d from byte %d", tc.rng, len(body), len(want), i)
		}
		expectKept(t, resp)
	}
}

// TestH1ReadFromShortFile: a handler that declares a length and copies a
// file (ReadFrom: sendfile) that turns out shorter sends what there is and
// closes the connection, so the client sees a cut body, not the next
// response.
func TestH1ReadFromShortFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f.bin")
	data := randomBytes(5<<20 + 7)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, addr := serveH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(p)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		extra := 0
		if r.URL.Path == "/short" {
			extra = 100
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(data)+extra))
		if _, ok := w.(io.ReaderFrom); !ok {
			t.Errorf("the response writer has no ReadFrom")
		}
		_, _ = io.Copy(w, f)
	}), zerolog.Nop())
	c := dialConn(t, addr)
	c.send("GET /whole HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body := c.response("GET")
	if resp.StatusCode != 200 || !bytes.Equal([]byte(body), data) {
		t.Errorf("whole file: %d, %d bytes, equal %v", resp.StatusCode, len(body), bytes.Equal([]byte(body), data))
	}
	expectKept(t, resp)
	c.send("GET /short HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	if !errors.Is(err, io.ErrUnexpectedEOF) || !bytes.Equal(got, data) {
		t.Errorf("short file: %d bytes, %v; want the file's %d bytes and a cut body", len(got), err, len(data))
	}
}

// syncBuffer is a log destination safe for the connection goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestH1HandlerPanic: a panicking handler loses its connection (logged,
// unless it is http.ErrAbortHandler), not the server.
func TestH1HandlerPanic(t *testing.T) {
	var logs syncBuffer
	_, addr := serveH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/panic":
			panic("boom")
		case "/abort":
			panic(http.ErrAbortHandler)
		case "/late":
			_, _ = io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			panic("late boom")
		}
		_, _ = io.WriteString(w, "ok")
	}), zerolog.New(&logs))

	for _, path := range []string{"/panic", "/abort"} {
		c := dialConn(t, addr)
		c.send("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, err := http.ReadResponse(c.br, nil); err == nil {
			t.Errorf("%s: got a %d response, want the connection closed", path, resp.StatusCode)
		}
	}
	c := dialConn(t, addr)
	c.send("GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(resp.Body); err == nil {
		t.Errorf("/late: body %q read as complete, want it cut", b)
	}

	ok := dialConn(t, addr)
	for range 2 {
		ok.send("GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, body := ok.response("GET"); resp.StatusCode != 200 || body != "ok" {
			t.Errorf("after the panics: %d %q", resp.StatusCode, body)
		}
	}
	l := logs.String()
	if strings.Count(l, "panic serving a request") != 2 || !strings.Contains(l, "boom") || !strings.Contains(l, "late boom") {
		t.Errorf("want the two panics logged, not the abort; log:\n%s", l)
	}
}

// TestH1Trailers: trailers set with http.TrailerPrefix follow a chunked
// body; a trailer whose name is not a token is dropped.
func TestH1Trailers(t *testing.T) {
	_, addr := serveH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "body")
		w.Header()[http.TrailerPrefix+"X-Sum"] = []string{"42"}
		w.Header()[http.TrailerPrefix+"Bad Name"] = []string{"x"}
	}), zerolog.Nop())
	c := dialConn(t, addr)
	for range 2 {
		c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, body := c.response("GET")
		if body != "body" || len(resp.TransferEncoding) != 1 {
			t.Errorf("%q, Transfer-Encoding %q", body, resp.TransferEncoding)
		}
		if resp.Trailer.Get("X-Sum") != "42" || len(resp.Trailer) != 1 {
			t.Errorf("trailer %q, want only X-Sum: 42", resp.Trailer)
		}
		if _, ok := resp.Header["X-Sum"]; ok {
			t.Errorf("X-Sum sent in the head")
		}
	}
}
