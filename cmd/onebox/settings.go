package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"onebox/appserver"
	"onebox/config"
	"onebox/dbcheck"
	"onebox/proxy"
	"onebox/supervisor"
)

// Settings is the whole environment contract: one struct composed of each
// component's own Config. It is parsed once, here, and nowhere else.
type Settings struct {
	Onebox supervisor.Config `envPrefix:"ONEBOX_"`
	Proxy  proxy.Config      `envPrefix:"PROXY_"`
	App    appserver.Config  `envPrefix:"APP_"`
	MySQL  dbcheck.Config    `envPrefix:"MYSQL_"`
}

// sitePrefix is where a named site's settings live: PROXY_SITE_DOCS_ROOT.
func sitePrefix(name string) string { return "PROXY_SITE_" + strings.ToUpper(name) + "_" }

// aliases users expect from other tools: the alias applies when the canonical
// variable is not set.
var aliases = map[string]string{
	"WEB_CONCURRENCY": "APP_WORKERS", // gunicorn, Heroku
}

// load parses and validates the environment. It returns every problem at
// once, and warnings (unknown variables, odd combinations) that do not stop a
// start. strict turns unknown variables into problems, as `onebox check` does.
func load(environ map[string]string, strict bool) (Settings, []string, config.Problems) {
	var (
		s  Settings
		ps config.Problems
	)
	e := make(map[string]string, len(environ))
	for k, v := range environ {
		e[k] = v
	}

	aliased, warnings := applyAliases(e)
	ps = append(ps, applyPort(e)...)

	fields := describe(reflect.TypeOf(s), "")
	ps = append(ps, readSecretFiles(e, fields)...)

	if err := env.ParseWithOptions(&s, env.Options{Environment: e}); err != nil {
		ps = append(ps, parseProblems(err, fields, e)...)
	}

	ps = append(ps, loadSites(&s, e)...)

	// A variable that did not parse is left at its zero value; validating
	// that value again would report the same variable twice.
	unparsed := map[string]bool{}
	for _, p := range ps {
		unparsed[p.Var] = true
	}
	for _, group := range []config.Problems{
		s.Onebox.Validate().Prefixed("ONEBOX_"),
		s.Proxy.Validate().Prefixed("PROXY_"),
		s.App.Validate().Prefixed("APP_"),
		s.MySQL.Validate().Prefixed("MYSQL_"),
	} {
		for _, p := range group {
			if !unparsed[p.Var] {
				ps = append(ps, p)
			}
		}
	}

	// A bad value that came through an alias is reported under the name the
	// user wrote.
	for i, p := range ps {
		if alias, ok := aliased[p.Var]; ok {
			ps[i].Var = alias + " (alias of " + p.Var + ")"
		}
	}

	if w := stopGraceWarning(s.Onebox, unparsed); w != "" {
		warnings = append(warnings, w)
	}
	warnings = append(warnings, s.App.Warnings()...)

	for _, u := range unknownVars(e, fields, s.Proxy.SiteNames) {
		if strict {
			ps = append(ps, u)
		} else {
			warnings = append(warnings, u.Error())
		}
	}
	return s, warnings, ps
}

// applyAliases gives each canonical variable the value of its alias when
// it is not set itself; it returns which canonical names came from an
// alias, and a warning for each alias a set variable overrides.
func applyAliases(e map[string]string) (aliased map[string]string, warnings []string) {
	aliased = map[string]string{} // canonical name → the alias its value came from
	for alias, canonical := range aliases {
		if v, ok := e[alias]; ok {
			if _, set := e[canonical]; !set {
				e[canonical] = v
				aliased[canonical] = alias
			} else if e[canonical] != v {
				warnings = append(warnings, fmt.Sprintf("%s=%q ignored: %s=%q is set", alias, v, canonical, e[canonical]))
			}
		}
	}
	return aliased, warnings
}

// applyPort applies PORT to PROXY_LISTEN.
func applyPort(e map[string]string) config.Problems {
	var ps config.Problems
	// PORT (Heroku, Cloud Run, many PaaS) replaces the port of PROXY_LISTEN.
	if port, ok := e["PORT"]; ok {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			ps = append(ps, config.Problem{Var: "PORT", Value: port, Want: "a port number from 1 to 65535"})
		} else {
			listen := e["PROXY_LISTEN"]
			if listen == "" {
				listen = ":8080"
			}
			// Keep the host: dropping it would silently widen a loopback-only
			// listener to every interface.
			if host, _, err := net.SplitHostPort(listen); err != nil {
				ps = append(ps, config.Problem{Var: "PROXY_LISTEN", Value: listen,
					Want: "host:port or :port, whose port PORT then replaces"})
			} else {
				e["PROXY_LISTEN"] = net.JoinHostPort(host, port)
			}
		}
	}
	return ps
}

// readSecretFiles reads NAME_FILE into NAME for the secret variables.
func readSecretFiles(e map[string]string, fields []field) config.Problems {
	var ps config.Problems
	for _, f := range fields {
		if !f.Secret {
			continue
		}
		fileVar := f.Name + "_FILE"
		path := e[fileVar]
		if path == "" {
			continue // unset or empty: as for every variable, empty means not set
		}
		if _, both := e[f.Name]; both {
			ps = append(ps, config.Problem{Var: f.Name, Value: e[f.Name], Secret: true,
				Want: fmt.Sprintf("either %s or %s, not both", f.Name, fileVar)})
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			ps = append(ps, config.Problem{Var: fileVar, Value: path, Want: "a readable file: " + err.Error()})
			continue
		}
		e[f.Name] = strings.TrimSpace(string(b))
	}
	return ps
}

// loadSites parses the named sites' variables into s.Proxy.Sites.
func loadSites(s *Settings, e map[string]string) config.Problems {
	var ps config.Problems
	// Named sites: PROXY_SITES=docs,shop reads PROXY_SITE_DOCS_*, PROXY_SITE_SHOP_*.
	seen := map[string]bool{}
	for _, name := range s.Proxy.SiteNames {
		name = strings.TrimSpace(name)
		if !proxy.ValidSiteName(name) || seen[strings.ToLower(name)] {
			continue // proxy.Config.Validate names the problem
		}
		seen[strings.ToLower(name)] = true
		var site proxy.Site
		prefix := sitePrefix(name)
		if err := env.ParseWithOptions(&site, env.Options{Environment: e, Prefix: prefix}); err != nil {
			ps = append(ps, parseProblems(err, describe(reflect.TypeOf(site), prefix), e)...)
		}
		site.Name = strings.ToLower(name)
		s.Proxy.Sites = append(s.Proxy.Sites, site)
	}
	return ps
}

// parseProblems turns the parser's errors into problems that name the
// variable. The parser names fields, not variables, so the field is looked up
// among the described fields.
func parseProblems(err error, fields []field, e map[string]string) config.Problems {
	var ps config.Problems
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return append(ps, config.Problem{Var: "(environment)", Want: err.Error()})
	}
	for _, one := range agg.Errors {
		var pe env.ParseError
		if !errors.As(one, &pe) {
			ps = append(ps, config.Problem{Var: "(environment)", Want: one.Error()})
			continue
		}
		var names []string
		var secret bool
		for _, f := range fields {
			if f.Field == pe.Name {
				if _, set := e[f.Name]; set {
					names = append(names, f.Name)
					secret = secret || f.Secret
				}
			}
		}
		name := strings.Join(names, " or ")
		ps = append(ps, config.Problem{Var: name, Value: e[name], Secret: secret, Want: want(pe)})
	}
	return ps
}

// want says in plain words what a variable of the failed type accepts.
func want(pe env.ParseError) string {
	switch pe.Type {
	case reflect.TypeOf(time.Duration(0)):
		return "a duration such as 9s, 500ms or 1m30s"
	case reflect.TypeOf(false):
		return "true or false"
	case reflect.TypeOf(0):
		return "a whole number"
	}
	return pe.Err.Error()
}

// stopGraceWarning says when a graceful stop (the lame-duck delay, then the
// budget) would outlast docker stop's default grace period, after which
// docker sends SIGKILL and the drain is cut.
func stopGraceWarning(c supervisor.Config, unparsed map[string]bool) string {
	if unparsed["ONEBOX_SHUTDOWN_DELAY"] || unparsed["ONEBOX_SHUTDOWN_TIMEOUT"] || c.StopTime() <= supervisor.DockerStopGrace {
		return ""
	}
	return fmt.Sprintf("ONEBOX_SHUTDOWN_DELAY (%s) + ONEBOX_SHUTDOWN_TIMEOUT (%s) = %s is more than docker stop's default grace period of %s: "+
		"give the container at least that (docker run --stop-timeout, compose stop_grace_period, Kubernetes terminationGracePeriodSeconds)",
		c.ShutdownDelay, c.ShutdownTimeout, c.StopTime(), supervisor.DockerStopGrace)
}
