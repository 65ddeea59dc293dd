package appserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"onebox/appserver/worker"
	"onebox/internal/testutil"
	"onebox/supervisor"
)

// The one reaper of this test process: two would steal each other's exits.
var reaper *supervisor.Reaper

// TestMain makes the test binary its own exec shim and worker, so the tests
// run real processes through the real protocol:
//
//	appserver.test __exec CMD...          the shim
//	appserver.test test-worker MODE ...   a worker
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case ShimArg:
			if err := ShimMain(os.Args[2:]); err != nil {
				// As cmd/onebox maps a returned error to the exit status.
				fmt.Fprintln(os.Stderr, "onebox:", err)
				var coder interface{ ExitCode() int }
				if errors.As(err, &coder) {
					os.Exit(coder.ExitCode())
				}
				os.Exit(1)
			}
		case "test-worker":
			os.Exit(testWorker(os.Args[2:]))
		}
	}
	reaper = supervisor.NewReaper(zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = reaper.Run(ctx) }()
	code := m.Run()
	cancel()
	os.Exit(code)
}

// testWorker is a worker process. Modes:
//
//	go [BROKEN_FILE [SLOW_FILE]]  serve with appserver/worker; fail to boot while BROKEN_FILE
//	                  exists, boot slowly (5s) while SLOW_FILE exists
//	alone             serve with appserver/worker on :$PORT, without onebox
//	flood             as go, while writing stdout lines as fast as it can
//	bootfail CODE     write to stderr and exit CODE before serving
//	late FILE MS CODE  while FILE exists: never touch fd 4 or the socket, and
//	                  exit CODE after MS (a slow app load that fails); else as go
//	prestart FILE CODE  write FILE, print a line, exit CODE
//	grandchild        as go, with a child (sleep) holding stdout and stderr open
//	hello-slow MS     say hello, load the app for MS, then as go
//
// Every mode but late says hello first, as a Go worker does (worker.Hello):
// a worker that takes longer to start than the boot window (the race
// detector slows a start tenfold) still fails to boot, not late.
func testWorker(args []string) int {
	if args[0] != "late" {
		worker.Hello()
	}
	switch args[0] {
	case "hello-slow":
		ms, _ := strconv.Atoi(args[1])
		time.Sleep(time.Duration(ms) * time.Millisecond) // the simulated app load
	case "bootfail":
		fmt.Fprintln(os.Stderr, "connecting to the database")
		fmt.Fprintln(os.Stderr, "fatal: database unreachable")
		code, _ := strconv.Atoi(args[1])
		return code
	case "late":
		if _, err := os.Stat(args[1]); err == nil {
			fmt.Fprintln(os.Stderr, "loading the app")
			ms, _ := strconv.Atoi(args[2])
			time.Sleep(time.Duration(ms) * time.Millisecond) // the simulated app load
			fmt.Fprintln(os.Stderr, "fatal: late import error")
			code, _ := strconv.Atoi(args[3])
			return code
		}
	case "grandchild":
		// A helper process the app started: it outlives a crash of the
		// worker and keeps its output pipes open.
		cmd := exec.Command("sleep", "30")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "start helper:", err)
			return 1
		}
		fmt.Fprintln(os.Stderr, "helper started")
	case "prestart-hang":
		// A migration stuck on a lock, deaf to SIGTERM.
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("waiting for the migration lock")
		select {}
	case "prestart":
		fmt.Println("migrating: 1 table")
		if err := os.WriteFile(args[1], []byte("done"), 0o644); err != nil {
			return 1
		}
		code, _ := strconv.Atoi(args[2])
		return code
	case "flood":
		go func() {
			line := []byte(strings.Repeat("x", 200) + "\n")
			for {
				if _, err := os.Stdout.Write(line); err != nil {
					return
				}
			}
		}()
	case "go":
		if len(args) > 1 {
			if _, err := os.Stat(args[1]); err == nil {
				fmt.Fprintln(os.Stderr, "boom: this deploy is broken")
				return 1
			}
		}
		if len(args) > 2 {
			if _, err := os.Stat(args[2]); err == nil {
				time.Sleep(5 * time.Second) // a slow boot: not yet on the socket
			}
		}
	}
	if args[0] != "alone" && os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) {
		fmt.Fprintln(os.Stderr, "LISTEN_PID is not my pid")
		return 4
	}
	fmt.Println("worker starting")
	fmt.Fprintln(os.Stderr, `{"level":"info","msg":"hello from json"}`)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			// The load's POSTs: answer the pid and the body length read.
			n, _ := io.Copy(io.Discard, r.Body)
			fmt.Fprintf(w, "%d %d", os.Getpid(), n)
			return
		}
		fmt.Fprint(w, os.Getpid())
	})
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(helloBody)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		fmt.Fprint(w, os.Getpid())
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		// A hung process: nothing runs, not even the heartbeat. With
		// ?after=MS it first works for MS, so beats report the request.
		ms, _ := strconv.Atoi(r.URL.Query().Get("after"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
	})
	if err := worker.Serve(mux); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 1
	}
	return 0
}

// helloBody is the benchmarks' 100-byte answer, as ../shared/bench's.
var helloBody = []byte("Hello from the benchmark backend. This body is padded to exactly one hundred bytes: 0123456789abcde\n")

// pool is a running Master under test.
type pool struct {
	*Master
	t      *testing.T
	log    *testutil.SyncBuffer
	reg    *prometheus.Registry
	cancel context.CancelFunc
	err    chan error
	sock   string
}

func testConfig(t *testing.T, command string) Config {
	return Config{
		Command:         command,
		Bind:            "unix:" + filepath.Join(t.TempDir(), "run", "app.sock"),
		Workers:         2,
		MaxWorkers:      12,
		Timeout:         2 * time.Second,
		GracefulTimeout: 2 * time.Second,
		// Long enough for a process start under the race detector on a
		// busy machine (3s was not: CI saw hello arrive after 3s, and a
		// worker killed for it took its accepted connections along);
		// workers that say hello boot on ready, not by it.
		BootTimeout:     8 * time.Second,
		PrestartTimeout: 10 * time.Second,
	}
}

// goCommand is APP_COMMAND for the test binary as a worker.
func goCommand(mode ...string) string {
	return "'" + os.Args[0] + "' test-worker " + strings.Join(mode, " ")
}

// startPool runs a Master; tweak may shorten its tunables.
func startPool(t *testing.T, cfg Config, tweak func(*Master)) *pool {
	t.Helper()
	buf := &testutil.SyncBuffer{}
	log := zerolog.New(buf).With().Str("component", "appserver").Logger()
	reg := prometheus.NewRegistry()
	m, err := New(cfg, Deps{Log: log, Metrics: reg, Start: reaper.Start, ShutdownTimeout: 9 * time.Second,
		Shim: []string{os.Args[0], ShimArg}})
	if err != nil {
		t.Fatal(err)
	}
	m.abortGrace = 300 * time.Millisecond
	if tweak != nil {
		tweak(m)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &pool{Master: m, t: t, log: buf, reg: reg, cancel: cancel, err: make(chan error, 1),
		sock: strings.TrimPrefix(cfg.Bind, "unix:")}
	go func() { p.err <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-p.err:
		case <-time.After(15 * time.Second):
			t.Error("Run did not return within 15s of cancel")
		}
		if t.Failed() {
			t.Logf("log:\n%s", tailOf(buf.String(), 60))
		}
	})
	return p
}

func tailOf(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (p *pool) waitReady() {
	p.t.Helper()
	select {
	case <-p.Ready():
	case err := <-p.err:
		p.t.Fatalf("Run returned before ready: %v", err)
	case <-time.After(30 * time.Second):
		p.t.Fatal("pool not ready within 30s")
	}
}

// stop cancels Run and returns its result.
func (p *pool) stop() error {
	p.t.Helper()
	p.cancel()
	select {
	case err := <-p.err:
		p.err <- err // for the cleanup
		return err
	case <-time.After(15 * time.Second):
		p.t.Fatal("Run did not return within 15s of cancel")
		return nil
	}
}

func (p *pool) status() Status { return p.Status().(Status) }

// waitStatus polls Status until cond holds: there is no event for "the
// count is back", so this is a bounded poll, not a sleep.
func (p *pool) waitStatus(what string, cond func(Status) bool) Status {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := p.status()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("no %s within 20s; status %+v", what, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readyPIDs(s Status) map[int]bool {
	pids := map[int]bool{}
	for _, w := range s.Workers {
		if w.State == WorkerReady {
			pids[w.PID] = true
		}
	}
	return pids
}

// metric returns a counter or gauge's value (labels as k=v pairs).
func (p *pool) metric(name string, labels ...string) float64 {
	p.t.Helper()
	mfs, err := p.reg.Gather()
	if err != nil {
		p.t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

func unixClient(sock string, conns int) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			MaxIdleConnsPerHost: conns,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			},
		},
	}
}

// get fetches path and returns the body (the serving worker's pid for /).
func get(c *http.Client, path string) (string, error) {
	resp, err := c.Get("http://app" + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	return string(b), nil
}

// post sends a POST with a body to path and returns the answer's body (the
// serving worker's pid for /), failing on any status but 200. POST, unlike
// GET, is never retried by http.Transport after the request was written, so
// a connection the worker closes under a request shows up as a failure, as
// it would behind a proxy.
func post(c *http.Client, path string) (string, error) {
	const payload = "name=onebox&message=hello"
	resp, err := c.Post("http://app"+path, "application/x-www-form-urlencoded", strings.NewReader(payload))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	pid, got, ok := strings.Cut(string(b), " ")
	if !ok || got != strconv.Itoa(len(payload)) {
		return "", fmt.Errorf("answer %q: the body was not read whole", b)
	}
	return pid, nil
}

// load is continuous traffic (POSTs with a body) that counts every response.
type load struct {
	ok, fail atomic.Int64
	mu       sync.Mutex
	errs     []string
	pids     map[string]int
	stop     chan struct{}
	wg       sync.WaitGroup
}

func startLoad(sock string, conc int) *load {
	l := &load{stop: make(chan struct{}), pids: map[string]int{}}
	c := unixClient(sock, conc)
	for range conc {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				body, err := post(c, "/")
				l.mu.Lock()
				if err != nil {
					l.fail.Add(1)
					if len(l.errs) < 5 {
						l.errs = append(l.errs, err.Error())
					}
				} else {
					l.ok.Add(1)
					l.pids[body]++
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// finish stops the load and returns the counts.
func (l *load) finish() (ok, fail int64, errs []string) {
	close(l.stop)
	l.wg.Wait()
	return l.ok.Load(), l.fail.Load(), l.errs
}

// until keeps the load running until n more responses have come back.
func (l *load) until(t *testing.T, n int64) {
	t.Helper()
	target := l.ok.Load() + l.fail.Load() + n
	deadline := time.Now().Add(20 * time.Second)
	for l.ok.Load()+l.fail.Load() < target {
		if time.Now().After(deadline) {
			t.Fatalf("load stalled: %d ok, %d failed", l.ok.Load(), l.fail.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func decodeLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err == nil {
			out = append(out, m)
		}
	}
	return out
}
