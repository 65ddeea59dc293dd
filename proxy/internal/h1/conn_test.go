package h1

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"onebox/proxy/internal/h1/h1test"
)

// The wire tests of the connection loop: keep-alive, HTTP/1.0,
// pipelining, HEAD, 100 Continue, slow and stalled heads, large files
// through sendfile, against a small file handler.

// fileServer serves a root with three small files (and files) the way a
// static server does, enough for the loop's tests: GET and HEAD of a
// file through http.ServeContent (a length, ranges, the body through
// ReadFrom and so sendfile), 404 for a missing one, POST /echo reads the
// body and says how long it was, any other method is answered 405 with
// the body unread.
func fileServer(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	all := map[string]string{"a.txt": "alpha\n", "b.txt": "bravo\n", "c.txt": "charlie\n"}
	for k, v := range files {
		all[k] = v
	}
	for name, content := range all {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, addr := serveH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/echo":
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			fmt.Fprintf(w, "%d bytes", n)
			return
		case r.Method != http.MethodGet && r.Method != http.MethodHead:
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		f, err := os.Open(filepath.Join(root, filepath.Clean("/"+r.URL.Path)))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil || fi.IsDir() {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "", fi.ModTime(), f)
	}), zerolog.Nop())
	return addr
}

func TestH1KeepAlive(t *testing.T) {
	addr := fileServer(t, nil)
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
	addr := fileServer(t, nil)
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
	addr := fileServer(t, nil)
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
	addr := fileServer(t, nil)
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
			t.Errorf("response %d: %d %q, want %d %q", i, resp.StatusCode, h1test.Trim(body), want.status, want.body)
		}
		if want.method == "HEAD" && resp.ContentLength != 6 {
			t.Errorf("HEAD: Content-Length %d, want 6", resp.ContentLength)
		}
	}
	c.ExpectClosed(5 * time.Second)
}

func TestH1Head(t *testing.T) {
	big := randomBytes(300 << 10) // past the in-memory cache: served from the file
	addr := fileServer(t, map[string]string{"big.bin": string(big)})
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
	addr := fileServer(t, nil)

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
		if resp.StatusCode != 200 || body != "11 bytes" {
			t.Fatalf("%d %q; want the handler to read 11 bytes", resp.StatusCode, body)
		}
		h1test.ExpectKept(t, resp)
		c.Send("GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, _ := c.Response("GET"); resp.StatusCode != 200 {
			t.Errorf("next request: %d", resp.StatusCode)
		}
	})

	t.Run("body never read: no 100, connection closed", func(t *testing.T) {
		c := h1test.Dial(t, addr)
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
		if resp.StatusCode != 200 || body != "5 bytes" {
			t.Errorf("%d %q; want 200 with the 5-byte body read", resp.StatusCode, h1test.Trim(body))
		}
	})
}

// TestH1SlowHead: a head that arrives in pieces, split inside the request
// line, a header name and a CRLF, is read whole. The pauses are the input,
// not synchronisation: the test passes however the pieces are coalesced.
func TestH1SlowHead(t *testing.T) {
	addr := fileServer(t, nil)
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
// after ReadHeaderTimeout, also when empty lines came before it (they
// must not make the head look complete and leave only the 75 s idle
// timeout). Slow: runs in parallel.
func TestH1HeaderTimeout(t *testing.T) {
	t.Parallel()
	addr := fileServer(t, nil)
	for _, tc := range []struct{ name, raw string }{
		{"head cut", "GET /a.txt HTTP/1.1\r\nHost: x\r\n"},
		{"after leading empty lines", "\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: x\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := h1test.Dial(t, addr)
			start := time.Now()
			c.Send(tc.raw)
			_ = c.NC.SetReadDeadline(start.Add(ReadHeaderTimeout + 5*time.Second))
			resp, err := http.ReadResponse(c.BR, nil)
			if err != nil {
				t.Fatalf("no response within %v: %v", ReadHeaderTimeout+5*time.Second, err)
			}
			if took := time.Since(start); resp.StatusCode != http.StatusRequestTimeout || took < ReadHeaderTimeout-time.Second {
				t.Errorf("%d after %v, want 408 after %v", resp.StatusCode, took, ReadHeaderTimeout)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			h1test.ExpectClose(t, resp)
			c.ExpectClosed(5 * time.Second)
		})
	}
}

// TestH1LargeFile: a static file over 4 MiB (sent with sendfile, in 4 MiB
// slices) arrives whole and byte-exact, and so do ranges across the
// slices; the connection carries on after each.
func TestH1LargeFile(t *testing.T) {
	data := randomBytes(9<<20 + 12345)
	addr := fileServer(t, map[string]string{"big.bin": string(data)})
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
