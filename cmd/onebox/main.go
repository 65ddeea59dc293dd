// Command onebox is the whole web tier of a container: as PID 1 it runs a
// reverse proxy and static file server, a pre-fork worker pool for the app,
// and a MySQL gate, configured from environment variables only.
//
// Usage:
//
//	onebox [run]            start (the container's entrypoint)
//	onebox check            validate the environment like nginx -t
//	onebox env              print the variable reference as Markdown
//	onebox health           exit 0 iff ready (the image's HEALTHCHECK)
//	onebox status [--json]  show components and workers
//	onebox reload           graceful reload (as HUP)
//	onebox scale +N|-N|N    change the worker count
//	onebox version          print the version
//
// Every variable, its default and its meaning: `onebox env`, or
// docs/environment.md, which is that output.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, environ())
	os.Exit(exitCode(err, os.Stderr))
}

// Exit codes scripts can rely on.
const (
	exitOK       = 0
	exitFailure  = 1  // a component failed, a check found problems, not ready
	exitUsage    = 2  // bad command line
	exitConfig   = 78 // sysexits EX_CONFIG: `onebox run` refused its environment
	exitNoServer = 69 // sysexits EX_UNAVAILABLE: the admin endpoint does not answer
)

// exitError carries an exit code; its message may be empty when the command
// has already said everything.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }
func (e *exitError) ExitCode() int { return e.code }

// exitCode prints err (unless the command already did) and maps it to the
// process's exit status. Run returns nil after a clean stop, so any error,
// even one wrapping context.Canceled, is a failure.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintln(stderr, "onebox:", msg)
	}
	var coder interface{ ExitCode() int }
	if errors.As(err, &coder) {
		return coder.ExitCode()
	}
	return exitFailure
}

const usage = `onebox: the whole web tier of a container (proxy, worker pool, database gate, PID 1)

Usage:
  onebox [run]            start everything (the container's entrypoint)
  onebox check            validate the environment like nginx -t: exit 1 listing every
                          problem, or exit 0 printing the effective configuration
  onebox env              print the variable reference (Markdown)
  onebox health           exit 0 iff onebox is ready (the image's HEALTHCHECK)
  onebox status [--json]  show components, workers and the database state
  onebox reload           graceful reload: new workers first, then the old drain (as HUP)
  onebox scale +N|-N|N    add, remove or set workers (as TTIN/TTOU)
  onebox version          print the version

Configuration comes from environment variables only: see 'onebox env'.
Exit codes: 0 ok, 1 failure or not ready, 2 usage, 69 admin endpoint unreachable,
78 invalid configuration at start.
`

// run dispatches a command line; it is main without the process around it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, environ map[string]string) error {
	cmd := "run"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	if wantsHelp(args) || cmd == "help" || cmd == "-h" || cmd == "--help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	switch cmd {
	case "run":
		return noArgs(cmd, args, func() error { return serve(ctx, stdout, environ) })
	case "check":
		return noArgs(cmd, args, func() error { return check(stdout, stderr, environ) })
	case "env":
		return noArgs(cmd, args, func() error { writeReference(stdout); return nil })
	case "version", "--version", "-v":
		return noArgs(cmd, args, func() error { fmt.Fprintln(stdout, "onebox", version()); return nil })
	case "health":
		return noArgs(cmd, args, func() error { return health(ctx, stdout, environ) })
	case "status":
		asJSON := len(args) == 1 && args[0] == "--json"
		if len(args) > 0 && !asJSON {
			return usageError("status takes only --json")
		}
		return status(ctx, stdout, environ, asJSON)
	case "reload":
		return noArgs(cmd, args, func() error { return reload(ctx, stdout, environ) })
	case "scale":
		if len(args) != 1 {
			return usageError("scale takes one argument: +N, -N or N")
		}
		return scale(ctx, stdout, environ, args[0])
	case shimArg:
		return shimMain(args)
	}
	return usageError(fmt.Sprintf("unknown command %q", cmd))
}

func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "-help" {
			return true
		}
	}
	return false
}

func noArgs(cmd string, args []string, f func() error) error {
	if len(args) > 0 {
		return usageError(fmt.Sprintf("%s takes no arguments, got %q", cmd, strings.Join(args, " ")))
	}
	return f()
}

func usageError(msg string) error {
	return &exitError{code: exitUsage, msg: msg + "\n\n" + usage}
}

func environ() map[string]string {
	m := make(map[string]string)
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}
