package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"onebox/internal/testutil"
)

// boundedPool starts an upstream with /trickle (a byte every 50 ms until
// release is closed: the read timeout never fires on it, so it holds its
// connection) and /hello, and a proxy whose pool it is, bounded to one
// connection (Deps.AppMaxConns), with vars and the access log to lines.
func boundedPool(t *testing.T, vars map[string]string, lines io.Writer) (s *Server, addr string, release chan struct{}) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "app.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	release = make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/trickle", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Accel-Buffering", "no")
		for {
			_, _ = io.WriteString(w, ".")
			w.(http.Flusher).Flush()
			select {
			case <-release:
				return
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "hello") })
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	vars["TRY_FILES"] = "@app"
	s, addr = startServer(t, envConfig(t, vars), Deps{AppBind: "unix:" + sock, AppMaxConns: func() int { return 1 }, AccessLog: lines})
	return s, addr, release
}

// holdConn starts GET /trickle through the proxy and returns its body once
// streaming: the bound's one connection is in use.
func holdConn(t *testing.T, addr string) *bufio.Reader {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/trickle", nil)
	held, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { held.Body.Close() })
	br := bufio.NewReader(held.Body)
	if _, err := br.ReadByte(); err != nil {
		t.Fatalf("the held request: %v", err)
	}
	return br
}

// With the pool's bound full (one request streaming on the only
// connection), a second request waits for a free connection at most
// PROXY_READ_TIMEOUT and is answered 504; once the first ends, the
// connection serves the next request.
func TestBoundFullIs504AfterReadTimeout(t *testing.T) {
	s, addr, release := boundedPool(t, map[string]string{"READ_TIMEOUT": "1s"}, nil)
	held := holdConn(t, addr)

	start := time.Now()
	resp, _ := get(t, addr, "", "/hello")
	took := time.Since(start)
	if resp.StatusCode != http.StatusGatewayTimeout || took < 900*time.Millisecond {
		t.Errorf("a request past the full bound: %d after %v, want 504 after the 1s read timeout", resp.StatusCode, took)
	}
	if _, err := held.ReadByte(); err != nil {
		t.Fatalf("the held request was cut while the other waited: %v", err)
	}
	if st := s.upstreams[0].Limit(); st == nil || st.Open != 1 || st.Waiting != 0 {
		t.Errorf("bound after the wait: %+v, want 1 open, none waiting", st)
	}

	close(release)
	if _, err := io.Copy(io.Discard, held); err != nil {
		t.Fatal(err)
	}
	if resp, body := get(t, addr, "", "/hello"); resp.StatusCode != 200 || body != "hello" {
		t.Errorf("after the held request ended: %d %q, want 200 hello", resp.StatusCode, body)
	}
}

// A request queued past the full bound whose client closes its
// connection leaves the queue within about a second (the client is
// checked as during a slow upstream read), long before the 30 s read
// timeout, and is logged 499.
func TestBoundQueuedClientLeavesIs499(t *testing.T) {
	lines := make(lineWriter, 10)
	s, addr, release := boundedPool(t, map[string]string{"READ_TIMEOUT": "30s", "ACCESS_LOG": "combined"}, lines)
	defer close(release)
	holdConn(t, addr)

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waiting := func(n int) func() bool {
		return func() bool { st := s.upstreams[0].Limit(); return st != nil && st.Waiting == n }
	}
	testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, "the request queued for the connection", waiting(1))
	c.Close()
	testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, "the request out of the queue after its client left", waiting(0))
	if l := lines.next(t); !strings.Contains(l, `"GET /hello HTTP/1.1" 499 0`) {
		t.Errorf("access log %q: want the queued request logged 499", l)
	}
}
