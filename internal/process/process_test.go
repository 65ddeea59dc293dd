package process_test

import (
	"os/exec"
	"syscall"
	"testing"

	"onebox/internal/process"
)

// run starts a real shell and waits for it the ordinary way: these tests are
// not under a reaper.
func run(t *testing.T, script string, signal syscall.Signal) process.Exit {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if signal != 0 {
		process.SignalGroup(cmd.Process.Pid, signal)
	}
	_ = cmd.Wait()
	return process.Exit(cmd.ProcessState.Sys().(syscall.WaitStatus))
}

func TestExit(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		signal       syscall.Signal
		code         int
		text         string
	}{
		{"success", "exit 0", 0, 0, "exit 0"},
		{"failure", "exit 3", 0, 3, "exit 3"},
		// The group signal reaches the shell's child too, so the shell
		// cannot outlive it by waiting.
		{"signalled", "sleep 30", syscall.SIGTERM, 143, "killed by terminated"},
		{"killed", "sleep 30; exit 0", syscall.SIGKILL, 137, "killed by killed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := run(t, tc.script, tc.signal)
			if e.Code() != tc.code || e.String() != tc.text {
				t.Fatalf("got %d %q, want %d %q", e.Code(), e.String(), tc.code, tc.text)
			}
		})
	}
}

func TestSignalGroupIgnoresNonPositivePids(t *testing.T) {
	// kill(0) would signal this test's own group: it must not happen.
	process.SignalGroup(0, syscall.SIGTERM)
	process.SignalGroup(-1, syscall.SIGTERM)
}
