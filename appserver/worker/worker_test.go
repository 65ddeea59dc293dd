package worker_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"onebox/appserver/worker"
)

const helperEnv = "WORKER_TEST_HELPER"

// TestMain turns the test binary into a worker when helperEnv is set, so the
// tests run real worker processes.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		if err := worker.Serve(handler()); err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello")
	})
	mux.HandleFunc("/child-fds", func(w http.ResponseWriter, r *http.Request) {
		// Which of the protocol's descriptors a program the app starts
		// inherits.
		out, err := exec.Command("sh", "-c", "for fd in 3 4 5; do [ -e /proc/self/fd/$fd ] && echo -n \"$fd \"; done; echo end").Output()
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		_, _ = w.Write(out)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		fmt.Fprint(w, "slow")
	})
	return mux
}

// proc is a worker process started by a test, with its heartbeat lines.
type proc struct {
	cmd   *exec.Cmd
	lines chan string
	sock  string
	ctl   *os.File      // the control pipe's write end (fd 5 in the worker)
	done  chan struct{} // closed at exit; err is set before
	err   error
}

// startWorker starts the test binary as a worker on an inherited unix socket
// with a heartbeat pipe, as onebox would.
func startWorker(t *testing.T, env ...string) *proc {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "app.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	lf, err := l.(*net.UnixListener).File()
	if err != nil {
		t.Fatal(err)
	}
	hr, hw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cr, cw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=1", "LISTEN_FDS=1", "ONEBOX_HEARTBEAT_FD=4", "ONEBOX_CONTROL_FD=5", "ONEBOX_TIMEOUT=200ms",
		"ONEBOX_GRACEFUL_TIMEOUT=2s")
	cmd.Env = append(cmd.Env, env...)
	cmd.ExtraFiles = []*os.File{lf, hw, cr}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	hw.Close()
	lf.Close()
	cr.Close()
	p := &proc{cmd: cmd, lines: make(chan string, 1000), sock: sock, ctl: cw, done: make(chan struct{})}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(hr)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		l.Close()
		cw.Close()
	})
	return p
}

// expect waits for a heartbeat line with the given prefix and returns it.
func (p *proc) expect(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("heartbeat pipe closed before a %q line", prefix)
			}
			if strings.HasPrefix(line, prefix) {
				return line
			}
		case <-timeout:
			t.Fatalf("no %q heartbeat line within 10s", prefix)
		}
	}
}

func (p *proc) client() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", p.sock)
		},
	}}
}

func get(t *testing.T, c *http.Client, path string) string {
	t.Helper()
	resp, err := c.Get("http://app" + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: status %d", path, resp.StatusCode)
	}
	return string(b)
}

func TestServeOnInheritedSocketWithHeartbeat(t *testing.T) {
	p := startWorker(t)
	// hello first: this worker speaks the protocol, and boots on ready.
	if first := p.expect(t, ""); first != "hello" {
		t.Fatalf("first heartbeat line %q, want hello", first)
	}
	p.expect(t, "ready")
	c := p.client()
	for range 3 {
		if got := get(t, c, "/hello"); got != "hello" {
			t.Fatalf("body %q, want hello", got)
		}
	}
	// A beat reports the served count; wait for one that counts all three.
	for {
		f := strings.Fields(p.expect(t, "beat "))
		if len(f) >= 3 && f[1] == "3" && f[2] == "0" {
			break
		}
	}
	// A request in flight is reported with its age, method and URI.
	go func() { _, _ = c.Get("http://app/slow?ms=600") }()
	for {
		f := strings.Fields(p.expect(t, "beat "))
		if len(f) == 6 {
			if f[2] != "1" || f[4] != "GET" || f[5] != "/slow?ms=600" {
				t.Fatalf("beat %q, want 1 in flight: GET /slow?ms=600", f)
			}
			break
		}
	}
}

func TestChildrenDoNotInheritProtocolFDs(t *testing.T) {
	p := startWorker(t)
	p.expect(t, "ready")
	if got := strings.TrimSpace(get(t, p.client(), "/child-fds")); got != "end" {
		t.Fatalf("a child of the worker has inherited descriptors %q, want none of 3, 4, 5", got)
	}
}

func TestDrainOnTerm(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGQUIT} {
		t.Run(sig.String(), func(t *testing.T) {
			p := startWorker(t)
			p.expect(t, "ready")
			c := p.client()
			body := make(chan string, 1)
			go func() {
				resp, err := c.Get("http://app/slow?ms=500")
				if err != nil {
					body <- err.Error()
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				body <- string(b)
			}()
			// Signal only once the request is in flight.
			for len(strings.Fields(p.expect(t, "beat "))) != 6 {
			}
			if err := p.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if got := <-body; got != "slow" {
				t.Fatalf("in-flight request got %q, want slow", got)
			}
			if <-p.done; p.err != nil {
				t.Fatalf("worker exit: %v, want 0", p.err)
			}
		})
	}
}

// A client that keeps using its keep-alive connection while the worker
// drains never sees it closed under a request: every POST is answered, the
// first one after the signal with "Connection: close". Shutdown alone closed
// the idle connection just as the next request was written on it.
func TestDrainAnswersKeepAliveRequests(t *testing.T) {
	p := startWorker(t)
	p.expect(t, "ready")
	conn, err := net.Dial("unix", p.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	const body = "message=hello"
	for i := 0; ; i++ {
		if i == 1 {
			// The connection is idle and kept alive: drain now.
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
		}
		if i > 100000 {
			t.Fatal("the drain never asked the client to close the connection")
		}
		req := "POST /hello HTTP/1.1\r\nHost: app\r\nContent-Type: text/plain\r\nContent-Length: " +
			strconv.Itoa(len(body)) + "\r\n\r\n" + body
		if _, err := io.WriteString(conn, req); err != nil {
			t.Fatalf("request %d: write: %v", i, err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d on a kept-alive connection during the drain: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "hello" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
		}
		if resp.Close {
			break
		}
	}
	if <-p.done; p.err != nil {
		t.Fatalf("worker exit: %v, want 0", p.err)
	}
}

// The master's "drain MS" line stops the worker with that budget, shorter
// than ONEBOX_GRACEFUL_TIMEOUT: what the supervisor's stop deadline left.
func TestDrainLineSetsTheBudget(t *testing.T) {
	tests := []struct {
		name   string
		signal bool // SIGTERM before the line, as the master's may overtake it
	}{
		{"line alone", false},
		{"signal first", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startWorker(t, "ONEBOX_GRACEFUL_TIMEOUT=20s")
			p.expect(t, "ready")
			go func() { _, _ = p.client().Get("http://app/slow?ms=20000") }()
			for len(strings.Fields(p.expect(t, "beat "))) != 6 {
			}
			start := time.Now()
			if tt.signal {
				if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := io.WriteString(p.ctl, "drain 300\n"); err != nil {
				t.Fatal(err)
			}
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
				t.Fatal("the drain ignored the master's 300ms budget")
			}
			if p.err == nil {
				t.Error("worker exited 0 after a drain cut short")
			}
			if took := time.Since(start); took < 300*time.Millisecond {
				t.Errorf("worker gave up after %s, before its 300ms budget", took)
			}
		})
	}
}

func TestDrainTimeoutFails(t *testing.T) {
	p := startWorker(t, "ONEBOX_GRACEFUL_TIMEOUT=100ms")
	p.expect(t, "ready")
	go func() { _, _ = p.client().Get("http://app/slow?ms=5000") }()
	for len(strings.Fields(p.expect(t, "beat "))) != 6 {
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err == nil {
			t.Fatal("worker exited 0 after a drain that timed out")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("drain not bounded by ONEBOX_GRACEFUL_TIMEOUT")
	}
}

func TestRetireAtMaxRequests(t *testing.T) {
	p := startWorker(t, "ONEBOX_MAX_REQUESTS=3")
	p.expect(t, "ready")
	c := p.client()
	for range 3 {
		get(t, c, "/hello")
	}
	if got := p.expect(t, "retire"); got != "retire 3" {
		t.Fatalf("got %q, want retire 3", got)
	}
	// It keeps serving until the master, with a replacement up, stops it.
	get(t, c, "/hello")
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if <-p.done; p.err != nil {
		t.Fatalf("worker exit: %v", p.err)
	}
}

// Run alone (no LISTEN_FDS, no heartbeat), the worker listens on PORT and
// at its limit drains and exits by itself.
func TestAloneOnPortRetiresItself(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=1", "PORT="+port, "ONEBOX_MAX_REQUESTS=2")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() { _ = cmd.Process.Kill() }()
	var resp *http.Response
	// No readiness signal exists without a heartbeat: retry the dial.
	for i := 0; ; i++ {
		resp, err = http.Get("http://127.0.0.1:" + port + "/hello")
		if err == nil || i == 200 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = http.Get("http://127.0.0.1:" + port + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v, want 0", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("worker did not retire after 2 requests")
	}
}

func TestForeignListenPIDRefused(t *testing.T) {
	p := startWorker(t, "LISTEN_PID=1")
	if <-p.done; p.err == nil {
		t.Fatal("worker served a socket whose LISTEN_PID names another process")
	}
}

func TestLimit(t *testing.T) {
	tests := []struct {
		name        string
		max, jitter int64
		draw        int64
		want        int64
	}{
		{"never", 0, 50, 7, 0},
		{"no jitter", 100, 0, 7, 100},
		{"jitter adds the draw", 100, 50, 7, 107},
		{"top of the range", 100, 50, 50, 150},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var asked int64 = -1
			got := worker.Limit(tt.max, tt.jitter, func(n int64) int64 { asked = n; return tt.draw })
			if got != tt.want {
				t.Errorf("Limit(%d, %d) = %d, want %d", tt.max, tt.jitter, got, tt.want)
			}
			if tt.max > 0 && tt.jitter > 0 && asked != tt.jitter+1 {
				t.Errorf("drew from [0, %d), want [0, %d]", asked, tt.jitter)
			}
		})
	}
}

func TestProcsFor(t *testing.T) {
	tests := []struct{ procs, workers, want int }{
		{2, 0, 0}, // not under a pool: leave it
		{2, 1, 0},
		{2, 2, 1},
		{2, 5, 1},
		{8, 3, 3},
		{8, 17, 1},
		{16, 4, 4},
	}
	for _, tt := range tests {
		if got := worker.ProcsFor(tt.procs, tt.workers); got != tt.want {
			t.Errorf("ProcsFor(%d, %d) = %d, want %d", tt.procs, tt.workers, got, tt.want)
		}
	}
}

func TestFromEnvRejectsBadValues(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"ONEBOX_TIMEOUT": "soon"}, "ONEBOX_TIMEOUT"},
		{map[string]string{"ONEBOX_GRACEFUL_TIMEOUT": "-1s"}, "ONEBOX_GRACEFUL_TIMEOUT"},
		{map[string]string{"ONEBOX_MAX_REQUESTS": "-5"}, "ONEBOX_MAX_REQUESTS"},
		{map[string]string{"ONEBOX_MAX_REQUESTS_JITTER": "x"}, "ONEBOX_MAX_REQUESTS_JITTER"},
		{map[string]string{"ONEBOX_HEARTBEAT_FD": "1"}, "ONEBOX_HEARTBEAT_FD"},
		{map[string]string{"LISTEN_FDS": "0"}, "LISTEN_FDS"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			_, err := worker.FromEnv(func(k string) string { return tt.env[k] })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one naming %s", err, tt.want)
			}
		})
	}
}
