// Package worker is the Go side of the onebox worker protocol: one call,
// Serve, turns an http.Handler into a pool worker.
//
// Under onebox, Serve accepts on the inherited app socket (fd 3), writes a
// heartbeat on fd 4, counts requests and asks the master to retire it at its
// max-requests limit, and drains on SIGTERM or SIGQUIT within the graceful
// timeout. Run alone (no LISTEN_FDS), it listens on :$PORT (default 8000), so
// the same binary works for development.
//
// This package reads the environment: it is the worker process's side of a
// protocol whose carrier is the environment (see protocol.go).
package worker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Options configures Serve. FromEnv fills it from the worker protocol's
// environment; tests and unusual programs may build it by hand.
type Options struct {
	// Listener is the socket to accept on. Required.
	Listener net.Listener
	// Heartbeat receives protocol lines (hello, ready, beat, retire); nil means no
	// master is listening, and a worker at its limit drains by itself.
	Heartbeat io.Writer
	// Control carries the master's lines (drain MS); nil means none.
	Control io.Reader
	// Interval is the heartbeat period; zero means one second.
	Interval time.Duration
	// MaxRequests is the number of requests after which the worker retires;
	// zero means never. Jitter is already applied (see Limit).
	MaxRequests int64
	// GracefulTimeout bounds the drain on SIGTERM/SIGQUIT; zero means 30s.
	GracefulTimeout time.Duration
	// Signals delivers the stop signals; nil means SIGTERM, SIGQUIT and
	// SIGINT through signal.Notify.
	Signals <-chan os.Signal
	// IdleGrace is how long a drain waits for keep-alive connections to
	// carry one more request (answered with "Connection: close") before
	// closing those still idle; zero means a tenth of GracefulTimeout, at
	// most one second. It is at most half of GracefulTimeout.
	IdleGrace time.Duration
	// GOMAXPROCS, when above zero, is set before serving (see FromEnv).
	GOMAXPROCS int
}

// Serve serves h as a onebox worker, configured by the environment (see
// FromEnv), until a stop signal has drained it; it returns nil after a clean
// drain.
func Serve(h http.Handler) error {
	o, err := FromEnv(os.Getenv)
	if err != nil {
		return err
	}
	// Children of the app must not believe the socket is theirs, as
	// sd_listen_fds(1) does.
	for _, k := range []string{EnvListenFDs, EnvListenPID, EnvListenFDNames, EnvHeartbeatFD, EnvControlFD} {
		_ = os.Unsetenv(k)
	}
	return o.Serve(h)
}

// helloSaid is set once this process has said hello on the heartbeat pipe.
var helloSaid atomic.Bool

// Hello tells the master that this worker speaks the protocol: from then on
// it counts as booted only once Serve says ready, which must happen within
// APP_BOOT_TIMEOUT, and an exit before that is a boot failure however long
// the app took to load. Call it first thing in main, before the app loads
// (connects to its database, parses templates); Serve says it itself if
// nobody did. Without a master (no ONEBOX_HEARTBEAT_FD) it does nothing.
func Hello() {
	fd, err := strconv.Atoi(os.Getenv(EnvHeartbeatFD))
	if err != nil || fd < 3 {
		return // none, or a bad value FromEnv reports
	}
	if helloSaid.Swap(true) {
		return
	}
	// Programs the app starts while loading must not inherit the pipe.
	syscall.CloseOnExec(fd)
	// A plain write: an os.File here would close fd 4 when collected.
	_, _ = syscall.Write(fd, []byte(MsgHello+"\n"))
}

// FromEnv reads the worker protocol's variables through getenv: the socket
// from LISTEN_FDS (fd 3, only when LISTEN_PID is unset or this process), else
// :PORT (default 8000); the heartbeat fd; ONEBOX_TIMEOUT (beat period = a
// quarter of it, at most 1s); ONEBOX_GRACEFUL_TIMEOUT; ONEBOX_MAX_REQUESTS and
// its jitter; and, unless GOMAXPROCS is set, ONEBOX_WORKERS to share the
// CPUs among the pool's workers (ProcsFor).
func FromEnv(getenv func(string) string) (Options, error) {
	var o Options
	var errs []error
	dur := func(name string, def time.Duration) time.Duration {
		v := getenv(name)
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a positive duration such as 30s", name, v))
			return def
		}
		return d
	}
	num := func(name string) int64 {
		v := getenv(name)
		if v == "" {
			return 0
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want 0 or a positive number", name, v))
			return 0
		}
		return n
	}
	timeout := dur(EnvTimeout, 4*time.Second)
	o.Interval = min(max(timeout/4, 10*time.Millisecond), time.Second)
	o.GracefulTimeout = dur(EnvGracefulTimeout, 30*time.Second)
	o.MaxRequests = Limit(num(EnvMaxRequests), num(EnvMaxJitter), rand.Int64N)
	if getenv("GOMAXPROCS") == "" {
		// N workers each sized for the whole machine oversubscribe it: on
		// 2 cores, 5 workers gave 21k req/s with GOMAXPROCS=2 and 27k with
		// 1 (docs/appserver.md). An explicit GOMAXPROCS wins.
		o.GOMAXPROCS = ProcsFor(runtime.GOMAXPROCS(0), int(num(EnvWorkers)))
	}
	var hbFD, ctlFD int64
	if v := getenv(EnvHeartbeatFD); v != "" {
		hbFD = num(EnvHeartbeatFD)
		if hbFD < 3 {
			errs = append(errs, fmt.Errorf("%s=%q: want a descriptor number above 2", EnvHeartbeatFD, v))
		}
	}
	if v := getenv(EnvControlFD); v != "" {
		ctlFD = num(EnvControlFD)
		if ctlFD < 3 {
			errs = append(errs, fmt.Errorf("%s=%q: want a descriptor number above 2", EnvControlFD, v))
		}
	}
	if len(errs) > 0 {
		return o, errors.Join(errs...)
	}

	if fds := getenv(EnvListenFDs); fds != "" {
		if n, err := strconv.Atoi(fds); err != nil || n < 1 {
			return o, fmt.Errorf("%s=%q: want 1 or more inherited sockets", EnvListenFDs, fds)
		}
		if pid := getenv(EnvListenPID); pid != "" && pid != strconv.Itoa(os.Getpid()) {
			return o, fmt.Errorf("%s=%s is not this process (%d): the sockets are meant for another process", EnvListenPID, pid, os.Getpid())
		}
		f := os.NewFile(ListenFD, "onebox-app-socket")
		l, err := net.FileListener(f)
		// FileListener holds its own duplicate.
		_ = f.Close()
		if err != nil {
			return o, fmt.Errorf("use inherited socket fd %d: %w", ListenFD, err)
		}
		o.Listener = l
	} else {
		port := getenv(EnvPort)
		if port == "" {
			port = "8000"
		}
		l, err := net.Listen("tcp", ":"+port)
		if err != nil {
			return o, fmt.Errorf("listen on port %s: %w", port, err)
		}
		o.Listener = l
	}
	if hbFD > 0 {
		// Programs the app starts must not inherit the pipe: they would
		// keep it open after this worker exits, and could write on it.
		// (fd 3 is closed above: the listener holds a close-on-exec dup.)
		syscall.CloseOnExec(int(hbFD))
		o.Heartbeat = os.NewFile(uintptr(hbFD), "onebox-heartbeat")
	}
	if ctlFD > 0 {
		syscall.CloseOnExec(int(ctlFD))
		o.Control = os.NewFile(uintptr(ctlFD), "onebox-control")
	}
	return o, nil
}

// readControl reads the master's control lines; "drain MS" sends its
// deadline on drainBy (once; later lines are ignored).
func readControl(r io.Reader, drainBy chan<- time.Time) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == MsgDrain {
			if ms, err := strconv.ParseInt(f[1], 10, 64); err == nil && ms >= 0 {
				select {
				case drainBy <- time.Now().Add(time.Duration(ms) * time.Millisecond):
				default:
				}
			}
		}
	}
}

// ProcsFor shares procs (the CPU limit Go detected) among workers
// processes, rounding up; 0 (leave it) for a single worker or none known.
func ProcsFor(procs, workers int) int {
	if workers <= 1 {
		return 0
	}
	return max(1, (procs+workers-1)/workers)
}

// Limit returns the max-requests limit with jitter applied: max plus a
// random number in [0, jitter], using randN (rand.Int64N in production);
// zero when max is zero (never retire).
func Limit(max, jitter int64, randN func(int64) int64) int64 {
	if max <= 0 {
		return 0
	}
	if jitter > 0 {
		max += randN(jitter + 1)
	}
	return max
}

// Serve serves h on o.Listener until a stop signal, then drains within
// o.GracefulTimeout. It returns nil after a clean drain.
func (o Options) Serve(h http.Handler) error {
	if o.Listener == nil {
		return errors.New("serve: no listener")
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.GracefulTimeout <= 0 {
		o.GracefulTimeout = 30 * time.Second
	}
	if o.GOMAXPROCS > 0 {
		runtime.GOMAXPROCS(o.GOMAXPROCS)
	}
	sigs := o.Signals
	if sigs == nil {
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGINT)
		defer signal.Stop(c)
		sigs = c
	}

	c := &counter{h: h, limit: o.MaxRequests, atLimit: make(chan struct{}), inflight: make(map[uint64]*request)}
	conns := &connSet{m: make(map[net.Conn]struct{}), changed: make(chan struct{}, 1)}
	srv := &http.Server{
		Handler: c,
		// Slow clients are the proxy's business; this only stops a
		// connection that never sends a request head from pinning a
		// goroutine for ever.
		ReadHeaderTimeout: time.Minute,
		ConnState:         conns.track,
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(o.Listener) }()

	stopBeat := make(chan struct{})
	beatDone := make(chan struct{})
	retire := c.atLimit
	if o.Heartbeat != nil {
		go func() { defer close(beatDone); c.heartbeat(o.Heartbeat, o.Interval, stopBeat) }()
		// With a master, reaching the limit only asks for retirement:
		// the master starts the replacement first, then sends TERM.
		retire = nil
	} else {
		close(beatDone)
	}

	// The master's "drain MS" is a stop request with its budget.
	drainBy := make(chan time.Time, 1)
	if o.Control != nil {
		go readControl(o.Control, drainBy)
	}

	start := time.Now()
	deadline := start.Add(o.GracefulTimeout)
	select {
	case err := <-served:
		close(stopBeat)
		<-beatDone
		return fmt.Errorf("serve: %w", err)
	case <-sigs:
	case <-retire:
	case dl := <-drainBy:
		start = time.Now()
		deadline = dl
	}
	if start.Add(o.GracefulTimeout).Before(deadline) {
		deadline = start.Add(o.GracefulTimeout)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	// The signal may come first and the master's line just after.
	go func() {
		select {
		case dl := <-drainBy:
			if dl.Before(deadline) {
				t := time.AfterFunc(time.Until(dl), cancel)
				defer t.Stop()
			}
			<-ctx.Done()
		case <-ctx.Done():
		}
	}()
	err := c.drain(ctx, srv, o.Listener, served, conns, o.idleGrace())
	// Beat until the drain ends, so the master never mistakes a long drain
	// for a hang.
	close(stopBeat)
	<-beatDone
	if err != nil {
		_ = srv.Close()
		return fmt.Errorf("drain within %s (after %s): %w", o.GracefulTimeout, time.Since(start).Round(time.Millisecond), err)
	}
	return nil
}

func (o Options) idleGrace() time.Duration {
	if o.IdleGrace > 0 {
		return min(o.IdleGrace, o.GracefulTimeout/2)
	}
	// A connection in use carries its next request within milliseconds;
	// one idle for longer is no likelier to be picked now than later.
	return min(time.Second, o.GracefulTimeout/10)
}

// drain stops the server without failing a request that is already on its
// way. http.Server.Shutdown alone closes idle keep-alive connections at once,
// and a client (or proxy) may have just written its next request on one: it
// gets EOF or a reset, and only bodiless idempotent requests are retried by
// clients, so a POST would fail. Instead:
//
//  1. stop accepting (the other workers share the socket and take new
//     connections);
//  2. answer every request from now on with "Connection: close", so each
//     connection closes after its next response;
//  3. wait until every connection has closed that way, or grace has passed
//     (a connection idle for the whole grace is not being used);
//  4. then Shutdown: it closes what is still idle and waits for requests
//     in flight, within ctx.
func (c *counter) drain(ctx context.Context, srv *http.Server, l net.Listener, served <-chan error, conns *connSet, grace time.Duration) error {
	c.draining.Store(true)
	_ = l.Close()
	// Once Serve has returned, every connection it accepted is tracked
	// (StateNew runs before Serve goes back to Accept), including one
	// accepted just as the listener closed.
	select {
	case <-served:
	case <-ctx.Done():
		return ctx.Err()
	}
	idle := time.NewTimer(grace)
	defer idle.Stop()
wait:
	for conns.len() > 0 {
		select {
		case <-conns.changed:
		case <-idle.C:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	return srv.Shutdown(ctx)
}

// connSet tracks the server's open connections through ConnState.
type connSet struct {
	mu      sync.Mutex
	m       map[net.Conn]struct{}
	changed chan struct{} // a token whenever a connection closed
}

func (s *connSet) track(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	switch st {
	case http.StateNew:
		s.m[c] = struct{}{}
	case http.StateClosed, http.StateHijacked:
		delete(s.m, c)
		select {
		case s.changed <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
}

func (s *connSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// counter wraps the handler: it counts requests, tracks those in flight for
// the heartbeat, and notices the max-requests limit.
type counter struct {
	h       http.Handler
	limit   int64
	served  atomic.Int64
	atLimit chan struct{} // closed when served reaches limit
	// draining makes every response close its connection (see drain).
	draining atomic.Bool

	mu       sync.Mutex
	next     uint64
	inflight map[uint64]*request
}

type request struct {
	start  time.Time
	method string
	uri    string
}

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if n := c.served.Add(1); n == c.limit {
		close(c.atLimit)
	}
	if c.draining.Load() {
		// Set before the handler runs, so the server sees it when the
		// header is written and closes the connection after this response.
		w.Header().Set("Connection", "close")
	}
	c.mu.Lock()
	c.next++
	id := c.next
	c.inflight[id] = &request{start: time.Now(), method: r.Method, uri: r.RequestURI}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.inflight, id)
		c.mu.Unlock()
	}()
	c.h.ServeHTTP(w, r)
}

// beat formats one beat line: served, in flight, and the oldest request.
func (c *counter) beat(now time.Time) string {
	c.mu.Lock()
	var oldest *request
	for _, r := range c.inflight {
		if oldest == nil || r.start.Before(oldest.start) {
			oldest = r
		}
	}
	n := len(c.inflight)
	var tail string
	if oldest != nil {
		uri := oldest.uri
		if len(uri) > 200 {
			uri = uri[:200]
		}
		tail = fmt.Sprintf(" %d %s %s", now.Sub(oldest.start).Milliseconds(), oldest.method, strings.ReplaceAll(uri, " ", "%20"))
	}
	c.mu.Unlock()
	return fmt.Sprintf("%s %d %d%s\n", MsgBeat, c.served.Load(), n, tail)
}

func (c *counter) heartbeat(w io.Writer, interval time.Duration, stop <-chan struct{}) {
	// Write errors are ignored: a master that is gone cannot be told, and
	// the parent-death signal ends this process anyway.
	if !helloSaid.Load() {
		_, _ = io.WriteString(w, MsgHello+"\n")
	}
	_, _ = io.WriteString(w, MsgReady+"\n")
	t := time.NewTicker(interval)
	defer t.Stop()
	atLimit := c.atLimit
	for {
		select {
		case <-stop:
			return
		case <-atLimit:
			atLimit = nil
			_, _ = fmt.Fprintf(w, "%s %d\n", MsgRetire, c.served.Load())
		case now := <-t.C:
			_, _ = io.WriteString(w, c.beat(now))
		}
	}
}
