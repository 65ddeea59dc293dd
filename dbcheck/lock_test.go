package dbcheck

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"onebox/internal/testmariadb"
	"onebox/internal/testutil"
)

// lockConfig is serverConfig with the production-like connect timeout: the
// lock tests are about turns, not about a slow connect on a loaded machine.
func lockConfig(s *testmariadb.Server) Config {
	cfg := serverConfig(s)
	cfg.CheckTimeout = 5 * time.Second
	return cfg
}

// TestLockTakesTurns: two replicas' prestart commands, started together,
// run one after the other under the named lock, and the second logs its
// wait.
func TestLockTakesTurns(t *testing.T) {
	s := testmariadb.Start(t)
	out := filepath.Join(t.TempDir(), "prestart.log")
	newGate := func() (*Gate, *logBuffer) {
		logs := &logBuffer{}
		g, err := New(lockConfig(s), Deps{Log: zerolog.New(logs)})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return g, logs
	}
	prestart := func(who string) {
		t.Helper()
		cmd := exec.Command("sh", "-c", `echo "$1 start" >>"$2"; echo "$1 end" >>"$2"`, "sh", who, out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("prestart %s: %v: %s", who, err, b)
		}
	}
	ctx := context.Background()
	a, _ := newGate()
	b, bLogs := newGate()

	releaseA, err := a.lock(ctx, PrestartLockName, 200*time.Millisecond)
	if err != nil {
		t.Fatalf("lock a: %v", err)
	}
	bDone := make(chan error, 1)
	go func() {
		releaseB, err := b.lock(ctx, PrestartLockName, 200*time.Millisecond)
		if err == nil {
			prestart("b")
			releaseB()
		}
		bDone <- err
	}()
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, "b logs its wait", func() bool {
		return len(bLogs.withMessage(t, "waiting for the lock")) > 0
	})
	prestart("a")
	select {
	case err := <-bDone:
		t.Fatalf("b ran while a held the lock (err %v)", err)
	default:
	}
	releaseA()
	select {
	case err := <-bDone:
		if err != nil {
			t.Fatalf("lock b: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("b did not get the lock after a released it; logs:\n%s", bLogs)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := "a start\na end\nb start\nb end\n"; string(got) != want {
		t.Errorf("prestart output %q, want %q (one after the other)", got, want)
	}
	if len(bLogs.withMessage(t, "lock taken")) != 1 {
		t.Errorf("b did not log taking the lock after its wait; logs:\n%s", bLogs)
	}
}

// TestLockStopsWaiting: a wait ends with an error when its context does.
func TestLockStopsWaiting(t *testing.T) {
	s := testmariadb.Start(t)
	a, err := New(lockConfig(s), Deps{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	release, err := a.Lock(context.Background(), PrestartLockName)
	if err != nil {
		t.Fatalf("lock a: %v", err)
	}
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := a.Lock(ctx, PrestartLockName); err == nil {
		t.Fatal("second lock taken while the first is held")
	}
}
