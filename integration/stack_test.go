//go:build integration

package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"onebox/docker"
)

// stack is one running compose project: onebox and its database.
type stack struct {
	t      *testing.T
	dc     *docker.Client
	cp     *docker.Compose
	onebox docker.Container
	db     docker.Container
	base   string // http://127.0.0.1:<published port>

	password     string // MYSQL_PASSWORD, also a canary: it must never leak
	rootPassword string
	srv          string // host directory mounted read-only at /srv
	client       *http.Client
}

// Names the suite configures in its compose override.
const (
	docsHost   = "docs.example.test"
	docsIndex  = "<h1>docs site, chosen by Host</h1>\n"
	secretText = "canary-outside-every-root"
	workers    = 2
)

// stackEnv is the environment compose interpolates compose.yaml with.
func stackEnv(password, rootPassword string) []string {
	return []string{
		"ONEBOX_IMAGE=" + oneboxImage,
		"MYSQL_IMAGE=" + mysqlImage,
		"HTTP_PUBLISH=127.0.0.1:0", // a free host port, found by inspect
		"HTTPS_PUBLISH=127.0.0.1:0",
		"MYSQL_PASSWORD=" + password,
		"MYSQL_ROOT_PASSWORD=" + rootPassword,
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// stackSpec says which compose file a stack runs and how the suite adapts it.
type stackSpec struct {
	prefix  string // of the compose project's name
	file    string // the compose file, relative to the build context
	service string // onebox's service in it
	// override is the suite's compose override for s (its environment and
	// mounts); it may prepare files under s.srv.
	override func(t *testing.T, s *stack) string
	env      []string // more ${VAR} values for compose
}

// guestbookStack is compose.yaml, the repository's own stack: onebox running
// the Go guestbook demo, plus MySQL.
var guestbookStack = stackSpec{
	prefix:   "onebox-it",
	file:     "compose.yaml",
	service:  "onebox",
	override: guestbookOverride,
}

// guestbookOverride gives the stack a second site and a canary beside its
// root that no URL may reach.
func guestbookOverride(t *testing.T, s *stack) string {
	// Modes: the container's non-root user reads through the bind mount.
	mustWrite(t, filepath.Join(s.srv, "docs", "index.html"), docsIndex)
	mustWrite(t, filepath.Join(s.srv, "secret.txt"), secretText+"\n")
	for _, d := range []string{s.srv, filepath.Join(s.srv, "docs")} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return fmt.Sprintf(`services:
  onebox:
    environment:
      APP_WORKERS: "%d"
      ONEBOX_LOG_LEVEL: debug
      PROXY_SITES: docs
      PROXY_SITE_DOCS_SERVER_NAMES: %s
      PROXY_SITE_DOCS_ROOT: /srv/docs
    volumes:
      - %s:/srv:ro
`, workers, docsHost, s.srv)
}

// startStack starts compose.yaml plus the suite's override as a fresh
// project; see startSpec.
func startStack(t *testing.T) *stack {
	t.Helper()
	return startSpec(t, guestbookStack)
}

// startSpec starts spec's compose file plus the suite's override as a fresh
// project, waits until both containers are healthy, and registers the
// teardown (containers' logs first when the test failed).
func startSpec(t *testing.T, spec stackSpec) *stack {
	t.Helper()
	s := &stack{
		t:            t,
		dc:           suite.dc,
		password:     "pw-" + randomHex(8),
		rootPassword: "root-" + randomHex(8),
		srv:          filepath.Join(t.TempDir(), "srv"),
		client:       &http.Client{Timeout: 30 * time.Second},
	}
	override := filepath.Join(t.TempDir(), "compose.override.yaml")
	mustWrite(t, override, spec.override(t, s))

	cp, err := docker.NewCompose(docker.ProjectName(spec.prefix), filepath.Join(suite.context, spec.file), override)
	if err != nil {
		t.Fatal(err)
	}
	cp.Env = append(stackEnv(s.password, s.rootPassword), spec.env...)
	s.cp = cp
	t.Cleanup(func() {
		if t.Failed() {
			s.dumpLogs()
		}
		if err := cp.Down(context.Background()); err != nil {
			t.Errorf("tear down %s: %v", cp.Project, err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	if err := cp.Up(ctx, "--no-build"); err != nil {
		t.Fatal(err)
	}
	if s.onebox, err = s.dc.ServiceContainer(ctx, cp.Project, spec.service); err != nil {
		t.Fatal(err)
	}
	if s.db, err = s.dc.ServiceContainer(ctx, cp.Project, "db"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []docker.Container{s.db, s.onebox} {
		if err := s.dc.WaitHealthy(ctx, c.ID); err != nil {
			t.Fatalf("%s: %v", c.Service, err)
		}
	}
	t.Logf("project %s healthy %s after up (%s)", cp.Project, time.Since(start).Round(100*time.Millisecond), cp.CLI())
	addr, err := s.dc.HostPort(ctx, s.onebox.ID, "8080/tcp")
	if err != nil {
		t.Fatal(err)
	}
	s.base = "http://" + addr
	return s
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// dumpLogs saves every container's whole log under
// build/integration/logs/ and prints the tail of each.
func (s *stack) dumpLogs() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cts, err := s.dc.ProjectContainers(ctx, s.cp.Project)
	if err != nil {
		s.t.Logf("list containers for logs: %v", err)
		return
	}
	dir := filepath.Join(suite.repo, "build", "integration", "logs")
	_ = os.MkdirAll(dir, 0o755)
	for _, c := range cts {
		logs, err := s.dc.Logs(ctx, c.ID)
		if err != nil {
			s.t.Logf("logs of %s: %v", c.Name, err)
		}
		file := filepath.Join(dir, c.Name+".log")
		if err := os.WriteFile(file, []byte(logs), 0o644); err != nil {
			file = "not saved: " + err.Error()
		}
		lines := strings.Split(strings.TrimRight(logs, "\n"), "\n")
		const keep = 150
		if len(lines) > keep {
			lines = append([]string{fmt.Sprintf("… %d earlier lines", len(lines)-keep)}, lines[len(lines)-keep:]...)
		}
		s.t.Logf("---- logs of %s (%s; whole log in %s) ----\n%s", c.Name, c.State, file, strings.Join(lines, "\n"))
	}
}

// network is the project's network, which compose names after the project.
func (s *stack) network(t *testing.T) string {
	t.Helper()
	nets, err := s.dc.Networks(s.ctx(time.Minute), s.onebox.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(nets) != 1 {
		t.Fatalf("onebox is on networks %v, want exactly one", nets)
	}
	return nets[0]
}

// ctx gives a step of a test its own deadline.
func (s *stack) ctx(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	s.t.Cleanup(cancel)
	return ctx
}

// get fetches a path through the published port; host sets the Host header.
func (s *stack) get(path, host string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, s.base+path, nil)
	if err != nil {
		return 0, "", err
	}
	if host != "" {
		req.Host = host
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// exec runs a command in onebox's container (only onebox's own binaries exist there).
func (s *stack) exec(args ...string) docker.ExecResult {
	s.t.Helper()
	res, err := s.dc.Exec(s.ctx(time.Minute), s.onebox.ID, args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return res
}

// sidecar runs a bash script in a throw-away container that shares onebox's
// PID namespace: it sees onebox as PID 1 and its workers in /proc, and its
// own orphans are re-parented to onebox. The scratch image has no shell.
func (s *stack) sidecar(script string) string {
	s.t.Helper()
	return s.sidecarAs("", script)
}

// sidecarAs runs the sidecar as another user ("10001:10001"): reaching a
// process's /proc/<pid>/root needs its uid (or CAP_SYS_PTRACE, which docker
// does not grant).
func (s *stack) sidecarAs(user, script string) string {
	s.t.Helper()
	res, err := s.dc.Run(s.ctx(2*time.Minute), docker.RunOptions{
		Image:   baseImage,
		User:    user,
		PIDMode: "container:" + s.onebox.ID,
		Network: "none",
		Cmd:     []string{"bash", "-c", script},
	})
	if err != nil {
		s.t.Fatal(err)
	}
	if res.ExitCode != 0 {
		s.t.Fatalf("sidecar %q: exit %d\n%s", script, res.ExitCode, res.Logs)
	}
	return res.Logs
}

// status is `onebox status --json`, decoded.
type status struct {
	State      string `json:"state"`
	Ready      bool   `json:"ready"`
	NotReady   string `json:"not_ready"`
	Pid        int    `json:"pid"`
	Orphans    int    `json:"orphans_reaped"`
	Components []struct {
		Name   string          `json:"name"`
		State  string          `json:"state"`
		Error  string          `json:"error"`
		Detail json.RawMessage `json:"detail"`
	} `json:"components"`
	raw string
}

func (s *stack) status() status {
	s.t.Helper()
	res := s.exec("onebox", "status", "--json")
	if res.ExitCode != 0 {
		s.t.Fatalf("onebox status --json: exit %d: %s%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	var st status
	if err := json.Unmarshal([]byte(res.Stdout), &st); err != nil {
		s.t.Fatalf("decode onebox status --json: %v\n%s", err, res.Stdout)
	}
	st.raw = res.Stdout
	return st
}

// workerPids lists the pids of the pool's live workers, as `onebox status
// --json` reports them: the objects with a "pid" in the appserver
// component's "workers" list.
func (st status) workerPids() []int {
	var pids []int
	for _, c := range st.Components {
		if c.Name != "appserver" || len(c.Detail) == 0 {
			continue
		}
		var detail struct {
			Workers []struct {
				Pid int `json:"pid"`
			} `json:"workers"`
		}
		if json.Unmarshal(c.Detail, &detail) == nil {
			for _, w := range detail.Workers {
				if w.Pid > 0 {
					pids = append(pids, w.Pid)
				}
			}
		}
	}
	sort.Ints(pids)
	return pids
}

// inFlight is the number of requests the pool's workers last reported in
// flight (their heartbeats carry it).
func (st status) inFlight() int64 {
	var n int64
	for _, c := range st.Components {
		if c.Name != "appserver" || len(c.Detail) == 0 {
			continue
		}
		var detail struct {
			Workers []struct {
				InFlight int64 `json:"in_flight"`
			} `json:"workers"`
		}
		if json.Unmarshal(c.Detail, &detail) == nil {
			for _, w := range detail.Workers {
				n += w.InFlight
			}
		}
	}
	return n
}

// logs is onebox's whole log so far.
func (s *stack) logs() string {
	s.t.Helper()
	logs, err := s.dc.Logs(s.ctx(time.Minute), s.onebox.ID)
	if err != nil {
		s.t.Fatal(err)
	}
	return logs
}
