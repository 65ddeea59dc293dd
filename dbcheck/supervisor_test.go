package dbcheck

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"onebox/internal/testmariadb"
	"onebox/internal/testutil"
	"onebox/supervisor"
)

// runSupervised runs the gate as cmd/onebox does: the first component of a
// real supervisor, whose admin endpoint listens on a free loopback port.
// The supervisor's reaper runs in this process too, beside the test's
// mariadbd (see testmariadb's package doc).
func runSupervised(t *testing.T, cfg Config, logs *logBuffer) (*supervisor.Supervisor, chan error) {
	t.Helper()
	log := zerolog.New(logs)
	sup := supervisor.New(supervisor.Config{
		LogLevel: "info", LogFormat: "json", ShutdownTimeout: 5 * time.Second, AdminListen: "127.0.0.1:0",
	}, log.With().Str("component", "supervisor").Logger(), nil)
	g, err := New(cfg, Deps{Log: log.With().Str("component", "dbcheck").Logger(), Metrics: sup.Registry()})
	if err != nil {
		t.Fatal(err)
	}
	sup.Add("dbcheck", g)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("supervisor did not stop")
		}
	})
	return sup, done
}

// get fetches an admin path and returns the status code and body.
func get(t *testing.T, sup *supervisor.Supervisor, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + sup.AdminAddr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestSupervisedGiveUp: past the wait timeout the whole box stops with an
// error that names the gate and the reason (cmd/onebox exits non-zero on it).
func TestSupervisedGiveUp(t *testing.T) {
	s := testmariadb.Start(t)
	cfg := serverConfig(s)
	cfg.Password = "not-the-password"
	cfg.WaitTimeout = time.Second
	logs := &logBuffer{}
	_, done := runSupervised(t, cfg, logs)
	var err error
	select {
	case err = <-done:
		done <- err // for the cleanup
	case <-time.After(15 * time.Second):
		t.Fatal("the supervisor did not stop after the gate gave up")
	}
	var ce *CheckError
	if err == nil || !strings.Contains(err.Error(), "dbcheck") || !errors.As(err, &ce) || ce.Reason != ReasonAccessDenied {
		t.Fatalf("supervisor Run = %v, want an error naming dbcheck with reason access denied", err)
	}
	assertNoSecret(t, "not-the-password", map[string]string{"logs": logs.String(), "error": err.Error()})
}

// TestSupervisedReadiness: /readyz follows the database, /status and
// /metrics show the gate, and none of them shows the password.
func TestSupervisedReadiness(t *testing.T) {
	s := testmariadb.Start(t)
	logs := &logBuffer{}
	sup, done := runSupervised(t, serverConfig(s), logs)
	ready := func() bool { code, _ := get(t, sup, "/readyz"); return code == http.StatusOK }
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, "admin endpoint bound", func() bool { return sup.AdminAddr() != "" })
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, "ready", ready)

	s.Stop()
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, "not ready while the database is down", func() bool { return !ready() })
	code, body := get(t, sup, "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "dbcheck") || !strings.Contains(body, "connection") {
		t.Errorf("/readyz while down = %d %q, want 503 naming dbcheck and the reason", code, body)
	}
	_, status := get(t, sup, "/status")
	var st struct {
		Components []struct {
			Name   string
			Detail Status
		}
	}
	if err := json.Unmarshal([]byte(status), &st); err != nil {
		t.Fatalf("/status: %v\n%s", err, status)
	}
	if len(st.Components) != 1 || st.Components[0].Name != "dbcheck" ||
		st.Components[0].Detail.State != StateDown || st.Components[0].Detail.LastError == "" {
		t.Errorf("/status while down lacks the gate's state and last error:\n%s", status)
	}
	_, metrics := get(t, sup, "/metrics")
	if !strings.Contains(metrics, "onebox_mysql_up 0") {
		t.Errorf("/metrics while down lacks onebox_mysql_up 0")
	}

	s.Start()
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, "ready again", ready)
	select {
	case err := <-done:
		t.Fatalf("supervisor stopped (%v): a database outage must not stop the box", err)
	default:
	}
	_, metrics = get(t, sup, "/metrics")
	assertNoSecret(t, s.Password, map[string]string{"logs": logs.String(), "status": status, "metrics": metrics, "readyz": body})
}
