package dbcheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Backoff of the gate: the first retry comes after firstBackoff, each
// further one after twice the last, up to maxBackoff or CheckInterval,
// whichever is smaller. A database that takes a minute to initialise is thus
// asked every few seconds, not hammered, and one that is nearly up is found
// within a fraction of a second.
const (
	firstBackoff = 250 * time.Millisecond
	maxBackoff   = 5 * time.Second
)

// Deps are what the gate needs besides its Config.
type Deps struct {
	// Log receives attempt and transition lines; it already carries
	// component=dbcheck.
	Log zerolog.Logger
	// Metrics registers the gate's series; nil registers nothing.
	Metrics prometheus.Registerer
}

// State is where the gate stands.
type State string

// The gate's states: waiting before the first successful check, then up or
// down.
const (
	StateWaiting State = "waiting"
	StateUp      State = "up"
	StateDown    State = "down"
)

// Gate is the database gate, a supervisor component: Run waits until the
// database accepts the configured login (Ready is closed then), and keeps
// checking it every CheckInterval for Check and Status.
type Gate struct {
	cfg     Config
	log     zerolog.Logger
	metrics *metrics
	caPool  *x509.CertPool // from TLSCAFile, nil when none

	ready     chan struct{}
	readyOnce sync.Once

	mu           sync.Mutex
	state        State
	since        time.Time // when state last changed
	lastErr      *CheckError
	lastErrAt    time.Time
	lastSuccess  time.Time
	latency      time.Duration // of the last check, failed or not
	failedChecks int           // consecutive, reset by a success
}

// New returns a gate for cfg, which must be valid (Validate) and enabled.
func New(cfg Config, deps Deps) (*Gate, error) {
	if !cfg.Enabled() {
		return nil, errors.New("create dbcheck gate: MYSQL_HOST is not set")
	}
	if err := cfg.Validate().Err(); err != nil {
		return nil, fmt.Errorf("create dbcheck gate: %w", err)
	}
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, err
	}
	g := &Gate{
		cfg:     cfg,
		log:     deps.Log,
		metrics: m,
		ready:   make(chan struct{}),
		state:   StateWaiting,
		since:   time.Now(),
	}
	if cfg.TLSCAFile != "" {
		if g.caPool, err = loadCAPool(cfg.TLSCAFile); err != nil {
			return nil, fmt.Errorf("create dbcheck gate: %w", err)
		}
	}
	return g, nil
}

// Ready is closed once the first check has succeeded.
func (g *Gate) Ready() <-chan struct{} { return g.ready }

// Run is the gate, then the ongoing check. The gate retries with capped
// exponential backoff, logging every attempt, until a check succeeds (Ready
// is closed) or WaitTimeout has passed: then Run returns an error that names
// the last reason, and the box stops. Afterwards Run checks every
// CheckInterval, logs transitions once, and never returns before ctx is
// done: a database going away makes the box not ready, it restarts nothing.
func (g *Gate) Run(ctx context.Context) error {
	if err := g.wait(ctx); err != nil || ctx.Err() != nil {
		return err
	}
	tick := time.NewTicker(g.cfg.CheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		latency, err := g.probe(ctx)
		if ctx.Err() != nil {
			return nil // the check was cut short by the stop, not by the database
		}
		g.logTransition(g.record(latency, err))
	}
}

// WaitError is Run's error when the database was not ready in time.
type WaitError struct {
	Waited   time.Duration
	Attempts int
	Last     *CheckError
}

func (e *WaitError) Error() string {
	return fmt.Sprintf("database not ready after %s and %d attempts, last reason: %v",
		e.Waited.Round(time.Millisecond), e.Attempts, e.Last)
}

// Unwrap returns the last check's error.
func (e *WaitError) Unwrap() error { return e.Last }

// wait is the gate phase. It returns nil once a check succeeded or ctx is
// done, a *WaitError past WaitTimeout.
func (g *Gate) wait(ctx context.Context) error {
	start := time.Now()
	var deadline time.Time
	if g.cfg.WaitTimeout > 0 {
		deadline = start.Add(g.cfg.WaitTimeout)
	}
	ceiling := min(maxBackoff, g.cfg.CheckInterval)
	backoff := min(firstBackoff, ceiling)
	g.log.Info().Str("addr", g.addr()).Str("user", g.cfg.User).Str("database", g.cfg.Database).
		Str("tls", g.cfg.TLS).Str("wait_timeout", waitTimeoutText(g.cfg.WaitTimeout)).
		Msg("waiting for the database")
	for attempt := 1; ; attempt++ {
		latency, err := g.probe(ctx)
		if ctx.Err() != nil {
			return nil
		}
		g.record(latency, err)
		waited := time.Since(start)
		if err == nil {
			g.log.Info().Int("attempt", attempt).Str("waited", round(waited)).Str("latency", round(latency)).
				Msg("database ready")
			g.readyOnce.Do(func() { close(g.ready) })
			return nil
		}
		ce := err.(*CheckError)
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			werr := &WaitError{Waited: waited, Attempts: attempt, Last: ce}
			g.log.Error().Int("attempt", attempt).Str("waited", round(waited)).Str("reason", ce.Reason.Words()).
				Str("error", ce.Detail).Msg("giving up: " + werr.Error())
			return werr
		}
		next := backoff
		if !deadline.IsZero() {
			// One last attempt at the deadline rather than giving up early.
			next = min(next, time.Until(deadline))
		}
		ev := g.log.Warn().Int("attempt", attempt).Str("waited", round(waited)).
			Str("reason", ce.Reason.Words()).Str("error", ce.Detail).Str("next_in", round(next))
		if h := ce.Reason.hint(); h != "" {
			ev = ev.Bool("config_mistake", ce.Reason.ConfigMistake()).Str("hint", h)
		}
		ev.Msg("database not ready: " + ce.Reason.Words())

		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, ceiling)
	}
}

// transition is what one check changed, for logTransition.
type transition struct {
	from, to   State
	prevReason Reason
	err        *CheckError
	downtime   time.Duration // for down → up
	failed     int           // failed checks while down, for down → up
}

// record stores a check's result, updates the metrics and returns the
// transition it made.
func (g *Gate) record(latency time.Duration, err error) transition {
	now := time.Now()
	g.metrics.latency.Observe(latency.Seconds())
	g.mu.Lock()
	defer g.mu.Unlock()
	tr := transition{from: g.state, failed: g.failedChecks, downtime: now.Sub(g.since)}
	if g.lastErr != nil {
		tr.prevReason = g.lastErr.Reason
	}
	g.latency = latency
	if err == nil {
		g.metrics.up.Set(1)
		g.lastSuccess = now
		g.failedChecks = 0
		g.setState(StateUp, now)
	} else {
		ce := err.(*CheckError)
		g.metrics.up.Set(0)
		g.metrics.failures.WithLabelValues(string(ce.Reason)).Inc()
		g.lastErr, g.lastErrAt = ce, now
		g.failedChecks++
		tr.err = ce
		if g.state == StateUp {
			g.setState(StateDown, now)
		}
	}
	tr.to = g.state
	return tr
}

func (g *Gate) setState(s State, now time.Time) {
	if g.state != s {
		g.state, g.since = s, now
	}
}

// logTransition logs a change once: up → down, down → up, and a change of
// reason while down. Checks that change nothing log nothing.
func (g *Gate) logTransition(tr transition) {
	switch {
	case tr.from == StateUp && tr.to == StateDown:
		ev := g.log.Error().Str("reason", tr.err.Reason.Words()).Str("error", tr.err.Detail)
		if h := tr.err.Reason.hint(); h != "" {
			ev = ev.Str("hint", h)
		}
		if g.cfg.AffectsReadiness {
			ev = ev.Str("readiness", "not ready until the database is back")
		}
		ev.Msg("database down: " + tr.err.Reason.Words())
	case tr.from == StateDown && tr.to == StateUp:
		g.log.Info().Str("downtime", round(tr.downtime)).Int("failed_checks", tr.failed).
			Msg("database up again")
	case tr.to == StateDown && tr.err != nil && tr.err.Reason != tr.prevReason:
		g.log.Warn().Str("reason", tr.err.Reason.Words()).Str("was", tr.prevReason.Words()).
			Str("error", tr.err.Detail).Msg("database still down: " + tr.err.Reason.Words())
	}
}

// Check returns nil while the database is up, or always when
// AffectsReadiness is false; else why it is not, for /readyz.
func (g *Gate) Check() error {
	if !g.cfg.AffectsReadiness {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	last := g.lastErr
	if last == nil {
		last = &CheckError{Reason: reasonNotYetChecked}
	}
	switch g.state {
	case StateUp:
		return nil
	case StateWaiting:
		return fmt.Errorf("database not ready yet: %w", last)
	}
	return fmt.Errorf("database down since %s: %w", g.since.UTC().Format(time.RFC3339), last)
}

// Status is the gate's part of /status.
type Status struct {
	State            State     `json:"state"`
	Since            time.Time `json:"since"`
	Addr             string    `json:"addr"`
	User             string    `json:"user"`
	Database         string    `json:"database,omitempty"`
	TLS              string    `json:"tls"`
	AffectsReadiness bool      `json:"affects_readiness"`
	Reason           string    `json:"reason,omitempty"`     // of the last failure while not up
	LastError        string    `json:"last_error,omitempty"` // the last failure, even once up again
	LastErrorAt      time.Time `json:"last_error_at,omitzero"`
	LastSuccess      time.Time `json:"last_success,omitzero"`
	Latency          string    `json:"latency,omitempty"` // of the last check
	LatencySeconds   float64   `json:"latency_seconds"`
	FailedChecks     int       `json:"failed_checks"` // consecutive
}

// Status returns a Status.
func (g *Gate) Status() any {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := Status{
		State:            g.state,
		Since:            g.since,
		Addr:             g.addr(),
		User:             g.cfg.User,
		Database:         g.cfg.Database,
		TLS:              g.cfg.TLS,
		AffectsReadiness: g.cfg.AffectsReadiness,
		LastErrorAt:      g.lastErrAt,
		LastSuccess:      g.lastSuccess,
		LatencySeconds:   g.latency.Seconds(),
		FailedChecks:     g.failedChecks,
	}
	if g.latency > 0 {
		s.Latency = round(g.latency)
	}
	if g.lastErr != nil {
		s.LastError = g.lastErr.Error()
		if g.state != StateUp {
			s.Reason = g.lastErr.Reason.Words()
		}
	}
	return s
}

// probe is one check: a new connection (never a pooled one, so the login
// itself is checked every time), logged in as the app's user to the app's
// database, running SELECT 1. The error is always a *CheckError.
func (g *Gate) probe(ctx context.Context) (time.Duration, error) {
	// Read at every check: a secret mounted late or rotated is picked up
	// without a restart.
	password, err := g.password()
	if err != nil {
		return 0, &CheckError{Reason: ReasonPasswordFile, Detail: err.Error(), err: err}
	}
	c := g.driverConfig(password)
	connector, err := mysql.NewConnector(c)
	if err != nil {
		return 0, newCheckError(err, password)
	}
	db := sql.OpenDB(connector)
	defer db.Close()

	ctx, cancel := context.WithTimeout(ctx, g.cfg.CheckTimeout)
	defer cancel()
	start := time.Now()
	var one int
	err = db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
	latency := time.Since(start)
	if err != nil {
		ce := newCheckError(err, password)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// Whatever the driver made of it, the check ran out of time.
			ce.Reason = ReasonTimeout
			ce.Detail = "no answer within " + g.cfg.CheckTimeout.String() + " (MYSQL_CHECK_TIMEOUT): " + ce.Detail
		}
		return latency, ce
	}
	return latency, nil
}

// driverConfig builds the driver's settings. TLS goes through Config.TLS,
// not mysql.RegisterTLSConfig, so the gate adds nothing to the driver's
// process-wide registry (the app may register its own names).
func (g *Gate) driverConfig(password string) *mysql.Config {
	c := mysql.NewConfig()
	c.User, c.Passwd, c.DBName = g.cfg.User, password, g.cfg.Database
	c.Net, c.Addr = "tcp", g.addr()
	// Dial timeout only: the check's context bounds the whole check. A read
	// timeout as well would race it and turn "timeout" into the driver's
	// vaguer "invalid connection".
	c.Timeout = g.cfg.CheckTimeout
	c.Logger = driverLogger{g.log, password}
	switch g.cfg.TLS {
	case "true":
		c.TLS = &tls.Config{RootCAs: g.caPool, ServerName: g.cfg.Host, MinVersion: tls.VersionTLS12}
	case "skip-verify", "preferred":
		// The driver's own modes: encrypt without verifying; preferred
		// also falls back to plain text when the server has no TLS.
		c.TLSConfig = g.cfg.TLS
	}
	return c
}

func (g *Gate) addr() string { return net.JoinHostPort(g.cfg.Host, strconv.Itoa(g.cfg.Port)) }

// driverLogger sends the driver's own complaints to debug level, so they
// leave stderr alone and pass through the same scrub as everything else.
type driverLogger struct {
	log      zerolog.Logger
	password string
}

func (d driverLogger) Print(v ...any) {
	d.log.Debug().Msg("mysql driver: " + scrub(fmt.Sprint(v...), d.password))
}

// loadCAPool reads a PEM file of CA certificates.
func loadCAPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("read CA file %q: no PEM certificate in it", path)
	}
	return pool, nil
}

func round(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.String()
}

func waitTimeoutText(d time.Duration) string {
	if d == 0 {
		return "forever"
	}
	return d.String()
}
