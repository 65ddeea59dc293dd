package main

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/go-sql-driver/mysql"
	"github.com/rs/zerolog"

	"onebox/appserver"
	"onebox/internal/testmariadb"
	"onebox/internal/testutil"
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

// post is a JSON body with name and message spelled as given (already
// JSON-escaped where a test wants escapes).
func post(name, message string) string {
	return `{"name":"` + name + `","message":"` + message + `"}`
}

// TestValidationNeedsNoDatabase runs every request the API must refuse
// before it touches the database. A request that passes validation reaches
// the dead database and gets 503, which is how the table tells "accepted"
// from "refused" without a server.
func TestValidationNeedsNoDatabase(t *testing.T) {
	srv := httptest.NewServer(newApp(deadDB(t), true))
	defer srv.Close()
	const (
		ctJSON   = "application/json"
		accepted = 503            // passed validation, then found no database
		emoji    = "😀"            // 4 bytes in UTF-8
		escEmoji = `\ud83d\ude00` // the same character as a 12-byte JSON escape
	)
	rep := strings.Repeat
	tests := []struct {
		name, method, path, ctype, body string
		code                            int
		field, allow                    string
	}{
		{name: "not JSON", ctype: ctJSON, body: "name=a", code: 400},
		{name: "unknown field", ctype: ctJSON, body: `{"name":"a","message":"b","admin":true}`, code: 400},
		{name: "no name", ctype: ctJSON, body: `{"name":"  ","message":"hi"}`, code: 400, field: "name"},
		{name: "no message", ctype: ctJSON, body: `{"name":"a"}`, code: 400, field: "message"},

		// Boundaries: exactly at the limits is valid however the characters
		// are spelled; one more is refused by validation, not by the body
		// limit.
		{name: "64+1000 ASCII", ctype: ctJSON, body: post(rep("n", 64), rep("x", 1000)), code: accepted},
		{name: "64+1000 4-byte runes", ctype: ctJSON, body: post(rep(emoji, 64), rep(emoji, 1000)), code: accepted},
		{name: "64+1000 surrogate escapes", ctype: ctJSON, body: post(rep(escEmoji, 64), rep(escEmoji, 1000)), code: accepted},
		{name: "1000 \\u00e9 escapes", ctype: ctJSON, body: post("a", rep(`\u00e9`, 1000)), code: accepted},
		{name: "65 ASCII name", ctype: ctJSON, body: post(rep("n", 65), "hi"), code: 400, field: "name"},
		{name: "65 4-byte name", ctype: ctJSON, body: post(rep(emoji, 65), "hi"), code: 400, field: "name"},
		{name: "1001 escaped message", ctype: ctJSON, body: post(rep(escEmoji, 64), rep(escEmoji, 1001)), code: 400, field: "message"},
		{name: "1001 é message", ctype: ctJSON, body: post("a", rep("é", 1001)), code: 400, field: "message"},
		{name: "body over 16 KiB", ctype: ctJSON, body: post("a", rep("x", 16<<10)), code: 413},

		// One JSON object and nothing after it but white space.
		{name: "trailing white space", ctype: ctJSON, body: post("a", "b") + " \r\n\t", code: accepted},
		{name: "trailing garbage", ctype: ctJSON, body: post("a", "b") + "x", code: 400},
		{name: "second object", ctype: ctJSON, body: post("a", "b") + post("c", "d"), code: 400},
		{name: "trailing brace", ctype: ctJSON, body: post("a", "b") + "}", code: 400},

		// Content-Type must parse as application/json.
		{name: "no content type", body: post("a", "b"), code: 415},
		{name: "text/plain", ctype: "text/plain", body: post("a", "b"), code: 415},
		{name: "application/jsonx", ctype: "application/jsonx", body: post("a", "b"), code: 415},
		{name: "application/json-seq", ctype: "application/json-seq", body: post("a", "b"), code: 415},
		{name: "malformed", ctype: "application/json; charset", body: post("a", "b"), code: 415},
		{name: "latin1 charset", ctype: "application/json; charset=iso-8859-1", body: post("a", "b"), code: 415},
		{name: "utf-8 charset, any case", ctype: "Application/JSON; Charset=UTF-8", body: post("a", "b"), code: accepted},
		{name: "the page's type", ctype: "application/json", body: post("a", "b"), code: accepted},

		// Control and text-direction characters.
		{name: "BEL in name", ctype: ctJSON, body: post(`a\u0007`, "hi"), code: 400, field: "name"},
		{name: "DEL in message", ctype: ctJSON, body: post("a", "hi\u007f"), code: 400, field: "message"},
		{name: "C1 NEL in message", ctype: ctJSON, body: post("a", `h\u0085i`), code: 400, field: "message"},
		{name: "C1 CSI raw in name", ctype: ctJSON, body: post("a\u009b", "hi"), code: 400, field: "name"},
		{name: "LRE U+202A", ctype: ctJSON, body: post("a", `x\u202ay`), code: 400, field: "message"},
		{name: "RLO U+202E", ctype: ctJSON, body: post("a\u202e", "hi"), code: 400, field: "name"},
		{name: "LRI U+2066", ctype: ctJSON, body: post("a", "x\u2066y"), code: 400, field: "message"},
		{name: "PDI U+2069", ctype: ctJSON, body: post("a", `x\u2069y`), code: 400, field: "message"},
		{name: "newline and tab", ctype: ctJSON, body: post("a", `line\n\tindented`), code: accepted},
		{name: "RLM U+200F is fine", ctype: ctJSON, body: post("a", "x\u200fy"), code: accepted},

		// Wrong methods on API paths: 405 naming the allowed ones.
		{name: "PUT messages", method: "PUT", ctype: ctJSON, body: post("a", "b"), code: 405, allow: "GET, HEAD, POST"},
		{name: "DELETE messages", method: "DELETE", path: "/api/messages", code: 405, allow: "GET, HEAD, POST"},
		{name: "POST health", method: "POST", path: "/api/health", ctype: ctJSON, body: "{}", code: 405, allow: "GET, HEAD"},
		{name: "unknown endpoint", method: "GET", path: "/api/nope", code: 404},
		{name: "unknown method, unknown endpoint", method: "PUT", path: "/api/nope", code: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method, path := cmp.Or(tt.method, "POST"), cmp.Or(tt.path, "/api/messages")
			r := do(t, method, srv.URL+path, tt.ctype, tt.body)
			if r.code != tt.code || r.body["error"] == nil {
				t.Fatalf("got %d %v, want %d with an error", r.code, r.body, tt.code)
			}
			if tt.field != "" && r.body["field"] != tt.field {
				t.Errorf("field %v, want %s", r.body["field"], tt.field)
			}
			if got := r.hdr.Get("Allow"); got != tt.allow {
				t.Errorf("Allow %q, want %q", got, tt.allow)
			}
		})
	}
	if r := do(t, "GET", srv.URL+"/", "", ""); r.code != 200 {
		t.Errorf("static page alone: %d", r.code)
	}
}

// TestStaticPageMatchesAPI checks the page's side of the contract: it
// posts with a Content-Type the API accepts, to the API's path, and reads
// the fields the API answers with.
func TestStaticPageMatchesAPI(t *testing.T) {
	page, err := static.ReadFile("static/index.html")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ what, text string }{
		{"posts JSON", `headers: { "Content-Type": "application/json" }`},
		{"to the API", `fetch("/api/messages", {`},
		{"as POST", `method: "POST"`},
		{"reads the list", `.messages`},
		{"reads the error", `.error`},
		{"reads the time", `m.created_at`},
		{"name limit", `maxlength="64"`},
		{"message limit", `maxlength="1000"`},
	}
	for _, tt := range tests {
		if !strings.Contains(string(page), tt.text) {
			t.Errorf("%s: the page lacks %s", tt.what, tt.text)
		}
	}
	if !jsonBody("application/json") {
		t.Error("the API refuses the page's Content-Type")
	}
}

// TestDatabaseErrorStatus: only errors that mean the database cannot be
// reached are 503 (retry later); a statement the database refused is the
// app's fault, 500; a client that went away is not logged as an error.
func TestDatabaseErrorStatus(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	tests := []struct {
		name       string
		err        error
		clientGone bool
		code       int
		logged     bool
		retryAfter bool
	}{
		{"connection refused", fmt.Errorf("query: %w", refused), false, 503, true, true},
		{"bad connection", fmt.Errorf("exec: %w", driver.ErrBadConn), false, 503, true, true},
		{"invalid connection", mysql.ErrInvalidConn, false, 503, true, true},
		{"deadline", fmt.Errorf("ping: %w", context.DeadlineExceeded), false, 503, true, true},
		{"server shutting down", &mysql.MySQLError{Number: 1053, Message: "Server shutdown in progress"}, false, 503, true, true},
		{"too many connections", &mysql.MySQLError{Number: 1040, Message: "Too many connections"}, false, 503, true, true},
		{"no such table", &mysql.MySQLError{Number: 1146, Message: "Table 'guestbook.messages' doesn't exist"}, false, 500, true, false},
		{"syntax", &mysql.MySQLError{Number: 1064, Message: "You have an error in your SQL syntax"}, false, 500, true, false},
		{"scan", errors.New("sql: Scan error on column index 3"), false, 500, true, false},
		{"client went away", context.Canceled, true, 499, false, false},
		{"canceled, client still there", context.Canceled, false, 500, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			a := &app{log: log.New(&logs, "", 0)}
			r := httptest.NewRequest("GET", "/api/messages", nil)
			if tt.clientGone {
				ctx, cancel := context.WithCancel(r.Context())
				cancel()
				r = r.WithContext(ctx)
			}
			w := httptest.NewRecorder()
			a.dbFailed(w, r, tt.err)
			var body errorBody
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error == "" {
				t.Errorf("body %q: want a JSON error (%v)", w.Body, err)
			}
			if w.Code != tt.code {
				t.Errorf("status %d, want %d", w.Code, tt.code)
			}
			if got := logs.Len() > 0; got != tt.logged {
				t.Errorf("logged %q, want logged=%v", logs.String(), tt.logged)
			}
			if got := w.Header().Get("Retry-After") != ""; got != tt.retryAfter {
				t.Errorf("Retry-After %q, want set=%v", w.Header().Get("Retry-After"), tt.retryAfter)
			}
		})
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
	// migrate says whether it made the table (the Swarm scenario counts
	// "created" across replicas).
	ctx := context.Background()
	if created, err := migrate(ctx, db); err != nil || created {
		t.Fatalf("migrate on an existing table: created %v, %v; want false", created, err)
	}
	if _, err := db.ExecContext(ctx, "DROP TABLE messages"); err != nil {
		t.Fatal(err)
	}
	if created, err := migrate(ctx, db); err != nil || !created {
		t.Fatalf("migrate on no table: created %v, %v; want true", created, err)
	}
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

	t.Run("boundaries stored", func(t *testing.T) {
		// Exactly at the limits, in 4-byte characters sent as JSON escapes:
		// accepted by the body limit and validation, and stored whole by
		// the utf8mb4 columns.
		name, message := strings.Repeat("😀", maxName), strings.Repeat("𝄞", maxMessage)
		esc := func(s string) string { // every character as a \uXXXX surrogate pair
			var b strings.Builder
			for _, r := range s {
				r1, r2 := utf16.EncodeRune(r)
				fmt.Fprintf(&b, `\u%04x\u%04x`, r1, r2)
			}
			return b.String()
		}
		r := do(t, "POST", srv.URL+"/api/messages", "application/json", post(esc(name), esc(message)))
		if r.code != 201 || r.body["name"] != name || r.body["message"] != message {
			t.Fatalf("POST at the limits = %d %.200v", r.code, r.body)
		}
	})
	t.Run("SQL error is 500", func(t *testing.T) {
		s.RootExec("RENAME TABLE guestbook.messages TO guestbook.moved")
		defer s.RootExec("RENAME TABLE guestbook.moved TO guestbook.messages")
		for _, req := range []struct{ method, body string }{{"GET", ""}, {"POST", post("a", "b")}} {
			r := do(t, req.method, srv.URL+"/api/messages", "application/json", req.body)
			if r.code != 500 || r.body["error"] == nil || r.hdr.Get("Retry-After") != "" {
				t.Errorf("%s without the table = %d %v %v, want 500 with an error and no Retry-After", req.method, r.code, r.body, r.hdr)
			}
		}
	})
	t.Run("statement timeout and client cancel", func(t *testing.T) {
		// A session that holds a write lock on the table makes the app's
		// INSERT wait: first until the app's own deadline (503: the
		// database does not answer), then until the client gives up (not
		// an error of the app: answered 499, not logged).
		lock, err := db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer lock.Close()
		if _, err := lock.ExecContext(context.Background(), "LOCK TABLES messages WRITE"); err != nil {
			t.Fatal(err)
		}
		defer lock.ExecContext(context.Background(), "UNLOCK TABLES")
		var logs testutil.SyncBuffer
		a := &app{db: db, log: log.New(&logs, "", 0), timeout: 500 * time.Millisecond}
		codes := make(chan int, 1)
		h := a.handler(false)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := &statusRecorder{ResponseWriter: w}
			h.ServeHTTP(rec, r)
			codes <- rec.code
		}))
		defer srv.Close()

		r := do(t, "POST", srv.URL+"/api/messages", "application/json", post("late", "deadline"))
		<-codes
		if r.code != 503 || !strings.Contains(logs.String(), "database unavailable") {
			t.Fatalf("INSERT past the deadline = %d %v, log %q; want 503, logged", r.code, r.body, logs.String())
		}

		a.timeout = time.Minute
		logs.Reset()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/api/messages", strings.NewReader(post("gone", "cancel")))
		req.Header.Set("Content-Type", "application/json")
		clientErr := make(chan error, 1)
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			clientErr <- err
		}()
		testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, "the INSERT waiting for the lock", func() bool {
			var n int
			err := lock.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'INSERT INTO messages%'").Scan(&n)
			return err == nil && n > 0
		})
		cancel()
		if err := <-clientErr; !errors.Is(err, context.Canceled) {
			t.Fatalf("client: %v, want canceled", err)
		}
		if code := <-codes; code != statusClientClosed || logs.Len() != 0 {
			t.Errorf("after the client went away: status %d, log %q; want %d and no log", code, logs.String(), statusClientClosed)
		}
	})
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
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
		Timeout: 10 * time.Second, GracefulTimeout: 5 * time.Second, BootTimeout: 5 * time.Second, PrestartTimeout: time.Minute,
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
