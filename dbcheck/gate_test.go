package dbcheck

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"onebox/config"
	"onebox/internal/testmariadb"
	"onebox/internal/testutil"
)

// TestGateWaitsForServer: the server is down when the gate starts; the gate
// retries with growing pauses, logging each attempt, and passes once the
// server is up.
func TestGateWaitsForServer(t *testing.T) {
	s := testmariadb.Start(t)
	s.Stop()
	h := startGate(t, serverConfig(s))

	// Observe a few failed attempts before the server comes up.
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, "three failed attempts", func() bool { return h.status().FailedChecks >= 3 })
	select {
	case <-h.g.Ready():
		t.Fatal("Ready closed while the server is down")
	default:
	}
	if err := h.g.Check(); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Check while down = %v, want an error with \"connection refused\"", err)
	}
	if st := h.status(); st.State != StateWaiting || st.Reason != "connection refused" {
		t.Fatalf("status while down = %+v, want waiting, connection refused", st)
	}

	s.Start()
	h.waitReady(t, 10*time.Second)
	if err := h.g.Check(); err != nil {
		t.Fatalf("Check after Ready = %v, want nil", err)
	}
	st := h.status()
	if st.State != StateUp || st.LastSuccess.IsZero() || st.LatencySeconds <= 0 || st.Reason != "" {
		t.Fatalf("status once up = %+v", st)
	}

	attempts := h.logs.withMessage(t, "database not ready")
	if len(attempts) < 3 {
		t.Fatalf("%d attempt lines, want at least 3:\n%s", len(attempts), h.logs)
	}
	var lastWaited time.Duration
	for i, l := range attempts {
		if n, _ := l["attempt"].(float64); int(n) != i+1 {
			t.Errorf("line %d: attempt = %v, want %d", i, l["attempt"], i+1)
		}
		if l["reason"] != "connection refused" || l["level"] != "warn" {
			t.Errorf("line %d: reason %v level %v, want connection refused at warn", i, l["reason"], l["level"])
		}
		waited, err := time.ParseDuration(l["waited"].(string))
		if err != nil || waited < lastWaited {
			t.Errorf("line %d: waited = %v (%v), want a growing duration", i, l["waited"], err)
		}
		lastWaited = waited
	}
	// Backoff: pauses grow from 250ms towards the cap (the interval).
	if first, _ := time.ParseDuration(attempts[0]["next_in"].(string)); first != min(firstBackoff, testInterval) {
		t.Errorf("first pause = %v, want %v", first, min(firstBackoff, testInterval))
	}
	if ready := h.logs.withMessage(t, "database ready"); len(ready) != 1 {
		t.Errorf("%d \"database ready\" lines, want 1", len(ready))
	}
}

// TestGateGivesUp: past the wait timeout Run returns an error naming the
// last reason, and the password shows nowhere.
func TestGateGivesUp(t *testing.T) {
	s := testmariadb.Start(t)
	wrong := "wrong-" + rand.Text()
	// The server says "unknown database" only to a user who may use it.
	s.RootExec("GRANT ALL ON `granted_but_missing`.* TO '" + s.User + "'@'%'")
	tests := []struct {
		name       string
		change     func(*Config)
		want       Reason
		configHint bool
	}{
		{"wrong password", func(c *Config) { c.Password = config.Secret(wrong) }, ReasonAccessDenied, true},
		{"unknown user", func(c *Config) { c.User = "nobody" }, ReasonAccessDenied, true},
		{"unknown database", func(c *Config) { c.Database = "granted_but_missing" }, ReasonUnknownDB, true},
		{"database not granted (or missing)", func(c *Config) { c.Database = "mysql" }, ReasonDBDenied, true},
		{"nothing listening", func(c *Config) { c.Port = closedPort(t) }, ReasonRefused, false},
		{"server never answers", func(c *Config) { c.Port = silentPort(t); c.CheckTimeout = 300 * time.Millisecond }, ReasonTimeout, false},
		{"TLS required, server has none", func(c *Config) { c.TLS = "true" }, ReasonTLS, false},
		{"password file missing", func(c *Config) { c.PasswordFile = filepath.Join(t.TempDir(), "nope") }, ReasonPasswordFile, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // each case waits out its timeout; they share only the server
			cfg := serverConfig(s)
			cfg.WaitTimeout = time.Second
			tt.change(&cfg)
			h := startGate(t, cfg)
			start := time.Now()
			err := h.result(t, 10*time.Second)
			took := time.Since(start)

			var werr *WaitError
			if !errors.As(err, &werr) {
				t.Fatalf("Run = %v, want a *WaitError", err)
			}
			var ce *CheckError
			if !errors.As(err, &ce) || ce.Reason != tt.want {
				t.Fatalf("Run = %v, want reason %s", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want.Words()) {
				t.Errorf("error %q does not name the reason %q", err, tt.want.Words())
			}
			if took < cfg.WaitTimeout || took > cfg.WaitTimeout+cfg.CheckTimeout+time.Second {
				t.Errorf("Run returned after %v, want about the wait timeout %v", took, cfg.WaitTimeout)
			}
			if werr.Attempts < 2 {
				t.Errorf("%d attempts in %v, want several", werr.Attempts, cfg.WaitTimeout)
			}
			select {
			case <-h.g.Ready():
				t.Error("Ready closed although no check succeeded")
			default:
			}
			if err := h.g.Check(); err == nil {
				t.Error("Check = nil, want the reason")
			}
			attempts := h.logs.withMessage(t, "database not ready")
			if len(attempts) == 0 {
				t.Fatalf("no attempt lines:\n%s", h.logs)
			}
			for _, l := range attempts {
				if l["reason"] != tt.want.Words() {
					t.Errorf("attempt line reason = %v, want %q", l["reason"], tt.want.Words())
				}
				if got := l["config_mistake"] == true; got != tt.configHint {
					t.Errorf("attempt line config_mistake = %v, want %v", l["config_mistake"], tt.configHint)
				}
			}
			if giving := h.logs.withMessage(t, "giving up"); len(giving) != 1 || giving[0]["level"] != "error" {
				t.Errorf("want one error line \"giving up\", got %v", giving)
			}
			exposed := h.exposed(t, err)
			assertNoSecret(t, wrong, exposed)
			assertNoSecret(t, s.Password, exposed)
		})
	}
}

// TestDownAndUp: a server stopped while the box runs is seen down within two
// intervals and up within two intervals of its restart; each transition is
// logged once, Run keeps running and Ready stays closed.
func TestDownAndUp(t *testing.T) {
	s := testmariadb.Start(t)
	cfg := serverConfig(s)
	// A longer interval than elsewhere: the bounds below are in intervals,
	// and a busy machine's scheduling noise must stay small beside them.
	cfg.CheckInterval = 500 * time.Millisecond
	h := startGate(t, cfg)
	h.waitReady(t, 10*time.Second)

	s.Stop()
	took := testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, "down after stop", func() bool { return h.g.Check() != nil })
	if took > 2*cfg.CheckInterval {
		t.Errorf("down seen %v after the stop, want within two intervals (%v)", took, 2*cfg.CheckInterval)
	}
	// Let several checks fail, to show a transition is logged once.
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, "three failed checks", func() bool { return h.status().FailedChecks >= 3 })
	if st := h.status(); st.State != StateDown || st.LastError == "" || st.Reason == "" {
		t.Fatalf("status while down = %+v", st)
	}
	if up := gauge(t, h.reg, "onebox_mysql_up"); up != 0 {
		t.Errorf("onebox_mysql_up while down = %v, want 0", up)
	}

	s.Start()
	took = testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, "up after restart", func() bool { return h.g.Check() == nil })
	if took > 2*cfg.CheckInterval {
		t.Errorf("up seen %v after the restart, want within two intervals (%v)", took, 2*cfg.CheckInterval)
	}

	select {
	case err := <-h.done:
		t.Fatalf("Run returned %v: the gate must not stop because the database went away", err)
	default:
	}
	select {
	case <-h.g.Ready():
	default:
		t.Fatal("Ready no longer closed")
	}
	downs := h.logs.withMessage(t, "database down")
	ups := h.logs.withMessage(t, "database up again")
	if len(downs) != 1 || len(ups) != 1 {
		t.Fatalf("%d down and %d up lines, want one each:\n%s", len(downs), len(ups), h.logs)
	}
	if n, _ := ups[0]["failed_checks"].(float64); n < 3 {
		t.Errorf("up line failed_checks = %v, want at least 3", ups[0]["failed_checks"])
	}
	if st := h.status(); st.State != StateUp || st.LastError == "" || st.LastErrorAt.After(st.LastSuccess) {
		t.Errorf("status once up again = %+v, want up with the last error kept", st)
	}
	if up := gauge(t, h.reg, "onebox_mysql_up"); up != 1 {
		t.Errorf("onebox_mysql_up once up = %v, want 1", up)
	}
	var failures float64
	for _, r := range []Reason{ReasonRefused, ReasonConnLost} {
		failures += counter(t, h.reg, "onebox_mysql_check_failures_total", string(r))
	}
	if failures < 3 {
		t.Errorf("failures counted = %v, want at least 3", failures)
	}
	assertNoSecret(t, s.Password, h.exposed(t, nil))
}

// TestPasswordFile: the password comes from a file, trimmed, and is re-read
// at every check, so a rotated secret takes effect without a restart.
func TestPasswordFile(t *testing.T) {
	s := testmariadb.Start(t)
	file := filepath.Join(t.TempDir(), "mysql_password")
	if err := os.WriteFile(file, []byte(s.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := serverConfig(s)
	cfg.Password, cfg.PasswordFile = "", file
	h := startGate(t, cfg)
	h.waitReady(t, 10*time.Second)

	// Rotate: the server's password changes, the file does not yet.
	newPassword := "rotated-" + rand.Text()
	s.RootExec("ALTER USER '" + s.User + "'@'%' IDENTIFIED BY '" + newPassword + "'")
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, "down with the old password", func() bool { return h.g.Check() != nil })
	if st := h.status(); st.Reason != "access denied" {
		t.Fatalf("reason = %q, want access denied", st.Reason)
	}
	if err := os.WriteFile(file, []byte("  "+newPassword+"\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, "up with the new password", func() bool { return h.g.Check() == nil })
	exposed := h.exposed(t, nil)
	assertNoSecret(t, s.Password, exposed)
	assertNoSecret(t, newPassword, exposed)
}

// TestTLS runs the gate against a TLS server whose user must use TLS, so a
// gate that passes has really encrypted.
func TestTLS(t *testing.T) {
	s := testmariadb.Start(t, testmariadb.WithTLS())
	s.RootExec("ALTER USER '" + s.User + "'@'%' REQUIRE SSL")
	tests := []struct {
		name string
		tls  string
		ca   string
		host string
		want Reason // "" for ready
	}{
		{"verified with the CA", "true", s.CAFile, s.Host, ""},
		{"verified by name", "true", s.CAFile, "localhost", ""},
		{"skip-verify", "skip-verify", "", s.Host, ""},
		{"preferred", "preferred", "", s.Host, ""},
		{"unknown CA", "true", "", s.Host, ReasonTLS},
		{"plain text refused by the server", "false", "", s.Host, ReasonAccessDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := serverConfig(s)
			cfg.TLS, cfg.TLSCAFile, cfg.Host = tt.tls, tt.ca, tt.host
			cfg.WaitTimeout = time.Second
			h := startGate(t, cfg)
			if tt.want == "" {
				h.waitReady(t, 10*time.Second)
				return
			}
			err := h.result(t, 10*time.Second)
			var ce *CheckError
			if !errors.As(err, &ce) || ce.Reason != tt.want {
				t.Fatalf("Run = %v, want reason %s", err, tt.want)
			}
		})
	}
}

// TestPreferredFallsBack: preferred accepts a server without TLS.
func TestPreferredFallsBack(t *testing.T) {
	s := testmariadb.Start(t)
	cfg := serverConfig(s)
	cfg.TLS = "preferred"
	startGate(t, cfg).waitReady(t, 10*time.Second)
}

// TestNotAffectingReadiness: with AffectsReadiness off, Check is nil even
// while the database is unreachable, and Status still tells.
func TestNotAffectingReadiness(t *testing.T) {
	cfg := Config{
		Host: "127.0.0.1", Port: closedPort(t), User: "app", TLS: "false",
		CheckInterval: testInterval, CheckTimeout: testTimeout,
	}
	h := startGate(t, cfg)
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, "a failed check", func() bool { return h.status().FailedChecks >= 1 })
	if err := h.g.Check(); err != nil {
		t.Fatalf("Check = %v, want nil with AffectsReadiness off", err)
	}
	if st := h.status(); st.Reason != "connection refused" {
		t.Fatalf("status reason = %q, want connection refused", st.Reason)
	}
}

// TestStopDuringGate: cancelling Run while it waits returns nil at once.
func TestStopDuringGate(t *testing.T) {
	cfg := Config{
		Host: "127.0.0.1", Port: closedPort(t), User: "app", TLS: "false",
		CheckInterval: time.Hour, CheckTimeout: testTimeout,
	}
	h := startGate(t, cfg)
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, "a failed check", func() bool { return h.status().FailedChecks >= 1 })
	h.cancel()
	if err := h.result(t, time.Second); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
}

// BenchmarkProbe measures one check against a local server: a new
// connection, the login and SELECT 1, over TCP and over TLS.
func BenchmarkProbe(b *testing.B) {
	s := testmariadb.Start(b, testmariadb.WithTLS())
	for _, mode := range []string{"false", "true"} {
		b.Run("tls="+mode, func(b *testing.B) {
			cfg := serverConfig(s)
			cfg.TLS = mode
			if mode == "true" {
				cfg.TLSCAFile = s.CAFile
			}
			g, err := New(cfg, Deps{})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			for b.Loop() {
				if _, err := g.probe(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
