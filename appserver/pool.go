package appserver

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"onebox/appserver/worker"
	"onebox/internal/process"
)

// WorkerState is where a worker process stands; /status and the
// onebox_app_workers gauge show it.
type WorkerState string

// A worker goes booting → ready (→ retiring) → draining, or is aborted when
// its heartbeat stops.
const (
	WorkerBooting  WorkerState = "booting"  // started, not yet known to accept
	WorkerReady    WorkerState = "ready"    // serving
	WorkerRetiring WorkerState = "retiring" // asked to retire (max-requests); serves until its replacement is up
	WorkerDraining WorkerState = "draining" // sent SIGTERM, finishing its requests
	WorkerAborted  WorkerState = "aborted"  // timed out: sent SIGABRT, SIGKILL follows
)

// proc is one worker process of the pool. Fields without atomics are owned by
// the loop; the atomics are written by the worker's heartbeat reader.
type proc struct {
	id, pid, gen int
	started      time.Time
	state        WorkerState
	booted       bool
	probed       bool      // booting when the socket first answered: it may be the one accepting
	stopReason   string    // why it was sent SIGTERM
	killAt       time.Time // drain deadline, or SIGABRT + grace
	killed       bool
	tail         *tail
	outDone      chan struct{} // closed when stdout and stderr reached EOF
	ctl          *os.File      // write end of the control pipe (fd 5 in the worker)

	lastBeat atomic.Int64 // unix nanoseconds of the last line on fd 4 after hello; 0 = never, or fd 4 closed
	beat     atomic.Bool  // it ever wrote on fd 4
	hello    atomic.Bool  // its first line was "hello": it boots on "ready", within APP_BOOT_TIMEOUT
	sync     atomic.Bool  // it said "hello sync": a request older than APP_TIMEOUT is a hang
	rss      atomic.Int64 // resident bytes (with its children) at the last sample; 0 = not sampled
	served   atomic.Int64 // requests served, -1 = not reported
	inflight atomic.Int64 // requests in flight, -1 = not reported
	busy     atomic.Pointer[busy]
}

// busy is the oldest request in flight, as last reported.
type busy struct {
	at     time.Time // when reported
	age    time.Duration
	method string
	uri    string
}

type evKind int

const (
	evBeat   evKind = iota // the worker booted: "ready" after "hello", else its first line on fd 4
	evRetire               // the worker reached its max-requests limit
	evProbe                // something answered on the socket
)

type event struct {
	kind evKind
	w    *proc
}

type exitEvent struct {
	w    *proc
	exit process.Exit
}

type reloadOp struct {
	gen     int
	oldGen  int
	started time.Time
	waiters []chan error
}

// spawnBurst is the most workers one pass of the loop starts.
const spawnBurst = 8

// spawn starts one worker of generation gen.
func (m *Master) spawn(gen int) (*proc, error) {
	m.nextID++
	w := &proc{id: m.nextID, gen: gen, started: time.Now(), state: WorkerBooting, tail: newTail(20), outDone: make(chan struct{})}
	w.served.Store(-1)
	w.inflight.Store(-1)

	p, err := openPipes()
	if err != nil {
		return nil, err
	}
	cmd := m.workerCommand(w)
	cmd.ExtraFiles = []*os.File{m.lf, p.hbW, p.ctlR} // fd 3, 4, 5
	cmd.Stdout, cmd.Stderr = p.outW, p.errW
	pid, exited, err := m.deps.Start(cmd)
	p.closeChildEnds()
	if err != nil {
		p.closeOurEnds()
		return nil, err
	}
	w.pid = pid
	w.ctl = p.ctlW
	m.workers[pid] = w
	m.met.spawns.Inc()
	m.log.Debug().Int("worker", w.id).Int("pid", pid).Int("generation", gen).Msg("worker started")
	m.watch(w, p, exited)
	return w, nil
}

// workerCommand is the command of worker w, with the protocol's variables.
func (m *Master) workerCommand(w *proc) *exec.Cmd {
	argv := append(append([]string{}, m.deps.Shim...), m.argv...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = m.cfg.Dir
	env := cmd.Environ()
	if len(m.deps.Shim) == 0 {
		// Without the shim nobody can set the right LISTEN_PID; an
		// inherited one would name another process.
		env = dropEnv(env, worker.EnvListenPID)
	}
	cmd.Env = append(env,
		worker.EnvListenFDs+"=1",
		worker.EnvListenFDNames+"=app",
		worker.EnvWorkerID+"="+strconv.Itoa(w.id),
		worker.EnvHeartbeatFD+"="+strconv.Itoa(worker.HeartbeatFD),
		worker.EnvControlFD+"="+strconv.Itoa(worker.ControlFD),
		worker.EnvTimeout+"="+m.cfg.Timeout.String(),
		// The budget as of its start; should a stop deadline cut it
		// shorter, the "drain MS" line on the control pipe says so (see
		// stop), and SIGKILL enforces it on a worker that does not read it.
		worker.EnvGracefulTimeout+"="+max(m.drainBudget(time.Now()), time.Millisecond).String(),
		worker.EnvMaxRequests+"="+strconv.Itoa(m.cfg.MaxRequests),
		worker.EnvMaxJitter+"="+strconv.Itoa(m.cfg.MaxRequestsJitter),
		worker.EnvWorkers+"="+strconv.Itoa(m.target),
		worker.EnvThreads+"="+strconv.Itoa(max(m.cfg.Threads, 1)),
	)
	return cmd
}

// watch follows a started worker: its heartbeat, its output and its exit,
// each read off the loop.
func (m *Master) watch(w *proc, p *workerPipes, exited <-chan process.Exit) {
	go m.readHeartbeat(w, p.hbR)
	go func() {
		defer close(w.outDone)
		done := make(chan struct{})
		go func() { m.out.read(w, "stdout", p.outR, nil); close(done) }()
		m.out.read(w, "stderr", p.errR, w.tail)
		<-done
	}()
	go func() {
		exit := <-exited
		select {
		case m.exits <- exitEvent{w, exit}:
		case <-m.done:
		}
	}()
}

// workerPipes are the pipes a worker starts with: heartbeat (its fd 4),
// stdout, stderr and control (its fd 5). The child gets one end of each, the
// master keeps the other.
type workerPipes struct {
	hbR, hbW, outR, outW, errR, errW, ctlR, ctlW *os.File
}

func openPipes() (*workerPipes, error) {
	var fs []*os.File
	for _, name := range []string{"heartbeat", "stdout", "stderr", "control"} {
		r, w, err := os.Pipe()
		if err != nil {
			closeFiles(fs...)
			return nil, fmt.Errorf("create %s pipe: %w", name, err)
		}
		fs = append(fs, r, w)
	}
	return &workerPipes{hbR: fs[0], hbW: fs[1], outR: fs[2], outW: fs[3], errR: fs[4], errW: fs[5], ctlR: fs[6], ctlW: fs[7]}, nil
}

// closeChildEnds closes the child's ends once it started (or failed to):
// it holds its own copies, and ours would keep the pipes open past its exit.
func (p *workerPipes) closeChildEnds() { closeFiles(p.hbW, p.outW, p.errW, p.ctlR) }

// closeOurEnds closes the master's ends when the worker did not start.
func (p *workerPipes) closeOurEnds() { closeFiles(p.hbR, p.outR, p.errR, p.ctlW) }

func closeFiles(fs ...*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

func dropEnv(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// readHeartbeat reads fd 4 until the worker exits. A worker that says
// "hello" first speaks the protocol and boots on "ready"; for any other, the
// first line boots it. After that every line is a sign of life, and the
// protocol's lines also report requests (see worker/protocol.go).
func (m *Master) readHeartbeat(w *proc, f *os.File) {
	defer f.Close()
	// EOF while the worker lives means it closed fd 4 (some servers close
	// inherited descriptors): from then on it is judged by liveness alone.
	defer func() {
		w.lastBeat.Store(0)
		w.busy.Store(nil)
	}()
	r := bufio.NewReaderSize(f, 1024)
	first, booted := true, false
	for {
		line, err := r.ReadSlice('\n')
		if len(line) > 0 {
			var fields []string
			if err == nil { // a whole line (a truncated one is just life)
				fields = strings.Fields(string(line))
			}
			booted = m.heard(w, fields, first, booted, time.Now())
			first = false
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// heard acts on one line from fd 4 and reports whether the worker has
// booted by now.
func (m *Master) heard(w *proc, fields []string, first, booted bool, now time.Time) bool {
	if first && len(fields) > 0 && fields[0] == worker.MsgHello {
		// Not a heartbeat yet: the app may load for longer than
		// APP_TIMEOUT; APP_BOOT_TIMEOUT bounds the wait for "ready".
		w.hello.Store(true)
		w.beat.Store(true)
		for _, flag := range fields[1:] {
			if flag == worker.HelloSync {
				w.sync.Store(true)
			}
		}
		return false
	}
	w.lastBeat.Store(now.UnixNano())
	if !booted && (!w.hello.Load() || (len(fields) > 0 && fields[0] == worker.MsgReady)) {
		booted = true
		w.beat.Store(true)
		m.send(event{kind: evBeat, w: w})
	}
	m.parseBeat(w, fields, now)
	return booted
}

func (m *Master) send(ev event) {
	select {
	case m.events <- ev:
	case <-m.done:
	}
}

func (m *Master) parseBeat(w *proc, f []string, now time.Time) {
	if len(f) == 0 {
		return
	}
	switch f[0] {
	case worker.MsgBeat:
		if len(f) < 3 {
			return
		}
		if n, err := strconv.ParseInt(f[1], 10, 64); err == nil {
			w.served.Store(n)
		}
		if n, err := strconv.ParseInt(f[2], 10, 64); err == nil {
			w.inflight.Store(n)
		}
		if len(f) >= 6 {
			ms, _ := strconv.ParseInt(f[3], 10, 64)
			w.busy.Store(&busy{at: now, age: time.Duration(ms) * time.Millisecond, method: f[4], uri: f[5]})
		} else {
			w.busy.Store(nil)
		}
	case worker.MsgRetire:
		if len(f) >= 2 {
			if n, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				w.served.Store(n)
			}
		}
		m.send(event{kind: evRetire, w: w})
	}
}

func (m *Master) onEvent(ev event) {
	switch ev.kind {
	case evProbe:
		// Workers that never heartbeat boot only after the boot window,
		// but something of this generation accepts already.
		for _, w := range m.workers {
			if w.gen == m.gen && w.state == WorkerBooting {
				w.probed = true
			}
		}
		m.markReady()
	case evBeat:
		if _, ok := m.workers[ev.w.pid]; !ok {
			return
		}
		m.boot(ev.w)
		m.markReady()
	case evRetire:
		w := ev.w
		if _, ok := m.workers[w.pid]; !ok || (w.state != WorkerReady && w.state != WorkerBooting) {
			return
		}
		m.boot(w)
		w.state = WorkerRetiring
		m.met.recycles.Inc()
		m.log.Info().Int("worker", w.id).Int("pid", w.pid).Int64("requests", w.served.Load()).
			Msg("worker reached APP_MAX_REQUESTS; starting its replacement first")
	}
}

// bootWindowEnded judges a worker still booting after APP_BOOT_TIMEOUT:
// one silent on fd 4 counts as booted, as it lives; one that said "hello"
// but not "ready" failed to boot, and is killed (its exit counts the
// failure).
func (m *Master) bootWindowEnded(w *proc) {
	switch {
	case !w.beat.Load():
		m.boot(w)
	case w.hello.Load() && !w.killed:
		w.killed = true
		m.log.Error().Int("worker", w.id).Int("pid", w.pid).Dur("boot_timeout", m.cfg.BootTimeout).
			Msg("worker said hello but not ready within APP_BOOT_TIMEOUT; killing it")
		process.SignalGroup(w.pid, syscall.SIGKILL)
	}
}

func (m *Master) boot(w *proc) {
	if w.booted {
		return
	}
	w.booted = true
	if w.state == WorkerBooting {
		w.state = WorkerReady
	}
	m.bootFailures = 0
	m.log.Debug().Int("worker", w.id).Int("pid", w.pid).Dur("boot", time.Since(w.started)).Msg("worker booted")
}

// stop asks a worker to drain (SIGTERM to its process group); SIGKILL
// follows after the drain budget.
func (m *Master) stop(w *proc, reason string) {
	if w.state == WorkerDraining || w.state == WorkerAborted {
		return
	}
	w.state = WorkerDraining
	w.stopReason = reason
	now := time.Now()
	budget := m.drainBudget(now)
	w.killAt = now.Add(budget)
	// Tell the worker the budget it has now, before the signal: it may be
	// shorter than the ONEBOX_GRACEFUL_TIMEOUT it started with. A little
	// less, so it ends its drain itself (and says so) before SIGKILL. One
	// short line into an empty pipe never blocks; a worker that does not
	// read the pipe simply never sees it.
	if w.ctl != nil {
		told := budget - min(budget/10, 250*time.Millisecond)
		_ = w.ctl.SetWriteDeadline(now.Add(10 * time.Millisecond))
		_, _ = fmt.Fprintf(w.ctl, "%s %d\n", worker.MsgDrain, told.Milliseconds())
	}
	process.SignalGroup(w.pid, syscall.SIGTERM)
}

func (m *Master) onExit(ev exitEvent) {
	w := ev.w
	delete(m.workers, w.pid)
	m.met.memory.DeleteLabelValues(strconv.Itoa(w.id))
	if w.ctl != nil {
		w.ctl.Close()
	}
	l := m.log.With().Int("worker", w.id).Int("pid", w.pid).Int("generation", w.gen).Stringer("status", ev.exit).
		Dur("age", time.Since(w.started).Round(time.Millisecond)).Logger()
	now := time.Now()
	switch {
	case w.state == WorkerDraining:
		m.met.exits.WithLabelValues(w.stopReason).Inc()
		if w.killed {
			l.Warn().Str("reason", w.stopReason).Msg("worker killed: it did not drain within the graceful timeout")
		} else {
			l.Info().Str("reason", w.stopReason).Msg("worker stopped")
		}
	case w.state == WorkerAborted:
		m.met.exits.WithLabelValues("timeout").Inc()
		l.Warn().Msg("timed-out worker is gone; replacing it")
		m.backoff(now)
	case !w.booted:
		m.bootFailed(w, ev.exit, l, false, now)
	case ev.exit.Code() == 3 && !w.beat.Load():
		// gunicorn's "do not retry" code from a worker that outlived the
		// boot window but never said it was up: its boot failed late
		// (gunicorn loads the app after forking), and no retry fixes it.
		m.bootFailed(w, ev.exit, l, true, now)
	default:
		m.met.exits.WithLabelValues("crash").Inc()
		m.logTail(w, func(tail []string) {
			l.Error().Strs("stderr", tail).Msg("worker exited unexpectedly; replacing it")
		})
		m.backoff(now)
	}
}

// bootFailed handles the exit of a worker that never booted (late: one
// that was counted booted, silent, but exited with gunicorn's boot-error
// code 3). A new generation's failure fails its reload; otherwise the worker
// is replaced, unless the failure is one no retry fixes or the failures in a
// row reach the limit, which halts the pool.
func (m *Master) bootFailed(w *proc, exit process.Exit, l zerolog.Logger, late bool, now time.Time) {
	m.met.exits.WithLabelValues("boot_failure").Inc()
	m.met.bootFails.Inc()
	msg := "worker failed to boot"
	if late {
		msg += " (exit 3)"
	}
	if m.reload != nil && w.gen == m.reload.gen {
		m.logTail(w, func(tail []string) {
			l.Error().Strs("stderr", tail).Msg(strings.Replace(msg, "worker", "worker of the new generation", 1))
		})
		m.failReload(fmt.Errorf("reload: worker %d (pid %d) failed to boot: %s", w.id, w.pid, exit))
		return
	}
	if !late {
		m.bootFailures++
	}
	// gunicorn's convention: exit code 3 means "do not retry"; 127 and 126
	// are the shim's (and a shell's) "command not found" and "not
	// executable", which no retry fixes either.
	code := exit.Code()
	if late || code == 3 || code == 126 || code == 127 || m.bootFailures >= m.maxBootFailures {
		// Halting: waiting for the whole tail costs nothing now.
		tail := m.waitTail(w)
		l.Error().Strs("stderr", tail).Int("failures", m.bootFailures).Msg(msg)
		m.halt = &BootError{Worker: w.id, PID: w.pid, Status: exit.String(), Stderr: tail}
		return
	}
	failures := m.bootFailures
	m.logTail(w, func(tail []string) {
		l.Error().Strs("stderr", tail).Int("failures", failures).Msg(msg)
	})
	m.backoff(now)
}

// waitTail returns the worker's last stderr lines once its output is read
// (bounded: a grandchild may hold the pipe open). It blocks the loop, so
// only a halt uses it.
func (m *Master) waitTail(w *proc) []string {
	select {
	case <-w.outDone:
	case <-time.After(m.tailWait):
	}
	return w.tail.lines()
}

// logTail calls log with the worker's last stderr lines once its output is
// read, off the loop: a grandchild holding the pipe must not delay the
// replacement of a crashed worker.
func (m *Master) logTail(w *proc, log func(tail []string)) {
	go func() {
		t := time.NewTimer(m.tailWait)
		defer t.Stop()
		select {
		case <-w.outDone:
		case <-t.C:
		case <-m.done:
		}
		log(w.tail.lines())
	}()
}

// backoff delays the next spawn after an unexpected exit: the first is
// replaced at once, then 100ms, 200ms, ... up to 10s; calm for 30s resets it.
func (m *Master) backoff(now time.Time) {
	if now.Sub(m.lastCrash) > 30*time.Second {
		m.crashes = 0
	}
	m.crashes++
	m.lastCrash = now
	if m.crashes > 1 {
		d := min(100*time.Millisecond<<min(m.crashes-2, 10), 10*time.Second)
		m.nextSpawn = now.Add(d)
	}
}

// murder kills hung workers (SIGABRT, then SIGKILL) and workers that
// outlived their drain.
func (m *Master) murder(now time.Time) {
	for _, w := range m.workers {
		switch w.state {
		case WorkerDraining, WorkerAborted:
			if !w.killed && now.After(w.killAt) {
				w.killed = true
				process.SignalGroup(w.pid, syscall.SIGKILL)
			}
			continue
		}
		last := w.lastBeat.Load()
		if last == 0 {
			continue // never heartbeats: judged by liveness alone
		}
		// Silence alone judges a hang: the heartbeat runs beside the
		// requests, so a worker streaming a long response (SSE, websocket,
		// a slow download) still beats and is left alone.
		silence := now.Sub(time.Unix(0, last))
		b := w.busy.Load()
		// A sync worker's request is judged by the age the worker itself
		// reported, not extrapolated: a request that ended since the last
		// beat must not be taken for a hang.
		slow := w.sync.Load() && b != nil && b.age > m.cfg.Timeout
		if silence <= m.cfg.Timeout && !slow {
			continue
		}
		ev := m.log.Error().Int("worker", w.id).Int("pid", w.pid).Dur("silence", silence.Round(time.Millisecond)).
			Dur("timeout", m.cfg.Timeout)
		if b != nil {
			// The request that was in flight when the beats stopped.
			reqAge := b.age + now.Sub(b.at)
			ev = ev.Str("request", b.method+" "+b.uri).Dur("request_age", reqAge.Round(time.Millisecond))
		}
		if slow && silence <= m.cfg.Timeout {
			ev.Msg("worker timeout: a request ran longer than APP_TIMEOUT on a sync worker; sending SIGABRT, then SIGKILL")
		} else {
			ev.Msg("worker timeout: sending SIGABRT, then SIGKILL")
		}
		m.met.timeouts.Inc()
		w.state = WorkerAborted
		w.killAt = now.Add(m.abortGrace)
		// ABRT to the worker alone: a Go worker dumps its goroutines, a
		// Python one its traceback (faulthandler), into the log.
		if w.pid > 0 {
			_ = syscall.Kill(w.pid, syscall.SIGABRT)
		}
	}
}

// manage brings the current generation to the target count, finishes
// reloads and replaces retiring workers once their replacements are up.
func (m *Master) manage(now time.Time) {
	if m.halt != nil {
		return
	}
	var active, up []*proc
	for _, w := range m.workers {
		if !w.booted && w.state == WorkerBooting && now.Sub(w.started) >= m.cfg.BootTimeout {
			m.bootWindowEnded(w)
		}
		if w.gen != m.gen {
			continue
		}
		switch w.state {
		case WorkerBooting, WorkerReady:
			active = append(active, w)
			if w.booted {
				up = append(up, w)
			}
		}
	}

	if r := m.reload; r != nil {
		switch {
		case len(up) >= m.target:
			for _, w := range m.workers {
				if w.gen != m.gen {
					m.stop(w, "reload")
				}
			}
			m.met.reloads.WithLabelValues("ok").Inc()
			m.log.Info().Int("generation", m.gen).Dur("took", now.Sub(r.started).Round(time.Millisecond)).
				Msg("reload done: new generation up, old one draining")
			m.finishReload(nil)
		case now.Sub(r.started) > m.reloadTimeout:
			m.failReload(fmt.Errorf("reload: new generation not up within %s", m.reloadTimeout))
			return
		}
	}

	switch {
	case len(active) < m.target && !now.Before(m.nextSpawn):
		// A few per pass: a big scale-up must not fork in a tight loop
		// while exits and heartbeats wait; the next tick spawns more.
		for range min(m.target-len(active), spawnBurst) {
			if _, err := m.spawn(m.gen); err != nil {
				m.bootFailures++
				m.met.bootFails.Inc()
				m.log.Error().Err(err).Int("failures", m.bootFailures).Msg("worker failed to start")
				if m.bootFailures >= m.maxBootFailures {
					m.halt = &BootError{Status: err.Error()}
				}
				m.backoff(now)
				break
			}
		}
	case len(active) > m.target && m.reload == nil:
		// Booting ones first (they serve nothing yet), then the oldest, as
		// gunicorn does.
		sort.Slice(active, func(i, j int) bool {
			if active[i].booted != active[j].booted {
				return !active[i].booted
			}
			return active[i].id < active[j].id
		})
		for _, w := range active[:len(active)-m.target] {
			m.stop(w, "scale")
		}
	}

	// A retiring worker stops once the full count of its generation is up
	// without it: its replacement is accepting, capacity never drops.
	if len(up) >= m.target {
		for _, w := range m.workers {
			if w.state == WorkerRetiring && w.gen == m.gen {
				m.stop(w, "recycle")
			}
		}
	}
}

func (m *Master) startReload(reply chan error) {
	if m.reload != nil {
		m.queued = append(m.queued, reply)
		return
	}
	// Numbers are never reused, so a failed generation's draining workers
	// are never mistaken for the next one's.
	old := m.gen
	m.lastGen++
	m.gen = m.lastGen
	m.reload = &reloadOp{gen: m.gen, oldGen: old, started: time.Now(), waiters: []chan error{reply}}
	m.log.Info().Int("generation", m.gen).Int("workers", m.target).Msg("reload: starting a new generation")
}

func (m *Master) finishReload(err error) {
	for _, c := range m.reload.waiters {
		c <- err
	}
	m.reload = nil
	if len(m.queued) > 0 {
		q := m.queued
		m.queued = nil
		m.startReload(q[0])
		m.reload.waiters = append(m.reload.waiters, q[1:]...)
	}
}

// failReload stops the new generation and goes back to the old one.
func (m *Master) failReload(err error) {
	r := m.reload
	for _, w := range m.workers {
		if w.gen == r.gen {
			m.stop(w, "reload_failed")
		}
	}
	m.gen = r.oldGen
	m.met.reloads.WithLabelValues("failed").Inc()
	m.log.Error().Err(err).Int("generation", m.gen).Msg("reload failed: the old generation keeps serving")
	m.finishReload(err)
}

// shutdown drains every worker within the drain budget, then kills what is
// left.
func (m *Master) shutdown() {
	if m.reload != nil {
		m.failReloadOnStop()
	}
	for _, c := range m.queued {
		c <- errors.New("reload: pool stopping")
	}
	m.queued = nil
	for _, w := range m.workers {
		if w.state == WorkerAborted && !w.killed {
			// Hung already: no drain to wait for.
			w.killed = true
			process.SignalGroup(w.pid, syscall.SIGKILL)
		}
		m.stop(w, "stop")
	}
	budget := m.drainBudget(time.Now())
	if len(m.workers) > 0 {
		m.log.Info().Int("workers", len(m.workers)).Dur("budget", budget).Msg("draining workers")
	}
	deadline := time.NewTimer(budget)
	defer deadline.Stop()
	killed := false
	for len(m.workers) > 0 {
		select {
		case ev := <-m.exits:
			m.onExit(ev)
		case <-deadline.C:
			if killed {
				m.log.Error().Int("workers", len(m.workers)).Msg("workers survive SIGKILL; giving up on them")
				return
			}
			killed = true
			for _, w := range m.workers {
				w.killed = true
				process.SignalGroup(w.pid, syscall.SIGKILL)
			}
			// SIGKILL cannot be refused; this bound only guards against
			// a reaper that has stopped.
			deadline.Reset(2 * time.Second)
		}
	}
	m.publish(time.Now())
}

func (m *Master) failReloadOnStop() {
	for _, c := range m.reload.waiters {
		c <- errors.New("reload: pool stopping")
	}
	m.reload = nil
}
