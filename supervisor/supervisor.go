// Package supervisor does PID 1's duties: it starts the box's components in
// order, forwards signals to them, is the only reaper of child processes,
// stops everything within one shutdown budget, and serves the admin endpoint
// (/healthz, /readyz, /status, /metrics, POST /reload and /scale).
//
// It knows no sibling package: it runs values that have Run(ctx) error and
// asks them, through the small interfaces in component.go, whether they are
// ready, what their status is and whether they reload or scale.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
)

// Supervisor runs components in order and stops them in reverse order.
type Supervisor struct {
	cfg     Config
	log     zerolog.Logger
	reaper  *Reaper
	reg     *prometheus.Registry
	parts   []*part
	started time.Time

	state     stateCell
	sigs      chan os.Signal
	deadline  atomic.Int64       // unix nanoseconds: the end of the stop budget, 0 before the stop
	opCtx     context.Context    // reloads and scales; cancelled when the stop begins
	opCancel  context.CancelFunc // cancels opCtx
	adminAddr atomic.Value       // string
	reloadM   sync.Mutex         // one reload at a time, whether from HUP or POST /reload

	readyGauge prometheus.Gauge
	reloads    *prometheus.CounterVec
}

// part is one component and its place in the start order.
type part struct {
	name   string
	c      Component
	cancel context.CancelFunc
	state  stateCell
}

type exit struct {
	p   *part
	err error
}

// CatchSignals starts catching every signal the supervisor acts on and
// returns the channel to hand to New. Call it first thing: a Go program that
// has not called signal.Notify for TERM is killed by it with status 2, and a
// PID 1 must not die of a TERM that arrives while it is still setting up.
// Signals caught before Run are acted on when Run starts.
func CatchSignals() chan os.Signal {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, append(stopSignals, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGTTIN, syscall.SIGTTOU)...)
	return sigs
}

// New returns a supervisor for cfg that acts on the signals caught by sigs
// (from CatchSignals; nil catches them now). Components are added with Add.
func New(cfg Config, log zerolog.Logger, sigs chan os.Signal) *Supervisor {
	if sigs == nil {
		sigs = CatchSignals()
	}
	s := &Supervisor{
		cfg:    cfg,
		log:    log,
		reaper: NewReaper(log),
		reg:    prometheus.NewRegistry(),
		sigs:   sigs,
	}
	s.opCtx, s.opCancel = context.WithCancel(context.Background())
	s.state.Store(StateStarting)
	s.readyGauge = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "onebox_ready", Help: "1 when every component is ready and the box serves.",
	})
	s.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onebox_reloads_total", Help: "Reloads by result.",
	}, []string{"result"})
	s.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		s.readyGauge, s.reloads,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "onebox_orphans_reaped_total", Help: "Re-parented processes reaped by onebox.",
		}, func() float64 { return float64(s.reaper.Orphans()) }),
	)
	return s
}

// Reaper returns the process starter whose exits the supervisor reports.
func (s *Supervisor) Reaper() *Reaper { return s.reaper }

// Registry returns the registry served on /metrics; components register on it.
func (s *Supervisor) Registry() *prometheus.Registry { return s.reg }

// Add appends a component to the start order. Components start in the order
// they are added, each after the previous one is ready, and stop in reverse.
func (s *Supervisor) Add(name string, c Component) {
	p := &part{name: name, c: c}
	p.state.Store(StateWaiting)
	s.parts = append(s.parts, p)
}

// stopSignals start a graceful stop; a second TERM or INT cuts it short.
var stopSignals = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT}

// Run starts the components and supervises them until ctx is done, a stop
// signal arrives or a component fails. It returns nil after a clean stop, an
// error naming the component that failed, or an error saying the budget ran
// out and what was killed.
func (s *Supervisor) Run(ctx context.Context) error {
	s.started = time.Now()

	sigs := s.sigs
	defer signal.Stop(sigs)

	reapCtx, stopReaping := context.WithCancel(context.Background())
	reaped := make(chan struct{})
	go func() { defer close(reaped); _ = s.reaper.Run(reapCtx) }()
	defer func() { stopReaping(); <-reaped }()

	admin, err := s.listenAdmin()
	if err != nil {
		return err
	}
	if admin != nil {
		defer admin.Close()
	}

	exits := make(chan exit, len(s.parts))
	next := 0
	var ready <-chan struct{}
	startNext := func() {
		p := s.parts[next]
		next++
		runCtx, cancel := context.WithCancel(context.Background())
		p.cancel = cancel
		p.state.Store(StateStarting)
		s.log.Info().Str("part", p.name).Msg("starting")
		go func() { exits <- exit{p, p.c.Run(runCtx)} }()
		if r, ok := p.c.(Readier); ok {
			ready = r.Ready()
		} else {
			ready = closed
		}
	}

	var failure error
	if len(s.parts) > 0 {
		startNext()
	} else {
		ready = closed
	}
loop:
	for {
		select {
		case <-ready:
			if next > 0 {
				p := s.parts[next-1]
				p.state.Store(StateReady)
				s.log.Info().Str("part", p.name).Dur("after", time.Since(s.started)).Msg("ready")
			}
			if next < len(s.parts) {
				startNext()
				continue
			}
			ready = nil
			s.state.Store(StateRunning)
			s.readyGauge.Set(1)
			s.log.Info().Dur("after", time.Since(s.started)).Msg("onebox is ready")
		case e := <-exits:
			e.p.state.Store(StateFailed)
			failure = partError(e)
			s.log.Error().Err(e.err).Str("part", e.p.name).Msg("component failed; stopping")
			break loop
		case sig := <-sigs:
			if isStop(sig) {
				s.log.Info().Str("signal", sig.String()).Msg("graceful stop")
				break loop
			}
			s.handle(sig.(syscall.Signal))
		case <-ctx.Done():
			s.log.Info().Msg("graceful stop: context done")
			break loop
		}
	}
	return s.shutdown(next, failure, exits, sigs)
}

// shutdown stops the first n parts in reverse order within one budget.
func (s *Supervisor) shutdown(n int, failure error, exits chan exit, sigs chan os.Signal) error {
	serving := s.state.Load() == StateRunning
	s.state.Store(StateStopping)
	s.readyGauge.Set(0)
	s.opCancel() // a reload or scale in flight gives up; no new ones start
	// A box that never became ready is in no load balancer: no delay.
	if failure == nil && serving && s.cfg.ShutdownDelay > 0 {
		failure = s.lameDuck(n, exits, sigs)
	}
	deadline := time.Now().Add(s.cfg.ShutdownTimeout)
	s.deadline.Store(deadline.UnixNano())
	budget := time.NewTimer(time.Until(deadline))
	defer budget.Stop()

	done := make(map[*part]bool)
	if failure != nil {
		for _, p := range s.parts {
			if p.state.Load() == StateFailed {
				done[p] = true
			}
		}
	}
	cut := ""
stopping:
	for i := n - 1; i >= 0; i-- {
		p := s.parts[i]
		if done[p] {
			continue
		}
		p.state.Store(StateStopping)
		p.cancel()
		for !done[p] {
			select {
			case e := <-exits:
				done[e.p] = true
				e.p.state.Store(StateStopped)
				if e.err != nil && !errors.Is(e.err, context.Canceled) {
					s.log.Error().Err(e.err).Str("part", e.p.name).Msg("stopped with an error")
					if failure == nil {
						failure = partError(e)
					}
				} else {
					s.log.Info().Str("part", e.p.name).Msg("stopped")
				}
			case <-budget.C:
				cut = fmt.Sprintf("shutdown budget of %s ran out while stopping %s", s.cfg.ShutdownTimeout, p.name)
				break stopping
			case sig := <-sigs:
				if sig == syscall.SIGTERM || sig == syscall.SIGINT {
					cut = "second " + sig.String() + ": stop cut short"
					break stopping
				}
			}
		}
	}
	// Cancel everything, including parts skipped when the stop was cut short.
	for _, p := range s.parts[:n] {
		p.cancel()
	}
	if killed := s.reaper.KillAll(syscall.SIGKILL); killed > 0 {
		s.log.Warn().Int("processes", killed).Msg("killed processes still running at the end of the stop")
		s.awaitReaped(time.Now().Add(time.Second))
	}
	switch {
	case failure != nil:
		return failure
	case cut != "":
		s.log.Warn().Msg(cut)
		return errors.New(cut)
	}
	s.log.Info().Dur("took", time.Since(deadline.Add(-s.cfg.ShutdownTimeout))).Msg("stopped cleanly")
	return nil
}

// lameDuck is the delay before the stop budget (ONEBOX_SHUTDOWN_DELAY): the
// box already says it is not ready, and its started components keep running
// while an orchestrator takes it out of its load balancer, which it does at
// the same moment as it sends TERM, not before (kubernetes#67592). A second
// TERM or INT ends the delay; a component that fails during it ends it too,
// and is returned as the failure.
func (s *Supervisor) lameDuck(n int, exits chan exit, sigs chan os.Signal) error {
	for _, p := range s.parts[:n] {
		if l, ok := p.c.(LameDucker); ok {
			l.LameDuck()
		}
	}
	s.log.Info().Dur("delay", s.cfg.ShutdownDelay).Msg("lame duck: not ready, still serving until the delay ends")
	delay := time.NewTimer(s.cfg.ShutdownDelay)
	defer delay.Stop()
	for {
		select {
		case <-delay.C:
			return nil
		case e := <-exits:
			e.p.state.Store(StateFailed)
			s.log.Error().Err(e.err).Str("part", e.p.name).Msg("component failed during the lame-duck delay; stopping")
			return partError(e)
		case sig := <-sigs:
			if sig == syscall.SIGTERM || sig == syscall.SIGINT {
				s.log.Info().Str("signal", sig.String()).Msg("second " + sig.String() + ": lame-duck delay cut short")
				return nil
			}
		}
	}
}

// awaitReaped waits (bounded) until every started process has been reaped,
// so that onebox does not exit with children it could still report on.
func (s *Supervisor) awaitReaped(until time.Time) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for len(s.reaper.Running()) > 0 && time.Now().Before(until) {
		s.reaper.Reap()
		<-t.C
	}
}

// handle acts on a non-stop signal. It never blocks the loop, which must
// stay free for a TERM: reloads and scales run in their own goroutines.
func (s *Supervisor) handle(sig syscall.Signal) {
	switch sig {
	case syscall.SIGHUP:
		go func() { _ = s.Reload(s.opCtx) }()
	case syscall.SIGTTIN, syscall.SIGTTOU:
		n := 1
		if sig == syscall.SIGTTOU {
			n = -1
		}
		go func() {
			if _, err := s.Scale(n, true); err != nil {
				s.log.Warn().Err(err).Str("signal", sig.String()).Msg("cannot scale")
			}
		}()
	case syscall.SIGUSR1:
		for _, p := range s.parts {
			if r, ok := p.c.(LogReopener); ok {
				if err := r.ReopenLogs(); err != nil {
					s.log.Warn().Err(err).Str("part", p.name).Msg("cannot reopen logs")
				}
			}
		}
	}
}

// Reload asks every started component that reloads to do so, in start order.
// It returns the first error; components keep their old state on failure.
func (s *Supervisor) Reload(ctx context.Context) error {
	s.reloadM.Lock()
	defer s.reloadM.Unlock()
	if err := s.operable(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.opCtx, cancel)
	defer stop()
	var errs []error
	for _, p := range s.parts {
		r, ok := p.c.(Reloader)
		if !ok || p.state.Load() != StateReady {
			continue
		}
		s.log.Info().Str("part", p.name).Msg("reloading")
		if err := r.Reload(ctx); err != nil {
			s.log.Error().Err(err).Str("part", p.name).Msg("reload failed; the old generation keeps running")
			errs = append(errs, fmt.Errorf("reload %s: %w", p.name, err))
			continue
		}
		s.log.Info().Str("part", p.name).Msg("reloaded")
	}
	if err := errors.Join(errs...); err != nil {
		s.reloads.WithLabelValues("failed").Inc()
		return err
	}
	s.reloads.WithLabelValues("ok").Inc()
	return nil
}

// StopDeadline returns when the stop budget ends, once a stop has begun,
// and the zero time before. Components that drain in stages (the pool after
// the proxy) clamp their drain to it, so no stage overruns the one budget.
func (s *Supervisor) StopDeadline() time.Time {
	if ns := s.deadline.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// ErrNoScaler is returned by Scale when no component scales (no pool).
var ErrNoScaler = errors.New("no component scales: no worker pool is configured")

// ErrNotRunning is returned by Reload and Scale before the box is ready or
// once it is stopping: a reload must never start a generation during a stop.
var ErrNotRunning = errors.New("not running")

func (s *Supervisor) operable() error {
	if st := s.state.Load(); st != StateRunning {
		return fmt.Errorf("onebox is %s: %w", st, ErrNotRunning)
	}
	return nil
}

// Scale forwards to the first component that scales.
func (s *Supervisor) Scale(n int, relative bool) (int, error) {
	if err := s.operable(); err != nil {
		return 0, err
	}
	for _, p := range s.parts {
		if sc, ok := p.c.(Scaler); ok && p.state.Load() == StateReady {
			got, err := sc.Scale(n, relative)
			if err == nil {
				s.log.Info().Str("part", p.name).Int("workers", got).Msg("scaled")
			}
			return got, err
		}
	}
	return 0, ErrNoScaler
}

// Ready returns nil when the box serves: every component started and ready,
// no stop under way, and every Checker content.
func (s *Supervisor) Ready() error {
	if st := s.state.Load(); st != StateRunning {
		return fmt.Errorf("onebox is %s", st)
	}
	for _, p := range s.parts {
		if c, ok := p.c.(Checker); ok {
			if err := c.Check(); err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
		}
	}
	return nil
}

func isStop(sig os.Signal) bool {
	for _, s := range stopSignals {
		if s == sig {
			return true
		}
	}
	return false
}

// partError names the component in the error and keeps an exit code it chose.
func partError(e exit) error {
	if e.err == nil {
		return fmt.Errorf("%s: %w", e.p.name, ErrExited)
	}
	return fmt.Errorf("%s: %w", e.p.name, e.err)
}

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()
