package supervisor_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"onebox/config"
	"onebox/internal/testutil"
	"onebox/supervisor"
)

// gated is a component whose readiness and health the test controls, and
// which counts reloads and remembers the last scale request.
type gated struct {
	ready   chan struct{}
	down    atomic.Pointer[string]
	reloads atomic.Int32
	workers atomic.Int32
}

func newGated() *gated { g := &gated{ready: make(chan struct{})}; g.workers.Store(2); return g }

func (g *gated) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (g *gated) Ready() <-chan struct{}        { return g.ready }
func (g *gated) Check() error {
	if p := g.down.Load(); p != nil {
		return errors.New(*p)
	}
	return nil
}
func (g *gated) Reload(context.Context) error { g.reloads.Add(1); return nil }
func (g *gated) Scale(n int, relative bool) (int, error) {
	if relative {
		n += int(g.workers.Load())
	}
	g.workers.Store(int32(max(n, 1)))
	return int(g.workers.Load()), nil
}

func startSupervisor(t *testing.T, cfg supervisor.Config, parts ...supervisor.Component) (*supervisor.Supervisor, func() error) {
	t.Helper()
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 5 * time.Second
	}
	cfg.AdminListen = "127.0.0.1:0"
	sup := supervisor.New(cfg, zerolog.Nop(), nil)
	for i, p := range parts {
		sup.Add([]string{"first", "second", "third"}[i], p)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for sup.AdminAddr() == "" {
		if time.Now().After(deadline) {
			t.Fatal("admin endpoint never bound")
		}
		time.Sleep(time.Millisecond)
	}
	var result error
	var stopped bool
	stop := func() error {
		if !stopped {
			cancel()
			result, stopped = <-done, true
		}
		return result
	}
	// Wait for the stop: a supervisor left running would go on reaping with
	// wait4(-1) and steal statuses from the next test's commands.
	t.Cleanup(func() { _ = stop() })
	return sup, stop
}

func get(t *testing.T, sup *supervisor.Supervisor, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + sup.AdminAddr() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestReadinessFollowsStartOrderAndChecks(t *testing.T) {
	a, b := newGated(), newGated()
	sup, stop := startSupervisor(t, supervisor.Config{}, a, b)

	if code, body := get(t, sup, "/readyz"); code != 503 || !strings.Contains(body, "starting") {
		t.Fatalf("/readyz before any component is ready = %d %q, want 503 starting", code, body)
	}
	if code, _ := get(t, sup, "/healthz"); code != 200 {
		t.Fatalf("/healthz = %d, want 200 while alive", code)
	}
	if _, st := get(t, sup, "/status"); !strings.Contains(st, `"name": "second",
      "state": "waiting"`) {
		t.Fatalf("second component not waiting while the first is not ready: %s", st)
	}
	close(a.ready)
	// b starts only after a is ready; the box is ready only after b is.
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, "second starting", func() bool {
		_, st := get(t, sup, "/status")
		return strings.Contains(st, `"name": "second",
      "state": "starting"`)
	})
	if code, _ := get(t, sup, "/readyz"); code != 503 {
		t.Fatalf("/readyz with the second component not ready = %d, want 503", code)
	}
	close(b.ready)
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, "ready after both", func() bool { c, _ := get(t, sup, "/readyz"); return c == 200 })

	msg := "database unreachable"
	a.down.Store(&msg)
	if code, body := get(t, sup, "/readyz"); code != 503 || !strings.Contains(body, msg) {
		t.Fatalf("/readyz with a failing check = %d %q, want 503 naming %q", code, body, msg)
	}
	_, st := get(t, sup, "/status")
	if !strings.Contains(st, msg) || !strings.Contains(st, `"first"`) {
		t.Fatalf("/status does not show the failing check: %s", st)
	}
	a.down.Store(nil)
	if code, _ := get(t, sup, "/readyz"); code != 200 {
		t.Fatalf("/readyz after recovery = %d, want 200", code)
	}
	if _, m := get(t, sup, "/metrics"); !strings.Contains(m, "onebox_ready 1") {
		t.Fatalf("/metrics lacks onebox_ready 1")
	}
	if err := stop(); err != nil {
		t.Fatalf("clean stop: %v", err)
	}
}

func TestComponentReturningEarlyFailsTheBox(t *testing.T) {
	sup := supervisor.New(supervisor.Config{ShutdownTimeout: time.Second, AdminListen: "off"}, zerolog.Nop(), nil)
	sup.Add("quitter", componentFunc(func(ctx context.Context) error { return nil }))
	err := sup.Run(context.Background())
	if !errors.Is(err, supervisor.ErrExited) || !strings.Contains(err.Error(), "quitter") {
		t.Fatalf("Run = %v, want ErrExited naming quitter", err)
	}
}

type componentFunc func(ctx context.Context) error

func (f componentFunc) Run(ctx context.Context) error { return f(ctx) }

func TestControlRoutes(t *testing.T) {
	g := newGated()
	close(g.ready)
	sup, _ := startSupervisor(t, supervisor.Config{AdminToken: config.Secret("s3cret")}, g)
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, "ready", func() bool { c, _ := get(t, sup, "/readyz"); return c == 200 })

	post := func(path string) (int, string) {
		resp, err := http.Post("http://"+sup.AdminAddr()+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := post("/reload"); code != 200 || g.reloads.Load() != 1 {
		t.Fatalf("POST /reload = %d, reloads %d; want 200 and 1", code, g.reloads.Load())
	}
	for _, tc := range []struct {
		arg  string
		code int
		want int32
	}{{"%2B1", 200, 3}, {"-1", 200, 2}, {"5", 200, 5}, {"-10", 200, 1}, {"0", 400, 1}, {"many", 400, 1}} {
		code, body := post("/scale?workers=" + tc.arg)
		if code != tc.code || g.workers.Load() != tc.want {
			t.Errorf("POST /scale?workers=%s = %d %s, workers %d; want %d and %d", tc.arg, code, body, g.workers.Load(), tc.code, tc.want)
		}
	}
}

func TestControlFromNonLoopbackPeer(t *testing.T) {
	for _, tc := range []struct {
		name, token, auth string
		want              int
	}{
		{"no token configured", "", "", http.StatusForbidden},
		{"no token configured, one sent", "", "Bearer guess", http.StatusForbidden},
		{"token configured, none sent", "s3cret", "", http.StatusForbidden},
		{"wrong token", "s3cret", "Bearer s3cre", http.StatusForbidden},
		// Let through, then refused for another reason: this box is not running.
		{"right token", "s3cret", "Bearer s3cret", http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sup := supervisor.New(supervisor.Config{AdminToken: config.Secret(tc.token)}, zerolog.Nop(), nil)
			// A non-loopback peer cannot be made on this machine's loopback,
			// so the request is handed to the handler with its address.
			req := httptest.NewRequest(http.MethodPost, "/scale?workers=2", nil)
			req.RemoteAddr = "203.0.113.9:51000"
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			sup.Handler().ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("POST /scale from a remote peer = %d %s, want %d", rec.Code, rec.Body, tc.want)
			}
			// Reads stay open to remote peers (a load balancer's health check).
			req = httptest.NewRequest(http.MethodGet, "/healthz", nil)
			req.RemoteAddr = "203.0.113.9:51000"
			rec = httptest.NewRecorder()
			sup.Handler().ServeHTTP(rec, req)
			if rec.Code != 200 {
				t.Fatalf("GET /healthz from a remote peer = %d, want 200", rec.Code)
			}
		})
	}
}
