package h1

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"onebox/internal/testutil"
	"onebox/proxy/internal/h1/h1test"
)

// serveH1 serves h with the plain-HTTP connection loop alone (no Server
// around it) on a loopback port until the test ends.
func serveH1(t *testing.T, h http.Handler, log zerolog.Logger) (*Server, string) {
	t.Helper()
	srv := NewServer(h, log)
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

// TestH1ShutdownLeavesHijacked: Shutdown does not wait for a connection a
// handler has hijacked and still holds (a websocket tunnel), as the Server's
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
	c := h1test.Dial(t, addr)
	c.Send("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
	<-hijacked
	resp, err := http.ReadResponse(c.BR, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	c.Send("ping\n")
	if line, err := c.BR.ReadString('\n'); err != nil || line != "ping\n" {
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
	c := h1test.Dial(t, addr)
	c.Send("GET /whole HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body := c.Response("GET")
	if resp.StatusCode != 200 || !bytes.Equal([]byte(body), data) {
		t.Errorf("whole file: %d, %d bytes, equal %v", resp.StatusCode, len(body), bytes.Equal([]byte(body), data))
	}
	h1test.ExpectKept(t, resp)
	c.Send("GET /short HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(c.BR, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	if !errors.Is(err, io.ErrUnexpectedEOF) || !bytes.Equal(got, data) {
		t.Errorf("short file: %d bytes, %v; want the file's %d bytes and a cut body", len(got), err, len(data))
	}
}

// TestH1HandlerPanic: a panicking handler loses its connection (logged,
// unless it is http.ErrAbortHandler), not the server.
func TestH1HandlerPanic(t *testing.T) {
	var logs testutil.SyncBuffer
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
		c := h1test.Dial(t, addr)
		c.Send("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, err := http.ReadResponse(c.BR, nil); err == nil {
			t.Errorf("%s: got a %d response, want the connection closed", path, resp.StatusCode)
		}
	}
	c := h1test.Dial(t, addr)
	c.Send("GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(c.BR, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(resp.Body); err == nil {
		t.Errorf("/late: body %q read as complete, want it cut", b)
	}

	ok := h1test.Dial(t, addr)
	for range 2 {
		ok.Send("GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, body := ok.Response("GET"); resp.StatusCode != 200 || body != "ok" {
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
	c := h1test.Dial(t, addr)
	for range 2 {
		c.Send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, body := c.Response("GET")
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

// TestH1UnreadBody: a body the handler leaves unread (a POST the handler
// refuses) is read and dropped up to 256 KiB to keep the connection; a larger
// one closes it, and the response says so.
func TestH1UnreadBody(t *testing.T) {
	_, addr := serveH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed) // the body is left unread
			return
		}
		_, _ = io.WriteString(w, "alpha\n")
	}), zerolog.Nop())
	for _, tc := range []struct {
		size int
		keep bool
	}{{0, true}, {10, true}, {maxDiscard, true}, {maxDiscard + 1, false}, {300 << 10, false}} {
		t.Run(strconv.Itoa(tc.size), func(t *testing.T) {
			c := h1test.Dial(t, addr)
			written := make(chan struct{})
			go func() {
				// The server may stop reading (and close) before it has
				// all of a large body: the write error is expected then.
				defer close(written)
				_, _ = io.WriteString(c.NC, "POST /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(tc.size)+"\r\n\r\n"+strings.Repeat("b", tc.size))
			}()
			resp, _ := c.Response("POST")
			if resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("status %d, want 405", resp.StatusCode)
			}
			if tc.keep {
				h1test.ExpectKept(t, resp)
				<-written
				c.Send("GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
				if resp, body := c.Response("GET"); resp.StatusCode != 200 || body != "alpha\n" {
					t.Errorf("next request: %d %q", resp.StatusCode, h1test.Trim(body))
				}
				return
			}
			h1test.ExpectClose(t, resp)
			c.ExpectClosed(5 * time.Second)
			<-written
		})
	}
}
