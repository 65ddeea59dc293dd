package appserver

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pythonDir holds onebox_worker.py, the Python side of the worker protocol.
const pythonDir = "python"

// TestPythonWorkerUnittest runs onebox_worker's own tests (stdlib unittest),
// so `make unit` covers the Python side too.
func TestPythonWorkerUnittest(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 is required for onebox_worker's tests:", err)
	}
	cmd := exec.Command(py, "-m", "unittest", "-v", "test_onebox_worker")
	cmd.Dir = pythonDir
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3 -m unittest test_onebox_worker: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "\nOK") {
		t.Fatalf("unittest did not report OK:\n%s", out)
	}
	t.Logf("%s", tailOf(string(out), 5))
}

// wsgiApp is the WSGI app the pool tests run on onebox_worker: POST / answers
// "PID LEN" as the Go test worker does (the load helpers read it), and
// keeps 256 KiB per POST when APP_DIR has a file "grow", so its memory climbs.
const wsgiApp = `
import os, time
kept = []
GROW = os.path.exists("grow")  # in APP_DIR

def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/sleep/"):
        time.sleep(float(path.split("/")[2]))
    body = environ["wsgi.input"].read()
    if environ["REQUEST_METHOD"] == "POST" and GROW:
        kept.append(b"x" * 262144)
    if path == "/threads":
        out = os.environ.get("ONEBOX_THREADS", "")
    else:
        out = "%d %d" % (os.getpid(), len(body)) if body else str(os.getpid())
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [out.encode()]
`

// oneboxWorkerConfig is a pool of onebox_worker workers serving wsgiApp
// (written to APP_DIR, which the worker puts on sys.path).
func oneboxWorkerConfig(t *testing.T, args ...string) Config {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 is required for the onebox_worker tests:", err)
	}
	script, err := filepath.Abs(filepath.Join(pythonDir, "onebox_worker.py"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "wsgiapp.py"), []byte(wsgiApp), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, py+" "+script+" "+strings.Join(append(args, "wsgiapp:app"), " "))
	cfg.Dir = dir
	cfg.Threads = 1
	return cfg
}

// onebox_worker says hello, boots on ready and serves under load through a
// reload with no failed request.
func TestOneboxWorkerPool(t *testing.T) {
	t.Parallel()
	cfg := oneboxWorkerConfig(t)
	cfg.Threads = 3
	p := startPool(t, cfg, nil)
	p.waitReady()
	first := readyPIDs(p.waitStatus("2 ready", func(s Status) bool { return len(readyPIDs(s)) == 2 }))
	c := unixClient(p.sock, 2)
	if got, err := get(c, "/threads"); err != nil || got != "3" {
		t.Errorf("ONEBOX_THREADS in the worker = %q, %v; want APP_THREADS=3", got, err)
	}
	ld := startLoad(p.sock, 4)
	ld.until(t, 100)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	err := p.Reload(ctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	ld.until(t, 100)
	ok, fail, errs := ld.finish()
	t.Logf("%d ok, %d failed %v", ok, fail, errs)
	if fail != 0 {
		t.Errorf("%d failed requests across a reload, want 0: %v", fail, errs)
	}
	s := p.waitStatus("2 new workers", func(s Status) bool { return len(readyPIDs(s)) == 2 && len(s.Workers) == 2 })
	for pid := range readyPIDs(s) {
		if first[pid] {
			t.Errorf("pid %d of the first generation still serving", pid)
		}
	}
	p.waitStatus("requests and memory of each worker", func(s Status) bool {
		for _, w := range s.Workers {
			if w.Requests == nil || w.MemoryBytes == nil || *w.MemoryBytes < 1<<20 {
				return false
			}
		}
		return len(s.Workers) == 2
	})
	if got := p.metric("onebox_app_worker_exits_total", "reason", "crash"); got != 0 {
		t.Errorf("%v crashes", got)
	}
}

// A sync onebox_worker (APP_THREADS=1, gunicorn's --timeout for sync
// workers): a request longer than APP_TIMEOUT is killed and logged with its
// URI and a Python traceback, though the worker's heartbeat thread beats.
func TestSyncRequestTimeout(t *testing.T) {
	t.Parallel()
	cfg := oneboxWorkerConfig(t)
	cfg.Workers = 1
	cfg.Timeout = time.Second
	p := startPool(t, cfg, nil)
	p.waitReady()
	pid := p.waitStatus("a ready worker", func(s Status) bool { return len(readyPIDs(s)) == 1 }).Workers[0].PID
	if _, err := get(unixClient(p.sock, 1), "/sleep/60"); err == nil {
		t.Fatal("a 60s request with a 1s APP_TIMEOUT on a sync worker was answered")
	}
	p.waitStatus("a replacement", func(s Status) bool { return len(readyPIDs(s)) == 1 && !readyPIDs(s)[pid] })
	var timeout map[string]any
	for _, l := range decodeLines(t, p.log.String()) {
		if strings.HasPrefix(fmt.Sprint(l["message"]), "worker timeout") {
			timeout = l
		}
	}
	if timeout == nil || timeout["request"] != "GET /sleep/60" {
		t.Errorf("worker timeout logged as %v; want it to name GET /sleep/60", timeout)
	}
	// faulthandler's dump reaches the worker log (stderr is read off the loop).
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.log.String(), "wsgiapp.py") {
		if time.Now().After(deadline) {
			t.Fatal("no Python traceback naming the app in the log")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := p.metric("onebox_app_worker_timeouts_total"); got != 1 {
		t.Errorf("timeouts = %v, want 1", got)
	}
}

// With threads, only a silent heartbeat is a hang (gunicorn's gthread): a
// request longer than APP_TIMEOUT completes.
func TestThreadedRequestIsNotATimeout(t *testing.T) {
	t.Parallel()
	cfg := oneboxWorkerConfig(t)
	cfg.Workers = 1
	cfg.Threads = 2
	cfg.Timeout = 600 * time.Millisecond
	p := startPool(t, cfg, nil)
	p.waitReady()
	pid := p.waitStatus("a ready worker", func(s Status) bool { return len(readyPIDs(s)) == 1 }).Workers[0].PID
	body, err := get(unixClient(p.sock, 1), "/sleep/1.5")
	if err != nil || body != strconv.Itoa(pid) {
		t.Fatalf("a 1.5s request with a 600ms timeout on a threaded worker: %q, %v; want served by %d", body, err, pid)
	}
	if got := p.metric("onebox_app_worker_timeouts_total"); got != 0 {
		t.Errorf("%v timeouts", got)
	}
}

// A worker above APP_MAX_WORKER_MEMORY is recycled, replacement first, with
// no failed request.
func TestMemoryRecycleUnderLoad(t *testing.T) {
	t.Parallel()
	cfg := oneboxWorkerConfig(t)
	cfg.MaxWorkerMemory = 48 << 20
	if err := os.WriteFile(filepath.Join(cfg.Dir, "grow"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p := startPool(t, cfg, func(m *Master) { m.memEvery = 100 * time.Millisecond })
	p.waitReady()
	ld := startLoad(p.sock, 4)
	deadline := time.Now().Add(30 * time.Second)
	for p.metric("onebox_app_worker_exits_total", "reason", "recycle") < 2 {
		if time.Now().After(deadline) {
			t.Fatal("fewer than 2 workers recycled for memory in 30s")
		}
		ld.until(t, 50)
	}
	ok, fail, errs := ld.finish()
	t.Logf("%d ok, %d failed %v", ok, fail, errs)
	if fail != 0 {
		t.Errorf("%d failed requests while recycling for memory, want 0: %v", fail, errs)
	}
	if got := p.metric("onebox_app_worker_memory_recycles_total"); got < 2 {
		t.Errorf("memory recycles = %v, want at least 2", got)
	}
	if !strings.Contains(p.log.String(), `"limit":"48m"`) {
		t.Error("the recycle was not logged with the limit")
	}
	if p.metric("onebox_app_worker_memory_bytes") <= 0 {
		t.Error("no worker memory in /metrics")
	}
}
