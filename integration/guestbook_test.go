//go:build integration

package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"onebox/docker"
	"onebox/internal/testutil"
)

// TestGuestbook runs the scenarios that leave the stack running on one
// compose project, in order; the destructive ones have their own tests below.
func TestGuestbook(t *testing.T) {
	s := startStack(t)

	t.Run("page through the proxy", func(t *testing.T) { pageServed(t, s, "examples/guestbook/static/index.html") })
	t.Run("message posted, listed and stored in MySQL", func(t *testing.T) { messageStored(t, s) })

	t.Run("page in Chromium", func(t *testing.T) { pageInChromium(t, s) })

	t.Run("second site chosen by Host header", func(t *testing.T) {
		tests := []struct{ host, want string }{
			{docsHost, docsIndex},
			{"DOCS.example.test", docsIndex}, // host names are case-insensitive
			{"other.example.test", "<"},      // the default site: the guestbook page
		}
		for _, tt := range tests {
			code, body, err := s.get("/", tt.host)
			if err != nil || code != http.StatusOK || !strings.HasPrefix(body, tt.want) {
				t.Errorf("GET / Host %s = %d, %v, %.60q; want 200 starting %q", tt.host, code, err, body, tt.want)
			}
		}
		_, guestbook, _ := s.get("/", "")
		if _, other, _ := s.get("/", "other.example.test"); other != guestbook {
			t.Errorf("an unknown Host did not get the default site")
		}
	})

	t.Run("traversal never leaks a file", func(t *testing.T) {
		canaries := []string{"root:x:0:0", secretText, s.password, "MYSQL_PASSWORD="}
		targets := []string{
			"/../../../../etc/passwd",
			"/..%2f..%2f..%2f..%2fetc%2fpasswd",
			"/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
			"/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
			"/.%2e/.%2e/.%2e/etc/passwd",
			"/..%252f..%252f..%252fetc%252fpasswd",
			"/....//....//....//etc/passwd",
			"/..\\..\\..\\etc\\passwd",
			"/%5c..%5c..%5c..%5cetc%5cpasswd",
			"/..;/..;/etc/passwd",
			"//etc/passwd",
			"/etc/passwd%00.html",
			"/../secret.txt",
			"/%2e%2e/secret.txt",
			"/docs/../../secret.txt",
			"/./../secret.txt",
			"/../../proc/self/environ",
			"/%2e%2e/%2e%2e/proc/1/environ",
			"/proc/self/environ",
		}
		addr := strings.TrimPrefix(s.base, "http://")
		for _, host := range []string{"localhost", docsHost} {
			for _, target := range targets {
				resp, err := rawRequest(addr, "GET "+target+" HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n")
				if err != nil {
					t.Errorf("GET %s (Host %s): %v", target, host, err)
					continue
				}
				for _, c := range canaries {
					if strings.Contains(resp, c) {
						t.Errorf("GET %s (Host %s) leaked %q:\n%s", target, host, c, resp)
					}
				}
				if status := statusOf(resp); status == http.StatusOK && !strings.Contains(resp, "<") {
					// 200 is fine only for a page of ours (the index or the app).
					t.Errorf("GET %s (Host %s) = 200 with an unexpected body:\n%s", target, host, resp)
				}
			}
		}
	})

	t.Run("read-only root, non-root user, image size", func(t *testing.T) {
		ins, err := s.dc.Inspect(s.ctx(time.Minute), s.onebox.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !ins.HostConfig.ReadonlyRootfs {
			t.Error("compose.yaml does not make onebox's root file system read-only")
		}
		if ins.Config.User == "" || strings.HasPrefix(ins.Config.User, "0") || ins.Config.User == "root" {
			t.Errorf("image user = %q, want a numeric non-root user", ins.Config.User)
		}
		// From inside onebox's PID namespace: every process runs as a non-root
		// uid, and onebox's root really is read-only with no writable mount:
		// its user cannot write even to the image's world-writable /tmp or
		// to /run, and the app socket is the abstract one, which needs none.
		out := s.sidecar(`for f in /proc/[0-9]*/status; do
			name=$(awk '/^Name:/{print $2}' $f); uid=$(awk '/^Uid:/{print $2}' $f)
			case "$name" in onebox|guestbook) echo "$name $uid";; esac
		done`)
		fs := s.sidecarAs(ins.Config.User, `touch /proc/1/root/tmp/onebox-write-test 2>&1 || true
			touch /proc/1/root/run/onebox/write-test 2>&1 || true
			grep -c '@onebox/app.sock' /proc/1/net/unix`)
		if strings.Count(fs, "Read-only file system") != 2 || strings.Contains(fs, "\n0") {
			t.Errorf("root file system not read-only everywhere, or no abstract app socket:\n%s", fs)
		}
		procs := 0
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) == 2 && (f[0] == "onebox" || f[0] == "guestbook") {
				procs++
				if f[1] == "0" {
					t.Errorf("%s runs as root", f[0])
				}
			}
		}
		if procs < 1+workers {
			t.Errorf("saw %d onebox/guestbook processes, want at least %d:\n%s", procs, 1+workers, out)
		}
		size, err := s.dc.ImageSize(s.ctx(time.Minute), oneboxImage)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("image %s: %.1f MB (goal ≤ 20 MB), user %s", oneboxImage, float64(size)/1e6, ins.Config.User)
		if size > 20e6 {
			t.Errorf("image is %.1f MB, above the 20 MB goal", float64(size)/1e6)
		}
	})

	t.Run("worker SIGKILLed is replaced", func(t *testing.T) { workerKilledIsReplaced(t, s) })

	t.Run("TTIN adds a worker, TTOU removes one", func(t *testing.T) {
		for _, step := range []struct {
			signal string
			want   int
		}{{"TTIN", workers + 1}, {"TTOU", workers}} {
			if err := s.dc.Kill(s.ctx(time.Minute), s.onebox.ID, step.signal); err != nil {
				t.Fatal(err)
			}
			testutil.EventuallyWhy(t, 30*time.Second, 200*time.Millisecond, step.signal+" changes the worker count", func() (bool, string) {
				now := s.status().workerPids()
				return len(now) == step.want, fmt.Sprint(now)
			})
		}
	})

	t.Run("three HUP reloads under load, zero failed requests", func(t *testing.T) { reloadsUnderLoad(t, s) })

	t.Run("orphans are reaped, no zombies", func(t *testing.T) {
		before := s.status().Orphans
		// Each subshell starts a sleep and exits at once: the sleeps are
		// orphans, re-parented to PID 1 of the namespace, onebox.
		s.sidecar(`for i in 1 2 3 4 5; do ( sleep 0.5 & ); done; echo started`)
		testutil.EventuallyWhy(t, 30*time.Second, 200*time.Millisecond, "onebox reaps the five orphans", func() (bool, string) {
			st := s.status()
			return st.Orphans >= before+5, fmt.Sprintf("orphans_reaped %d → %d", before, st.Orphans)
		})
		out := s.sidecar(`grep -l '^State:[[:space:]]*Z' /proc/[0-9]*/status 2>/dev/null | while read -r f; do
			echo "zombie: $(grep -E '^(Name|Pid|PPid):' $f | tr '\n' ' ')"; done; echo checked`)
		if strings.Contains(out, "zombie") {
			t.Fatalf("zombies left in onebox's PID namespace:\n%s", out)
		}
	})

	// Two ways to lose the database: the server stops (connections are
	// refused, its name stops resolving), or its network is cut (packets to
	// the old address go nowhere, so only timeouts tell).
	outages := []struct {
		name         string
		cut, restore func(ctx context.Context) error
	}{
		{
			name:    "stopped",
			cut:     func(ctx context.Context) error { return s.dc.Stop(ctx, s.db.ID, 20*time.Second) },
			restore: func(ctx context.Context) error { return s.dc.Start(ctx, s.db.ID) },
		},
		{
			name:    "network cut",
			cut:     func(ctx context.Context) error { return s.dc.Disconnect(ctx, s.network(t), s.db.ID) },
			restore: func(ctx context.Context) error { return s.dc.Connect(ctx, s.network(t), s.db.ID, "db") },
		},
	}
	for _, o := range outages {
		t.Run("database "+o.name+": not ready, 503, ready again, never restarted", func(t *testing.T) {
			ctx := s.ctx(3 * time.Minute)
			before, err := s.dc.Inspect(ctx, s.onebox.ID)
			if err != nil {
				t.Fatal(err)
			}
			if err := o.cut(ctx); err != nil {
				t.Fatal(err)
			}
			cut := time.Now()
			testutil.EventuallyWhy(t, 15*time.Second, 200*time.Millisecond, "onebox not ready (onebox health fails)", func() (bool, string) {
				res := s.exec("onebox", "health")
				return res.ExitCode != 0, strings.TrimSpace(res.Stdout + res.Stderr)
			})
			t.Logf("%s: not ready %s after the outage began", o.name, time.Since(cut).Round(100*time.Millisecond))
			if st := s.status(); st.Ready || !strings.Contains(st.raw, "dbcheck") {
				t.Errorf("status while the database is %s: ready=%v, not_ready=%q", o.name, st.Ready, st.NotReady)
			}
			testutil.EventuallyWhy(t, 15*time.Second-time.Since(cut), 200*time.Millisecond, "the API answers 503", func() (bool, string) {
				code, body, err := s.get("/api/messages", "")
				return code == http.StatusServiceUnavailable, fmt.Sprint(code, " ", body, " ", err)
			})
			if code, _, err := s.get("/", ""); err != nil || code != http.StatusOK {
				t.Errorf("static page while the database is %s = %d, %v; want 200", o.name, code, err)
			}

			if err := o.restore(ctx); err != nil {
				t.Fatal(err)
			}
			restored := time.Now()
			testutil.EventuallyWhy(t, 90*time.Second, 200*time.Millisecond, "onebox ready again", func() (bool, string) {
				res := s.exec("onebox", "health")
				return res.ExitCode == 0, strings.TrimSpace(res.Stdout + res.Stderr)
			})
			t.Logf("%s: ready %s after the database was back", o.name, time.Since(restored).Round(100*time.Millisecond))
			testutil.EventuallyWhy(t, 30*time.Second, 200*time.Millisecond, "the API answers 200 again", func() (bool, string) {
				code, body, err := s.get("/api/messages", "")
				return code == http.StatusOK, fmt.Sprint(code, " ", body, " ", err)
			})
			after, err := s.dc.Inspect(ctx, s.onebox.ID)
			if err != nil {
				t.Fatal(err)
			}
			if after.RestartCount != before.RestartCount || after.State.StartedAt != before.State.StartedAt || after.State.Pid != before.State.Pid {
				t.Fatalf("onebox was restarted: restarts %d → %d, started %s → %s", before.RestartCount, after.RestartCount, before.State.StartedAt, after.State.StartedAt)
			}
		})
	}
}

// pageServed: GET / through the proxy is the static page at file (relative
// to the build context), byte for byte.
func pageServed(t *testing.T, s *stack, file string) {
	want, err := os.ReadFile(filepath.Join(suite.context, filepath.FromSlash(file)))
	if err != nil {
		t.Fatal(err)
	}
	code, body, err := s.get("/", "")
	if err != nil || code != http.StatusOK || body != string(want) {
		t.Fatalf("GET / = %d, %v, body %d bytes; want 200 and %s (%d bytes)", code, err, len(body), file, len(want))
	}
}

// messageStored: a message POSTed to the API is listed by it and is a row
// in MySQL.
func messageStored(t *testing.T, s *stack) {
	text := "hello from the integration suite " + randomHex(6)
	code, body := s.postMessage(t, "it", text)
	if code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("POST /api/messages = %d %s", code, body)
	}
	code, body, err := s.get("/api/messages", "")
	if err != nil || code != http.StatusOK || !strings.Contains(body, text) {
		t.Fatalf("GET /api/messages = %d, %v, %s; want 200 listing %q", code, err, body, text)
	}
	dump := s.mysqlDump(t)
	if !strings.Contains(dump, text) {
		t.Fatalf("the message is not in the database; dump:\n%s", dump)
	}
	t.Logf("dump %d bytes: %s", len(dump), firstLineWith(dump, text))
}

// workerKilledIsReplaced: a worker SIGKILLed from inside the container is
// replaced, and the API answers.
func workerKilledIsReplaced(t *testing.T, s *stack) {
	before := s.status().workerPids()
	if len(before) != workers {
		t.Fatalf("workers before = %v, want %d", before, workers)
	}
	victim := before[0]
	s.sidecar(fmt.Sprintf("kill -KILL %d", victim))
	testutil.EventuallyWhy(t, 30*time.Second, 200*time.Millisecond, "a new worker replaces the killed one", func() (bool, string) {
		now := s.status().workerPids()
		return len(now) == workers && !slices.Contains(now, victim), fmt.Sprint(now)
	})
	if code, _, err := s.get("/api/messages", ""); err != nil || code != http.StatusOK {
		t.Fatalf("GET /api/messages after the kill = %d, %v", code, err)
	}
}

// reloadsUnderLoad: three HUPs under a load loop on the API each replace
// every worker, and not one request fails.
func reloadsUnderLoad(t *testing.T, s *stack) {
	l := startLoad(s.base+"/api/messages", 4)
	defer l.stop()
	if !l.waitFor(50, 30*time.Second) {
		t.Fatal("load loop got no responses")
	}
	for i := 1; i <= 3; i++ {
		old := s.status().workerPids()
		if err := s.dc.Kill(s.ctx(time.Minute), s.onebox.ID, "HUP"); err != nil {
			t.Fatal(err)
		}
		testutil.EventuallyWhy(t, time.Minute, 200*time.Millisecond, fmt.Sprintf("reload %d replaces every worker", i), func() (bool, string) {
			now := s.status().workerPids()
			for _, p := range now {
				if slices.Contains(old, p) {
					return false, fmt.Sprint(old, " → ", now)
				}
			}
			return len(now) == workers, fmt.Sprint(old, " → ", now)
		})
		if !l.waitFor(50, 30*time.Second) {
			t.Fatalf("load stalled after reload %d", i)
		}
	}
	total, failed, errs := l.stop()
	t.Logf("HUP ×3 under load: %d requests, %d failed", total, failed)
	if failed != 0 {
		t.Fatalf("%d of %d requests failed during reloads; first: %s", failed, total, strings.Join(errs, "; "))
	}
}

// TestDockerStopDrains stops onebox while a slow request is in flight: the
// request completes, onebox exits 0, well inside the grace period.
func TestDockerStopDrains(t *testing.T) {
	s := startStack(t)
	text := "slow message " + randomHex(6)
	body := messageJSON("slow", text)
	addr := strings.TrimPrefix(s.base, "http://")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Minute))
	// Headers and the first bytes now, the rest of the body trickling in
	// while the container is being stopped.
	fmt.Fprintf(conn, "POST /api/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", len(body))
	const chunks = 6
	step := (len(body) + chunks - 1) / chunks
	if _, err := conn.Write(body[:step]); err != nil {
		t.Fatal(err)
	}

	type stopResult struct {
		took time.Duration
		err  error
	}
	stopped := make(chan stopResult, 1)
	go func() {
		start := time.Now()
		err := s.dc.Stop(s.ctx(time.Minute), s.onebox.ID, 15*time.Second)
		stopped <- stopResult{time.Since(start), err}
	}()
	for off := step; off < len(body); off += step {
		time.Sleep(400 * time.Millisecond) // the slowness under test, not a synchronisation
		if _, err := conn.Write(body[off:min(off+step, len(body))]); err != nil {
			t.Fatalf("send body after docker stop began: %v", err)
		}
	}
	resp, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	if code := statusOf(string(resp)); code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("slow POST during docker stop = %d:\n%s", code, resp)
	}
	res := <-stopped
	if res.err != nil {
		t.Fatal(res.err)
	}
	stoppedCleanly(t, s, res.took)
	if dump := s.mysqlDump(t); !strings.Contains(dump, text) {
		t.Errorf("the slow message is not in the database")
	}
}

// stoppedCleanly: after a docker stop that took took, onebox exited 0 well
// inside the 15 s grace period.
func stoppedCleanly(t *testing.T, s *stack, took time.Duration) {
	t.Helper()
	ins, err := s.dc.Inspect(s.ctx(time.Minute), s.onebox.ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("docker stop took %s, exit code %d", took.Round(10*time.Millisecond), ins.State.ExitCode)
	if ins.State.ExitCode != 0 || ins.State.OOMKilled {
		t.Errorf("exit code after docker stop = %d, want 0", ins.State.ExitCode)
	}
	// The grace period is 15 s and onebox's budget 9 s: a clean drain is
	// far below both; 137 or a stop near 15 s would mean docker's SIGKILL.
	if took > 10*time.Second {
		t.Errorf("docker stop took %s, not well inside the 15 s grace period", took)
	}
}

// TestBadVariable: a bad variable stops the container with a non-zero exit
// code and a log line that names it; `onebox check` says the same.
func TestBadVariable(t *testing.T) {
	tests := []struct {
		name string
		cmd  []string
		env  []string
		want string
	}{
		{"run", nil, []string{"APP_WORKERS=-1"}, "APP_WORKERS"},
		{"check", []string{"check"}, []string{"APP_WORKERS=-1"}, "APP_WORKERS"},
		{"typo", nil, []string{"PROXY_ROOOT=/srv"}, "PROXY_ROOT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctxFor(t, 2*time.Minute)
			res, err := suite.dc.Run(ctx, docker.RunOptions{
				Image:    oneboxImage,
				Cmd:      tt.cmd,
				Env:      tt.env,
				ReadOnly: true,
				Network:  "none",
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.ExitCode == 0 || !strings.Contains(res.Logs, tt.want) {
				t.Fatalf("%v %v: exit %d, want non-zero with a log naming %s:\n%s", tt.env, tt.cmd, res.ExitCode, tt.want, res.Logs)
			}
			t.Logf("%v → exit %d: %s", tt.env, res.ExitCode, firstLineWith(res.Logs, tt.want))
		})
	}
}

func firstLineWith(logs, s string) string {
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}

// messageJSON is a new guestbook message as the API takes it.
func messageJSON(name, text string) []byte {
	b, _ := json.Marshal(map[string]string{"name": name, "message": text})
	return b
}

func (s *stack) postMessage(t *testing.T, name, text string) (int, string) {
	t.Helper()
	resp, err := s.client.Post(s.base+"/api/messages", "application/json", bytes.NewReader(messageJSON(name, text)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// mysqlDump is the app database's content, dumped inside the db container
// with the root account (so it does not depend on the app's table names).
func (s *stack) mysqlDump(t *testing.T) string {
	t.Helper()
	res, err := s.dc.Exec(s.ctx(time.Minute), s.db.ID, "sh", "-c",
		`MYSQL_PWD="$MYSQL_ROOT_PASSWORD" mysqldump -uroot --skip-extended-insert "$MYSQL_DATABASE"`)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("mysqldump: exit %d: %s", res.ExitCode, res.Stderr)
	}
	return res.Stdout
}

// rawRequest sends a request exactly as written (no client-side path
// cleaning) and returns the whole response.
func rawRequest(addr, req string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		return "", err
	}
	b, err := io.ReadAll(conn)
	return string(b), err
}

// statusOf parses the status code of a raw HTTP response.
func statusOf(resp string) int {
	line, _, _ := bufio.NewReader(strings.NewReader(resp)).ReadLine()
	f := strings.Fields(string(line))
	if len(f) < 2 {
		return 0
	}
	code, _ := strconv.Atoi(f[1])
	return code
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
