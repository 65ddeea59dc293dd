package main

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"onebox/config"
	"onebox/proxy"
)

// shared prefixes are also used by others: the app's own settings (APP_ENV)
// and the official mysql image's (MYSQL_ROOT_PASSWORD), since one env file
// serves onebox and the database. Under them only near misses of our names
// are reported; under ONEBOX_ and PROXY_ every unknown name is.
var (
	ownPrefixes    = []string{"ONEBOX_", "PROXY_"}
	sharedPrefixes = []string{"APP_", "MYSQL_"}
)

// workerVars are set by onebox for its workers; a worker that runs onebox
// (onebox check inside a worker) must not see them as typos.
var workerVars = map[string]bool{"ONEBOX_WORKER_ID": true, "ONEBOX_HEARTBEAT_FD": true}

// foreignVars are read by others under our shared prefixes: the mysql
// client's environment (MYSQL_HOME is one edit from MYSQL_HOST).
var foreignVars = map[string]bool{
	"MYSQL_HOME": true, "MYSQL_PWD": true, "MYSQL_TCP_PORT": true, "MYSQL_UNIX_PORT": true,
	"MYSQL_HISTFILE": true, "MYSQL_PS1": true, "MYSQL_TEST_LOGIN_FILE": true, "MYSQL_HISTIGNORE": true,
}

// unknownVars reports variables with one of our prefixes that no setting
// reads, each with the closest known name when there is one.
func unknownVars(e map[string]string, fields []field, siteNames []string) config.Problems {
	known := map[string]bool{}
	var names []string
	add := func(n string) {
		known[n] = true
		names = append(names, n)
	}
	for _, f := range fields {
		add(f.Name)
		if f.Secret {
			add(f.Name + "_FILE")
		}
	}
	for _, name := range siteNames {
		for _, f := range describe(reflect.TypeOf(proxy.Site{}), sitePrefix(strings.TrimSpace(name))) {
			add(f.Name)
		}
	}

	var vars []string
	for k := range e {
		vars = append(vars, k)
	}
	sort.Strings(vars)
	var ps config.Problems
	for _, k := range vars {
		if known[k] || workerVars[k] || foreignVars[k] {
			continue
		}
		own, shared := hasPrefix(k, ownPrefixes), hasPrefix(k, sharedPrefixes)
		if !own && !shared {
			continue
		}
		best, dist := closest(k, names)
		close := dist <= max(2, len(k)/5)
		switch {
		// The value of an unknown variable is never shown: a misspelt secret
		// (MYSQL_PASSWROD) must not reach the log in clear.
		case strings.HasPrefix(k, "PROXY_SITE_"):
			ps = append(ps, config.Problem{Var: k, Value: e[k], Secret: true,
				Want: "a setting of a site listed in PROXY_SITES (PROXY_SITE_<NAME>_ROOT, …)" + suggest(best, close)})
		case own || close:
			ps = append(ps, config.Problem{Var: k, Value: e[k], Secret: true,
				Want: "a known variable" + suggest(best, close)})
		}
	}
	return ps
}

func suggest(best string, close bool) string {
	if !close || best == "" {
		return " (see onebox env)"
	}
	return fmt.Sprintf(": did you mean %s?", best)
}

func hasPrefix(k string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// closest returns the name with the smallest edit distance to k.
func closest(k string, names []string) (string, int) {
	best, dist := "", 1<<30
	for _, n := range names {
		if d := levenshtein(k, n); d < dist {
			best, dist = n, d
		}
	}
	return best, dist
}

// levenshtein counts single-character insertions, deletions and
// substitutions, with an adjacent swap counted as one (LEVLE → LEVEL).
func levenshtein(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
