// Package process holds what the reaper and the worker pool both say about
// child processes: how an exit reads (a shell's code and a log's text) and
// how a process and the children it started are signalled. It is a leaf:
// the supervisor's reaper produces Exit values, the pool reads them.
package process

import (
	"fmt"
	"syscall"
)

// Exit is a reaped child's wait status.
type Exit syscall.WaitStatus

// Code is the status as a shell reports it: the exit code, or 128 + the
// signal number for a process killed by a signal.
func (e Exit) Code() int {
	ws := syscall.WaitStatus(e)
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// String is the status for a log line: "exit 1", "killed by terminated".
func (e Exit) String() string {
	ws := syscall.WaitStatus(e)
	if ws.Signaled() {
		return "killed by " + ws.Signal().String()
	}
	return fmt.Sprintf("exit %d", ws.ExitStatus())
}

// SignalGroup sends sig to the process group led by pid, which reaches a
// wrapper's children (sh -c, npm start), then to pid itself in case it left
// the group. Processes are started as group leaders (the reaper sets
// Setpgid). A pid of 0 or less does nothing: kill(0) and kill(-1) would reach
// our own group or every process.
func SignalGroup(pid int, sig syscall.Signal) {
	if pid <= 0 {
		return
	}
	_ = syscall.Kill(-pid, sig)
	_ = syscall.Kill(pid, sig)
}
