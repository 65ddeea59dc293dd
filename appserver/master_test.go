package appserver

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestPoolServesAndStops(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, goCommand("go"))
	sock := strings.TrimPrefix(cfg.Bind, "unix:")
	// A stale socket from a previous run is removed.
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()

	p := startPool(t, cfg, nil)
	p.waitReady()
	s := p.waitStatus("2 ready workers", func(s Status) bool { return len(readyPIDs(s)) == 2 })
	c := unixClient(sock, 4)
	seen := map[int]bool{}
	for range 20 {
		body, err := get(c, "/")
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(body)
		if !readyPIDs(s)[pid] {
			t.Fatalf("answer from pid %d, not a pool worker %v", pid, readyPIDs(s))
		}
		seen[pid] = true
	}
	if s.Target != 2 || s.Generation != 0 || !s.Ready {
		t.Errorf("status %+v, want target 2, generation 0, ready", s)
	}
	p.waitStatus("request counts", func(s Status) bool {
		var n int64
		for _, w := range s.Workers {
			if w.Requests != nil {
				n += *w.Requests
			}
		}
		return n == 20
	})
	b, err := json.Marshal(p.Status())
	if err != nil || !strings.Contains(string(b), `"workers":[{"id":`) || !strings.Contains(string(b), `"requests":`) {
		t.Errorf("status JSON %s, %v", b, err)
	}

	if err := p.stop(); err != nil {
		t.Fatalf("Run = %v, want nil after cancel", err)
	}
	for _, w := range s.Workers {
		if err := syscall.Kill(w.PID, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("worker pid %d still exists after stop", w.PID)
		}
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket file left behind: %v", err)
	}
	if got := p.metric("onebox_app_worker_exits_total", "reason", "stop"); got != 2 {
		t.Errorf("exits{reason=stop} = %v, want 2", got)
	}
}

// A stdlib-only Python server on fd 3 is a valid worker: the protocol is
// language-neutral, and a worker that never heartbeats is still ready.
const pyWorker = `
import os, socket, http.server
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        ok = os.environ.get("LISTEN_PID") == str(os.getpid()) and os.environ.get("LISTEN_FDS") == "1"
        body = ("py %d %s" % (os.getpid(), "pid-ok" if ok else "pid-wrong")).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H, bind_and_activate=False)
srv.socket.close()
srv.socket = socket.socket(fileno=3)
print("python worker", os.environ["ONEBOX_WORKER_ID"], flush=True)
srv.serve_forever()
`

// pythonCommand writes src (a stdlib-only python3 worker) to a file and
// returns the command that runs it.
func pythonCommand(t *testing.T, src string) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 is required for the language-neutral worker tests:", err)
	}
	script := filepath.Join(t.TempDir(), "worker.py")
	if err := os.WriteFile(script, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return py + " " + script
}

func TestPythonWorker(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, pythonCommand(t, pyWorker))
	cfg.BootTimeout = time.Second
	p := startPool(t, cfg, nil)
	p.waitReady()
	// Silent workers boot by the clock, but the probe's answer already
	// makes the pool ready, for /readyz too.
	if err := p.Check(); err != nil {
		t.Errorf("Check after the probe answered: %v", err)
	}
	c := unixClient(p.sock, 2)
	body, err := get(c, "/")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(body, "py ") || !strings.HasSuffix(body, " pid-ok") {
		t.Fatalf("body %q, want py PID pid-ok", body)
	}
	p.waitStatus("python workers booted", func(s Status) bool { return len(readyPIDs(s)) == 2 })
	if !strings.Contains(p.log.String(), `"message":"python worker 1"`) && !strings.Contains(p.log.String(), `"message":"python worker 2"`) {
		t.Errorf("python stdout not logged:\n%s", tailOf(p.log.String(), 20))
	}
}

// A worker that heartbeats, then closes fd 4 (as servers that close
// inherited descriptors do) is judged by liveness from then on, not killed.
func TestClosedHeartbeatIsNotATimeout(t *testing.T) {
	t.Parallel()
	src := strings.Replace(pyWorker, "srv.serve_forever()", "os.write(4, b\"ready\\n\")\nos.close(4)\nsrv.serve_forever()", 1)
	cfg := testConfig(t, pythonCommand(t, src))
	cfg.Workers = 1
	cfg.Timeout = 300 * time.Millisecond
	p := startPool(t, cfg, nil)
	p.waitReady()
	pid := p.waitStatus("a ready worker", func(s Status) bool { return len(readyPIDs(s)) == 1 }).Workers[0].PID
	// Wait for the loop to check for hangs at a time by which a heartbeat
	// silent since now would be four timeouts old.
	judged := time.Now().Add(4 * cfg.Timeout).UnixNano()
	p.waitStatus("a hang check 4 timeouts on", func(Status) bool { return p.passAt.Load() > judged })
	if s := p.status(); len(s.Workers) != 1 || s.Workers[0].PID != pid {
		t.Fatalf("worker %d replaced: %+v", pid, s.Workers)
	}
	if got := p.metric("onebox_app_worker_timeouts_total"); got != 0 {
		t.Errorf("%v timeouts", got)
	}
}

func TestBootFailureHalts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		code     int
		failures int // boot failures before the halt
	}{
		{"exit 3 halts at once", 3, 1},
		{"exit 1 halts when repeated", 1, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, goCommand("bootfail", strconv.Itoa(tt.code)))
			cfg.Workers = 1
			p := startPool(t, cfg, func(m *Master) { m.maxBootFailures = 3 })
			var err error
			select {
			case err = <-p.err:
				p.err <- err
			case <-time.After(15 * time.Second):
				t.Fatal("pool did not halt")
			}
			var be *BootError
			if !errors.As(err, &be) {
				t.Fatalf("Run = %v, want a *BootError", err)
			}
			var coder interface{ ExitCode() int }
			if !errors.As(err, &coder) || coder.ExitCode() != 3 {
				t.Errorf("exit code %v, want 3", coder)
			}
			if got := strings.Join(be.Stderr, "\n"); !strings.Contains(got, "fatal: database unreachable") {
				t.Errorf("stderr tail %q lacks the worker's last line", got)
			}
			if be.Status != "exit "+strconv.Itoa(tt.code) {
				t.Errorf("status %q, want exit %d", be.Status, tt.code)
			}
			if got := p.metric("onebox_app_worker_boot_failures_total"); got != float64(tt.failures) {
				t.Errorf("boot failures = %v, want %d", got, tt.failures)
			}
			if !strings.Contains(p.log.String(), "worker failed to boot") {
				t.Error(`no "worker failed to boot" log line`)
			}
			select {
			case <-p.Ready():
				t.Error("a pool that never booted reported ready")
			default:
			}
		})
	}
}

func TestStartFailureHalts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, dir, command, want string
	}{
		{"missing APP_DIR", filepath.Join(t.TempDir(), "missing"), goCommand("go"), "APP_DIR"},
		{"missing program", "", "no-such-program-here --bind fd://3", "no-such-program-here"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, tt.command)
			cfg.Dir = tt.dir
			p := startPool(t, cfg, func(m *Master) { m.maxBootFailures = 2 })
			select {
			case err := <-p.err:
				p.err <- err
				if err == nil || !strings.Contains(err.Error()+strings.Join(bootTail(err), "\n"), tt.want) {
					t.Fatalf("Run = %v, want an error naming %s", err, tt.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("a pool whose workers cannot start did not halt")
			}
		})
	}
}

// The shim's exit codes, through the exit-status mapping cmd/onebox uses,
// halt the pool at the first failure: no retry finds a missing program.
func TestShimExitCodesHaltAtOnce(t *testing.T) {
	t.Parallel()
	notExec := filepath.Join(t.TempDir(), "app")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, command, status string
	}{
		{"not found", "no-such-program-here --bind fd://3", "exit 127"},
		{"not executable", notExec, "exit 126"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, tt.command)
			cfg.Workers = 1
			p := startPool(t, cfg, nil)
			var err error
			select {
			case err = <-p.err:
				p.err <- err
			case <-time.After(10 * time.Second):
				t.Fatal("the pool did not halt")
			}
			var be *BootError
			if !errors.As(err, &be) || be.Status != tt.status {
				t.Fatalf("Run = %v, want a BootError with %s", err, tt.status)
			}
			if got := p.metric("onebox_app_worker_boot_failures_total"); got != 1 {
				t.Errorf("%v boot failures before the halt, want 1", got)
			}
			// ShimMain's own error carries the code cmd/onebox exits with.
			serr := ShimMain(strings.Fields(tt.command))
			var coder interface{ ExitCode() int }
			if !errors.As(serr, &coder) || "exit "+strconv.Itoa(coder.ExitCode()) != tt.status {
				t.Errorf("ShimMain = %v, want exit code of %s", serr, tt.status)
			}
		})
	}
}

func bootTail(err error) []string {
	var be *BootError
	if errors.As(err, &be) {
		return be.Stderr
	}
	return nil
}

func TestWorkerOutputLogged(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, goCommand("go"))
	cfg.Workers = 1
	p := startPool(t, cfg, nil)
	p.waitReady()
	pid := p.waitStatus("a worker", func(s Status) bool { return len(readyPIDs(s)) == 1 }).Workers[0].PID
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
	var plain, embedded bool
	for _, l := range decodeLines(t, p.log.String()) {
		if l["component"] != "worker" || l["pid"] != float64(pid) || l["worker"] != float64(1) {
			continue
		}
		if l["message"] == "worker starting" && l["stream"] == "stdout" {
			plain = true
		}
		if j, ok := l["json"].(map[string]any); ok && j["msg"] == "hello from json" && l["stream"] == "stderr" {
			embedded = true
		}
	}
	if !plain || !embedded {
		t.Errorf("plain line logged: %v, JSON line embedded: %v; log:\n%s", plain, embedded, tailOf(p.log.String(), 20))
	}
}

// gateWriter is a log consumer that can stop keeping up: while closed,
// every write blocks until the test ends.
type gateWriter struct {
	closed  atomic.Bool
	release chan struct{}
}

func (g *gateWriter) Write(p []byte) (int, error) {
	if g.closed.Load() {
		<-g.release
	}
	return len(p), nil
}

func TestOutputFloodNeverBlocks(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, goCommand("flood"))
	cfg.Workers = 1
	gw := &gateWriter{release: make(chan struct{})}
	p := startPool(t, cfg, func(m *Master) { m.wlog = zerolog.New(gw) })
	defer close(gw.release)
	p.waitReady()
	// From now on the log blocks: the worker keeps writing, nobody reads.
	gw.closed.Store(true)
	c := unixClient(p.sock, 1)
	for i := range 50 {
		if _, err := get(c, "/"); err != nil {
			t.Fatalf("request %d with a flooding worker and a blocked log: %v", i, err)
		}
	}
	p.waitStatus("dropped lines", func(Status) bool { return p.out.dropped.Load() > 0 })
}

func TestDrainOnStop(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, goCommand("go"))
	// The request outlasts the gauges' next update on a busy machine, and
	// the drain budget outlasts the request.
	cfg.GracefulTimeout = 10 * time.Second
	p := startPool(t, cfg, nil)
	p.waitReady()
	c := unixClient(p.sock, 1)
	res := make(chan error, 1)
	go func() { _, err := get(c, "/slow?ms=3000"); res <- err }()
	p.waitStatus("a request in flight", func(s Status) bool {
		for _, w := range s.Workers {
			if w.InFlight != nil && *w.InFlight > 0 {
				return true
			}
		}
		return false
	})
	// Go workers report requests in flight: one worker busy, one idle.
	p.waitStatus("busy and idle gauges", func(Status) bool {
		return p.metric("onebox_app_workers_busy") == 1 && p.metric("onebox_app_workers_idle") == 1
	})
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
	if err := <-res; err != nil {
		t.Fatalf("in-flight request during stop: %v", err)
	}
	if _, err := p.Scale(1, true); err == nil {
		t.Error("Scale on a stopped pool succeeded")
	}
}

// Workers started before a later spawn (scale, recycle, crash) must still
// drain promptly: spawning must not flip the shared socket's O_NONBLOCK
// flag under them, which leaves a Go worker stuck in a blocking accept.
func TestDrainAfterLaterSpawns(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	slow := filepath.Join(dir, "slow")
	cfg := testConfig(t, goCommand("go", filepath.Join(dir, "broken"), slow))
	cfg.Workers = 1
	p := startPool(t, cfg, nil)
	p.waitReady()
	p.waitStatus("1 ready", func(s Status) bool { return len(readyPIDs(s)) == 1 })
	// A second worker is spawned and is slow to boot: nothing after the
	// spawn touches the socket's flags.
	if err := os.WriteFile(slow, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Scale(2, false); err != nil {
		t.Fatal(err)
	}
	p.waitStatus("2 workers", func(s Status) bool { return len(s.Workers) == 2 })
	// New connections, so the first worker goes back to accept after the
	// spawn; a blocking accept only shows then.
	c := unixClient(p.sock, 1)
	c.Transport.(*http.Transport).DisableKeepAlives = true
	for range 10 {
		if _, err := get(c, "/"); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(p.log.String(), "did not drain") {
		t.Error("a worker had to be killed: its drain hung")
	}
}

func TestPrestart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		code int
	}{
		{"success starts the pool", 0},
		{"failure stops with its code", 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			marker := filepath.Join(t.TempDir(), "migrated")
			cfg := testConfig(t, goCommand("go"))
			cfg.Prestart = "'" + os.Args[0] + "' test-worker prestart " + marker + " " + strconv.Itoa(tt.code)
			p := startPool(t, cfg, nil)
			if tt.code == 0 {
				p.waitReady()
				if _, err := os.Stat(marker); err != nil {
					t.Fatalf("prestart did not run before ready: %v", err)
				}
				return
			}
			var err error
			select {
			case err = <-p.err:
				p.err <- err
			case <-time.After(10 * time.Second):
				t.Fatal("a failed prestart did not stop the pool")
			}
			var coder interface{ ExitCode() int }
			if !errors.As(err, &coder) || coder.ExitCode() != tt.code {
				t.Fatalf("Run = %v, want exit code %d", err, tt.code)
			}
			if !strings.Contains(p.log.String(), "migrating: 1 table") {
				t.Error("prestart output not in the log")
			}
		})
	}
}

// TestPrestartLock: Deps.PrestartLock is held for the whole prestart
// command and released before the pool starts; a lock that fails stops
// the pool with an error that says so.
func TestPrestartLock(t *testing.T) {
	t.Parallel()
	marker := filepath.Join(t.TempDir(), "migrated")
	cfg := testConfig(t, goCommand("go"))
	cfg.Prestart = "'" + os.Args[0] + "' test-worker prestart " + marker + " 0"
	var events []string // written by Run's goroutine before ready, read after
	exists := func() string {
		if _, err := os.Stat(marker); err != nil {
			return "absent"
		}
		return "present"
	}
	p := startPool(t, cfg, func(m *Master) {
		m.deps.PrestartLock = func(context.Context) (func(), error) {
			events = append(events, "lock: marker "+exists())
			return func() { events = append(events, "release: marker "+exists()) }, nil
		}
	})
	p.waitReady()
	want := []string{"lock: marker absent", "release: marker present"}
	if !slices.Equal(events, want) {
		t.Errorf("lock events %q, want %q", events, want)
	}

	cfg = testConfig(t, goCommand("go"))
	cfg.Prestart = "'" + os.Args[0] + "' test-worker prestart " + marker + "2 0"
	p = startPool(t, cfg, func(m *Master) {
		m.deps.PrestartLock = func(context.Context) (func(), error) {
			return nil, errors.New("connection refused")
		}
	})
	select {
	case err := <-p.err:
		p.err <- err
		if err == nil || !strings.Contains(err.Error(), "prestart lock: connection refused") {
			t.Errorf("Run = %v, want the lock's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a failed prestart lock did not stop the pool")
	}
	if _, err := os.Stat(marker + "2"); err == nil {
		t.Error("prestart ran without its lock")
	}
}

func TestKillWorkerUnderLoad(t *testing.T) {
	t.Parallel()
	const conc = 4
	p := startPool(t, testConfig(t, goCommand("go")), nil)
	p.waitReady()
	before := p.waitStatus("2 ready", func(s Status) bool { return len(readyPIDs(s)) == 2 })
	ld := startLoad(p.sock, conc)
	ld.until(t, 200)
	victim := before.Workers[0].PID
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.waitStatus("a replacement", func(s Status) bool {
		r := readyPIDs(s)
		return len(r) == 2 && !r[victim]
	})
	ld.until(t, 200)
	ok, fail, errs := ld.finish()
	t.Logf("%d ok, %d failed %v", ok, fail, errs)
	// Only the requests the killed worker had in flight may fail.
	if fail > conc {
		t.Errorf("%d failed requests, want at most %d (those in flight)", fail, conc)
	}
	if got := p.metric("onebox_app_worker_exits_total", "reason", "crash"); got != 1 {
		t.Errorf("exits{reason=crash} = %v, want 1", got)
	}
}

func TestHeartbeatTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		path    string
		request string // in the timeout log line
		status  string // how the worker ended
	}{
		{"hung process", "/hang", "", "killed by killed"},
		{"hung in a request", "/hang?after=400", "GET /hang?after=400", "killed by killed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, goCommand("go"))
			cfg.Workers = 1
			cfg.Timeout = 600 * time.Millisecond
			p := startPool(t, cfg, nil)
			p.waitReady()
			victim := p.waitStatus("a ready worker", func(s Status) bool { return len(readyPIDs(s)) == 1 }).Workers[0].PID
			c := unixClient(p.sock, 1)
			go func() { _, _ = get(c, tt.path) }()
			p.waitStatus("a replacement, the victim gone", func(s Status) bool {
				return len(s.Workers) == 1 && len(readyPIDs(s)) == 1 && s.Workers[0].PID != victim
			})
			if _, err := get(unixClient(p.sock, 1), "/"); err != nil {
				t.Fatalf("replacement does not serve: %v", err)
			}
			var timeoutLine, exitLine map[string]any
			for _, l := range decodeLines(t, p.log.String()) {
				if l["pid"] != float64(victim) {
					continue
				}
				if msg, _ := l["message"].(string); strings.HasPrefix(msg, "worker timeout") {
					timeoutLine = l
				}
				if l["message"] == "timed-out worker is gone; replacing it" {
					exitLine = l
				}
			}
			if timeoutLine == nil || exitLine == nil {
				t.Fatalf("timeout logged: %v, exit logged: %v", timeoutLine, exitLine)
			}
			if tt.request != "" && timeoutLine["request"] != tt.request {
				t.Errorf("timeout line names request %v, want %q", timeoutLine["request"], tt.request)
			}
			if exitLine["status"] != tt.status {
				t.Errorf("worker ended with %v, want %s", exitLine["status"], tt.status)
			}
			if got := p.metric("onebox_app_worker_timeouts_total"); got != 1 {
				t.Errorf("timeouts = %v, want 1", got)
			}
		})
	}
}

// drainUnderLoad is the graceful timeout of the tests that count failed
// requests under load. A draining worker waits a tenth of it (at most 1s)
// for its keep-alive connections to carry one more request; with the
// default 2s, 200ms, a load client descheduled for longer on a busy machine
// wrote its next POST on a connection being closed (EOF in CI). Production
// has 30s, so 1s.
const drainUnderLoad = 10 * time.Second

func TestMaxRequestsRecycleUnderLoad(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, goCommand("go"))
	cfg.MaxRequests = 100
	cfg.MaxRequestsJitter = 20
	cfg.GracefulTimeout = drainUnderLoad
	p := startPool(t, cfg, nil)
	p.waitReady()
	ld := startLoad(p.sock, 4)
	deadline := time.Now().Add(20 * time.Second)
	for p.metric("onebox_app_worker_exits_total", "reason", "recycle") < 4 {
		if time.Now().After(deadline) {
			t.Fatal("fewer than 4 recycled workers in 20s")
		}
		ld.until(t, 50)
	}
	ok, fail, errs := ld.finish()
	t.Logf("%d ok, %d failed %v, %v recycles", ok, fail, errs, p.metric("onebox_app_worker_recycles_total"))
	if fail != 0 {
		t.Errorf("%d failed requests during recycling, want 0: %v", fail, errs)
	}
	if got := p.metric("onebox_app_worker_exits_total", "reason", "crash"); got != 0 {
		t.Errorf("%v crashes during recycling", got)
	}
}

func TestReloadThreeTimesUnderLoad(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, goCommand("go"))
	cfg.GracefulTimeout = drainUnderLoad
	p := startPool(t, cfg, nil)
	p.waitReady()
	first := readyPIDs(p.waitStatus("2 ready", func(s Status) bool { return len(readyPIDs(s)) == 2 }))
	ld := startLoad(p.sock, 4)
	ld.until(t, 100)
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := p.Reload(ctx)
		cancel()
		if err != nil {
			t.Fatalf("reload %d: %v", i+1, err)
		}
		ld.until(t, 100)
	}
	ok, fail, errs := ld.finish()
	t.Logf("%d ok, %d failed %v", ok, fail, errs)
	if fail != 0 {
		t.Errorf("%d failed requests across 3 reloads, want 0: %v", fail, errs)
	}
	s := p.waitStatus("only generation 3", func(s Status) bool {
		return len(s.Workers) == 2 && len(readyPIDs(s)) == 2 && s.Workers[0].Generation == 3 && s.Workers[1].Generation == 3
	})
	for pid := range readyPIDs(s) {
		if first[pid] {
			t.Errorf("pid %d of generation 0 still serving", pid)
		}
	}
	if got := p.metric("onebox_app_reloads_total", "result", "ok"); got != 3 {
		t.Errorf("reloads{ok} = %v, want 3", got)
	}
}

func TestBrokenGenerationKeepsOld(t *testing.T) {
	t.Parallel()
	broken := filepath.Join(t.TempDir(), "broken")
	p := startPool(t, testConfig(t, goCommand("go", broken)), nil)
	p.waitReady()
	old := readyPIDs(p.waitStatus("2 ready", func(s Status) bool { return len(readyPIDs(s)) == 2 }))
	ld := startLoad(p.sock, 4)
	ld.until(t, 100)
	// A bad deploy: the new code fails to boot.
	if err := os.WriteFile(broken, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.Reload(context.Background()); err == nil {
		t.Fatal("reload to a broken generation succeeded")
	}
	ld.until(t, 100)
	s := p.waitStatus("the old generation alone", func(s Status) bool { return len(s.Workers) == 2 })
	if got := readyPIDs(s); len(got) != 2 || !got[s.Workers[0].PID] || !old[s.Workers[0].PID] || !old[s.Workers[1].PID] {
		t.Errorf("workers %v after a failed reload, want the old ones %v", s.Workers, old)
	}
	// Fixed, the next reload goes through, with a new generation number.
	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	if err := p.Reload(context.Background()); err != nil {
		t.Fatalf("reload after the fix: %v", err)
	}
	if g := p.status().Generation; g != 2 {
		t.Errorf("generation %d after a failed and a good reload, want 2", g)
	}
	ld.until(t, 100)
	ok, fail, errs := ld.finish()
	t.Logf("%d ok, %d failed %v", ok, fail, errs)
	if fail != 0 {
		t.Errorf("%d failed requests, want 0: %v", fail, errs)
	}
	if p.metric("onebox_app_reloads_total", "result", "failed") != 1 {
		t.Error("failed reload not counted")
	}
	select {
	case err := <-p.err:
		t.Fatalf("the pool halted on a broken generation: %v", err)
	default:
	}
}

func TestScale(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, goCommand("go"))
	cfg.WorkerConnections = 3 // the proxy's bound follows the count
	p := startPool(t, cfg, nil)
	p.waitReady()
	if got := p.MaxConns(); got != 3*cfg.Workers {
		t.Fatalf("MaxConns = %d with %d workers of 3 connections; want %d", got, cfg.Workers, 3*cfg.Workers)
	}
	steps := []struct {
		n        int
		relative bool
		want     int
	}{
		{+1, true, 3}, // TTIN
		{-1, true, 2}, // TTOU
		{4, false, 4}, // onebox scale 4
		{0, false, 1}, // never below 1
		{-1, true, 1}, // still not
		{+1, true, 2},
	}
	for _, st := range steps {
		got, err := p.Scale(st.n, st.relative)
		if err != nil || got != st.want {
			t.Fatalf("Scale(%d, %v) = %d, %v; want %d", st.n, st.relative, got, err, st.want)
		}
		if got := p.MaxConns(); got != 3*st.want {
			t.Errorf("MaxConns = %d after Scale(%d, %v); want %d", got, st.n, st.relative, 3*st.want)
		}
		p.waitStatus(strconv.Itoa(st.want)+" workers", func(s Status) bool {
			return len(s.Workers) == st.want && len(readyPIDs(s)) == st.want
		})
	}
	// Above the limit (4 x APP_MAX_WORKERS) nothing changes, and a huge
	// relative step neither overflows nor forks.
	for _, st := range []struct {
		n        int
		relative bool
	}{{49, false}, {100000, false}, {47, true}, {math.MaxInt, true}} {
		if got, err := p.Scale(st.n, st.relative); err == nil || got != 2 {
			t.Errorf("Scale(%d, %v) = %d, %v; want an error and 2 kept", st.n, st.relative, got, err)
		}
	}
	if got, err := p.Scale(math.MinInt, true); err != nil || got != 1 {
		t.Errorf("Scale(MinInt, true) = %d, %v; want 1", got, err)
	}
	if got, err := p.Scale(48, false); err != nil || got != 48 {
		t.Errorf("Scale(48) = %d, %v; want the limit allowed", got, err)
	}
	if _, err := p.Scale(2, false); err != nil {
		t.Fatal(err)
	}
	p.waitStatus("2 workers", func(s Status) bool { return len(s.Workers) == 2 && len(readyPIDs(s)) == 2 })
	if s := p.status(); s.Target != 2 {
		t.Fatalf("target %d, want 2", s.Target)
	}
	// The count survives a reload (gunicorn forgets it).
	if err := p.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.waitStatus("2 workers of generation 1", func(s Status) bool {
		return len(s.Workers) == 2 && s.Generation == 1 && s.Workers[0].Generation == 1
	})
}

func TestHTTPBindAndProbe(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, goCommand("go"))
	cfg.Bind = "127.0.0.1:0"
	cfg.Workers = 1
	p := startPool(t, cfg, nil)
	p.waitReady()
	// The master's own copy of the socket is close-on-exec: only the
	// workers get it, as fd 3.
	fd := p.lf.Fd()
	if flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFD, 0); errno != 0 || flags&syscall.FD_CLOEXEC == 0 {
		t.Errorf("socket fd flags %#x (%v), want FD_CLOEXEC", flags, errno)
	}
	resp, err := http.Get("http://" + p.Addr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// Workers that never heartbeat boot only when they outlive APP_BOOT_TIMEOUT:
// a new generation that loads for a while and then dies fails the reload,
// and the old generation keeps serving.
func TestReloadWaitsForTheBootWindow(t *testing.T) {
	t.Parallel()
	broken := filepath.Join(t.TempDir(), "broken")
	cfg := testConfig(t, goCommand("late", broken, "600", "1"))
	// Above the start of a race-instrumented process plus its 600ms load
	// on a busy machine: the new generation must die inside the window.
	cfg.BootTimeout = 5 * time.Second
	p := startPool(t, cfg, nil)
	p.waitReady()
	old := readyPIDs(p.waitStatus("2 ready", func(s Status) bool { return len(readyPIDs(s)) == 2 }))
	if err := os.WriteFile(broken, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Reload(ctx); err == nil || !strings.Contains(err.Error(), "failed to boot") {
		t.Fatalf("Reload = %v, want a boot failure of the new generation", err)
	}
	s := p.waitStatus("the old generation alone", func(s Status) bool { return len(s.Workers) == 2 })
	if got := readyPIDs(s); len(got) != 2 || !old[s.Workers[0].PID] || !old[s.Workers[1].PID] {
		t.Fatalf("workers %+v, want the old ones %v", s.Workers, old)
	}
	if body, err := post(unixClient(p.sock, 1), "/"); err != nil || body == "" {
		t.Fatalf("old generation after the failed reload: %q, %v", body, err)
	}
}

// Exit code 3 from a worker that never wrote on fd 4 halts the pool even
// after the boot window (gunicorn loads the app after forking).
func TestLateExit3Halts(t *testing.T) {
	t.Parallel()
	broken := filepath.Join(t.TempDir(), "broken")
	if err := os.WriteFile(broken, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, goCommand("late", broken, "600", "3"))
	cfg.Workers = 1
	p := startPool(t, cfg, nil)
	var err error
	select {
	case err = <-p.err:
		p.err <- err
	case <-time.After(10 * time.Second):
		t.Fatal("exit 3 after the boot window did not halt the pool")
	}
	var be *BootError
	if !errors.As(err, &be) || be.Status != "exit 3" || !strings.Contains(strings.Join(be.Stderr, "\n"), "late import error") {
		t.Fatalf("Run = %#v, want a BootError with exit 3 and the stderr tail", err)
	}
}

// A worker that said hello boots on ready, however long its app loads within
// the boot window, even past APP_TIMEOUT: hello is not a heartbeat.
func TestHelloWorkerBootsOnReady(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, goCommand("hello-slow", "1000"))
	cfg.Workers = 1
	cfg.Timeout = 400 * time.Millisecond
	cfg.BootTimeout = 5 * time.Second
	p := startPool(t, cfg, nil)
	start := time.Now()
	p.waitReady()
	if took := time.Since(start); took < time.Second {
		t.Errorf("ready after %s, before the worker said ready (after a 1s load)", took)
	}
	if got := p.metric("onebox_app_worker_timeouts_total"); got != 0 {
		t.Errorf("%v timeouts for a worker loading its app after hello", got)
	}
}

// A worker that said hello but not ready within APP_BOOT_TIMEOUT failed to
// boot: it is killed, and failures in a row halt the pool, where a silent
// worker would have counted as booted.
func TestHelloWithoutReadyFailsToBoot(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, goCommand("hello-slow", "60000"))
	cfg.Workers = 1
	// Short enough for two failures in a row, long enough for hello to
	// arrive from a race-instrumented process on a busy machine.
	cfg.BootTimeout = 5 * time.Second
	p := startPool(t, cfg, func(m *Master) { m.maxBootFailures = 2 })
	var err error
	select {
	case err = <-p.err:
		p.err <- err
	case <-time.After(40 * time.Second):
		t.Fatal("a worker silent after hello did not halt the pool")
	}
	var be *BootError
	if !errors.As(err, &be) || be.Status != "killed by killed" {
		t.Fatalf("Run = %#v, want a BootError for a killed worker", err)
	}
	if !strings.Contains(p.log.String(), "said hello but not ready within APP_BOOT_TIMEOUT") {
		t.Error("no log line saying why the worker was killed")
	}
	if got := p.metric("onebox_app_worker_boot_failures_total"); got != 2 {
		t.Errorf("%v boot failures counted, want 2", got)
	}
}

// A request longer than APP_TIMEOUT on a worker whose heartbeat is healthy
// (a stream, a slow download) is not a hang.
func TestLongRequestIsNotATimeout(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, goCommand("go"))
	cfg.Workers = 1
	cfg.Timeout = 600 * time.Millisecond
	p := startPool(t, cfg, nil)
	p.waitReady()
	pid := p.waitStatus("a ready worker", func(s Status) bool { return len(readyPIDs(s)) == 1 }).Workers[0].PID
	body, err := get(unixClient(p.sock, 1), "/slow?ms=1500")
	if err != nil || body != strconv.Itoa(pid) {
		t.Fatalf("a 1.5s request with a 600ms timeout: %q, %v; want served by %d", body, err, pid)
	}
	if got := p.metric("onebox_app_worker_timeouts_total"); got != 0 {
		t.Errorf("%v timeouts for a worker that kept beating", got)
	}
}

// The pool drains after the proxy, within what is left of the supervisor's
// stop budget: a worker that does not finish by then is killed, well before
// APP_GRACEFUL_TIMEOUT.
func TestDrainClampedToStopDeadline(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, goCommand("go"))
	cfg.Workers = 1
	cfg.GracefulTimeout = 8 * time.Second
	var deadline atomic.Int64
	p := startPool(t, cfg, func(m *Master) {
		m.deps.StopDeadline = func() time.Time {
			if ns := deadline.Load(); ns != 0 {
				return time.Unix(0, ns)
			}
			return time.Time{}
		}
	})
	p.waitReady()
	go func() { _, _ = get(unixClient(p.sock, 1), "/slow?ms=20000") }()
	p.waitStatus("a request in flight", func(s Status) bool {
		return len(s.Workers) == 1 && s.Workers[0].InFlight != nil && *s.Workers[0].InFlight == 1
	})
	start := time.Now()
	deadline.Store(start.Add(time.Second).UnixNano())
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2500*time.Millisecond {
		t.Errorf("stop took %s with 1s left of the stop budget", took)
	}
	// The worker was told the remaining time on its control pipe, so it
	// gave up its drain itself (exit 1) before the master's SIGKILL.
	var status any
	for _, l := range decodeLines(t, p.log.String()) {
		if l["reason"] == "stop" {
			status = l["status"]
		}
	}
	if status != "exit 1" {
		t.Errorf("worker ended with %v, want exit 1 (its own drain cut short at the told deadline)", status)
	}
}

// Readiness follows the workers: when none serves (the only one died and its
// replacements fail to boot), Check is an error until one boots again.
func TestCheckFollowsWorkers(t *testing.T) {
	t.Parallel()
	broken := filepath.Join(t.TempDir(), "broken")
	cfg := testConfig(t, goCommand("go", broken))
	cfg.Workers = 1
	p := startPool(t, cfg, func(m *Master) { m.maxBootFailures = 1000 })
	p.waitReady()
	if err := p.Check(); err != nil {
		t.Fatalf("Check of a ready pool: %v", err)
	}
	victim := p.waitStatus("a ready worker", func(s Status) bool { return len(readyPIDs(s)) == 1 }).Workers[0].PID
	if err := os.WriteFile(broken, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if victim <= 0 {
		t.Fatalf("bad pid %d", victim)
	}
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.waitStatus("Check red", func(Status) bool { return p.Check() != nil })
	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	p.waitStatus("Check green again", func(Status) bool { return p.Check() == nil })
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
	if err := p.Check(); err == nil {
		t.Error("Check of a stopped pool is nil")
	}
}

// A crashed worker whose helper process still holds its output pipes is
// replaced at once: the loop does not wait for the output to end.
func TestCrashReplacedWhileOutputHeld(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, goCommand("grandchild"))
	cfg.Workers = 1
	// Without the fix, the loop would block this long on the crash.
	p := startPool(t, cfg, func(m *Master) { m.tailWait = time.Minute })
	p.waitReady()
	victim := p.waitStatus("a ready worker", func(s Status) bool { return len(readyPIDs(s)) == 1 }).Workers[0].PID
	if victim <= 0 {
		t.Fatalf("bad pid %d", victim)
	}
	t.Cleanup(func() { _ = syscall.Kill(-victim, syscall.SIGKILL) }) // the helper, in the worker's group
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.waitStatus("a replacement", func(s Status) bool {
		r := readyPIDs(s)
		return len(r) == 1 && !r[victim]
	})
}

// A prestart command that hangs (and ignores SIGTERM) is stopped at
// APP_PRESTART_TIMEOUT and the pool fails, instead of waiting for ever.
func TestPrestartTimeout(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, goCommand("go"))
	cfg.Prestart = "'" + os.Args[0] + "' test-worker prestart-hang"
	// Long enough for the prestart process to start and print on a busy
	// machine (300ms was not): the test wants its output in the log.
	cfg.PrestartTimeout = 3 * time.Second
	cfg.GracefulTimeout = 300 * time.Millisecond
	p := startPool(t, cfg, nil)
	var err error
	select {
	case err = <-p.err:
		p.err <- err
	case <-time.After(10 * time.Second):
		t.Fatal("a hung prestart was not stopped")
	}
	var pe *PrestartError
	if !errors.As(err, &pe) || pe.ExitCode() == 0 || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("Run = %v, want a PrestartError that timed out", err)
	}
	if !strings.Contains(p.log.String(), "waiting for the migration lock") {
		t.Error("the hung prestart's output is not in the log")
	}
}

// Workers that never heartbeat: a reload completes once the new generation
// outlived the boot window, and a scale asked for during the reload applies
// to the new generation.
func TestReloadAndScaleSilentWorkers(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, pythonCommand(t, pyWorker))
	cfg.BootTimeout = time.Second
	p := startPool(t, cfg, nil)
	p.waitReady()
	p.waitStatus("2 booted", func(s Status) bool { return len(readyPIDs(s)) == 2 })
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- p.Reload(context.Background()) }()
	p.waitStatus("the reload under way", func(s Status) bool { return s.Reloading })
	if got, err := p.Scale(3, false); err != nil || got != 3 {
		t.Fatalf("Scale(3) during a reload = %d, %v", got, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("reload of silent workers: %v", err)
	}
	if took := time.Since(start); took < cfg.BootTimeout {
		t.Errorf("reload done after %s, before the boot window of %s", took, cfg.BootTimeout)
	}
	p.waitStatus("3 workers of generation 1", func(s Status) bool {
		n := 0
		for _, w := range s.Workers {
			if w.Generation == 1 && w.State == WorkerReady {
				n++
			}
		}
		return n == 3 && len(s.Workers) == 3
	})
	if body, err := get(unixClient(p.sock, 1), "/"); err != nil || !strings.HasPrefix(body, "py ") {
		t.Fatalf("after the reload: %q, %v", body, err)
	}
}

// A new generation that neither heartbeats nor dies within the reload
// timeout is given up; the old one keeps serving.
func TestReloadTimeout(t *testing.T) {
	t.Parallel()
	slow := filepath.Join(t.TempDir(), "slow")
	cfg := testConfig(t, goCommand("late", slow, "20000", "1"))
	cfg.Workers = 1
	cfg.BootTimeout = 10 * time.Second
	p := startPool(t, cfg, func(m *Master) { m.reloadTimeout = 500 * time.Millisecond })
	p.waitReady()
	old := p.waitStatus("a ready worker", func(s Status) bool { return len(readyPIDs(s)) == 1 }).Workers[0].PID
	if err := os.WriteFile(slow, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := p.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not up within") {
		t.Fatalf("Reload = %v, want the reload timeout", err)
	}
	s := p.waitStatus("the old worker alone", func(s Status) bool { return len(s.Workers) == 1 })
	if s.Workers[0].PID != old || s.Generation != 0 {
		t.Fatalf("status %+v, want the old worker %d serving generation 0", s, old)
	}
	if body, err := post(unixClient(p.sock, 1), "/"); err != nil || body != strconv.Itoa(old) {
		t.Fatalf("after the timed-out reload: %q, %v", body, err)
	}
}
