package supervisor

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Status is the document served on /status and printed by `onebox status`.
type Status struct {
	State      State             `json:"state"`
	Ready      bool              `json:"ready"`
	NotReady   string            `json:"not_ready,omitempty"`
	Pid        int               `json:"pid"`
	Uptime     string            `json:"uptime"`
	Orphans    int               `json:"orphans_reaped"`
	Components []ComponentStatus `json:"components"`
}

// ComponentStatus is one component's line in Status.
type ComponentStatus struct {
	Name   string `json:"name"`
	State  State  `json:"state"`
	Error  string `json:"error,omitempty"`
	Detail any    `json:"detail,omitempty"`
}

// Status returns the box's current status.
func (s *Supervisor) Status() Status {
	st := Status{
		State:   s.state.Load(),
		Pid:     pid(),
		Uptime:  time.Since(s.started).Round(time.Second).String(),
		Orphans: s.reaper.Orphans(),
	}
	if err := s.Ready(); err != nil {
		st.NotReady = err.Error()
	} else {
		st.Ready = true
	}
	for _, p := range s.parts {
		cs := ComponentStatus{Name: p.name, State: p.state.Load()}
		if c, ok := p.c.(Checker); ok {
			if err := c.Check(); err != nil {
				cs.Error = err.Error()
			}
		}
		if sr, ok := p.c.(Statuser); ok {
			cs.Detail = sr.Status()
		}
		st.Components = append(st.Components, cs)
	}
	return st
}

// AdminAddr returns the admin endpoint's bound address, once Run has bound
// it ("" before, or when it is off). Tests use it with ONEBOX_ADMIN_LISTEN
// set to port 0.
func (s *Supervisor) AdminAddr() string {
	a, _ := s.adminAddr.Load().(string)
	return a
}

// Handler returns the admin endpoint's routes.
func (s *Supervisor) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		// Alive: the process answers. Readiness is /readyz.
		writeText(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.Ready(); err != nil {
			writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
		writeText(w, http.StatusOK, "ready")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Status())
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	mux.Handle("POST /reload", s.control(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
		defer cancel()
		err := s.Reload(ctx)
		if errors.Is(err, ErrNotRunning) {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		}
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"result": "reloaded"})
	}))
	mux.Handle("POST /scale", s.control(func(w http.ResponseWriter, r *http.Request) {
		n, relative, err := ParseScale(r.URL.Query().Get("workers"))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		got, err := s.Scale(n, relative)
		switch {
		case errors.Is(err, ErrNotRunning):
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		case errors.Is(err, ErrNoScaler):
			writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
		case err != nil:
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		default:
			writeJSON(w, http.StatusOK, map[string]int{"workers": got})
		}
	}))
	return mux
}

// ParseScale reads a scale request: "+N" or "-N" (relative) or "N" (absolute).
func ParseScale(v string) (n int, relative bool, err error) {
	relative = strings.HasPrefix(v, "+") || strings.HasPrefix(v, "-")
	n, err = strconv.Atoi(v)
	if err != nil || (!relative && n < 1) {
		return 0, false, fmt.Errorf("workers=%q: want +N, -N or a count of at least 1", v)
	}
	return n, relative, nil
}

// control guards a state-changing route: loopback peers are trusted; others
// must present ONEBOX_ADMIN_TOKEN as a Bearer token, and without a token
// configured they are always refused.
func (s *Supervisor) control(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isLoopback(r.RemoteAddr) {
			token := s.cfg.AdminToken.Reveal()
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if token == "" || !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
				writeJSON(w, http.StatusForbidden, map[string]string{
					"error": "control calls from non-loopback peers need ONEBOX_ADMIN_TOKEN as a Bearer token",
				})
				return
			}
		}
		h(w, r)
	})
}

func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// listenAdmin binds the admin endpoint (before anything else starts, so a
// taken port fails the start at once) and serves it in the background.
func (s *Supervisor) listenAdmin() (*http.Server, error) {
	if s.cfg.AdminListen == "" || s.cfg.AdminListen == "off" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", s.cfg.AdminListen)
	if err != nil {
		return nil, fmt.Errorf("listen admin endpoint ONEBOX_ADMIN_LISTEN=%q: %w", s.cfg.AdminListen, err)
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       time.Minute,
	}
	s.adminAddr.Store(ln.Addr().String())
	go func() { _ = srv.Serve(ln) }()
	s.log.Info().Str("listen", ln.Addr().String()).Msg("admin endpoint")
	return srv, nil
}

func writeText(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
