// Package appserver is the pre-fork worker pool: the master binds the app
// socket (APP_BIND), starts APP_WORKERS processes of APP_COMMAND that accept
// on it as fd 3 (the worker protocol of appserver/worker), watches their
// heartbeats and exits, recycles, reloads and scales them.
//
// The master is one loop (as gunicorn's arbiter): process exits, heartbeat
// events and control requests arrive on channels, and after each the loop
// kills hung workers, then brings the count to the target.
package appserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"onebox/internal/process"
)

// StartFunc starts a process and reports its exit status once on the
// channel; it is the supervisor's reaper, the only waiter for children.
type StartFunc func(*exec.Cmd) (pid int, exited <-chan process.Exit, err error)

// Deps are the master's collaborators.
type Deps struct {
	// Log carries component=appserver.
	Log zerolog.Logger
	// WorkerLog logs worker output and should carry component=worker; nil
	// means Log with component=worker added.
	WorkerLog *zerolog.Logger
	// Metrics registers the pool's series; nil registers nothing.
	Metrics prometheus.Registerer
	// Start starts and reaps processes. Required.
	Start StartFunc
	// ShutdownTimeout is the supervisor's stop budget; a worker's drain is
	// clamped to it. Zero means APP_GRACEFUL_TIMEOUT alone.
	ShutdownTimeout time.Duration
	// StopDeadline returns when the supervisor's stop budget ends, and the
	// zero time before a stop begins ((*supervisor.Supervisor).StopDeadline).
	// The proxy drains first, so the pool gets what is left: each drain is
	// clamped to this deadline minus stopSlack. Nil means no deadline known.
	StopDeadline func() time.Time
	// Shim is the argv prefix that sets LISTEN_PID to its own pid and execs
	// the rest ([onebox, ShimArg]); nil starts the command directly, without
	// LISTEN_PID.
	Shim []string
	// CPUs is the CPU limit for the default worker count; 0 detects it from
	// the cgroup.
	CPUs float64
	// PrestartLock, if set, is taken before APP_PRESTART runs and released
	// after it ends, so replicas sharing a database run it in turn
	// ((*dbcheck.Gate).Lock). Nil runs the prestart command unlocked.
	PrestartLock func(ctx context.Context) (release func(), err error)
}

// Master is the pool: a supervisor component (Run, Ready, Reload, Scale,
// Status).
type Master struct {
	cfg      Config
	deps     Deps
	log      zerolog.Logger
	wlog     zerolog.Logger
	met      *metrics
	argv     []string
	prestart []string
	drain    time.Duration // a worker's drain budget

	ready     chan struct{}
	readyOnce sync.Once
	reqs      chan func()
	events    chan event
	exits     chan exitEvent
	started   chan struct{} // closed when the loop runs
	done      chan struct{} // closed when Run has returned
	out       *output

	// Tunables, fixed in production, shortened by tests.
	abortGrace      time.Duration // SIGABRT to SIGKILL
	tick            time.Duration // loop period
	maxBootFailures int           // consecutive boot failures that halt the pool
	reloadTimeout   time.Duration // a new generation must boot within this
	tailWait        time.Duration // how long an exited worker's stderr may take to reach EOF
	memEvery        time.Duration // how often worker memory is read

	// Owned by the loop.
	lf           *os.File
	network      string
	addr         string
	workers      map[int]*proc // by pid
	target       int
	gen          int // the generation being served (or booting, during a reload)
	lastGen      int // the highest generation number handed out
	nextID       int
	reload       *reloadOp
	queued       []chan error // reloads asked for while one runs
	crashes      int
	lastCrash    time.Time
	nextSpawn    time.Time
	bootFailures int
	halt         error
	memAt        time.Time // when worker memory was last read

	mu          sync.Mutex // guards snap to halted
	snap        Status
	snapWorkers []snapWorker
	serving     int  // workers that accept and are not draining
	published   bool // the loop has published once
	halted      bool // Run has returned

	maxConns atomic.Int64 // target x APP_WORKER_CONNECTIONS, for MaxConns

	passAt atomic.Int64 // unix nanoseconds of the loop's last hang check (tests wait on it)
}

// New checks the configuration and prepares a pool; Run starts it.
func New(cfg Config, deps Deps) (*Master, error) {
	if err := cfg.Validate().Prefixed("APP_").Err(); err != nil {
		return nil, err
	}
	if !cfg.Enabled() {
		return nil, errors.New("new pool: APP_COMMAND is empty")
	}
	if deps.Start == nil {
		return nil, errors.New("new pool: no process starter")
	}
	argv, _ := SplitCommand(cfg.Command)
	m := &Master{
		cfg: cfg, deps: deps, log: deps.Log, argv: argv,
		ready:           make(chan struct{}),
		reqs:            make(chan func()),
		events:          make(chan event, 256),
		exits:           make(chan exitEvent, 64),
		started:         make(chan struct{}),
		done:            make(chan struct{}),
		abortGrace:      time.Second,
		tick:            100 * time.Millisecond,
		maxBootFailures: 5,
		reloadTimeout:   time.Minute,
		tailWait:        500 * time.Millisecond,
		memEvery:        memEvery,
		workers:         make(map[int]*proc),
		drain:           cfg.GracefulTimeout,
	}
	if cfg.Prestart != "" {
		m.prestart, _ = SplitCommand(cfg.Prestart)
	}
	if deps.ShutdownTimeout > 0 && deps.ShutdownTimeout < m.drain {
		m.drain = deps.ShutdownTimeout
	}
	if deps.WorkerLog != nil {
		m.wlog = *deps.WorkerLog
	} else {
		m.wlog = deps.Log.With().Str("component", "worker").Logger()
	}
	met, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, fmt.Errorf("register pool metrics: %w", err)
	}
	m.met = met

	switch {
	case cfg.Workers > 0:
		m.target = cfg.Workers
		m.log.Info().Int("workers", m.target).Msg("worker count from APP_WORKERS")
	default:
		cpus, src := deps.CPUs, "given"
		if cpus <= 0 {
			cpus, src = cpuLimit("/")
		}
		m.target = defaultWorkers(cpus, cfg.MaxWorkers)
		m.log.Info().Int("workers", m.target).Float64("cpus", cpus).Str("cpu_source", src).
			Int("max_workers", cfg.MaxWorkers).Msg("worker count = 2 x CPU limit + 1, capped by APP_MAX_WORKERS")
	}
	m.met.target.Set(float64(m.target))
	m.maxConns.Store(int64(m.target * cfg.WorkerConnections))
	if cfg.Bind == "" {
		cfg.Bind = resolveBind("", defaultSocketDir)
		m.cfg.Bind = cfg.Bind
		m.log.Info().Str("bind", cfg.Bind).Msg("app socket from the default (APP_BIND empty)")
	}
	m.network, m.addr = "tcp", cfg.Bind
	if p, ok := strings.CutPrefix(cfg.Bind, "unix:"); ok {
		m.network, m.addr = "unix", p
	}
	m.snap = Status{Command: cfg.Command, Bind: cfg.Bind, Target: m.target}
	return m, nil
}

// MaxConns is how many connections the proxy may keep open to the pool:
// the worker count (as scaled) times APP_WORKER_CONNECTIONS; 0 means no
// bound.
func (m *Master) MaxConns() int { return int(m.maxConns.Load()) }

// Ready is closed once the first generation accepts connections.
func (m *Master) Ready() <-chan struct{} { return m.ready }

// BootError is the pool's halt: a worker died while booting, repeatedly or
// with gunicorn's boot-error code 3. Its exit code is 3, like gunicorn's.
type BootError struct {
	Worker int
	PID    int
	Status string   // "exit 1", "killed by terminated"
	Stderr []string // the worker's last stderr lines
}

func (e *BootError) Error() string {
	if e.PID == 0 {
		return "worker failed to start: " + e.Status
	}
	return fmt.Sprintf("worker failed to boot: worker %d (pid %d) %s", e.Worker, e.PID, e.Status)
}

// ExitCode is gunicorn's WORKER_BOOT_ERROR.
func (e *BootError) ExitCode() int { return 3 }

// stopSlack is kept from the supervisor's deadline for the pool's own
// reaping and logging after the last worker is gone.
const stopSlack = 300 * time.Millisecond

// drainBudget is how long a worker stopped now may drain: APP_GRACEFUL_TIMEOUT
// (clamped to the shutdown budget), and once the supervisor is stopping, no
// later than its deadline minus stopSlack.
func (m *Master) drainBudget(now time.Time) time.Duration {
	d := m.drain
	if m.deps.StopDeadline != nil {
		if dl := m.deps.StopDeadline(); !dl.IsZero() {
			d = min(d, max(dl.Sub(now)-stopSlack, 0))
		}
	}
	return d
}

// Run runs APP_PRESTART if set, binds the socket, starts the workers and
// keeps them until ctx is cancelled; then it drains them and returns nil.
func (m *Master) Run(ctx context.Context) error {
	defer close(m.done)
	defer func() {
		m.mu.Lock()
		m.halted = true
		m.mu.Unlock()
	}()
	m.out = newOutput(m.wlog, m.met)
	defer m.out.close()
	if m.cfg.Dir != "" {
		// Checked here, not in Validate: the directory may appear (a volume
		// mounted) between validation and start. A failed chdir in the
		// child is reported by os/exec as the program missing.
		if fi, err := os.Stat(m.cfg.Dir); err != nil || !fi.IsDir() {
			return fmt.Errorf("APP_DIR %q is not a directory", m.cfg.Dir)
		}
	}
	if len(m.prestart) > 0 {
		if err := m.runPrestart(ctx); err != nil || ctx.Err() != nil {
			return err
		}
	}
	if err := m.bind(); err != nil {
		return err
	}
	defer m.unbind()
	m.log.Info().Str("bind", m.cfg.Bind).Int("workers", m.target).Strs("command", m.argv).Msg("pool starting")

	probeCtx, stopProbe := context.WithCancel(ctx)
	defer stopProbe()
	go m.probe(probeCtx)

	tick := time.NewTicker(m.tick)
	defer tick.Stop()
	close(m.started)
	// Spawn at once rather than at the first tick.
	m.manage(time.Now())
	for {
		select {
		case <-ctx.Done():
			m.shutdown()
			return nil
		case ev := <-m.exits:
			m.onExit(ev)
		case ev := <-m.events:
			m.onEvent(ev)
		case req := <-m.reqs:
			req()
		case <-tick.C:
		}
		now := time.Now()
		m.murder(now)
		m.sampleMemory(now)
		m.passAt.Store(now.UnixNano())
		m.manage(now)
		m.publish(now)
		if m.halt != nil {
			m.shutdown()
			return m.halt
		}
	}
}

// bind opens the app socket: for unix:, the directory is created and a
// stale socket file removed, but a socket someone still answers on is left
// alone.
func (m *Master) bind() error {
	if m.network == "unix" && !isAbstract(m.addr) {
		if err := os.MkdirAll(filepath.Dir(m.addr), 0o755); err != nil {
			return fmt.Errorf("create socket directory: %w", err)
		}
		if fi, err := os.Lstat(m.addr); err == nil && fi.Mode()&os.ModeSocket != 0 {
			if c, err := net.DialTimeout("unix", m.addr, 200*time.Millisecond); err == nil {
				c.Close()
				return fmt.Errorf("bind %s: another process is serving on it", m.cfg.Bind)
			}
			if err := os.Remove(m.addr); err != nil {
				return fmt.Errorf("remove stale socket: %w", err)
			}
		}
	}
	l, err := net.Listen(m.network, m.addr)
	if err != nil {
		return fmt.Errorf("bind %s: %w", m.cfg.Bind, err)
	}
	if ul, ok := l.(*net.UnixListener); ok {
		// The file is removed by unbind, after the workers are gone.
		ul.SetUnlinkOnClose(false)
	}
	// The master never accepts: it keeps a plain descriptor to hand down,
	// and the workers' accept queue lives in the kernel, so connections
	// wait in it while one generation hands over to the next.
	f, err := l.(interface{ File() (*os.File, error) }).File()
	l.Close()
	if err != nil {
		return fmt.Errorf("bind %s: %w", m.cfg.Bind, err)
	}
	// Hand down a descriptor whose O_NONBLOCK flag nobody here touches.
	// The flag lives in the open file description that master and workers
	// share: os.File.Fd (which os/exec calls for ExtraFiles at every spawn)
	// clears it on a file Go opened non-blocking, while a Go worker sets it.
	// A worker whose accept is then a blocking syscall never wakes on
	// Close, and its drain hangs until a connection arrives. So: make it
	// blocking once, before any worker, and wrap a plain descriptor that
	// os.NewFile sees as blocking, on which Fd changes nothing.
	// F_DUPFD_CLOEXEC, not Dup then CloseOnExec: a process forked (by the
	// reaper, for anyone) between the two would inherit the socket.
	r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_DUPFD_CLOEXEC, 0)
	f.Close()
	if errno != 0 {
		return fmt.Errorf("bind %s: duplicate socket: %w", m.cfg.Bind, errno)
	}
	fd := int(r)
	if err := syscall.SetNonblock(fd, false); err != nil {
		syscall.Close(fd)
		return fmt.Errorf("bind %s: %w", m.cfg.Bind, err)
	}
	f = os.NewFile(uintptr(fd), "app-socket")
	m.lf = f
	defer func() {
		m.mu.Lock()
		m.snap.Bind = m.network + ":" + m.addr
		if m.network == "tcp" {
			m.snap.Bind = m.addr
		}
		m.mu.Unlock()
	}()
	if m.network == "tcp" {
		// Probe the real port when the bind asked for port 0.
		if sa, err := syscall.Getsockname(int(f.Fd())); err == nil {
			if in, ok := sa.(*syscall.SockaddrInet4); ok {
				host, _, _ := net.SplitHostPort(m.addr)
				m.addr = net.JoinHostPort(host, strconv.Itoa(in.Port))
			} else if in6, ok := sa.(*syscall.SockaddrInet6); ok {
				host, _, _ := net.SplitHostPort(m.addr)
				m.addr = net.JoinHostPort(host, strconv.Itoa(in6.Port))
			}
		}
	}
	return nil
}

func (m *Master) unbind() {
	if m.lf != nil {
		m.lf.Close()
	}
	if m.network == "unix" && !isAbstract(m.addr) {
		_ = os.Remove(m.addr)
	}
}

// Addr returns the bound address ("unix:/path" or host:port, with the real
// port when the bind asked for port 0); valid once Ready is closed.
func (m *Master) Addr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.snap.Bind
}

// probe marks the pool ready once anything answers on the socket, for
// workers that never write on fd 4 (gunicorn, uvicorn, a Node server): a
// connection is accepted, not merely queued, when a response or a close
// comes back. "OPTIONS *" asks the server about itself, not the app.
func (m *Master) probe(ctx context.Context) {
	dialAddr := m.addr
	if m.network == "tcp" {
		host, port, _ := net.SplitHostPort(m.addr)
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			dialAddr = net.JoinHostPort("127.0.0.1", port)
		}
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.ready:
			return
		case <-t.C:
		}
		c, err := net.DialTimeout(m.network, dialAddr, 100*time.Millisecond)
		if err != nil {
			continue
		}
		_ = c.SetDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = c.Write([]byte("OPTIONS * HTTP/1.0\r\n\r\n"))
		var b [1]byte
		n, err := c.Read(b[:])
		c.Close()
		var ne net.Error
		if n > 0 || (err != nil && !(errors.As(err, &ne) && ne.Timeout())) {
			select {
			case m.events <- event{kind: evProbe}:
			case <-ctx.Done():
			}
			return
		}
	}
}

func (m *Master) markReady() {
	m.readyOnce.Do(func() {
		// Check must agree with Ready from the moment it closes.
		m.publish(time.Now())
		close(m.ready)
		m.log.Info().Msg("pool ready: workers accept connections")
	})
}

// Reload starts a new generation of workers, waits until it has booted, then
// drains the old one. When the new generation fails to boot it is stopped,
// the old one keeps serving, and Reload returns the error.
func (m *Master) Reload(ctx context.Context) error {
	reply := make(chan error, 1)
	if err := m.do(ctx, func() { m.startReload(reply) }); err != nil {
		return err
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return fmt.Errorf("reload: %w", ctx.Err())
	case <-m.done:
		return errors.New("reload: pool stopped")
	}
}

// hardMaxWorkers bounds Scale whatever the settings: each worker is a
// process, and forking without bound ends in EAGAIN for the whole box.
const hardMaxWorkers = 1024

// scaleLimit is the most workers Scale allows: 4 x APP_MAX_WORKERS, or the
// configured APP_WORKERS if higher, never above hardMaxWorkers.
func (m *Master) scaleLimit() int {
	return min(hardMaxWorkers, max(4*m.cfg.MaxWorkers, m.cfg.Workers))
}

// Scale sets the worker count (relative: adds n), never below 1, kept
// across reloads; it returns the new count. A count above the limit (4 x
// APP_MAX_WORKERS, at most 1024) is refused and changes nothing.
func (m *Master) Scale(n int, relative bool) (int, error) {
	var got int
	var refused error
	err := m.do(context.Background(), func() {
		limit := m.scaleLimit()
		t := n
		if relative {
			// Compared before adding, so a huge n cannot overflow.
			if n > limit-m.target {
				refused = fmt.Errorf("scale: %d more workers would exceed the limit of %d (4 x APP_MAX_WORKERS)", n, limit)
				got = m.target
				return
			}
			t = m.target + max(n, -m.target)
		}
		if t > limit {
			refused = fmt.Errorf("scale: %d workers is above the limit of %d (4 x APP_MAX_WORKERS)", t, limit)
			got = m.target
			return
		}
		t = max(t, 1)
		if t != m.target {
			m.log.Info().Int("from", m.target).Int("to", t).Msg("scaling the pool")
		}
		m.target = t
		m.met.target.Set(float64(t))
		m.maxConns.Store(int64(t * m.cfg.WorkerConnections))
		got = t
	})
	if err == nil {
		err = refused
	}
	return got, err
}

// do runs f in the loop and waits for it.
func (m *Master) do(ctx context.Context, f func()) error {
	select {
	case <-m.started:
	default:
		// Before the loop (waiting for the database, prestart) there is
		// nothing to reload or scale yet; waiting could block a signal
		// handler for minutes.
		return errors.New("pool is not running yet")
	}
	ran := make(chan struct{})
	select {
	case m.reqs <- func() { f(); close(ran) }:
		<-ran
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-m.done:
		return errors.New("pool is not running")
	}
}
