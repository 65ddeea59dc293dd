package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/rs/zerolog"

	"onebox/appserver"
	"onebox/internal/testmariadb"
	"onebox/supervisor"
)

// The one reaper of this test process, for the test that runs the
// guestbook under the real pool.
var reaper *supervisor.Reaper

// TestMain makes the test binary the exec shim and the guestbook itself
// (`guestbook.test guestbook ARGS`), so the pool test runs real processes.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case appserver.ShimArg:
			if err := appserver.ShimMain(os.Args[2:]); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(127)
			}
		case "guestbook":
			if err := run(os.Args[2:], os.Getenv); err != nil {
				fmt.Fprintln(os.Stderr, "guestbook:", err)
				os.Exit(1)
			}
			os.Exit(0)
		}
	}
	reaper = supervisor.NewReaper(zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = reaper.Run(ctx) }()
	code := m.Run()
	cancel()
	os.Exit(code)
}

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestMySQLConfig(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := func(kv ...string) map[string]string {
		m := map[string]string{"MYSQL_HOST": "db", "MYSQL_USER": "u", "MYSQL_PASSWORD": "p", "MYSQL_DATABASE": "guestbook"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name     string
		env      map[string]string
		addr     string
		password string
		tls      string
		wantErr  string
	}{
		{"defaults", base(), "db:3306", "p", "", ""},
		{"port and tls", base("MYSQL_PORT", "3307", "MYSQL_TLS", "skip-verify"), "db:3307", "p", "skip-verify", ""},
		{"password file", base("MYSQL_PASSWORD", "", "MYSQL_PASSWORD_FILE", pwFile), "db:3306", "from-file", "", ""},
		{"both passwords", base("MYSQL_PASSWORD_FILE", pwFile), "", "", "", "both set"},
		{"no host", base("MYSQL_HOST", ""), "", "", "", "MYSQL_HOST"},
		{"bad port", base("MYSQL_PORT", "99999"), "", "", "", "MYSQL_PORT"},
		{"bad tls", base("MYSQL_TLS", "yes"), "", "", "", "MYSQL_TLS"},
		{"no database", base("MYSQL_DATABASE", ""), "", "", "", "MYSQL_DATABASE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := mysqlConfig(envOf(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Addr != tt.addr || c.Passwd != tt.password || c.TLSConfig != tt.tls || c.DBName != "guestbook" {
				t.Errorf("got addr %s password %q tls %q db %s", c.Addr, c.Passwd, c.TLSConfig, c.DBName)
			}
		})
	}
}

type response struct {
	code int
	body map[string]any
	hdr  http.Header
}

func do(t *testing.T, method, url, ctype, body string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := response{code: resp.StatusCode, hdr: resp.Header}
	if err := json.Unmarshal(b, &r.body); err != nil && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("%s %s: invalid JSON %q", method, url, b)
	}
	return r
}

// deadDB is a database on a port nobody listens on.
func deadDB(t *testing.T) *sql.DB {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := mysql.NewConfig()
	c.Net, c.Addr, c.DBName, c.Timeout = "tcp", addr, "guestbook", time.Second
	db, err := sql.Open("mysql", c.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestValidationNeedsNoDatabase(t *testing.T) {
	srv := httptest.NewServer(newApp(deadDB(t), true))
	defer srv.Close()
	tests := []struct {
		name, ctype, body string
		code              int
		field             string
	}{
		{"not JSON", "application/json", "name=a", 400, ""},
		{"unknown field", "application/json", `{"name":"a","message":"b","admin":true}`, 400, ""},
		{"no name", "application/json", `{"name":"  ","message":"hi"}`, 400, "name"},
		{"no message", "application/json", `{"name":"a"}`, 400, "message"},
		{"long name", "application/json", `{"name":"` + strings.Repeat("n", 65) + `","message":"hi"}`, 400, "name"},
		{"long message", "application/json", `{"name":"a","message":"` + strings.Repeat("é", 1001) + `"}`, 400, "message"},
		{"control characters", "application/json", `{"name":"a\u0007","message":"hi"}`, 400, ""},
		{"too large", "application/json", `{"name":"a","message":"` + strings.Repeat("x", 5000) + `"}`, 413, ""},
		{"wrong type", "text/plain", `{"name":"a","message":"b"}`, 415, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, "POST", srv.URL+"/api/messages", tt.ctype, tt.body)
			if r.code != tt.code || r.body["error"] == nil {
				t.Fatalf("got %d %v, want %d with an error", r.code, r.body, tt.code)
			}
			if tt.field != "" && r.body["field"] != tt.field {
				t.Errorf("field %v, want %s", r.body["field"], tt.field)
			}
		})
	}
	if r := do(t, "GET", srv.URL+"/api/nope", "", ""); r.code != 404 {
		t.Errorf("unknown endpoint: %d", r.code)
	}
	if r := do(t, "GET", srv.URL+"/", "", ""); r.code != 200 {
		t.Errorf("static page alone: %d", r.code)
	}
}

func TestDatabaseDownAnswers503(t *testing.T) {
	srv := httptest.NewServer(newApp(deadDB(t), false))
	defer srv.Close()
	for _, tt := range []struct{ method, path, body string }{
		{"GET", "/api/messages", ""},
		{"POST", "/api/messages", `{"name":"a","message":"b"}`},
		{"GET", "/api/health", ""},
	} {
		r := do(t, tt.method, srv.URL+tt.path, "application/json", tt.body)
		if r.code != 503 {
			t.Errorf("%s %s = %d %v, want 503", tt.method, tt.path, r.code, r.body)
		}
		if tt.path == "/api/messages" && (r.body["error"] == nil || r.hdr.Get("Retry-After") == "") {
			t.Errorf("%s %s: want a JSON error and Retry-After, got %v", tt.method, tt.path, r.body)
		}
	}
}

func dbEnv(s *testmariadb.Server) map[string]string {
	return map[string]string{
		"MYSQL_HOST": s.Host, "MYSQL_PORT": strconv.Itoa(s.Port), "MYSQL_USER": s.User,
		"MYSQL_PASSWORD": s.Password, "MYSQL_DATABASE": s.Database,
	}
}

func TestAPIWithMariaDB(t *testing.T) {
	s := testmariadb.Start(t, testmariadb.WithDatabase("guestbook"))
	env := dbEnv(s)
	for range 2 { // migrate is idempotent
		if err := run([]string{"migrate"}, envOf(env)); err != nil {
			t.Fatalf("migrate: %v", err)
		}
	}
	cfg, err := mysqlConfig(envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	srv := httptest.NewServer(newApp(db, false))
	defer srv.Close()

	if r := do(t, "GET", srv.URL+"/api/health", "", ""); r.code != 200 || r.body["database"] != "up" {
		t.Fatalf("health %d %v", r.code, r.body)
	}
	if r := do(t, "GET", srv.URL+"/api/messages", "", ""); r.code != 200 || len(r.body["messages"].([]any)) != 0 {
		t.Fatalf("empty list: %d %v", r.code, r.body)
	}
	posts := []struct{ name, message string }{
		{"Ada", "first!"},
		{"Grace", "multi\nline, ünïcödé and <b>markup</b> 'quotes'"},
	}
	for _, p := range posts {
		b, _ := json.Marshal(map[string]string{"name": " " + p.name + " ", "message": p.message})
		r := do(t, "POST", srv.URL+"/api/messages", "application/json", string(b))
		if r.code != 201 || r.body["name"] != p.name || r.body["message"] != p.message || r.body["id"] == nil {
			t.Fatalf("POST %v = %d %v", p, r.code, r.body)
		}
	}
	r := do(t, "GET", srv.URL+"/api/messages", "", "")
	msgs := r.body["messages"].([]any)
	if r.code != 200 || len(msgs) != 2 {
		t.Fatalf("list: %d %v", r.code, r.body)
	}
	newest := msgs[0].(map[string]any)
	if newest["name"] != "Grace" || newest["message"] != posts[1].message {
		t.Errorf("newest first: got %v", newest)
	}
	if r := do(t, "GET", srv.URL+"/api/messages?limit=1", "", ""); len(r.body["messages"].([]any)) != 1 {
		t.Errorf("limit=1 gave %v", r.body)
	}
	if r := do(t, "GET", srv.URL+"/api/messages?limit=0", "", ""); r.code != 400 {
		t.Errorf("limit=0 gave %d", r.code)
	}
	var stored string
	if err := db.QueryRow("SELECT message FROM messages WHERE name = 'Grace'").Scan(&stored); err != nil || stored != posts[1].message {
		t.Errorf("stored %q, %v", stored, err)
	}

	// The database goes away: clear 503s; it comes back: the app recovers
	// by itself.
	s.Stop()
	if r := do(t, "GET", srv.URL+"/api/messages", "", ""); r.code != 503 || r.body["error"] == nil {
		t.Fatalf("database down: %d %v, want 503 with an error", r.code, r.body)
	}
	if r := do(t, "GET", srv.URL+"/api/health", "", ""); r.code != 503 {
		t.Fatalf("health with the database down: %d", r.code)
	}
	s.Start()
	if r := do(t, "GET", srv.URL+"/api/messages", "", ""); r.code != 200 || len(r.body["messages"].([]any)) != 2 {
		t.Fatalf("after the database came back: %d %v", r.code, r.body)
	}
}

// TestUnderThePool runs the guestbook as onebox runs it: `guestbook migrate`
// as APP_PRESTART, then workers on the pool's socket.
func TestUnderThePool(t *testing.T) {
	s := testmariadb.Start(t, testmariadb.WithDatabase("guestbook"))
	for k, v := range dbEnv(s) {
		t.Setenv(k, v) // the workers inherit the environment, as under onebox
	}
	self := "'" + os.Args[0] + "' guestbook"
	sock := filepath.Join(t.TempDir(), "app.sock")
	m, err := appserver.New(appserver.Config{
		Command: self, Prestart: self + " migrate", Bind: "unix:" + sock, Workers: 2, MaxWorkers: 12,
		Timeout: 10 * time.Second, GracefulTimeout: 5 * time.Second,
	}, appserver.Deps{Log: zerolog.Nop(), Start: reaper.Start, Shim: []string{os.Args[0], appserver.ShimArg}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	select {
	case <-m.Ready():
	case err := <-done:
		t.Fatalf("pool stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("pool not ready in 30s")
	}
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Post("http://app/api/messages", "application/json", bytes.NewReader([]byte(`{"name":"pool","message":"hello"}`)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("POST through the pool: %d", resp.StatusCode)
	}
	resp, err = c.Get("http://app/api/messages")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"message":"hello"`) {
		t.Fatalf("GET through the pool: %d %s", resp.StatusCode, b)
	}
}
