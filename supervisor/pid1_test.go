package supervisor_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/rs/zerolog"

	"onebox/internal/proctest"
	"onebox/supervisor"
)

// The PID-1 tests re-execute this test binary as PID 1 of a fresh pid
// namespace (unshare --pid --fork --mount-proc; the test machines run tests as
// root). TestMain turns the re-executed binary into a small box: a supervisor
// running a "spawner" component whose child is the shell command in
// TEST_CHILD, and, with TEST_FAIL set, a component that fails once ready.
func TestMain(m *testing.M) {
	if os.Getenv("TEST_ROLE") == "pid1" {
		os.Exit(pid1Main())
	}
	os.Exit(m.Run())
}

func pid1Main() int {
	var cfg supervisor.Config
	if err := env.ParseWithOptions(&cfg, env.Options{Prefix: "ONEBOX_"}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 78
	}
	log := zerolog.New(os.Stdout).With().Timestamp().Logger()
	sup := supervisor.New(cfg, log, nil)
	sup.Add("spawner", &spawner{reaper: sup.Reaper(), command: os.Getenv("TEST_CHILD"), log: log})
	if os.Getenv("TEST_FAIL") != "" {
		sup.Add("failer", failer{})
	}
	if err := sup.Run(context.Background()); err != nil {
		log.Error().Err(err).Msg("exit")
		return 1
	}
	return 0
}

// spawner starts one shell command through the reaper and, when stopped,
// sends TERM to its process group and waits for it to be reaped.
type spawner struct {
	reaper  *supervisor.Reaper
	command string
	log     zerolog.Logger
}

func (s *spawner) Run(ctx context.Context) error {
	pid, exited, err := s.reaper.Start(exec.Command("/bin/sh", "-c", s.command))
	if err != nil {
		return err
	}
	s.log.Info().Int("child", pid).Msg("child started")
	for {
		select {
		case ws := <-exited:
			// The child may exit (an orphan maker does); that is not a failure here.
			s.log.Info().Int("child", pid).Int("code", ws.Code()).Msg("child exited")
			exited = nil
		case <-ctx.Done():
			if exited == nil {
				return nil
			}
			_ = syscall.Kill(-pid, syscall.SIGTERM)
			<-exited
			return nil
		}
	}
}

// failer is ready at once and fails shortly after.
type failer struct{}

func (failer) Run(ctx context.Context) error {
	select {
	case <-time.After(100 * time.Millisecond):
		return errors.New("disk on fire")
	case <-ctx.Done():
		return nil
	}
}

// box is a re-executed test binary running as PID 1 of its own namespace.
type box struct {
	t      *testing.T
	cmd    *exec.Cmd
	pid1   int // the inner PID 1, as seen from outside the namespace
	admin  string
	lines  chan map[string]any
	done   chan struct{}
	status error
}

func startBox(t *testing.T, child string, extraEnv ...string) *box {
	t.Helper()
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatalf("unshare (util-linux) is needed for the PID-1 tests: %v", err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "--pid", "--fork", "--mount-proc", self)
	cmd.Env = append(os.Environ(), "TEST_ROLE=pid1", "TEST_CHILD="+child, "ONEBOX_ADMIN_LISTEN=127.0.0.1:0")
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start unshare: %v", err)
	}
	b := &box{t: t, cmd: cmd, lines: make(chan map[string]any, 1024), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				b.lines <- m
			}
		}
		close(b.lines)
		b.status = cmd.Wait()
		close(b.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if b.pid1 > 0 {
			_ = syscall.Kill(b.pid1, syscall.SIGKILL)
		}
		<-b.done
	})
	b.pid1 = b.innerPid1()
	b.admin = b.waitFor("admin endpoint")["listen"].(string)
	return b
}

// innerPid1 finds unshare's forked child: PID 1 inside, this pid outside.
func (b *box) innerPid1() int {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if pid := proctest.FirstChild(b.cmd.Process.Pid); pid > 0 {
			return pid
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.t.Fatal("unshare did not fork PID 1")
	return 0
}

// waitFor reads log lines until one has message msg.
func (b *box) waitFor(msg string) map[string]any {
	b.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case m, ok := <-b.lines:
			if !ok {
				b.t.Fatalf("box exited before logging %q", msg)
			}
			if m["message"] == msg {
				return m
			}
		case <-timeout:
			b.t.Fatalf("no log line %q within 30s", msg)
		}
	}
}

// wait returns the box's exit code once it has exited.
func (b *box) wait(within time.Duration) int {
	b.t.Helper()
	go func() {
		for range b.lines { // drain so the box never blocks on stdout
		}
	}()
	select {
	case <-b.done:
	case <-time.After(within):
		b.t.Fatalf("box still running after %s", within)
	}
	var ee *exec.ExitError
	if errors.As(b.status, &ee) {
		return ee.ExitCode()
	}
	return 0
}

func (b *box) signal(sig syscall.Signal) {
	if err := syscall.Kill(b.pid1, sig); err != nil {
		b.t.Fatalf("signal PID 1: %v", err)
	}
}

func (b *box) getStatus() supervisor.Status {
	b.t.Helper()
	resp, err := http.Get("http://" + b.admin + "/status")
	if err != nil {
		b.t.Fatalf("GET /status: %v", err)
	}
	defer resp.Body.Close()
	var st supervisor.Status
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &st); err != nil {
		b.t.Fatalf("decode /status %q: %v", body, err)
	}
	return st
}

func TestPID1ReapsOrphansAndStopsCleanly(t *testing.T) {
	// The shell starts 200 sleeps in the background and exits: they are
	// re-parented to PID 1, which must reap every one of them.
	b := startBox(t, proctest.Orphans200)
	b.waitFor("onebox is ready")
	proctest.KillOrphans(t, b.pid1, 200, "sleep", func() int { return b.getStatus().Orphans })
	start := time.Now()
	b.signal(syscall.SIGTERM)
	if code := b.wait(5 * time.Second); code != 0 {
		t.Fatalf("exit code %d after TERM, want 0", code)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("clean stop took %s, want well inside the 9s budget", took)
	}
}

func TestPID1TermStopsChildGracefully(t *testing.T) {
	b := startBox(t, `exec sleep 1000`)
	b.waitFor("onebox is ready")
	b.signal(syscall.SIGTERM)
	if code := b.wait(5 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
}

// ignoreTerm is a child that ignores TERM; it touches $TEST_ARMED once the
// trap is set, so the test never signals it before it can ignore the signal.
const ignoreTerm = `trap "" TERM; touch "$TEST_ARMED"; while :; do sleep 0.05; done`

// armed waits for the child's readiness file.
func armed(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the child never set its TERM trap")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPID1KillsChildThatIgnoresTermAtBudget(t *testing.T) {
	ready := filepath.Join(t.TempDir(), "armed")
	b := startBox(t, ignoreTerm, "ONEBOX_SHUTDOWN_TIMEOUT=1500ms", "TEST_ARMED="+ready)
	b.waitFor("onebox is ready")
	armed(t, ready)
	start := time.Now()
	b.signal(syscall.SIGTERM)
	// onebox itself kills the child at the budget (not the kernel tearing
	// down the namespace when PID 1 exits): it says so before exiting.
	killed := b.waitFor("killed processes still running at the end of the stop")
	if killed["processes"] != float64(1) {
		t.Errorf("killed %v processes at the budget, want the 1 child", killed["processes"])
	}
	code := b.wait(10 * time.Second)
	took := time.Since(start)
	if code == 0 {
		t.Errorf("exit code 0 after the budget ran out, want non-zero")
	}
	if took < 1500*time.Millisecond {
		t.Errorf("stopped after %s, before the 1.5s budget: the child was not given its time", took)
	}
	if took > 5*time.Second {
		t.Errorf("stopped after %s, want soon after the 1.5s budget", took)
	}
}

func TestPID1SecondTermCutsBudgetShort(t *testing.T) {
	ready := filepath.Join(t.TempDir(), "armed")
	b := startBox(t, ignoreTerm, "ONEBOX_SHUTDOWN_TIMEOUT=60s", "TEST_ARMED="+ready)
	b.waitFor("onebox is ready")
	armed(t, ready)
	start := time.Now()
	b.signal(syscall.SIGTERM)
	b.waitFor("graceful stop")
	b.signal(syscall.SIGTERM)
	code := b.wait(10 * time.Second)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("second TERM: stopped after %s, want at once, not after the 60s budget", took)
	}
	if code == 0 {
		t.Errorf("exit code 0 after a cut-short stop, want non-zero")
	}
}

func TestPID1FailingComponentStopsTheBox(t *testing.T) {
	b := startBox(t, `exec sleep 1000`, "TEST_FAIL=1")
	line := b.waitFor("component failed; stopping")
	if line["part"] != "failer" {
		t.Errorf("failure log names %v, want failer", line["part"])
	}
	if code := b.wait(10 * time.Second); code == 0 {
		t.Fatalf("exit code 0 after a component failed, want non-zero")
	}
}
