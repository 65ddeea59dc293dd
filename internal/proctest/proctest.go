// Package proctest reads the process table from /proc for tests that check
// what a PID 1 leaves behind: its children, zombies among them.
package proctest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Children lists the pids whose parent is parent, in the given state ("Z"
// for zombies, "" for any) and with the given command name ("" for any).
func Children(parent int, state, comm string) []int {
	var pids []int
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		raw, err := os.ReadFile(path)
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses, so
		// it ends at the last ')'.
		s := string(raw)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		if ppid != parent || (state != "" && f[0] != state) || (comm != "" && s[open+1:end] != comm) {
			continue
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(s[:open]))
		pids = append(pids, pid)
	}
	return pids
}

// FirstChild returns the first child of pid listed by the kernel, or 0.
func FirstChild(pid int) int {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(pid) + "/children")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(raw))
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(f[0])
	return n
}
