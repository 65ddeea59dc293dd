package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"path/filepath"
	"testing"
	"time"
)

// TestLameDuckClosesConnections: after LameDuck the proxy still accepts and
// serves, on kept-alive and new connections, but every HTTP/1 response says
// Connection: close and the connection ends after it.
func TestLameDuckClosesConnections(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"index.html": "hello"})
	s, addr := startServer(t, envConfig(t, map[string]string{"ROOT": root}), Deps{})

	kept, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	_ = kept.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(kept)
	get := func() *http.Response {
		t.Helper()
		if _, err := io.WriteString(kept, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatalf("write on the kept-alive connection: %v", err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("read on the kept-alive connection: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "hello" {
			t.Fatalf("got %d %q, want 200 hello", resp.StatusCode, b)
		}
		return resp
	}
	if resp := get(); resp.Close {
		t.Fatalf("before the lame duck: Connection %q, want keep-alive", resp.Header.Get("Connection"))
	}

	s.LameDuck()

	if resp := get(); !resp.Close {
		t.Errorf("kept-alive connection in the lame duck: Connection %q, want close", resp.Header.Get("Connection"))
	}
	if n, err := kept.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("after a Connection: close response the server sent %d more bytes (err %v), want EOF", n, err)
	}
	// A new connection is still accepted and served, then closed.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial in the lame duck: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("new connection in the lame duck: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || !resp.Close {
		t.Errorf("new connection in the lame duck: got %d, close %v, want 405 with Connection: close", resp.StatusCode, resp.Close)
	}
}

// TestLameDuckHTTP2GoAway: on HTTP/2 the same header becomes a GOAWAY, so
// the client's next request opens a new connection.
func TestLameDuckHTTP2GoAway(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "www")
	writeFiles(t, root, map[string]string{"index.html": "secure hello"})
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pool := writeCert(t, certFile, keyFile, 1)
	cfg := envConfig(t, map[string]string{"ROOT": root, "TLS_CERT_FILE": certFile, "TLS_KEY_FILE": keyFile})
	s, _, secure := startTLS(t, cfg)

	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	get := func() (reused bool) {
		t.Helper()
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
		})
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+secure+"/", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
			t.Fatalf("got HTTP/%d %d, want HTTP/2 200", resp.ProtoMajor, resp.StatusCode)
		}
		return reused
	}
	get()
	if !get() {
		t.Fatal("before the lame duck the HTTP/2 connection was not reused")
	}
	s.LameDuck()
	get() // served, with a GOAWAY
	if get() {
		t.Error("after a lame-duck response the HTTP/2 connection was reused, want a new one (GOAWAY)")
	}
}
