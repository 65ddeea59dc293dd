package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"onebox/internal/proctest"
)

// These tests build the real onebox binary and run it, as PID 1 of a fresh
// pid namespace where it matters (tests run as root on the test machines).

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func onebox(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "onebox-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "onebox")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestBinaryCheckNamesEveryVariable(t *testing.T) {
	cmd := exec.Command(onebox(t), "check")
	cmd.Env = []string{"ONEBOX_SHUTDOWN_TIMEOUT=banana", "ONEBOX_LOG_LEVLE=debug", "PROXY_ROOT=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("onebox check: %v, want exit 1\n%s", err, out)
	}
	for _, want := range []string{"ONEBOX_SHUTDOWN_TIMEOUT", "banana", "ONEBOX_LOG_LEVLE", "did you mean ONEBOX_LOG_LEVEL?"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestBinaryRefusesBadEnvironmentAtStart(t *testing.T) {
	cmd := exec.Command(onebox(t))
	cmd.Env = []string{"APP_WORKERS=-1", "PROXY_ROOT=" + t.TempDir(), "APP_COMMAND=true"}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitConfig {
		t.Fatalf("onebox with APP_WORKERS=-1: %v, want exit %d\n%s", err, exitConfig, out)
	}
	if !strings.Contains(string(out), "APP_WORKERS") {
		t.Fatalf("the log does not name APP_WORKERS:\n%s", out)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestBinaryAsPID1 runs the whole box as PID 1: a python worker pool behind
// the proxy, static files, a prestart command that leaves 200 orphans, the
// control commands against the running box, and a clean TERM.
func TestBinaryAsPID1(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Fatalf("python3 is needed for the non-Go worker: %v", err)
	}
	worker, _ := filepath.Abs("testdata/worker.py")
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "index.html"), []byte("<h1>static</h1>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	listen, admin := freePort(t), freePort(t)
	env := append(os.Environ(),
		"PROXY_LISTEN="+listen,
		"ONEBOX_ADMIN_LISTEN="+admin,
		"PROXY_ROOT="+root,
		"PROXY_ACCESS_LOG=off",
		"APP_COMMAND=python3 "+worker,
		"APP_BIND=unix:"+filepath.Join(t.TempDir(), "app.sock"),
		"APP_WORKERS=2",
		// Leaves 200 orphans: they are re-parented to PID 1, which must reap them.
		"APP_PRESTART=sh -c '"+proctest.Orphans200+"'",
	)
	cmd := exec.Command("unshare", "--pid", "--fork", "--mount-proc", onebox(t))
	cmd.Env = env
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	done := make(chan error, 1)
	ready := make(chan struct{})
	var logMu sync.Mutex
	var logs []string
	go func() {
		sc := bufio.NewScanner(stdout)
		closed := false
		for sc.Scan() {
			logMu.Lock()
			logs = append(logs, sc.Text())
			logMu.Unlock()
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["message"] == "onebox is ready" && !closed {
				close(ready)
				closed = true
			}
		}
		done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			logMu.Lock()
			t.Logf("onebox log:\n%s", strings.Join(logs, "\n"))
			logMu.Unlock()
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("onebox exited before ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("not ready within 30s")
	}

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + listen + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/"); code != 200 || body != "<h1>static</h1>\n" {
		t.Errorf("GET / = %d %q, want the static index", code, body)
	}
	if code, body := get("/api/hello"); code != 200 || !strings.Contains(body, "python worker") || !strings.Contains(body, "/api/hello") {
		t.Errorf("GET /api/hello = %d %q, want the python worker's answer", code, body)
	}

	ctl := func(args ...string) (int, string) {
		c := exec.Command(onebox(t), args...)
		c.Env = []string{"ONEBOX_ADMIN_LISTEN=" + admin}
		out, err := c.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		}
		return 0, string(out)
	}
	if code, out := ctl("health"); code != 0 {
		t.Errorf("onebox health = %d %s, want 0", code, out)
	}
	// APP_WORKER_CONNECTIONS is 0 (the default): the pool's upstream has
	// no bound, neither in /status nor (the same object) on the hot path.
	_, out := ctl("status", "--json")
	var st struct {
		Components []struct {
			Name   string `json:"name"`
			Detail struct {
				Upstreams []map[string]json.RawMessage `json:"upstreams"`
			} `json:"detail"`
		} `json:"components"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("onebox status --json: %v\n%s", err, out)
	}
	pools := 0
	for _, c := range st.Components {
		if c.Name != "proxy" {
			continue
		}
		for _, u := range c.Detail.Upstreams {
			pools++
			if b, ok := u["bound"]; ok {
				t.Errorf("/status: the pool's upstream has a bound %s with APP_WORKER_CONNECTIONS=0; want none", b)
			}
		}
	}
	if pools != 1 {
		t.Errorf("/status lists %d proxy upstreams, want the pool's: %s", pools, out)
	}
	if code, out := ctl("scale", "+1"); code != 0 || !strings.Contains(out, "3") {
		t.Errorf("onebox scale +1 = %d %s, want 0 and 3 workers", code, out)
	}

	// Every orphan is reaped: /status counts them, /proc shows no zombie.
	pid1 := proctest.FirstChild(cmd.Process.Pid)
	proctest.KillOrphans(t, pid1, 200, "sleep", func() int {
		_, out := ctl("status", "--json")
		var st struct {
			Orphans int `json:"orphans_reaped"`
		}
		_ = json.Unmarshal([]byte(out), &st)
		return st.Orphans
	})

	start := time.Now()
	if err := syscall.Kill(pid1, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after TERM: %v, want 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("still running 15s after TERM")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("TERM to exit took %s, want well inside the 9s budget", took)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}
