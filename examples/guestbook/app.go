package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"
)

//go:embed static
var static embed.FS

const (
	// maxBody refuses a POST body larger than this with 413. The largest
	// valid post is 64 + 1000 characters, each of which JSON may spell as a
	// 12-byte surrogate-pair escape ("\ud83d\ude00"): about 12.8 KB, so
	// 16 KiB admits every valid post and little more.
	maxBody    = 16 << 10
	maxName    = 64   // characters
	maxMessage = 1000 // characters
	pageSize   = 50
	dbTimeout  = 3 * time.Second
)

const schema = `CREATE TABLE IF NOT EXISTS messages (
	id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
	name VARCHAR(64) NOT NULL,
	message VARCHAR(1000) NOT NULL,
	created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
	KEY created_at (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`

// migrate creates the table; it is idempotent. It reports whether it
// created the table or found it: under onebox's prestart lock exactly one of
// several replicas starting together creates it (the Swarm scenario counts).
func migrate(ctx context.Context, db *sql.DB) (created bool, err error) {
	var n int
	err = db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'messages'").Scan(&n)
	if err != nil {
		return false, fmt.Errorf("look for table messages: %w", err)
	}
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return false, fmt.Errorf("create table messages: %w", err)
	}
	return n == 0, nil
}

// Message is one guestbook entry.
type Message struct {
	ID        int64     `json:"id"`
	Name      string    `json:"name"`
	Message   string    `json:"message"`
	CreatedAt time.Time `json:"created_at"`
}

type app struct {
	db      *sql.DB
	log     *log.Logger
	timeout time.Duration // bounds each request's database work
}

// newApp returns the API; with page set it also serves the static page at
// "/", for running alone (under onebox the proxy serves it from PROXY_ROOT).
func newApp(db *sql.DB, page bool) http.Handler {
	return (&app{db: db, log: log.Default(), timeout: dbTimeout}).handler(page)
}

func (a *app) handler(page bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/health", a.health)
	mux.HandleFunc("GET /api/messages", a.list)
	mux.HandleFunc("POST /api/messages", a.post)
	// Without these, any other method on an API path would fall through to
	// the "/api/" catch-all and get 404, which tells a client the resource
	// does not exist rather than that the method is wrong. A "GET" pattern
	// also serves HEAD.
	mux.HandleFunc("/api/health", methodNotAllowed("GET, HEAD"))
	mux.HandleFunc("/api/messages", methodNotAllowed("GET, HEAD, POST"))
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "no such API endpoint"})
	})
	if page {
		sub, _ := fs.Sub(static, "static")
		mux.Handle("/", http.FileServerFS(sub))
	}
	return mux
}

func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "method " + r.Method + " is not allowed here; use " + allow})
	}
}

type errorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// statusClientClosed is nginx's code for a request whose client went away
// before the answer; nobody reads it, but a proxy's access log can.
const statusClientClosed = 499

// MySQL server errors that mean the connection, not the statement, failed:
// the server is overloaded, shutting down or killed the session. Retrying
// later can succeed, so they are 503 like a refused connection.
var unavailableCodes = map[uint16]bool{
	1040: true, // ER_CON_COUNT_ERROR: too many connections
	1053: true, // ER_SERVER_SHUTDOWN
	1927: true, // ER_CONNECTION_KILLED
}

// unavailableErr reports whether err means the database cannot be reached
// (as opposed to a statement the database refused): the cases database/sql
// recovers from by itself once the server is back.
func unavailableErr(err error) bool {
	var netErr net.Error
	var myErr *mysql.MySQLError
	switch {
	case errors.Is(err, driver.ErrBadConn), errors.Is(err, mysql.ErrInvalidConn),
		errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr):
		return true
	case errors.As(err, &myErr):
		return unavailableCodes[myErr.Number]
	}
	return false
}

// dbFailed answers a database error: 503 with Retry-After while the
// database is unreachable, 500 for any other error (a bug or a broken
// schema, which waiting does not fix). A request its client abandoned is
// not an error of the app and is not logged as one.
func (a *app) dbFailed(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		writeJSON(w, statusClientClosed, errorBody{Error: "the client closed the request"})
	case unavailableErr(err):
		a.log.Printf("database unavailable: %v", err)
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "the database is unavailable, try again shortly"})
	default:
		a.log.Printf("database error: %v", err)
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: "internal error while talking to the database"})
	}
}

func (a *app) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), a.timeout)
	defer cancel()
	if err := a.db.PingContext(ctx); err != nil {
		a.log.Printf("health: database down: %v", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "database": "down"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "database": "up"})
}

func (a *app) list(w http.ResponseWriter, r *http.Request) {
	limit := pageSize
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > pageSize {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: fmt.Sprintf("limit must be a number from 1 to %d", pageSize), Field: "limit"})
			return
		}
		limit = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.timeout)
	defer cancel()
	rows, err := a.db.QueryContext(ctx,
		"SELECT id, name, message, created_at FROM messages ORDER BY id DESC LIMIT ?", limit)
	if err != nil {
		a.dbFailed(w, r, err)
		return
	}
	defer rows.Close()
	msgs := []Message{}
	for rows.Next() {
		var m Message
		if err := rows.Scan(&m.ID, &m.Name, &m.Message, &m.CreatedAt); err != nil {
			a.dbFailed(w, r, err)
			return
		}
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		a.dbFailed(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": msgs})
}

// jsonBody reports whether a Content-Type header names JSON: the media type
// must be exactly application/json (any case), and a charset, if given,
// UTF-8, the only encoding JSON allows.
func jsonBody(contentType string) bool {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/json" {
		return false
	}
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8")
}

func (a *app) post(w http.ResponseWriter, r *http.Request) {
	if !jsonBody(r.Header.Get("Content-Type")) {
		writeJSON(w, http.StatusUnsupportedMediaType, errorBody{Error: "send the message as Content-Type: application/json"})
		return
	}
	var in struct {
		Name    string `json:"name"`
		Message string `json:"message"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(&in)
	if err == nil {
		// Decode stops after the first value: anything but white space
		// after it is a malformed body, not something to ignore.
		if err = dec.Decode(&struct{}{}); err == io.EOF {
			err = nil
		} else if err == nil {
			err = errors.New("data after the JSON object")
		}
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{Error: fmt.Sprintf("the body is larger than %d bytes", maxBody)})
			return
		}
		writeJSON(w, http.StatusBadRequest, errorBody{Error: `want one JSON object: {"name": "...", "message": "..."}`})
		return
	}
	in.Name, in.Message = strings.TrimSpace(in.Name), strings.TrimSpace(in.Message)
	if field, problem := validate(in.Name, in.Message); problem != "" {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: problem, Field: field})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.timeout)
	defer cancel()
	res, err := a.db.ExecContext(ctx, "INSERT INTO messages (name, message) VALUES (?, ?)", in.Name, in.Message)
	if err != nil {
		a.dbFailed(w, r, err)
		return
	}
	id, err := res.LastInsertId()
	if err != nil {
		a.dbFailed(w, r, err)
		return
	}
	m := Message{ID: id}
	err = a.db.QueryRowContext(ctx, "SELECT id, name, message, created_at FROM messages WHERE id = ?", id).
		Scan(&m.ID, &m.Name, &m.Message, &m.CreatedAt)
	if err != nil {
		a.dbFailed(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, m)
}

// validate returns the offending field and what is wrong, or "". The
// strings come from encoding/json, which has already replaced invalid UTF-8
// with U+FFFD, so they are valid UTF-8 here.
func validate(name, message string) (field, problem string) {
	switch {
	case name == "":
		return "name", "name is required"
	case utf8.RuneCountInString(name) > maxName:
		return "name", fmt.Sprintf("name is longer than %d characters", maxName)
	case strings.ContainsFunc(name, forbidden):
		return "name", "name may not contain control or text-direction characters"
	case message == "":
		return "message", "message is required"
	case utf8.RuneCountInString(message) > maxMessage:
		return "message", fmt.Sprintf("message is longer than %d characters", maxMessage)
	case strings.ContainsFunc(message, forbidden):
		return "message", "message may not contain control or text-direction characters other than newlines and tabs"
	}
	return "", ""
}

// forbidden reports the characters a post may not contain: C0 and C1
// controls and DEL except newline and tab, and the bidirectional embedding,
// override and isolate controls, which let one post reorder how the text
// around it is displayed ("Trojan Source").
func forbidden(r rune) bool {
	switch {
	case r == '\n' || r == '\t':
		return false
	case unicode.IsControl(r):
		return true
	case r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}
