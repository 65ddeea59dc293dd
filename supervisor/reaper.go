package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"onebox/internal/process"
)

// Reaper is the one waiter for child processes. Exactly one goroutine (Run)
// calls wait4(-1); whoever starts a process through Start receives its exit
// status on a channel. Nobody may call exec.Cmd.Wait or os.Process.Wait: a
// second waiter steals statuses (the classic Go PID-1 bug, see siderolabs/talos
// PR #1110), so the only way to learn of an exit is the channel.
type Reaper struct {
	log zerolog.Logger

	// mu is held across fork+register and across each reap pass, so a child
	// that exits at once can never be reaped before its pid is registered:
	// there is no "status of a pid not yet registered" to keep. Any status
	// Reap finds without a waiter is an orphan's (re-parented to us), which
	// nobody will ever ask for. TestReaperLosesNoStatusUnderConcurrency holds
	// this with children that exit immediately.
	mu      sync.Mutex
	waiters map[int]chan process.Exit
	orphans int // reaped processes nobody registered (re-parented to us)
}

// NewReaper returns a reaper; call Run to start reaping.
func NewReaper(log zerolog.Logger) *Reaper {
	return &Reaper{log: log, waiters: make(map[int]chan process.Exit)}
}

// Start starts cmd in its own process group and registers it. The channel
// receives the process's exit status once, when it has exited and been
// reaped. cmd.Stdin, Stdout and Stderr must be nil or *os.File: other values
// make os/exec copy in goroutines that only Wait would collect.
func (r *Reaper) Start(cmd *exec.Cmd) (pid int, exited <-chan process.Exit, err error) {
	for _, f := range []any{cmd.Stdin, cmd.Stdout, cmd.Stderr} {
		switch f.(type) {
		case nil, *os.File:
		default:
			return 0, nil, fmt.Errorf("start %q: stdio must be *os.File or nil, got %T", cmd.Path, f)
		}
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// Its own group, so a group signal reaches a worker's children too and a
	// terminal's Ctrl-C reaches only us.
	cmd.SysProcAttr.Setpgid = true
	if cmd.SysProcAttr.Pdeathsig == 0 {
		// When onebox is not PID 1 (tests, a host run) and dies, take the
		// children with it rather than leaving them holding the app socket.
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return 0, nil, fmt.Errorf("start %q: %w", cmd.Path, err)
	}
	pid = cmd.Process.Pid
	// Release drops os.Process's pidfd; the reaper, not os.Process, waits.
	_ = cmd.Process.Release()
	ch := make(chan process.Exit, 1)
	r.waiters[pid] = ch
	return pid, ch, nil
}

// Run reaps on every SIGCHLD (and once a second, should one be coalesced
// away) until ctx is done. It sets PR_SET_CHILD_SUBREAPER when not PID 1, so
// orphans come to us either way.
func (r *Reaper) Run(ctx context.Context) error {
	if os.Getpid() != 1 {
		if err := setSubreaper(); err != nil {
			r.log.Warn().Err(err).Msg("cannot become a child subreaper; orphans of children will not be reaped here")
		}
	}
	sigchld := make(chan os.Signal, 1)
	signal.Notify(sigchld, syscall.SIGCHLD)
	defer signal.Stop(sigchld)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		r.Reap()
		select {
		case <-sigchld:
		case <-tick.C:
		case <-ctx.Done():
			r.Reap()
			return nil
		}
	}
}

// Reap collects every exited child without blocking and hands each status to
// whoever registered the pid. Unknown pids are orphans: reaped, logged at debug.
func (r *Reaper) Reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws syscall.WaitStatus
		var ru syscall.Rusage
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, &ru)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if pid <= 0 || err != nil {
			return // 0: children remain but none exited; ECHILD: no children
		}
		ch, ok := r.waiters[pid]
		if !ok {
			r.orphans++
			r.log.Debug().Int("pid", pid).Stringer("status", process.Exit(ws)).Msg("reaped orphan")
			continue
		}
		delete(r.waiters, pid)
		ch <- process.Exit(ws)
	}
}

// Running returns the pids started through Start that have not been reaped.
func (r *Reaper) Running() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	pids := make([]int, 0, len(r.waiters))
	for pid := range r.waiters {
		pids = append(pids, pid)
	}
	return pids
}

// Orphans returns how many re-parented processes have been reaped.
func (r *Reaper) Orphans() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.orphans
}

// KillAll sends sig to the process group of every running child and returns
// how many it signalled.
func (r *Reaper) KillAll(sig syscall.Signal) int {
	pids := r.Running()
	for _, pid := range pids {
		process.SignalGroup(pid, sig)
	}
	return len(pids)
}

func setSubreaper() error {
	const prSetChildSubreaper = 36
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		return fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", errno)
	}
	return nil
}

func pid() int { return os.Getpid() }
