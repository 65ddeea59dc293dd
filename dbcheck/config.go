package dbcheck

import (
	"strconv"
	"time"

	"onebox/config"
)

// Config is the database gate's part of the environment, prefix MYSQL_. The
// names are those of the official mysql image, so one env file serves both.
type Config struct {
	Host             string        `env:"HOST" help:"database host; setting it enables the gate"`
	Port             int           `env:"PORT" envDefault:"3306" help:"database port"`
	User             string        `env:"USER" help:"user the gate logs in as (the app's user)"`
	Password         config.Secret `env:"PASSWORD" secret:"true" help:"that user's password (or MYSQL_PASSWORD_FILE)"`
	PasswordFile     string        `env:"PASSWORD_FILE" help:"file holding the password (docker secrets), trimmed; the gate re-reads it at every check, so a rotated secret needs no restart"`
	Database         string        `env:"DATABASE" help:"database that must exist and accept the user"`
	TLS              string        `env:"TLS" envDefault:"false" help:"false, true (verify), skip-verify or preferred"`
	TLSCAFile        string        `env:"TLS_CA_FILE" help:"PEM file of the CA that signed the server's certificate"`
	WaitTimeout      time.Duration `env:"WAIT_TIMEOUT" envDefault:"60s" help:"how long the gate waits before the app starts; 0 = forever"`
	CheckInterval    time.Duration `env:"CHECK_INTERVAL" envDefault:"5s" help:"period of the ongoing check once running; also the cap of the gate's retry backoff"`
	CheckTimeout     time.Duration `env:"CHECK_TIMEOUT" envDefault:"5s" help:"time one check (connect, log in, SELECT 1) may take before it counts as a timeout"`
	AffectsReadiness bool          `env:"AFFECTS_READINESS" envDefault:"true" help:"while the database is down, /readyz answers not ready"`
}

// Enabled reports whether the gate is configured.
func (c Config) Enabled() bool { return c.Host != "" }

// Validate reports every problem with the gate's settings.
func (c Config) Validate() config.Problems {
	var ps config.Problems
	if !c.Enabled() {
		return ps
	}
	if c.Port < 1 || c.Port > 65535 {
		ps.Add("PORT", strconv.Itoa(c.Port), "a port number from 1 to 65535")
	}
	if c.User == "" {
		ps.Add("USER", "", "a user name: the gate logs in to check the database really accepts the app")
	}
	switch c.TLS {
	case "false", "true", "skip-verify", "preferred":
	default:
		ps.Add("TLS", c.TLS, "false, true, skip-verify or preferred")
	}
	if c.WaitTimeout < 0 {
		ps.Add("WAIT_TIMEOUT", c.WaitTimeout.String(), "0 (forever) or a positive duration such as 60s")
	}
	if c.CheckInterval <= 0 {
		ps.Add("CHECK_INTERVAL", c.CheckInterval.String(), "a positive duration such as 5s")
	}
	if c.CheckTimeout <= 0 {
		ps.Add("CHECK_TIMEOUT", c.CheckTimeout.String(), "a positive duration such as 5s")
	}
	if c.TLSCAFile != "" {
		if c.TLS != "true" {
			// skip-verify and preferred do not verify, false does not encrypt:
			// a CA given with them would silently be ignored.
			ps.Add("TLS_CA_FILE", c.TLSCAFile, "set only with MYSQL_TLS=true, the one mode that verifies the server")
		} else if _, err := loadCAPool(c.TLSCAFile); err != nil {
			ps.Add("TLS_CA_FILE", c.TLSCAFile, "a readable PEM file with at least one CA certificate: "+err.Error())
		}
	}
	return ps
}
