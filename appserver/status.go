package appserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"syscall"
	"time"
)

// Status is the pool's part of /status.
type Status struct {
	Command    string         `json:"command"`
	Bind       string         `json:"bind"`
	Ready      bool           `json:"ready"`
	Target     int            `json:"target"`
	Generation int            `json:"generation"`
	Reloading  bool           `json:"reloading"`
	Workers    []WorkerStatus `json:"workers"`
}

// WorkerStatus is one worker process. Requests and InFlight are known only
// for workers that report them on the heartbeat pipe (the Go side does).
type WorkerStatus struct {
	ID         int     `json:"id"`
	PID        int     `json:"pid"`
	Generation int     `json:"generation"`
	AgeSeconds float64 `json:"age_seconds"`
	Requests   *int64  `json:"requests,omitempty"`
	InFlight   *int64  `json:"in_flight,omitempty"`
	State      string  `json:"state"`
}

// snapWorker is a worker as the loop last saw it.
type snapWorker struct {
	w     *proc
	state string
}

// Status returns the pool's state: target, generation and every worker.
func (m *Master) Status() any {
	m.mu.Lock()
	s := m.snap
	ws := m.snapWorkers
	m.mu.Unlock()
	now := time.Now()
	s.Workers = make([]WorkerStatus, 0, len(ws))
	for _, sw := range ws {
		st := WorkerStatus{ID: sw.w.id, PID: sw.w.pid, Generation: sw.w.gen, State: sw.state,
			AgeSeconds: now.Sub(sw.w.started).Round(time.Millisecond).Seconds()}
		if n := sw.w.served.Load(); n >= 0 {
			st.Requests = &n
		}
		if n := sw.w.inflight.Load(); n >= 0 {
			st.InFlight = &n
		}
		s.Workers = append(s.Workers, st)
	}
	select {
	case <-m.ready:
		s.Ready = true
	default:
	}
	return s
}

// publish copies the loop's state for Status and the gauges.
func (m *Master) publish(now time.Time) {
	ws := make([]snapWorker, 0, len(m.workers))
	counts := map[string]int{stBooting: 0, stReady: 0, stRetiring: 0, stDraining: 0, stAborted: 0}
	var busyN, idleN, serving int
	for _, w := range m.workers {
		ws = append(ws, snapWorker{w, w.state})
		switch w.state {
		case stReady, stRetiring:
			serving++
		case stBooting:
			if w.probed {
				serving++
			}
		}
		counts[w.state]++
		switch n := w.inflight.Load(); {
		case n > 0:
			busyN++
		case n == 0:
			idleN++
		}
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].w.id < ws[j].w.id })
	for st, n := range counts {
		m.met.workers.WithLabelValues(st).Set(float64(n))
	}
	m.met.busy.Set(float64(busyN))
	m.met.idle.Set(float64(idleN))
	m.mu.Lock()
	m.snap.Target = m.target
	m.snap.Generation = m.gen
	m.snap.Reloading = m.reload != nil
	m.snapWorkers = ws
	m.serving = serving
	m.published = true
	m.mu.Unlock()
}

// Check reports whether the pool serves now (the supervisor's /readyz asks
// it): nil iff at least one worker has booted (or answered the start-up
// probe) and is not draining. Ready closes once; Check turns red again when
// every worker is dead, crash-looping or draining.
func (m *Master) Check() error {
	m.mu.Lock()
	n, published, halted := m.serving, m.published, m.halted
	m.mu.Unlock()
	switch {
	case !published:
		return errors.New("worker pool not started")
	case halted:
		return errors.New("worker pool halted")
	case n == 0:
		return errors.New("no worker is serving: all are booting, crashed or draining")
	}
	return nil
}

// endPrestart stops the prestart command: SIGTERM, SIGKILL after the drain
// budget, and a bounded wait for the reaper after that.
func (m *Master) endPrestart(pid int, exited <-chan syscall.WaitStatus) {
	signalGroup(pid, syscall.SIGTERM)
	grace := time.NewTimer(m.drainBudget(time.Now()))
	defer grace.Stop()
	select {
	case <-exited:
		return
	case <-grace.C:
	}
	signalGroup(pid, syscall.SIGKILL)
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
	var ws syscall.WaitStatus
	deadline := time.NewTimer(m.cfg.PrestartTimeout)
	defer deadline.Stop()
	select {
	case ws = <-exited:
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
	status, code := exitStatus(ws)
	if code != 0 {
		m.log.Error().Str("status", status).Strs("output", t.lines()).Msg("prestart command failed")
		return &PrestartError{Code: code, Status: status}
	}
	m.log.Info().Dur("took", time.Since(start).Round(time.Millisecond)).Msg("prestart command done")
	return nil
}
