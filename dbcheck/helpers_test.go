package dbcheck

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"onebox/config"
	"onebox/internal/testmariadb"
)

// Short periods keep the suite quick; the assertions are stated in
// intervals, so they hold for any period.
const (
	testInterval = 200 * time.Millisecond
	testTimeout  = time.Second
)

// logBuffer collects the gate's log lines; Run writes from its goroutine
// while the test reads.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the log lines decoded, failing on a line that is not JSON.
func (b *logBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// withMessage returns the lines whose message starts with prefix.
func (b *logBuffer) withMessage(t *testing.T, prefix string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range b.lines(t) {
		if msg, _ := l["message"].(string); strings.HasPrefix(msg, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// serverConfig is a gate config for s with test periods.
func serverConfig(s *testmariadb.Server) Config {
	return Config{
		Host:             s.Host,
		Port:             s.Port,
		User:             s.User,
		Password:         config.Secret(s.Password),
		Database:         s.Database,
		TLS:              "false",
		WaitTimeout:      0,
		CheckInterval:    testInterval,
		CheckTimeout:     testTimeout,
		AffectsReadiness: true,
	}
}

// harness is a gate under test with its logs, metrics and Run's result.
type harness struct {
	g      *Gate
	logs   *logBuffer
	reg    *prometheus.Registry
	done   chan error
	cancel context.CancelFunc
}

// startGate creates the gate and runs it until the test ends.
func startGate(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{logs: &logBuffer{}, reg: prometheus.NewRegistry(), done: make(chan error, 1)}
	g, err := New(cfg, Deps{Log: zerolog.New(h.logs).Level(zerolog.DebugLevel), Metrics: h.reg})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.g = g
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(2 * testTimeout):
			t.Error("Run did not return after its context was cancelled")
		}
	})
	return h
}

// result waits for Run to return, which it must within limit.
func (h *harness) result(t *testing.T, limit time.Duration) error {
	t.Helper()
	select {
	case err := <-h.done:
		h.done <- err // for the cleanup
		return err
	case <-time.After(limit):
		t.Fatalf("Run did not return within %s", limit)
		return nil
	}
}

// waitReady waits for Ready to be closed.
func (h *harness) waitReady(t *testing.T, limit time.Duration) {
	t.Helper()
	select {
	case <-h.g.Ready():
	case err := <-h.done:
		t.Fatalf("Run returned %v before Ready; logs:\n%s", err, h.logs)
	case <-time.After(limit):
		t.Fatalf("not ready within %s; logs:\n%s", limit, h.logs)
	}
}

func (h *harness) status() Status { return h.g.Status().(Status) }

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// silentPort returns a loopback port that accepts connections and never
// says a word, as a hung server or a black-holing firewall would.
func silentPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().(*net.TCPAddr).Port
}

// assertNoSecret fails if secret appears in any of the texts.
func assertNoSecret(t *testing.T, secret string, texts map[string]string) {
	t.Helper()
	for name, text := range texts {
		if strings.Contains(text, secret) {
			t.Errorf("the password appears in %s:\n%s", name, text)
		}
	}
}

// exposed gathers everything the gate shows the world: log lines, Run's
// error, Check's error and /status's JSON.
func (h *harness) exposed(t *testing.T, runErr error) map[string]string {
	t.Helper()
	st, err := json.Marshal(h.g.Status())
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{"logs": h.logs.String(), "status": string(st)}
	if runErr != nil {
		m["Run error"] = runErr.Error()
	}
	if err := h.g.Check(); err != nil {
		m["Check error"] = err.Error()
	}
	return m
}

// counter returns the value of a counter series with the given reason
// label (0 when absent).
func counter(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "reason" && lp.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// gauge returns the value of an unlabelled gauge.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}
