package main

import (
	"bufio"
	"encoding/json"
	"errors"
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
)

// box is a running onebox binary whose JSON log lines can be waited for.
type box struct {
	cmd   *exec.Cmd
	admin string
	done  chan error

	mu    sync.Mutex
	logs  []string
	waits map[string]chan struct{}
}

// startBox runs the real binary with env added to a static-only box (no
// pool) and waits until it is ready.
func startBox(t *testing.T, env ...string) (b *box, listen string) {
	t.Helper()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "index.html"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	listen = freePort(t)
	b = &box{admin: freePort(t), done: make(chan error, 1), waits: map[string]chan struct{}{}}
	b.cmd = exec.Command(onebox(t))
	b.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "PROXY_LISTEN=" + listen, "ONEBOX_ADMIN_LISTEN=" + b.admin,
		"PROXY_ROOT=" + root, "PROXY_ACCESS_LOG=off"}, env...)
	stdout, _ := b.cmd.StdoutPipe()
	b.cmd.Stderr = os.Stderr
	ready := b.when("onebox is ready")
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var m struct{ Message string }
			_ = json.Unmarshal(sc.Bytes(), &m)
			b.mu.Lock()
			b.logs = append(b.logs, sc.Text())
			if c, ok := b.waits[m.Message]; ok {
				close(c)
				delete(b.waits, m.Message)
			}
			b.mu.Unlock()
		}
		b.done <- b.cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = b.cmd.Process.Kill()
		if t.Failed() {
			b.mu.Lock()
			t.Logf("onebox log:\n%s", strings.Join(b.logs, "\n"))
			b.mu.Unlock()
		}
	})
	b.await(t, ready, "ready")
	return b, listen
}

// when returns a channel closed when a log line with this message appears.
func (b *box) when(msg string) chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := make(chan struct{})
	b.waits[msg] = c
	return c
}

func (b *box) await(t *testing.T, c chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case err := <-b.done:
		t.Fatalf("onebox exited before %s: %v", what, err)
	case <-time.After(30 * time.Second):
		t.Fatalf("not %s within 30s", what)
	}
}

// exit waits for the process to end and returns its error (nil = exit 0).
func (b *box) exit(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case err := <-b.done:
		return err
	case <-time.After(within):
		t.Fatalf("still running %s after TERM", within)
		return nil
	}
}

// healthCode runs `onebox health` against the box and returns its exit code.
func (b *box) healthCode(t *testing.T) int {
	t.Helper()
	c := exec.Command(onebox(t), "health")
	c.Env = []string{"ONEBOX_ADMIN_LISTEN=" + b.admin}
	err := c.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("onebox health: %v", err)
	}
	return 0
}

// roundTrip sends one request on c and reads the answer.
func roundTrip(t *testing.T, c net.Conn, br *bufio.Reader, req string) *http.Response {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestBinaryLameDuck: with ONEBOX_SHUTDOWN_DELAY, a TERM makes readiness
// fail at once while the proxy keeps serving, kept-alive and new connections
// alike, each answer closing its connection; the box exits 0 once the delay
// and the drain are over.
func TestBinaryLameDuck(t *testing.T) {
	const delay = 1500 * time.Millisecond
	b, listen := startBox(t, "ONEBOX_SHUTDOWN_DELAY="+delay.String())
	if code := b.healthCode(t); code != 0 {
		t.Fatalf("onebox health before the stop = %d, want 0", code)
	}
	kept, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	br := bufio.NewReader(kept)
	if resp := roundTrip(t, kept, br, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 200 || resp.Close {
		t.Fatalf("before the stop: %d close=%v, want 200 kept alive", resp.StatusCode, resp.Close)
	}

	ducking := b.when("lame duck: not ready, still serving until the delay ends")
	start := time.Now()
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	b.await(t, ducking, "in the lame duck")
	if code := b.healthCode(t); code != 1 {
		t.Errorf("onebox health in the lame duck = %d, want 1 (not ready)", code)
	}
	if resp := roundTrip(t, kept, br, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"); resp.StatusCode == 0 || !resp.Close {
		t.Errorf("kept-alive connection in the lame duck: %d close=%v, want an answer with Connection: close", resp.StatusCode, resp.Close)
	}
	fresh, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatalf("a new connection in the lame duck was refused: %v", err)
	}
	defer fresh.Close()
	if resp := roundTrip(t, fresh, bufio.NewReader(fresh), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 200 || !resp.Close {
		t.Errorf("new connection in the lame duck: %d close=%v, want 200 with Connection: close", resp.StatusCode, resp.Close)
	}
	if err := b.exit(t, 15*time.Second); err != nil {
		t.Fatalf("exit after TERM: %v, want 0", err)
	}
	if took := time.Since(start); took < delay {
		t.Errorf("TERM to exit took %s, want at least the %s delay", took, delay)
	}
}

// TestBinaryLameDuckSecondTERM: a second TERM ends the delay; the drain
// follows and the exit is still clean.
func TestBinaryLameDuckSecondTERM(t *testing.T) {
	b, _ := startBox(t, "ONEBOX_SHUTDOWN_DELAY=10m")
	ducking := b.when("lame duck: not ready, still serving until the delay ends")
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	b.await(t, ducking, "in the lame duck")
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := b.exit(t, 15*time.Second); err != nil {
		t.Fatalf("exit after a second TERM: %v, want 0", err)
	}
}
