package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"onebox/proxy/internal/h1/h1test"
)

// TestDrainOnCancel: cancelling Run's context stops accepting, lets the
// request in flight finish, and returns nil.
func TestDrainOnCancel(t *testing.T) {
	up := startUpstream(t, true)
	_, addr, cancel, done := serveUntilCancel(t, envConfig(t, map[string]string{"TRY_FILES": "@app", "UPSTREAM": up.target}), Deps{DrainTimeout: 5 * time.Second})

	// A request in flight: the upstream answers after 600 ms.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /slow?ms=600 HTTP/1.1\r\nHost: x\r\n\r\n")
	// Wait until the proxy holds the request (the upstream connection exists).
	for deadline := time.Now().Add(5 * time.Second); ; {
		if _, body := get(t, addr, "", "/conns"); body != "0" && body != "1" {
			break // two upstream connections: the slow one and this probe's
		}
		if time.Now().After(deadline) {
			t.Fatal("the slow request never reached the upstream")
		}
	}
	noRedirect.CloseIdleConnections()
	cancel()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf, _ := io.ReadAll(c)
	if !bytes.HasPrefix(buf, []byte("HTTP/1.1 200")) || !bytes.Contains(buf, []byte("slow done")) {
		t.Errorf("in-flight request got %q, want its 200", buf)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after cancel: %v, want nil", err)
		}
	case <-time.After(6 * time.Second):
		t.Fatal("Serve did not return")
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Errorf("still accepting after the drain")
	}
}

// TestRunListenerFailure: Run returns an error at once when its port is
// taken, instead of blocking.
func TestRunListenerFailure(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := envConfig(t, map[string]string{"TRY_FILES": "=404", "LISTEN": taken.Addr().String()})
	s, err := New(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Run(context.Background()) }()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "listen on") {
			t.Errorf("Run: %v, want a listen error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run blocked on a taken port")
	}
}

// TestNoPoolWarning: without APP_BIND and PROXY_UPSTREAM, New warns once
// and @app answers 404; Status lists the sites.
func TestNoPoolWarning(t *testing.T) {
	var logs bytes.Buffer
	cfg := envConfig(t, map[string]string{"TRY_FILES": "@app"})
	s, err := New(cfg, Deps{Log: zerolog.New(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), `"level":"warn"`); n != 1 || !strings.Contains(logs.String(), "APP_BIND") {
		t.Errorf("want one warning naming APP_BIND, got %q", logs.String())
	}
	w := &discardWriter{h: http.Header{}}
	s.ServeHTTP(w, benchRequest("/anything"))
	if w.code != http.StatusNotFound {
		t.Errorf("@app without a pool: %d, want 404", w.code)
	}
	// With a pool, the default site proxies to APP_BIND (host:port form).
	s2, err := New(cfg, Deps{AppBind: "127.0.0.1:9"})
	if err != nil {
		t.Fatal(err)
	}
	if st := toJSON(t, s2.Status()); !strings.Contains(st, `"address":"127.0.0.1:9"`) {
		t.Errorf("status %s does not name the pool", st)
	}
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReadyAfterListen: Ready closes once Serve runs on bound listeners,
// never before.
func TestReadyAfterListen(t *testing.T) {
	s, err := New(envConfig(t, map[string]string{"TRY_FILES": "=404"}), Deps{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Ready():
		t.Fatal("ready before any listener exists")
	default:
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, nil) }()
	select {
	case <-s.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("not ready after Serve started")
	}
	if resp := rawRequest(t, ln.Addr().String(), "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); resp.status != 404 {
		t.Errorf("status %d, want 404", resp.status)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// TestServeShutdownDrain: cancelling Serve's context closes an idle keep-alive
// connection at once, lets the request in flight finish with
// "Connection: close", and then returns.
func TestServeShutdownDrain(t *testing.T) {
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

	_, addr, cancel, done := serveUntilCancel(t, envConfig(t, map[string]string{"TRY_FILES": "@app", "UPSTREAM": "http://" + upLn.Addr().String()}), Deps{DrainTimeout: 10 * time.Second})
	defer cancel()

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
