//go:build integration

package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"onebox/docker"
	"onebox/internal/testutil"
)

// flaskImage is what the suite tags its build of examples/flask as.
const flaskImage = "onebox-test/onebox-flask:integration"

// The Flask stack's settings in the suite's override: APP_TIMEOUT short
// enough for a hung request to be killed quickly but above slowRequest, and
// a memory limit well above an idle Flask worker (~40 MiB) and below one that
// has grown by growMiB.
const (
	flaskTimeout = 10 * time.Second
	slowRequest  = 6 * time.Second
	memoryLimit  = "112m"
	growMiB      = 128
)

// workerPath is where the image ships onebox_worker, as the README and the
// Flask example's Dockerfile (COPY --from=) name it.
const workerPath = "/usr/local/lib/onebox/python/onebox_worker.py"

// flaskStack is examples/flask/compose.yaml, the file the README shows: the
// Flask guestbook on onebox_worker, with onebox and onebox_worker copied in
// from the suite's onebox image, plus MySQL.
var flaskStack = stackSpec{
	prefix:   "onebox-it-flask",
	file:     "examples/flask/compose.yaml",
	service:  "app",
	override: flaskOverride,
	env:      []string{"FLASK_IMAGE=" + flaskImage, "PYTHON_BASE=" + baseImage},
}

// flaskOverride turns on the guestbook's test-only routes (slow, hung and
// growing requests) and the pool settings they exercise.
func flaskOverride(*testing.T, *stack) string {
	return fmt.Sprintf(`services:
  app:
    environment:
      APP_WORKERS: "%d"
      APP_TIMEOUT: %s
      APP_MAX_WORKER_MEMORY: %s
      GUESTBOOK_TEST_ROUTES: "1"
      ONEBOX_LOG_LEVEL: debug
`, workers, flaskTimeout, memoryLimit)
}

// buildFlask builds examples/flask's image once, with compose as `docker
// compose up --build` would, from the suite's onebox image and the local
// Debian base (apt inside the build uses this machine's mirror).
var buildFlask = sync.OnceValue(func() error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cp, err := docker.NewCompose("onebox-it-flask-build", filepath.Join(suite.context, flaskStack.file))
	if err != nil {
		return err
	}
	cp.Env = append(stackEnv("unused", "unused"), flaskStack.env...)
	start := time.Now()
	if _, err := cp.Run(ctx, "build", "app"); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "integration: %s built in %s\n", flaskImage, time.Since(start).Round(time.Second))
	return nil
})

// TestFlask runs the Flask example's stack through the scenarios of the Go
// guestbook's (the same page and API, so the same helpers drive both), then
// those of a Python app: a hung request, a leaking worker, and docker stop
// with a slow request in flight, last since it ends the stack.
func TestFlask(t *testing.T) {
	if err := buildFlask(); err != nil {
		t.Fatal(err)
	}
	s := startSpec(t, flaskStack)

	t.Run("page through the proxy", func(t *testing.T) { pageServed(t, s, "examples/flask/static/index.html") })
	t.Run("message posted, listed and stored in MySQL", func(t *testing.T) { messageStored(t, s) })
	t.Run("image ships onebox_worker at the documented path", func(t *testing.T) { workerShipped(t, s) })
	t.Run("worker SIGKILLed is replaced", func(t *testing.T) { workerKilledIsReplaced(t, s) })
	t.Run("three HUP reloads under load, zero failed requests", func(t *testing.T) { reloadsUnderLoad(t, s) })
	t.Run("hung request killed by APP_TIMEOUT, logged with its URI", func(t *testing.T) { hungRequestKilled(t, s) })
	t.Run("worker over APP_MAX_WORKER_MEMORY recycled under load, zero failed requests", func(t *testing.T) { memoryRecycled(t, s) })
	t.Run("docker stop with a slow request in flight", func(t *testing.T) { stopWithSlowRequest(t, s) })
}

// workerShipped: the onebox_worker the app runs is the repository's file,
// at the path the docs give, taken from the onebox image by COPY --from=,
// with its bytecode compiled in the image.
func workerShipped(t *testing.T, s *stack) {
	src, err := os.ReadFile(filepath.Join(suite.repo, "appserver", "python", "onebox_worker.py"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(src)
	res := s.exec("python3", "-c", "import hashlib, os, onebox_worker as w; f = w.__file__; print(f, hashlib.sha256(open(f, 'rb').read()).hexdigest(), os.path.exists(w.__cached__))")
	want := workerPath + " " + hex.EncodeToString(sum[:]) + " True"
	if res.ExitCode != 0 || strings.TrimSpace(res.Stdout) != want {
		t.Fatalf("import onebox_worker in the app image: exit %d, %q %s; want %q", res.ExitCode, res.Stdout, res.Stderr, want)
	}
}

// hungRequestKilled: a request that never ends is killed after APP_TIMEOUT
// (the client gets an error status, not a wait for ever), logged as a worker
// timeout naming it, with the Python traceback of where it hung, and its
// worker is replaced.
func hungRequestKilled(t *testing.T, s *stack) {
	before := s.status().workerPids()
	start := time.Now()
	resp, err := s.client.Post(s.base+"/test/hang", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	t.Logf("POST /test/hang = %d after %s", resp.StatusCode, took.Round(10*time.Millisecond))
	if resp.StatusCode < 500 {
		t.Fatalf("POST /test/hang = %d %q; want a 5xx once the worker is killed", resp.StatusCode, body)
	}
	if took < flaskTimeout {
		t.Errorf("the hung request ended after %s, before APP_TIMEOUT (%s)", took, flaskTimeout)
	}
	testutil.EventuallyWhy(t, 30*time.Second, 200*time.Millisecond, "the timeout and the traceback are logged", func() (bool, string) {
		logs := s.logs()
		timeout := firstLineWith(logs, "worker timeout")
		return strings.Contains(timeout, "POST /test/hang") && strings.Contains(logs, "in hang"), timeout
	})
	testutil.EventuallyWhy(t, 30*time.Second, 200*time.Millisecond, "the killed worker is replaced", func() (bool, string) {
		now := s.status().workerPids()
		replaced := 0
		for _, p := range before {
			if !slices.Contains(now, p) {
				replaced++
			}
		}
		return len(now) == workers && replaced == 1, fmt.Sprint(before, " → ", now)
	})
}

// memoryRecycled: a worker made to hold growMiB more than it had goes over
// APP_MAX_WORKER_MEMORY; onebox logs it with the figure and replaces it,
// replacement first, while a load loop runs without one failure.
func memoryRecycled(t *testing.T, s *stack) {
	l := startLoad(s.base+"/api/messages", 4)
	defer l.stop()
	if !l.waitFor(50, 30*time.Second) {
		t.Fatal("load loop got no responses")
	}
	code, body, err := s.get(fmt.Sprintf("/test/grow?mib=%d", growMiB), "")
	var grown struct {
		Pid int `json:"pid"`
	}
	if err != nil || code != http.StatusOK || json.Unmarshal([]byte(body), &grown) != nil || grown.Pid == 0 {
		t.Fatalf("GET /test/grow = %d, %v, %q", code, err, body)
	}
	// The pid the app reports is the worker's as onebox sees it: the
	// container's PID namespace is onebox's.
	testutil.EventuallyWhy(t, time.Minute, 200*time.Millisecond, "the grown worker is recycled", func() (bool, string) {
		now := s.status().workerPids()
		return len(now) == workers && !slices.Contains(now, grown.Pid), fmt.Sprint(grown.Pid, " → ", now)
	})
	line := firstLineWith(s.logs(), "above APP_MAX_WORKER_MEMORY")
	if !strings.Contains(line, fmt.Sprintf(`"pid":%d`, grown.Pid)) || !strings.Contains(line, "MiB") {
		t.Errorf("no log line for worker %d above the limit with its figure; got %q", grown.Pid, line)
	}
	if !l.waitFor(50, 30*time.Second) {
		t.Fatal("load stalled after the recycle")
	}
	total, failed, errs := l.stop()
	t.Logf("memory recycle under load: %d requests, %d failed; %s", total, failed, line)
	if failed != 0 {
		t.Fatalf("%d of %d requests failed during the recycle; first: %s", failed, total, strings.Join(errs, "; "))
	}
}

// stopWithSlowRequest: docker stop while the app is inside a slow request;
// the request completes (after the stop began) and onebox exits 0.
func stopWithSlowRequest(t *testing.T, s *stack) {
	type answer struct {
		code int
		body string
		err  error
		at   time.Time
	}
	answered := make(chan answer, 1)
	go func() {
		code, body, err := s.get(fmt.Sprintf("/test/slow?s=%g", slowRequest.Seconds()), "")
		answered <- answer{code, body, err, time.Now()}
	}()
	testutil.EventuallyWhy(t, slowRequest/2, 50*time.Millisecond, "a worker reports the slow request in flight", func() (bool, string) {
		st := s.status()
		return st.inFlight() > 0, st.raw
	})
	stopAt := time.Now()
	if err := s.dc.Stop(s.ctx(time.Minute), s.onebox.ID, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	took := time.Since(stopAt)
	a := <-answered
	if a.err != nil || a.code != http.StatusOK || !a.at.After(stopAt) {
		t.Fatalf("slow request during docker stop = %d, %v, %q (answered %s after the stop began); want 200 after it",
			a.code, a.err, a.body, a.at.Sub(stopAt).Round(time.Millisecond))
	}
	stoppedCleanly(t, s, took)
}
