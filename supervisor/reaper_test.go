package supervisor_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"onebox/supervisor"
)

func runReaper(t *testing.T) *supervisor.Reaper {
	t.Helper()
	r := supervisor.NewReaper(zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

// The exit-status matrix, as dumb-init tests it: every code arrives intact,
// and a signal death reads as 128+N the way a shell reports it.
func TestReaperDeliversExitStatus(t *testing.T) {
	r := runReaper(t)
	for _, tc := range []struct {
		script string
		want   int
	}{
		{"exit 0", 0}, {"exit 1", 1}, {"exit 2", 2}, {"exit 32", 32}, {"exit 64", 64},
		{"exit 127", 127}, {"exit 254", 254}, {"exit 255", 255},
		{"kill -TERM $$", 128 + 15}, {"kill -KILL $$", 128 + 9},
	} {
		_, exited, err := r.Start(exec.Command("/bin/sh", "-c", tc.script))
		if err != nil {
			t.Fatal(err)
		}
		select {
		case ws := <-exited:
			if got := ws.Code(); got != tc.want {
				t.Errorf("%q: exit code %d, want %d", tc.script, got, tc.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%q: no exit status within 10s", tc.script)
		}
	}
}

// Many children exiting at once, some instantly: each status reaches its own
// starter, none is lost to a race between fork and registration.
func TestReaperLosesNoStatusUnderConcurrency(t *testing.T) {
	r := runReaper(t)
	const n = 50
	type result struct{ want, got int }
	results := make(chan result, n)
	for i := range n {
		go func() {
			_, exited, err := r.Start(exec.Command("/bin/sh", "-c", fmt.Sprintf("exit %d", i)))
			if err != nil {
				results <- result{i, -1}
				return
			}
			results <- result{i, (<-exited).Code()}
		}()
	}
	timeout := time.After(20 * time.Second)
	for range n {
		select {
		case res := <-results:
			if res.got != res.want {
				t.Errorf("child exiting %d reported %d", res.want, res.got)
			}
		case <-timeout:
			t.Fatal("not every status arrived within 20s")
		}
	}
}

func TestReaperRefusesNonFileStdio(t *testing.T) {
	r := supervisor.NewReaper(zerolog.Nop())
	cmd := exec.Command("/bin/true")
	cmd.Stdout = new(discard)
	if _, _, err := r.Start(cmd); err == nil {
		t.Fatal("Start accepted a non-file stdout, whose copier only Wait would collect")
	}
}

type discard struct{}

func (*discard) Write(p []byte) (int, error) { return len(p), nil }

func TestKillAllSignalsProcessGroups(t *testing.T) {
	r := runReaper(t)
	pidFile := filepath.Join(t.TempDir(), "grandchild")
	_, exited, err := r.Start(exec.Command("/bin/sh", "-c", `sleep 100 & echo $! > "$0.tmp" && mv "$0.tmp" "$0"; wait`, pidFile))
	if err != nil {
		t.Fatal(err)
	}
	var grandchild int
	deadline := time.Now().Add(10 * time.Second)
	for grandchild == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the shell never wrote its child's pid")
		}
		time.Sleep(5 * time.Millisecond) // polling for the shell's readiness file
		if raw, err := os.ReadFile(pidFile); err == nil {
			grandchild, _ = strconv.Atoi(strings.TrimSpace(string(raw)))
		}
	}
	if n := r.KillAll(syscall.SIGKILL); n != 1 {
		t.Fatalf("KillAll signalled %d, want 1", n)
	}
	select {
	case ws := <-exited:
		if ws.String() != "killed by killed" || ws.Code() != 128+int(syscall.SIGKILL) {
			t.Fatalf("status %v (code %d), want killed by SIGKILL", ws, ws.Code())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not reaped after KILL")
	}
	// The grandchild got the group's KILL too: it dies, is re-parented to
	// this process (a subreaper while the reaper runs) and reaped. Killing
	// only the shell would leave it sleeping for 100s.
	deadline = time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", grandchild)); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d still exists 10s after the group KILL", grandchild)
		}
		time.Sleep(5 * time.Millisecond) // polling /proc, an observable state
	}
}
