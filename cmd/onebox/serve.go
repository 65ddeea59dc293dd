package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"onebox/appserver"
	"onebox/dbcheck"
	"onebox/proxy"
	"onebox/supervisor"
)

// shimArg is the hidden command the pool starts workers through, so that
// LISTEN_PID can name the worker's own pid (see appserver.ShimMain).
const shimArg = appserver.ShimArg

func shimMain(args []string) error { return appserver.ShimMain(args) }

// serve is `onebox run`: validate, wire the components in start order
// (database gate, pool, proxy) and hand them to the supervisor.
func serve(ctx context.Context, stdout io.Writer, environ map[string]string) error {
	// Before anything else: a TERM that arrives while we set up must start a
	// clean stop, not kill PID 1 with Go's default exit status 2.
	sigs := supervisor.CatchSignals()
	s, warnings, ps := load(environ, false)
	log := newLogger(s.Onebox, stdout)
	if len(ps) > 0 {
		for _, p := range ps {
			log.Error().Str("component", "config").Str("variable", p.Var).Msg(p.Error())
		}
		return &exitError{code: exitConfig, msg: fmt.Sprintf("invalid configuration: %d problem(s), each logged above; `onebox check` lists them", len(ps))}
	}
	for _, w := range warnings {
		log.Warn().Str("component", "config").Msg(w)
	}
	if s.Onebox.GoMaxProcs > 0 {
		runtime.GOMAXPROCS(s.Onebox.GoMaxProcs)
	}
	log.Info().Str("component", "supervisor").Str("version", version()).Int("pid", os.Getpid()).
		Int("gomaxprocs", runtime.GOMAXPROCS(0)).Msg("onebox starting")

	sup := supervisor.New(s.Onebox, log.With().Str("component", "supervisor").Logger(), sigs)
	reg := sup.Registry()

	var prestartLock func(context.Context) (func(), error)
	if s.MySQL.Enabled() {
		gate, err := dbcheck.New(s.MySQL, dbcheck.Deps{
			Log:     log.With().Str("component", "dbcheck").Logger(),
			Metrics: reg,
		})
		if err != nil {
			return fmt.Errorf("set up dbcheck: %w", err)
		}
		sup.Add("dbcheck", gate)
		prestartLock = func(ctx context.Context) (func(), error) {
			return gate.Lock(ctx, dbcheck.PrestartLockName)
		}
	}

	appBind := ""
	var appMaxConns func() int
	if s.App.Enabled() {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find own executable for the worker shim: %w", err)
		}
		workerLog := log.With().Str("component", "worker").Logger()
		master, err := appserver.New(s.App, appserver.Deps{
			Log:             log.With().Str("component", "appserver").Logger(),
			WorkerLog:       &workerLog,
			Metrics:         reg,
			Start:           sup.Reaper().Start,
			ShutdownTimeout: s.Onebox.ShutdownTimeout,
			StopDeadline:    sup.StopDeadline,
			Shim:            []string{self, appserver.ShimArg},
			PrestartLock:    prestartLock,
		})
		if err != nil {
			return fmt.Errorf("set up appserver: %w", err)
		}
		sup.Add("appserver", master)
		appBind = master.Addr() // APP_BIND, or the default socket the pool chose
		if s.App.WorkerConnections > 0 {
			// Only with a bound: without one, a connLimit on the
			// pool's upstream would still take its lock on every
			// request. MaxConns follows `onebox scale`.
			appMaxConns = master.MaxConns
		}
	}

	px, err := proxy.New(s.Proxy, proxy.Deps{
		Log:          log.With().Str("component", "proxy").Logger(),
		Metrics:      reg,
		AppBind:      appBind,
		AppMaxConns:  appMaxConns,
		DrainTimeout: proxyDrain(s.Onebox.ShutdownTimeout),
	})
	if err != nil {
		return fmt.Errorf("set up proxy: %w", err)
	}
	sup.Add("proxy", px)

	return sup.Run(ctx)
}

// proxyDrain is the proxy's share of the one shutdown budget. Components stop
// one after the other (proxy, then pool, then gate), so the proxy may not use
// it all: the last quarter (at least a second, when the budget allows) is kept
// for the workers to receive TERM and exit before the supervisor's SIGKILL.
func proxyDrain(budget time.Duration) time.Duration {
	reserve := max(budget/4, min(time.Second, budget/2))
	return budget - reserve
}
