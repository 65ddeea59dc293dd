package appserver

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"onebox/appserver/worker"
)

// ShimArg is the hidden subcommand word that makes the onebox binary act as
// the exec shim: `onebox __exec CMD ARGS...` calls ShimMain(CMD ARGS...).
const ShimArg = "__exec"

// ShimMain sets LISTEN_PID to this process's pid and replaces the process
// with args (args[0] looked up in PATH). It returns only on failure.
//
// Why a shim: socket activation requires LISTEN_PID to equal the worker's own
// pid, which the master cannot know before fork; Go has no hook between fork
// and exec, so the shim, already the child, sets it and execs. The pid
// survives exec, so the value is right. Like the worker package, the shim is
// the child side of the protocol and so sets the environment itself.
func ShimMain(args []string) error {
	if len(args) == 0 {
		return &ShimError{Code: 127, Err: errors.New("exec shim: no command given")}
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		return &ShimError{Code: execCode(err), Err: fmt.Errorf("exec %q: %w", args[0], err)}
	}
	if err := os.Setenv(worker.EnvListenPID, strconv.Itoa(os.Getpid())); err != nil {
		return &ShimError{Code: 126, Err: fmt.Errorf("set %s: %w", worker.EnvListenPID, err)}
	}
	if err := syscall.Exec(path, args, os.Environ()); err != nil {
		return &ShimError{Code: execCode(err), Err: fmt.Errorf("exec %q: %w", path, err)}
	}
	return nil
}

// ShimError is the shim's failure to start the command. Its exit code is a
// shell's: 127 when the command is not found, 126 when it is found but
// cannot be executed. The pool halts at once on 127 (no retry finds it).
type ShimError struct {
	Code int
	Err  error
}

func (e *ShimError) Error() string { return e.Err.Error() }
func (e *ShimError) Unwrap() error { return e.Err }

// ExitCode is 127 (not found) or 126 (not executable).
func (e *ShimError) ExitCode() int { return e.Code }

func execCode(err error) int {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		return 127
	}
	return 126
}
