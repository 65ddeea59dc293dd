package appserver

import (
	"errors"
	"sort"
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
	// MemoryBytes is the resident memory of the worker with its child
	// processes, read every second; absent before the first reading.
	MemoryBytes *int64      `json:"memory_bytes,omitempty"`
	State       WorkerState `json:"state"`
}

// snapWorker is a worker as the loop last saw it.
type snapWorker struct {
	w     *proc
	state WorkerState
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
		if n := sw.w.rss.Load(); n > 0 {
			st.MemoryBytes = &n
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
	counts := map[WorkerState]int{WorkerBooting: 0, WorkerReady: 0, WorkerRetiring: 0, WorkerDraining: 0, WorkerAborted: 0}
	var busyN, idleN, serving int
	for _, w := range m.workers {
		ws = append(ws, snapWorker{w, w.state})
		switch w.state {
		case WorkerReady, WorkerRetiring:
			serving++
		case WorkerBooting:
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
		m.met.workers.WithLabelValues(string(st)).Set(float64(n))
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
