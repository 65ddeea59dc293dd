package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

// With the pool's bound full (Deps.AppMaxConns 1, one request streaming
// on the only connection), a second request waits for a free connection
// at most PROXY_READ_TIMEOUT and is answered 504; once the first ends,
// the connection serves the next request.
func TestBoundFullIs504AfterReadTimeout(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "app.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/trickle", func(w http.ResponseWriter, r *http.Request) {
		// A byte every 50 ms: the read timeout never fires on it, so
		// the connection stays in use until released.
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

	s, addr := startServer(t, envConfig(t, map[string]string{"TRY_FILES": "@app", "READ_TIMEOUT": "1s"}),
		Deps{AppBind: "unix:" + sock, AppMaxConns: func() int { return 1 }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/trickle", nil)
	held, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Body.Close()
	br := bufio.NewReader(held.Body)
	if _, err := br.ReadByte(); err != nil { // streaming: the connection is in use
		t.Fatalf("the held request: %v", err)
	}

	start := time.Now()
	resp, _ := get(t, addr, "", "/hello")
	took := time.Since(start)
	if resp.StatusCode != http.StatusGatewayTimeout || took < 900*time.Millisecond {
		t.Errorf("a request past the full bound: %d after %v, want 504 after the 1s read timeout", resp.StatusCode, took)
	}
	if _, err := br.ReadByte(); err != nil {
		t.Fatalf("the held request was cut while the other waited: %v", err)
	}
	if st := s.upstreams[0].Limit(); st == nil || st.Open != 1 || st.Waiting != 0 {
		t.Errorf("bound after the wait: %+v, want 1 open, none waiting", st)
	}

	close(release)
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Fatal(err)
	}
	if resp, body := get(t, addr, "", "/hello"); resp.StatusCode != 200 || body != "hello" {
		t.Errorf("after the held request ended: %d %q, want 200 hello", resp.StatusCode, body)
	}
}
