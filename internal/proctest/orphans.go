package proctest

import (
	"syscall"
	"testing"
	"time"
)

// Orphans200 is a shell command that starts 200 long sleeps in the
// background and exits, so that the sleeps are re-parented to the nearest
// subreaper or PID 1. They sleep long so that the test, not a timer, decides
// when they die: a short sleep may end before the shell exits, and the shell
// then reaps it itself.
const Orphans200 = `i=0; while [ $i -lt 200 ]; do sleep 300 >/dev/null 2>&1 & i=$((i+1)); done; exit 0`

// KillOrphans waits until n processes named comm are children of pid1, kills
// them, and waits until reaped (a count pid1 reports) has grown by n; then no
// zombie may be left under pid1.
func KillOrphans(t testing.TB, pid1, n int, comm string, reaped func() int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var orphans []int
	for len(orphans) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d %s processes re-parented to PID 1 within 30s, want %d", len(orphans), comm, n)
		}
		time.Sleep(10 * time.Millisecond) // polling /proc, an observable state
		orphans = Children(pid1, "", comm)
	}
	before := reaped()
	for _, pid := range orphans {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill orphan %d: %v", pid, err)
		}
	}
	for reaped()-before < n {
		if time.Now().After(deadline) {
			t.Fatalf("PID 1 reaped %d of %d orphans within 30s", reaped()-before, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if zs := Children(pid1, "Z", ""); len(zs) > 0 {
		t.Fatalf("zombies left under PID 1: %v", zs)
	}
}
