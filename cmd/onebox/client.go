package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"onebox/config"
	"onebox/supervisor"
)

// adminClient talks to a running onebox's admin endpoint: the commands
// health, status, reload and scale are its clients.
type adminClient struct {
	base  string
	token string
	http  *http.Client
}

// newAdminClient reads ONEBOX_ADMIN_LISTEN and ONEBOX_ADMIN_TOKEN(_FILE) the
// way the server does, and dials the listen address, or loopback when it
// listens on every interface.
func newAdminClient(environ map[string]string, timeout time.Duration) (*adminClient, error) {
	var cfg supervisor.Config
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: environ, Prefix: "ONEBOX_"}); err != nil {
		return nil, &exitError{code: exitConfig, msg: fmt.Sprintf("read ONEBOX_ settings: %v", err)}
	}
	if path := environ["ONEBOX_ADMIN_TOKEN_FILE"]; path != "" && cfg.AdminToken == "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, &exitError{code: exitConfig, msg: fmt.Sprintf("read ONEBOX_ADMIN_TOKEN_FILE: %v", err)}
		}
		cfg.AdminToken = config.Secret(strings.TrimSpace(string(b)))
	}
	if cfg.AdminListen == "" || cfg.AdminListen == "off" {
		return nil, &exitError{code: exitNoServer, msg: "the admin endpoint is off (ONEBOX_ADMIN_LISTEN=off)"}
	}
	host, port, err := net.SplitHostPort(cfg.AdminListen)
	if err != nil {
		return nil, &exitError{code: exitConfig, msg: fmt.Sprintf("ONEBOX_ADMIN_LISTEN=%q: want host:port", cfg.AdminListen)}
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return &adminClient{
		base:  "http://" + net.JoinHostPort(host, port),
		token: cfg.AdminToken.Reveal(),
		http:  &http.Client{Timeout: timeout},
	}, nil
}

// do sends a request and returns the status code and body. A refused
// connection becomes exitNoServer, so `onebox health` fails plainly when
// nothing runs.
func (c *adminClient) do(ctx context.Context, method, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return 0, nil, &exitError{code: exitNoServer, msg: fmt.Sprintf("admin endpoint %s: %v", c.base, err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, body, err
}

// health exits 0 iff /readyz says ready; it prints why not otherwise.
func health(ctx context.Context, stdout io.Writer, environ map[string]string) error {
	c, err := newAdminClient(environ, 3*time.Second)
	if err != nil {
		return err
	}
	code, body, err := c.do(ctx, http.MethodGet, "/readyz")
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return &exitError{code: exitFailure, msg: strings.TrimSpace(string(body))}
	}
	fmt.Fprint(stdout, string(body))
	return nil
}

// status prints /status: raw JSON with --json, else a short summary.
func status(ctx context.Context, stdout io.Writer, environ map[string]string, asJSON bool) error {
	c, err := newAdminClient(environ, 5*time.Second)
	if err != nil {
		return err
	}
	code, body, err := c.do(ctx, http.MethodGet, "/status")
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return &exitError{code: exitFailure, msg: fmt.Sprintf("status: HTTP %d: %s", code, strings.TrimSpace(string(body)))}
	}
	if asJSON {
		_, err := stdout.Write(body)
		return err
	}
	var st supervisor.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("decode status: %w", err)
	}
	ready := "ready"
	if !st.Ready {
		ready = "not ready: " + st.NotReady
	}
	fmt.Fprintf(stdout, "onebox %s, %s, pid %d, up %s, %d orphans reaped\n", st.State, ready, st.Pid, st.Uptime, st.Orphans)
	for _, cs := range st.Components {
		line := fmt.Sprintf("  %-10s %s", cs.Name, cs.State)
		if cs.Error != "" {
			line += " (" + cs.Error + ")"
		}
		fmt.Fprintln(stdout, line)
		if cs.Detail != nil {
			printDetail(stdout, cs.Detail)
		}
	}
	return nil
}

// printDetail prints a component's detail object as indented key: value lines.
func printDetail(w io.Writer, d any) {
	b, err := json.MarshalIndent(d, "    ", "  ")
	if err != nil {
		return
	}
	m, ok := d.(map[string]any)
	if !ok {
		fmt.Fprintf(w, "    %s\n", b)
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, _ := json.Marshal(m[k])
		fmt.Fprintf(w, "    %s: %s\n", k, v)
	}
}

// reload asks for a graceful reload and waits for its result.
func reload(ctx context.Context, stdout io.Writer, environ map[string]string) error {
	c, err := newAdminClient(environ, 3*time.Minute)
	if err != nil {
		return err
	}
	return control(ctx, c, stdout, "/reload")
}

// scale changes the worker count: +N, -N or N.
func scale(ctx context.Context, stdout io.Writer, environ map[string]string, arg string) error {
	if _, _, err := supervisor.ParseScale(arg); err != nil {
		return usageError(err.Error())
	}
	c, err := newAdminClient(environ, 30*time.Second)
	if err != nil {
		return err
	}
	return control(ctx, c, stdout, "/scale?workers="+url.QueryEscape(arg))
}

func control(ctx context.Context, c *adminClient, stdout io.Writer, path string) error {
	code, body, err := c.do(ctx, http.MethodPost, path)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return &exitError{code: exitFailure, msg: e.Error}
		}
		return &exitError{code: exitFailure, msg: fmt.Sprintf("HTTP %d: %s", code, strings.TrimSpace(string(body)))}
	}
	_, err = stdout.Write(body)
	return err
}
