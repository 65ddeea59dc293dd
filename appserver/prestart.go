package appserver

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"onebox/internal/process"
)

// PrestartError is a failed APP_PRESTART; the container exits with its code.
type PrestartError struct {
	Code   int
	Status string
}

func (e *PrestartError) Error() string { return "prestart command failed: " + e.Status }

// ExitCode is the prestart command's own exit code (at least 1).
func (e *PrestartError) ExitCode() int { return max(e.Code, 1) }

// endPrestart stops the prestart command: SIGTERM, SIGKILL after the drain
// budget, and a bounded wait for the reaper after that.
func (m *Master) endPrestart(pid int, exited <-chan process.Exit) {
	process.SignalGroup(pid, syscall.SIGTERM)
	grace := time.NewTimer(m.drainBudget(time.Now()))
	defer grace.Stop()
	select {
	case <-exited:
		return
	case <-grace.C:
	}
	process.SignalGroup(pid, syscall.SIGKILL)
	// SIGKILL cannot be refused; this bound only guards against a reaper
	// that has stopped.
	select {
	case <-exited:
	case <-time.After(2 * time.Second):
		m.log.Error().Int("pid", pid).Msg("prestart command not reaped 2s after SIGKILL; going on")
	}
}

// runPrestart runs APP_PRESTART once, logging its output as worker 0; a
// non-zero exit stops the pool (and the container) with its exit code.
func (m *Master) runPrestart(ctx context.Context) error {
	if m.deps.PrestartLock != nil {
		release, err := m.deps.PrestartLock(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil // stopped while waiting for the lock
			}
			return fmt.Errorf("prestart lock: %w", err)
		}
		defer release()
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("create prestart pipe: %w", err)
	}
	cmd := exec.Command(m.prestart[0], m.prestart[1:]...)
	cmd.Dir = m.cfg.Dir
	cmd.Stdout, cmd.Stderr = outW, outW
	start := time.Now()
	m.log.Info().Strs("command", m.prestart).Msg("running the prestart command")
	pid, exited, err := m.deps.Start(cmd)
	outW.Close()
	if err != nil {
		outR.Close()
		return &PrestartError{Code: 127, Status: err.Error()}
	}
	w := &proc{id: 0, pid: pid}
	t := newTail(20)
	read := make(chan struct{})
	go func() { m.out.read(w, "prestart", outR, t); close(read) }()
	var exit process.Exit
	deadline := time.NewTimer(m.cfg.PrestartTimeout)
	defer deadline.Stop()
	select {
	case exit = <-exited:
	case <-ctx.Done():
		m.endPrestart(pid, exited)
		return nil
	case <-deadline.C:
		m.log.Error().Dur("timeout", m.cfg.PrestartTimeout).Strs("output", t.lines()).
			Msg("prestart command did not finish within APP_PRESTART_TIMEOUT; stopping it")
		m.endPrestart(pid, exited)
		return &PrestartError{Code: 1, Status: "timed out after " + m.cfg.PrestartTimeout.String()}
	}
	select {
	case <-read:
	case <-time.After(500 * time.Millisecond):
	}
	if code := exit.Code(); code != 0 {
		m.log.Error().Stringer("status", exit).Strs("output", t.lines()).Msg("prestart command failed")
		return &PrestartError{Code: code, Status: exit.String()}
	}
	m.log.Info().Dur("took", time.Since(start).Round(time.Millisecond)).Msg("prestart command done")
	return nil
}
