package supervisor

import (
	"strconv"
	"time"

	"onebox/config"
)

// Config is the supervisor's part of the environment, prefix ONEBOX_.
type Config struct {
	LogLevel        string        `env:"LOG_LEVEL" envDefault:"info" help:"log level: trace, debug, info, warn or error"`
	LogFormat       string        `env:"LOG_FORMAT" envDefault:"json" help:"json (one object per line) or console (for humans)"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"9s" help:"the whole graceful-stop budget; keep it below docker stop's grace period (10s by default)"`
	ShutdownDelay   time.Duration `env:"SHUTDOWN_DELAY" envDefault:"0s" help:"lame duck: on TERM, fail /readyz at once but keep serving (answering with Connection: close) this long before the stop budget starts, while an orchestrator takes the replica out of its load balancer; added to ONEBOX_SHUTDOWN_TIMEOUT, so the stop grace period must cover both"`
	AdminListen     string        `env:"ADMIN_LISTEN" envDefault:"127.0.0.1:9901" help:"address of the admin endpoint (/healthz, /readyz, /status, /metrics, POST /reload, /scale); off disables it"`
	AdminToken      config.Secret `env:"ADMIN_TOKEN" secret:"true" help:"Bearer token that allows control calls from non-loopback peers"`
	GoMaxProcs      int           `env:"GOMAXPROCS" help:"Go threads running at once; 0 leaves Go's default (the container's CPU limit)"`
}

// Validate reports every problem with the supervisor's settings.
func (c Config) Validate() config.Problems {
	var ps config.Problems
	switch c.LogLevel {
	case "trace", "debug", "info", "warn", "error":
	default:
		ps.Add("LOG_LEVEL", c.LogLevel, "one of trace, debug, info, warn, error")
	}
	switch c.LogFormat {
	case "json", "console":
	default:
		ps.Add("LOG_FORMAT", c.LogFormat, "json or console")
	}
	if c.ShutdownTimeout <= 0 {
		ps.Add("SHUTDOWN_TIMEOUT", c.ShutdownTimeout.String(), "a positive duration such as 9s")
	}
	if c.ShutdownDelay < 0 {
		ps.Add("SHUTDOWN_DELAY", c.ShutdownDelay.String(), "0 (no delay) or a positive duration such as 5s")
	}
	if c.GoMaxProcs < 0 {
		ps.Add("GOMAXPROCS", strconv.Itoa(c.GoMaxProcs), "0 (Go's default) or a positive number")
	}
	return ps
}

// DockerStopGrace is docker stop's default grace period before SIGKILL.
const DockerStopGrace = 10 * time.Second

// StopTime is the longest a graceful stop takes: the lame-duck delay, then
// the budget. An orchestrator's grace period must be at least this.
func (c Config) StopTime() time.Duration { return c.ShutdownDelay + c.ShutdownTimeout }
