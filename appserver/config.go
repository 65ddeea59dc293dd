package appserver

import (
	"strconv"
	"strings"
	"time"

	"onebox/config"
)

// Config is the worker pool's part of the environment, prefix APP_.
type Config struct {
	Command           string          `env:"COMMAND" help:"worker command, split like a shell would (quotes, backslashes), run without a shell; empty runs no pool"`
	Dir               string          `env:"DIR" help:"working directory of the workers and of APP_PRESTART"`
	Bind              string          `env:"BIND" help:"the app socket the workers accept on: unix:/path, unix:@name (abstract) or host:port; empty = unix:/run/onebox/app.sock when /run/onebox is writable, else the abstract unix:@onebox/app.sock (a read-only root needs no writable mount)"`
	Workers           int             `env:"WORKERS" help:"worker count (alias WEB_CONCURRENCY); 0 = 2 x CPU limit + 1, capped by APP_MAX_WORKERS"`
	MaxWorkers        int             `env:"MAX_WORKERS" envDefault:"12" help:"cap of the computed default worker count"`
	Timeout           time.Duration   `env:"TIMEOUT" envDefault:"30s" help:"a worker whose heartbeat is older than this is killed (ABRT, then KILL)"`
	BootTimeout       time.Duration   `env:"BOOT_TIMEOUT" envDefault:"5s" help:"a worker that said hello on its heartbeat fd must say ready within this or it failed to boot; one that never writes there counts as booted once it has lived this long, one that exits earlier failed to boot, and a reload waits this long for such workers"`
	GracefulTimeout   time.Duration   `env:"GRACEFUL_TIMEOUT" envDefault:"30s" help:"time a worker has to drain on stop or reload, clamped to ONEBOX_SHUTDOWN_TIMEOUT"`
	MaxRequests       int             `env:"MAX_REQUESTS" envDefault:"0" help:"recycle a worker after this many requests; 0 = never"`
	MaxRequestsJitter int             `env:"MAX_REQUESTS_JITTER" envDefault:"0" help:"add up to this many requests at random to APP_MAX_REQUESTS, so workers do not recycle together"`
	Threads           int             `env:"THREADS" envDefault:"1" help:"threads per worker for workers that take them (onebox_worker reads it as ONEBOX_THREADS); 1 = sync: a request that runs longer than APP_TIMEOUT is killed, as gunicorn's sync worker"`
	WorkerConnections int             `env:"WORKER_CONNECTIONS" envDefault:"0" help:"connections one worker serves at once, for a worker that serves a kept-alive connection to its end before it accepts the next (a single-threaded keep-alive server such as Python's http.server): the proxy then opens at most APP_WORKERS x this many to the pool and queues the other requests, at most PROXY_READ_TIMEOUT (504 past it), until one is free, as nginx's max_conns with the commercial queue does (open-source nginx's max_conns alone fails them at once); 0 = no bound (Go workers, onebox_worker, gunicorn, uvicorn and node accept more connections than they serve requests)"`
	MaxWorkerMemory   config.ByteSize `env:"MAX_WORKER_MEMORY" envDefault:"0" help:"recycle a worker whose resident memory (with its child processes) is above this, replacement first (k, m, g suffixes); 0 = never"`
	Prestart          string          `env:"PRESTART" help:"command run once after the database gate and before the workers (migrations); non-zero exit stops the container"`
	PrestartTimeout   time.Duration   `env:"PRESTART_TIMEOUT" envDefault:"10m" help:"APP_PRESTART must finish within this, or it is stopped (TERM, then KILL) and the container exits non-zero"`
}

// Enabled reports whether a pool is configured.
func (c Config) Enabled() bool { return strings.TrimSpace(c.Command) != "" }

// Validate reports every problem with the pool's settings.
func (c Config) Validate() config.Problems {
	var ps config.Problems
	if c.Command != "" {
		if _, err := SplitCommand(c.Command); err != nil {
			ps.Add("COMMAND", c.Command, err.Error())
		}
	}
	if c.Prestart != "" {
		if _, err := SplitCommand(c.Prestart); err != nil {
			ps.Add("PRESTART", c.Prestart, err.Error())
		}
	}
	const wantBind = "empty (the default socket), unix:/absolute/path, unix:@abstract-name or host:port"
	if path, ok := strings.CutPrefix(c.Bind, "unix:"); ok {
		if !strings.HasPrefix(path, "/") && (!isAbstract(path) || len(path) < 2) {
			ps.Add("BIND", c.Bind, wantBind)
		}
	} else if c.Bind == "" {
		// resolveBind picks the default.
	} else if _, port, err := splitHostPort(c.Bind); err != nil || port == "" {
		ps.Add("BIND", c.Bind, wantBind)
	}
	if c.Workers < 0 {
		ps.Add("WORKERS", strconv.Itoa(c.Workers), "a positive number, or 0 for 2 x CPU limit + 1")
	}
	if c.MaxWorkers < 1 {
		ps.Add("MAX_WORKERS", strconv.Itoa(c.MaxWorkers), "a positive number")
	}
	if c.Timeout <= 0 {
		ps.Add("TIMEOUT", c.Timeout.String(), "a positive duration such as 30s")
	}
	if c.BootTimeout <= 0 {
		ps.Add("BOOT_TIMEOUT", c.BootTimeout.String(), "a positive duration such as 5s")
	}
	if c.GracefulTimeout <= 0 {
		ps.Add("GRACEFUL_TIMEOUT", c.GracefulTimeout.String(), "a positive duration such as 30s")
	}
	if c.Prestart != "" && c.PrestartTimeout <= 0 {
		ps.Add("PRESTART_TIMEOUT", c.PrestartTimeout.String(), "a positive duration such as 10m")
	}
	if c.MaxRequests < 0 {
		ps.Add("MAX_REQUESTS", strconv.Itoa(c.MaxRequests), "0 (never) or a positive number")
	}
	if c.Threads < 0 {
		// 0 is taken as 1: a Config built in code leaves it unset.
		ps.Add("THREADS", strconv.Itoa(c.Threads), "1 (sync) or more")
	}
	if c.WorkerConnections < 0 {
		ps.Add("WORKER_CONNECTIONS", strconv.Itoa(c.WorkerConnections), "0 (no bound) or a positive number")
	}
	if c.MaxWorkerMemory < 0 {
		ps.Add("MAX_WORKER_MEMORY", c.MaxWorkerMemory.String(), "0 (never) or a size such as 512m")
	}
	if c.MaxRequestsJitter < 0 {
		ps.Add("MAX_REQUESTS_JITTER", strconv.Itoa(c.MaxRequestsJitter), "0 or a positive number")
	}
	return ps
}
