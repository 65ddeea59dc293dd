//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"onebox/docker"
	"onebox/internal/testutil"
)

// loadResult is what integration/loadclient writes (progress.json while it
// runs, result.json when it has stopped).
type loadResult struct {
	Total    int64            `json:"total"`
	Failed   int64            `json:"failed"`
	Dials    int64            `json:"dials"`
	DialErrs int64            `json:"dial_errors"`
	Replicas map[string]int64 `json:"replicas"`
	Failures []struct {
		At     time.Time `json:"at"`
		Remote string    `json:"remote"`
		Error  string    `json:"error"`
	} `json:"failures"`
	Done bool `json:"done"`
}

func (r loadResult) String() string {
	return fmt.Sprintf("%d requests, %d failed, %d connections (%d addresses did not answer), by replica %v",
		r.Total, r.Failed, r.Dials, r.DialErrs, r.Replicas)
}

// swarmLoad is one run of the load client in a container on the stack's
// network.
type swarmLoad struct {
	st  *swarmStack
	id  string // the client's container
	dir string // bind-mounted at /out: the binary, progress.json, result.json
}

// startLoad starts the load client (POSTs to the guestbook API on
// loadWorkers kept-alive connections) and waits until it has answers.
func (st *swarmStack) startLoad(t *testing.T) *swarmLoad {
	t.Helper()
	dir := t.TempDir()
	bin, err := os.ReadFile(st.client)
	if err != nil {
		t.Fatal(err)
	}
	mustWriteMode(t, filepath.Join(dir, "loadclient"), bin, 0o755)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, err := st.dc.RunDetached(ctx, docker.RunOptions{
		Image: baseImage,
		// The test's own user, so that it can read and remove what the
		// client writes into the bind mount.
		User:    fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid()),
		Network: st.network,
		Binds:   []string{dir + ":/out"},
		Cmd: []string{"/out/loadclient", "-service", st.service, "-workers", strconv.Itoa(loadWorkers),
			"-max", "4m", "-dir", "/out"},
		Labels: map[string]string{"onebox-test": st.name},
	})
	if err != nil {
		t.Fatal(err)
	}
	l := &swarmLoad{st: st, id: id, dir: dir}
	t.Cleanup(func() { _ = st.dc.Remove(context.Background(), id) })
	l.waitMore(t, 200)
	return l
}

func mustWriteMode(t *testing.T, path string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
}

// progress reads the client's latest progress.json; false before the first.
func (l *swarmLoad) progress(t *testing.T) (loadResult, bool) {
	t.Helper()
	var r loadResult
	b, err := os.ReadFile(filepath.Join(l.dir, "progress.json"))
	if errors.Is(err, os.ErrNotExist) {
		return r, false
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("progress.json: %v", err)
	}
	return r, true
}

// waitMore waits until n more requests have been answered, so each step
// really ran under load.
func (l *swarmLoad) waitMore(t *testing.T, n int64) {
	t.Helper()
	start, _ := l.progress(t)
	testutil.EventuallyWhy(t, 2*time.Minute, 100*time.Millisecond, fmt.Sprintf("%d more requests", n), func() (bool, string) {
		r, ok := l.progress(t)
		if !ok {
			return false, "no progress.json yet: " + l.logs()
		}
		return r.Total-start.Total >= n, r.String()
	})
}

// waitAnswered waits until every address in ips has answered requests
// since the client started.
func (l *swarmLoad) waitAnswered(t *testing.T, ips []string) {
	t.Helper()
	testutil.EventuallyWhy(t, 2*time.Minute, 100*time.Millisecond, fmt.Sprintf("answers from every replica %v", ips), func() (bool, string) {
		r, _ := l.progress(t)
		for _, ip := range ips {
			if r.Replicas[ip] == 0 {
				return false, r.String()
			}
		}
		return true, ""
	})
}

// stop ends the client (SIGTERM) and returns its result.
func (l *swarmLoad) stop(t *testing.T) loadResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := l.st.dc.Kill(ctx, l.id, "TERM"); err != nil {
		t.Fatal(err)
	}
	code, err := l.st.dc.WaitExit(ctx, l.id)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Fatalf("load client exited %d: %s", code, l.logs())
	}
	var r loadResult
	b, err := os.ReadFile(filepath.Join(l.dir, "result.json"))
	if err == nil {
		err = json.Unmarshal(b, &r)
	}
	if err != nil || !r.Done {
		t.Fatalf("result.json: %v, done %v; client log: %s", err, r.Done, l.logs())
	}
	t.Logf("load: %s", r)
	return r
}

func (l *swarmLoad) logs() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := l.st.dc.Logs(ctx, l.id)
	if err != nil {
		return err.Error()
	}
	return s
}
