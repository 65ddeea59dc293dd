package appserver

import (
	"errors"
	"fmt"
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
		return errors.New("exec shim: no command given")
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		return fmt.Errorf("exec %q: %w", args[0], err)
	}
	if err := os.Setenv(worker.EnvListenPID, strconv.Itoa(os.Getpid())); err != nil {
		return fmt.Errorf("set %s: %w", worker.EnvListenPID, err)
	}
	if err := syscall.Exec(path, args, os.Environ()); err != nil {
		return fmt.Errorf("exec %q: %w", path, err)
	}
	return nil
}
