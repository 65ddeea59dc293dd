//go:build integration

package docker

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"onebox/internal/testutil"
)

// baseImage is built by `make images` (images/debian-base.sh).
const baseImage = "onebox-test/debian:bookworm"

// The project under test: two long-running bash services, one with a
// healthcheck that turns healthy once the service says so, and a trap that
// reports signals on stdout.
const testCompose = `
services:
  app:
    image: ` + baseImage + `
    init: false
    command: ["bash", "-c", "trap 'echo got HUP' HUP; trap 'echo got TERM; exit 0' TERM; echo started; touch /tmp/ready; while :; do sleep 0.2 & wait $$!; done"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
      timeout: 2s
      retries: 30
    ports:
      - "127.0.0.1:0:8080"
  peer:
    image: ` + baseImage + `
    command: ["bash", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2 & wait $$!; done"]
`

func newClient(t *testing.T) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// upProject starts testCompose as a fresh project and tears it down after the
// test, printing the containers' logs if the test failed.
func upProject(t *testing.T, c *Client) *Compose {
	t.Helper()
	file := filepath.Join(t.TempDir(), "compose.yaml")
	if err := os.WriteFile(file, []byte(testCompose), 0o644); err != nil {
		t.Fatal(err)
	}
	cp, err := NewCompose(ProjectName("onebox-docker-test"), file)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		if t.Failed() {
			dumpLogs(t, c, cp.Project)
		}
		if err := cp.Down(context.Background()); err != nil {
			t.Errorf("tear down: %v", err)
		}
	})
	if err := cp.Up(ctx); err != nil {
		t.Fatal(err)
	}
	return cp
}

func dumpLogs(t *testing.T, c *Client, project string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cts, _ := c.ProjectContainers(ctx, project)
	for _, ct := range cts {
		logs, _ := c.Logs(ctx, ct.ID)
		t.Logf("logs of %s:\n%s", ct.Name, logs)
	}
}

func service(t *testing.T, c *Client, cp *Compose, name string) Container {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ct, err := c.ServiceContainer(ctx, cp.Project, name)
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

func TestNegotiatesAPIVersion(t *testing.T) {
	c := newClient(t)
	v := c.APIVersion()
	if v == "" || !strings.HasPrefix(v, "1.") {
		t.Fatalf("negotiated API version %q", v)
	}
	ctx := context.Background()
	if ok, err := c.HasImage(ctx, baseImage); err != nil || !ok {
		t.Fatalf("HasImage(%s) = %v, %v; want true (run make images)", baseImage, ok, err)
	}
	if ok, err := c.HasImage(ctx, "onebox-test/no-such-image:none"); err != nil || ok {
		t.Fatalf("HasImage(missing) = %v, %v; want false, nil", ok, err)
	}
	size, err := c.ImageSize(ctx, baseImage)
	if err != nil || size < 1<<20 {
		t.Fatalf("ImageSize = %d, %v", size, err)
	}
}

func TestProjectContainers(t *testing.T) {
	c := newClient(t)
	cp := upProject(t, c)
	ctx := context.Background()

	cts, err := c.ProjectContainers(ctx, cp.Project)
	if err != nil {
		t.Fatal(err)
	}
	var services []string
	for _, ct := range cts {
		services = append(services, ct.Service)
		if ct.Project != cp.Project || ct.State != "running" {
			t.Errorf("container %+v: want project %s, running", ct, cp.Project)
		}
	}
	if got := strings.Join(services, ","); got != "app,peer" {
		t.Fatalf("services = %s, want app,peer", got)
	}
	if _, err := c.ServiceContainer(ctx, cp.Project, "nope"); err == nil {
		t.Fatal("ServiceContainer(nope) found a container")
	}
	if other, err := c.ProjectContainers(ctx, cp.Project+"-other"); err != nil || len(other) != 0 {
		t.Fatalf("another project's containers = %v, %v; want none", other, err)
	}

	app := service(t, c, cp, "app")
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := c.WaitHealthy(wctx, app.ID); err != nil {
		t.Fatal(err)
	}
	addr, err := c.HostPort(ctx, app.ID, "8080/tcp")
	if err != nil {
		t.Fatal(err)
	}
	if host, port, err := net.SplitHostPort(addr); err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("HostPort = %q, %v", addr, err)
	}
	if _, err := c.HostPort(ctx, app.ID, "9999/tcp"); err == nil {
		t.Fatal("HostPort of an unpublished port succeeded")
	}
	peer := service(t, c, cp, "peer")
	if err := c.WaitHealthy(wctx, peer.ID); err == nil || !strings.Contains(err.Error(), "no healthcheck") {
		t.Fatalf("WaitHealthy(no healthcheck) = %v", err)
	}
}

func TestExec(t *testing.T) {
	c := newClient(t)
	cp := upProject(t, c)
	app := service(t, c, cp, "app")
	tests := []struct {
		name               string
		cmd                []string
		code               int
		stdout, stderrPart string
	}{
		{"stdout", []string{"echo", "hello"}, 0, "hello\n", ""},
		{"stderr and code", []string{"bash", "-c", "echo oops >&2; exit 3"}, 3, "", "oops"},
		{"both", []string{"bash", "-c", "echo out; echo err >&2"}, 0, "out\n", "err"},
		{"missing file", []string{"cat", "/nonexistent"}, 1, "", "No such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := c.Exec(ctx, app.ID, tt.cmd...)
			if err != nil {
				t.Fatal(err)
			}
			if res.ExitCode != tt.code || res.Stdout != tt.stdout || !strings.Contains(res.Stderr, tt.stderrPart) {
				t.Fatalf("Exec(%q) = %+v; want code %d, stdout %q, stderr containing %q", tt.cmd, res, tt.code, tt.stdout, tt.stderrPart)
			}
		})
	}
	// A command that outlives ctx is cut off, not waited for.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := c.Exec(ctx, app.ID, "sleep", "30"); err == nil {
		t.Fatal("Exec past its deadline succeeded")
	}
}

func TestSignalsStopStartPause(t *testing.T) {
	c := newClient(t)
	cp := upProject(t, c)
	app := service(t, c, cp, "app")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if err := c.Kill(ctx, app.ID, "HUP"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, "trap reports HUP", func() bool {
		logs, err := c.Logs(ctx, app.ID)
		return err == nil && strings.Contains(logs, "got HUP")
	})

	if err := c.Pause(ctx, app.ID); err != nil {
		t.Fatal(err)
	}
	if ins, err := c.Inspect(ctx, app.ID); err != nil || !ins.State.Paused {
		t.Fatalf("after Pause: paused=%v, %v", ins.State != nil && ins.State.Paused, err)
	}
	if err := c.Unpause(ctx, app.ID); err != nil {
		t.Fatal(err)
	}
	if ins, err := c.Inspect(ctx, app.ID); err != nil || ins.State.Paused || !ins.State.Running {
		t.Fatalf("after Unpause: %+v, %v", ins.State, err)
	}

	// The trap turns the stop signal into exit 0; docker's SIGKILL would give 137.
	if err := c.Stop(ctx, app.ID, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	code, err := c.WaitExit(ctx, app.ID)
	if err != nil || code != 0 {
		t.Fatalf("exit code after Stop = %d, %v; want 0", code, err)
	}
	if err := c.Start(ctx, app.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx, app.ID); err != nil {
		t.Fatal(err)
	}
	logs, err := c.Logs(ctx, app.ID)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs, "started"); n != 2 {
		t.Fatalf("started %d times, want 2; logs:\n%s", n, logs)
	}
	if !strings.Contains(logs, "got TERM") {
		t.Fatalf("no TERM in logs:\n%s", logs)
	}
}

func TestDisconnectConnect(t *testing.T) {
	c := newClient(t)
	cp := upProject(t, c)
	app, peer := service(t, c, cp, "app"), service(t, c, cp, "peer")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	resolves := func() bool {
		res, err := c.Exec(ctx, app.ID, "getent", "hosts", "peer")
		if err != nil {
			t.Fatal(err)
		}
		return res.ExitCode == 0
	}
	if !resolves() {
		t.Fatal("peer not resolvable before Disconnect")
	}
	nets, err := c.Networks(ctx, peer.ID)
	if err != nil || len(nets) != 1 {
		t.Fatalf("Networks(peer) = %v, %v; want one", nets, err)
	}
	if err := c.Disconnect(ctx, nets[0], peer.ID); err != nil {
		t.Fatal(err)
	}
	if resolves() {
		t.Fatal("peer still resolvable after Disconnect")
	}
	if err := c.Connect(ctx, nets[0], peer.ID, "peer"); err != nil {
		t.Fatal(err)
	}
	if !resolves() {
		t.Fatal("peer not resolvable after Connect")
	}
}

func TestRun(t *testing.T) {
	c := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("exit code and logs", func(t *testing.T) {
		res, err := c.Run(ctx, RunOptions{
			Image: baseImage,
			Cmd:   []string{"bash", "-c", "echo to-out; echo to-err >&2; exit 7"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode != 7 || !strings.Contains(res.Logs, "to-out") || !strings.Contains(res.Logs, "to-err") {
			t.Fatalf("Run = %+v", res)
		}
	})
	t.Run("read-only root with tmpfs and a user", func(t *testing.T) {
		res, err := c.Run(ctx, RunOptions{
			Image:    baseImage,
			User:     "10001:10001",
			ReadOnly: true,
			Tmpfs:    map[string]string{"/tmp": ""},
			Cmd:      []string{"bash", "-c", "id -u; touch /etc/x 2>/dev/null && echo root-writable; touch /tmp/x && echo tmp-writable"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Logs != "10001\ntmp-writable\n" {
			t.Fatalf("Run logs = %q", res.Logs)
		}
	})
	t.Run("joins another container's PID namespace", func(t *testing.T) {
		cp := upProject(t, c)
		app := service(t, c, cp, "app")
		res, err := c.Run(ctx, RunOptions{
			Image:   baseImage,
			PIDMode: "container:" + app.ID,
			Cmd:     []string{"bash", "-c", "tr '\\0' ' ' </proc/1/cmdline"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(res.Logs, "trap 'echo got HUP'") {
			t.Fatalf("PID 1 seen from the sidecar: %q", res.Logs)
		}
	})
}
