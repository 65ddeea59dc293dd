package main

import (
	"fmt"
	"io"

	"onebox/proxy"
)

// check validates the environment like nginx -t: every problem at once and
// exit 1, or the effective configuration (secrets masked) and exit 0.
func check(stdout, stderr io.Writer, environ map[string]string) error {
	s, warnings, ps := load(environ, true)
	for _, w := range warnings {
		fmt.Fprintln(stderr, "onebox: warning:", w)
	}
	if len(ps) > 0 {
		fmt.Fprintf(stderr, "onebox: the environment has %d problem(s):\n", len(ps))
		for _, p := range ps {
			fmt.Fprintln(stderr, "  "+p.Error())
		}
		return &exitError{code: exitFailure}
	}
	writeEffective(stdout, s)
	// Where request and response bodies past their memory buffer go: a
	// read-only root has no writable PROXY_TEMP_DIR (issue 11).
	where, note := proxy.TempStorage(s.Proxy.TempDir)
	if note != "" {
		fmt.Fprintln(stderr, "onebox: warning:", note)
	}
	fmt.Fprintln(stderr, "onebox: bodies past their memory buffer go to", where)
	fmt.Fprintln(stderr, "onebox: configuration ok")
	return nil
}
