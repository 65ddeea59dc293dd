package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"onebox/proxy/internal/h1"
	"onebox/proxy/internal/h1/h1test"
)

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
	c := h1test.Dial(t, addr)
	for _, name := range []string{"a", "b", "c", "a", "b", "c"} {
		c.Send("GET /" + name + ".txt HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, body := c.Response("GET")
		want := map[string]string{"a": "alpha\n", "b": "bravo\n", "c": "charlie\n"}[name]
		if resp.StatusCode != 200 || body != want || resp.ContentLength != int64(len(want)) {
			t.Errorf("%s: %d %q (length %d), want 200 %q", name, resp.StatusCode, body, resp.ContentLength, want)
		}
		if _, err := http.ParseTime(resp.Header.Get("Date")); err != nil {
			t.Errorf("%s: Date %q: %v", name, resp.Header.Get("Date"), err)
		}
		h1test.ExpectKept(t, resp)
	}
}

func TestH1HTTP10(t *testing.T) {
	addr := staticServer(t, nil)
	t.Run("closes by default", func(t *testing.T) {
		c := h1test.Dial(t, addr)
		c.Send("GET /a.txt HTTP/1.0\r\n\r\n")
		resp, body := c.Response("GET")
		if resp.StatusCode != 200 || body != "alpha\n" {
			t.Errorf("%d %q", resp.StatusCode, body)
		}
		h1test.ExpectClose(t, resp)
		c.ExpectClosed(5 * time.Second)
	})
	t.Run("keep-alive when asked", func(t *testing.T) {
		c := h1test.Dial(t, addr)
		for _, name := range []string{"a", "b"} {
			c.Send("GET /" + name + ".txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
			resp, body := c.Response("GET")
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
		c.Send("GET /c.txt HTTP/1.0\r\n\r\n")
		resp, body := c.Response("GET")
		if body != "charlie\n" {
			t.Errorf("third request: %q", body)
		}
		h1test.ExpectClose(t, resp)
		c.ExpectClosed(5 * time.Second)
	})
}

func TestH1ClientConnectionClose(t *testing.T) {
	addr := staticServer(t, nil)
	c := h1test.Dial(t, addr)
	c.Send("GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	resp, body := c.Response("GET")
	if resp.StatusCode != 200 || body != "alpha\n" {
		t.Errorf("%d %q", resp.StatusCode, body)
	}
	h1test.ExpectClose(t, resp)
	c.ExpectClosed(5 * time.Second)
}

func TestH1Pipelining(t *testing.T) {
	addr := staticServer(t, nil)
	c := h1test.Dial(t, addr)
	c.Send("GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n" +
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
		resp, body := c.Response(want.method)
		if resp.StatusCode != want.status || want.body != "" && body != want.body {
			t.Errorf("response %d: %d %q, want %d %q", i, resp.StatusCode, trim(body), want.status, want.body)
		}
		if want.method == "HEAD" && resp.ContentLength != 6 {
			t.Errorf("HEAD: Content-Length %d, want 6", resp.ContentLength)
		}
	}
	c.ExpectClosed(5 * time.Second)
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
			c := h1test.Dial(t, addr)
			c.Send("GET /stream " + proto + "\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(c.BR, nil)
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
				h1test.ExpectKept(t, resp)
			} else {
				if resp.TransferEncoding != nil {
					t.Errorf("Transfer-Encoding %q to HTTP/1.0", resp.TransferEncoding)
				}
				h1test.ExpectClose(t, resp)
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
				c.ExpectClosed(5 * time.Second)
				return
			}
			c.Send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
			if resp, body := c.Response("GET"); resp.StatusCode != 200 || body != "hello from upstream\n" {
				t.Errorf("next request on the connection: %d %q", resp.StatusCode, body)
			}
		})
	}
}

func TestH1Head(t *testing.T) {
	big := randomBytes(300 << 10) // past the in-memory cache: served from the file
	addr := staticServer(t, map[string]string{"big.bin": string(big)})
	c := h1test.Dial(t, addr)
	for _, tc := range []struct {
		path string
		size int
	}{{"/a.txt", 6}, {"/big.bin", len(big)}} {
		c.Send("HEAD " + tc.path + " HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, body := c.Response("HEAD")
		if resp.StatusCode != 200 || resp.ContentLength != int64(tc.size) || body != "" {
			t.Errorf("HEAD %s: %d, Content-Length %d, body %d bytes; want 200, %d, none", tc.path, resp.StatusCode, resp.ContentLength, len(body), tc.size)
		}
		h1test.ExpectKept(t, resp)
		// Had any body byte gone out, this response would not parse.
		c.Send("GET /b.txt HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, body := c.Response("GET"); resp.StatusCode != 200 || body != "bravo\n" {
			t.Errorf("after HEAD %s: %d %q", tc.path, resp.StatusCode, body)
		}
	}
}

func TestH1ExpectContinue(t *testing.T) {
	up := startUpstream(t, true)
	_, addr := proxyTo(t, up.target, nil)

	t.Run("100 Continue before the final response", func(t *testing.T) {
		c := h1test.Dial(t, addr)
		c.Send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
		// The body is sent only once the server asks for it.
		line, err := c.BR.ReadString('\n')
		if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
			t.Fatalf("first line %q, %v; want 100 Continue", line, err)
		}
		if end, err := c.BR.ReadString('\n'); err != nil || end != "\r\n" {
			t.Fatalf("after 100 Continue: %q, %v", end, err)
		}
		c.Send("hello world")
		resp, body := c.Response("POST")
		var e echoReply
		if err := json.Unmarshal([]byte(body), &e); err != nil || resp.StatusCode != 200 || e.Length != 11 {
			t.Fatalf("%d %q (%v); want the upstream to get 11 bytes", resp.StatusCode, body, err)
		}
		if _, ok := e.Header["Expect"]; ok {
			t.Errorf("the upstream got Expect: %q", e.Header["Expect"])
		}
		h1test.ExpectKept(t, resp)
		c.Send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, _ := c.Response("GET"); resp.StatusCode != 200 {
			t.Errorf("next request: %d", resp.StatusCode)
		}
	})

	t.Run("body never read: no 100, connection closed", func(t *testing.T) {
		root := t.TempDir()
		writeFiles(t, root, map[string]string{"a.txt": "alpha\n"})
		_, saddr := startServer(t, envConfig(t, map[string]string{"ROOT": root}), Deps{})
		c := h1test.Dial(t, saddr)
		c.Send("POST /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
		resp, _ := c.Response("POST")
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%d, want 405 (and no 100 Continue before it)", resp.StatusCode)
		}
		h1test.ExpectClose(t, resp)
		c.ExpectClosed(5 * time.Second)
	})

	for _, tc := range []struct{ name, expect string }{
		{"unknown expectation", "Expect: fancy\r\n"},
		{"two expectations", "Expect: 100-continue\r\nExpect: 100-continue\r\n"},
	} {
		t.Run(tc.name+" gets 417", func(t *testing.T) {
			resp, closed := h1test.ExchangeRaw(t, addr, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"+tc.expect+"\r\nok")
			if resp.StatusCode != http.StatusExpectationFailed || !resp.Close || !closed {
				t.Errorf("status %d, Connection: close %v, closed %v; want 417 and closed", resp.StatusCode, resp.Close, closed)
			}
		})
	}

	// RFC 9110 §10.1.1: "A server that receives a 100-continue expectation
	// in an HTTP/1.0 request MUST ignore that expectation." net/http does.
	t.Run("ignored on HTTP/1.0", func(t *testing.T) {
		c := h1test.Dial(t, addr)
		c.Send("POST /echo HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello")
		resp, body := c.Response("POST")
		var e echoReply
		if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &e) != nil || e.Length != 5 {
			t.Errorf("%d %q; want 200 with the 5-byte body echoed", resp.StatusCode, trim(body))
		}
	})
}

// TestH1SlowHead: a head that arrives in pieces, split inside the request
// line, a header name and a CRLF, is read whole. The pauses are the input,
// not synchronisation: the test passes however the pieces are coalesced.
func TestH1SlowHead(t *testing.T) {
	addr := staticServer(t, nil)
	c := h1test.Dial(t, addr)
	for _, piece := range []string{"GE", "T /a.t", "xt HTTP/1.", "1\r\nHo", "st: x\r", "\nX-A", ": 1\r\n", "\r", "\n"} {
		c.Send(piece)
		time.Sleep(20 * time.Millisecond)
	}
	resp, body := c.Response("GET")
	if resp.StatusCode != 200 || body != "alpha\n" {
		t.Errorf("%d %q", resp.StatusCode, body)
	}
	h1test.ExpectKept(t, resp)
	c.Send("GET /b.txt HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := c.Response("GET"); resp.StatusCode != 200 || body != "bravo\n" {
		t.Errorf("next request: %d %q", resp.StatusCode, body)
	}
}

// TestH1HeaderTimeout: a head that stops arriving is answered with 408
// after h1.ReadHeaderTimeout, also when empty lines came before it (they
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
			c := h1test.Dial(t, addr)
			start := time.Now()
			c.Send(tc.raw)
			_ = c.NC.SetReadDeadline(start.Add(h1.ReadHeaderTimeout + 5*time.Second))
			resp, err := http.ReadResponse(c.BR, nil)
			if err != nil {
				t.Fatalf("no response within %v: %v", h1.ReadHeaderTimeout+5*time.Second, err)
			}
			if took := time.Since(start); resp.StatusCode != http.StatusRequestTimeout || took < h1.ReadHeaderTimeout-time.Second {
				t.Errorf("%d after %v, want 408 after %v", resp.StatusCode, took, h1.ReadHeaderTimeout)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			h1test.ExpectClose(t, resp)
			c.ExpectClosed(5 * time.Second)
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

	idle := h1test.Dial(t, addr)
	idle.Send("GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := idle.Response("GET"); resp.StatusCode != 200 || body != "done /fast" {
		t.Fatalf("idle connection's request: %d %q", resp.StatusCode, body)
	}
	busy := h1test.Dial(t, addr)
	busy.Send("GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the upstream")
	}

	cancel()
	// The idle connection ends while the other request is still held.
	idle.ExpectClosed(3 * time.Second)
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
	resp, body := busy.Response("GET")
	if resp.StatusCode != 200 || body != "done /block" {
		t.Errorf("in-flight request: %d %q", resp.StatusCode, body)
	}
	h1test.ExpectClose(t, resp)
	busy.ExpectClosed(5 * time.Second)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the drain")
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
	c := h1test.Dial(t, addr)
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
		c.Send(req + "\r\n")
		resp, body := c.Response("GET")
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
		h1test.ExpectKept(t, resp)
	}
}
