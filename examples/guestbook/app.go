package main

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

//go:embed static
var static embed.FS

const (
	maxBody    = 4 << 10 // a POST body larger than this is refused with 413
	maxName    = 64      // characters
	maxMessage = 1000    // characters
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

// migrate creates the table; it is idempotent.
func migrate(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("create table messages: %w", err)
	}
	return nil
}

// Message is one guestbook entry.
type Message struct {
	ID        int64     `json:"id"`
	Name      string    `json:"name"`
	Message   string    `json:"message"`
	CreatedAt time.Time `json:"created_at"`
}

type app struct {
	db *sql.DB
}

// newApp returns the API; with page set it also serves the static page at
// "/", for running alone (under onebox the proxy serves it from PROXY_ROOT).
func newApp(db *sql.DB, page bool) http.Handler {
	a := &app{db: db}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/health", a.health)
	mux.HandleFunc("GET /api/messages", a.list)
	mux.HandleFunc("POST /api/messages", a.post)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "no such API endpoint"})
	})
	if page {
		sub, _ := fs.Sub(static, "static")
		mux.Handle("/", http.FileServerFS(sub))
	}
	return mux
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

// unavailable answers 503 for a database error: the database is down or
// unreachable; database/sql reconnects by itself when it is back.
func unavailable(w http.ResponseWriter, err error) {
	log.Printf("database error: %v", err)
	w.Header().Set("Retry-After", "5")
	writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "the database is unavailable, try again shortly"})
}

func (a *app) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), dbTimeout)
	defer cancel()
	if err := a.db.PingContext(ctx); err != nil {
		log.Printf("health: database down: %v", err)
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
	ctx, cancel := context.WithTimeout(r.Context(), dbTimeout)
	defer cancel()
	rows, err := a.db.QueryContext(ctx,
		"SELECT id, name, message, created_at FROM messages ORDER BY id DESC LIMIT ?", limit)
	if err != nil {
		unavailable(w, err)
		return
	}
	defer rows.Close()
	msgs := []Message{}
	for rows.Next() {
		var m Message
		if err := rows.Scan(&m.ID, &m.Name, &m.Message, &m.CreatedAt); err != nil {
			unavailable(w, err)
			return
		}
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		unavailable(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": msgs})
}

func (a *app) post(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeJSON(w, http.StatusUnsupportedMediaType, errorBody{Error: "send the message as application/json"})
		return
	}
	var in struct {
		Name    string `json:"name"`
		Message string `json:"message"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{Error: fmt.Sprintf("the body is larger than %d bytes", maxBody)})
			return
		}
		writeJSON(w, http.StatusBadRequest, errorBody{Error: `want a JSON object: {"name": "...", "message": "..."}`})
		return
	}
	in.Name, in.Message = strings.TrimSpace(in.Name), strings.TrimSpace(in.Message)
	if field, problem := validate(in.Name, in.Message); problem != "" {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: problem, Field: field})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), dbTimeout)
	defer cancel()
	res, err := a.db.ExecContext(ctx, "INSERT INTO messages (name, message) VALUES (?, ?)", in.Name, in.Message)
	if err != nil {
		unavailable(w, err)
		return
	}
	id, err := res.LastInsertId()
	if err != nil {
		unavailable(w, err)
		return
	}
	m := Message{ID: id}
	err = a.db.QueryRowContext(ctx, "SELECT id, name, message, created_at FROM messages WHERE id = ?", id).
		Scan(&m.ID, &m.Name, &m.Message, &m.CreatedAt)
	if err != nil {
		unavailable(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, m)
}

// validate returns the offending field and what is wrong, or "".
func validate(name, message string) (field, problem string) {
	switch {
	case !utf8.ValidString(name) || !utf8.ValidString(message):
		return "", "name and message must be UTF-8 text"
	case name == "":
		return "name", "name is required"
	case utf8.RuneCountInString(name) > maxName:
		return "name", fmt.Sprintf("name is longer than %d characters", maxName)
	case message == "":
		return "message", "message is required"
	case utf8.RuneCountInString(message) > maxMessage:
		return "message", fmt.Sprintf("message is longer than %d characters", maxMessage)
	case strings.ContainsFunc(name+message, isControl):
		return "", "name and message may not contain control characters other than newlines"
	}
	return "", ""
}

func isControl(r rune) bool { return r < 0x20 && r != '\n' && r != '\t' || r == 0x7f }
