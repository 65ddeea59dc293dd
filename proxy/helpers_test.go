package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/rs/zerolog"
)

// envConfig parses a Config from the given variables (without the PROXY_
// prefix) with the real env tags and defaults, as the composer does.
func envConfig(t testing.TB, vars map[string]string) Config {
	t.Helper()
	var c Config
	if err := env.ParseWithOptions(&c, env.Options{Environment: vars}); err != nil {
		t.Fatalf("parse config: %v", err)
	}
	if _, ok := vars["ACCESS_LOG"]; !ok {
		c.AccessLog = "off"
	}
	return c
}

// siteFromEnv parses a named site's settings (PROXY_SITE_<NAME>_*).
func siteFromEnv(t testing.TB, name string, vars map[string]string) Site {
	t.Helper()
	var s Site
	if err := env.ParseWithOptions(&s, env.Options{Environment: vars}); err != nil {
		t.Fatalf("parse site: %v", err)
	}
	s.Name = name
	return s
}

// startServer runs a Server on a loopback port until the test ends and
// returns its address. The listener is open before Serve starts, so
// requests may be sent at once.
func startServer(t testing.TB, cfg Config, deps Deps) (*Server, string) {
	t.Helper()
	if deps.Log.GetLevel() == zerolog.TraceLevel && deps.AccessLog == nil {
		deps.Log = zerolog.New(io.Discard)
	}
	s, addr, cancel, done := serveUntilCancel(t, cfg, deps)
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve returned %v after cancel, want nil", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
	})
	return s, addr
}

// serveUntilCancel starts a server on a loopback port and returns it, its
// address, the cancel that begins its drain and the channel Serve's
// result arrives on; the caller checks that result.
func serveUntilCancel(t testing.TB, cfg Config, deps Deps) (*Server, string, context.CancelFunc, <-chan error) {
	t.Helper()
	s, err := New(cfg, deps)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, nil) }()
	return s, ln.Addr().String(), cancel, done
}

// writeFiles creates files under dir: name → content; names ending in "/"
// are directories.
func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// rawResponse is a response read from a raw socket.
type rawResponse struct {
	status int
	header http.Header
	body   string
}

// rawRequest sends exactly req on a new connection and reads one response.
func rawRequest(t testing.TB, addr, req string) rawResponse {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response to %q: %v", req, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return rawResponse{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// get sends a GET with a Host header through a plain client.
func get(t testing.TB, addr, host, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var noRedirect = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Transport:     &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16},
	Timeout:       20 * time.Second,
}
