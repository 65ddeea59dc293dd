// Package flask holds the guestbook in Flask on PyMySQL (guestbook.py); this
// test runs it for real: on onebox_worker, against a real MariaDB.
package flask

import (
	"database/sql"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"onebox/internal/browsertest"
	"onebox/internal/testmariadb"
)

// debianPython is the interpreter with Debian's python3-flask and
// python3-pymysql (.ci/run installs them).
func debianPython(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(py, "-c", "import flask, pymysql").Run() == nil {
			return py
		}
	}
	t.Fatal("no python3 with flask and pymysql: apt-get install python3-flask python3-pymysql")
	return ""
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestFlaskGuestbookWithMariaDB(t *testing.T) {
	s := testmariadb.Start(t, testmariadb.WithDatabase("guestbook"))
	py := debianPython(t)
	lib, err := filepath.Abs("../../appserver/python")
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	env := append(os.Environ(), "MYSQL_HOST="+s.Host, "MYSQL_PORT="+strconv.Itoa(s.Port), "MYSQL_USER="+s.User,
		"MYSQL_PASSWORD="+s.Password, "MYSQL_DATABASE="+s.Database, "PYTHONPATH="+lib,
		"PYTHONDONTWRITEBYTECODE=1", "PORT="+strconv.Itoa(port))
	for range 2 { // the migration (APP_PRESTART) is idempotent
		cmd := exec.Command(py, "guestbook.py", "migrate")
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("migrate: %v\n%s", err, out)
		}
	}
	// onebox_worker run alone serves on :$PORT.
	srv := exec.Command(py, "-m", "onebox_worker", "guestbook:app")
	srv.Env = env
	var stderr strings.Builder
	srv.Stderr = &stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Process.Kill()
		_ = srv.Wait()
		if t.Failed() {
			t.Logf("worker stderr:\n%s", stderr.String())
		}
	})
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	// A bounded poll: a process run alone has no readiness signal but its port.
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/api/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no healthy answer within 20s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	do := func(method, path, ctype, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var v map[string]any
		_ = json.Unmarshal(b, &v)
		return resp.StatusCode, v
	}
	code, v := do("POST", "/api/messages", "application/json", `{"name":"Ada","message":"hello from flask"}`)
	if code != 201 || v["name"] != "Ada" || v["id"] == nil {
		t.Fatalf("POST = %d %v, want 201 with the stored message", code, v)
	}
	code, v = do("GET", "/api/messages?limit=5", "", "")
	msgs, _ := v["messages"].([]any)
	if code != 200 || len(msgs) != 1 || msgs[0].(map[string]any)["message"] != "hello from flask" {
		t.Fatalf("GET = %d %v, want the one message", code, v)
	}
	db, err := sql.Open("mysql", s.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var name string
	if err := db.QueryRow("SELECT name FROM messages WHERE message = ?", "hello from flask").Scan(&name); err != nil || name != "Ada" {
		t.Fatalf("the row in MariaDB: %q, %v", name, err)
	}
	for _, tc := range []struct {
		ctype, body string
		code        int
		field       string
	}{
		{"application/json", `{"name":"","message":"x"}`, 400, "name"},
		{"application/json", `{"name":"a","message":"` + strings.Repeat("m", 1001) + `"}`, 400, "message"},
		{"application/json", `{"name":"a","message":"x","extra":1}`, 400, ""},
		{"text/plain", `hi`, 415, ""},
	} {
		code, v := do("POST", "/api/messages", tc.ctype, tc.body)
		if code != tc.code || (tc.field != "" && v["field"] != tc.field) || v["error"] == nil {
			t.Errorf("POST %s %.40s = %d %v, want %d field %q", tc.ctype, tc.body, code, v, tc.code, tc.field)
		}
	}
	if code, _ := do("GET", "/api/messages?limit=0", "", ""); code != 400 {
		t.Errorf("limit=0: %d, want 400", code)
	}
	// The compose suite's test-only routes are off unless GUESTBOOK_TEST_ROUTES=1.
	for _, route := range []string{"GET /test/slow", "POST /test/hang", "GET /test/grow"} {
		method, path, _ := strings.Cut(route, " ")
		if code, _ := do(method, path, "", ""); code != http.StatusNotFound {
			t.Errorf("%s without GUESTBOOK_TEST_ROUTES = %d, want 404", route, code)
		}
	}
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// The same page as the Go guestbook (a copy, served by Flask when run alone).
	want, _ := os.ReadFile("../guestbook/static/index.html")
	if resp.StatusCode != 200 || string(page) != string(want) {
		t.Errorf("GET / = %d, %d bytes; want the guestbook page", resp.StatusCode, len(page))
	}
	// The page in a real browser, on Flask's API.
	browsertest.GuestbookCheck(t, base)
	// A graceful stop: SIGTERM drains and exits 0.
	_ = srv.Process.Signal(syscall.SIGTERM)
	if err := srv.Wait(); err != nil {
		t.Errorf("worker after SIGTERM: %v", err)
	}
}
