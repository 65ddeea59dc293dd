//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"onebox/docker"
	"onebox/internal/testutil"
)

// The Swarm scenario deploys deploy/swarm/stack.yaml, as README "Scaling
// out" shows, on a one-node swarm and drives it under load from a client on
// the stack's overlay network.
//
// What this machine cannot do, and so the test changes: the routing mesh
// and service VIPs need IPVS, which the kernel lacks (a VIP answers "no
// route to host", a published port refuses connections), while overlay
// networks and DNS round-robin work. So the test deploys both services with
// endpoint_mode dnsrr (onebox's gate reaches the database by its name's
// task address instead of a VIP) and onebox without the published port (an
// ingress port cannot go with dnsrr), and the load client resolves the
// service name for each new connection. The file users get keeps the default.

const (
	// swarmSecret is the external docker secret the stack file names.
	swarmSecret = "onebox_db_password"
	// stackPorts is the onebox service's published port in the stack file,
	// removed for the test (see above).
	stackPorts = "    ports:\n      - \"8080:8080\"\n"
	// loadWorkers is the load client's concurrent connections.
	loadWorkers = 8
)

// swarmOverride is the test's second compose file: local images (no
// registry: make images and the suite's build), DNS round-robin, an
// attachable network for the load client, and a shorter update monitor
// (the wait after each task before the update counts as done) to keep the
// scenario short.
const swarmOverride = `version: "3.8"
services:
  onebox:
    image: ` + oneboxImage + `
    deploy:
      endpoint_mode: dnsrr
      update_config:
        monitor: 5s
  db:
    image: ` + mysqlImage + `
    deploy:
      endpoint_mode: dnsrr
networks:
  default:
    driver: overlay
    attachable: true
`

// swarmStack is one deployed stack.
type swarmStack struct {
	t       *testing.T
	dc      *docker.Client
	name    string   // the stack's name
	service string   // the onebox service: <stack>_onebox, also its DNS name
	network string   // <stack>_default
	client  string   // the load client binary
	initial []string // the first replicas' containers
}

func TestSwarm(t *testing.T) {
	joinSwarm(t)
	st := deploySwarmStack(t)
	t.Run("MigrationsOnce", st.checkInitialMigrations)
	t.Run("RollingUpdate", st.testRollingUpdate)
	t.Run("Scale", st.testScale)
	t.Run("KillReplica", st.testKillReplica)
	t.Run("LaterReplicasFindTheTable", st.checkLaterMigrations)
}

// dockerCLI runs the docker CLI (for swarm, stack, service and secret
// commands) and returns its combined output.
func dockerCLI(ctx context.Context, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("docker %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

func mustDocker(t *testing.T, d time.Duration, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	out, err := dockerCLI(ctx, "", args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// joinSwarm makes this daemon a one-node swarm manager when it is not in a
// swarm yet, and leaves the swarm at the end only then.
func joinSwarm(t *testing.T) {
	state := mustDocker(t, time.Minute, "info", "--format", "{{.Swarm.LocalNodeState}}")
	if state == "active" {
		t.Log("swarm already active: using it, and leaving it as it is")
		return
	}
	if state != "inactive" {
		t.Fatalf("swarm state %q: want active or inactive", state)
	}
	hadBridge := networkExists(t, "docker_gwbridge")
	// The loopback address: one node needs no other to reach it, and it
	// is there on every machine (init without an address fails where the
	// host has several).
	mustDocker(t, time.Minute, "swarm", "init", "--advertise-addr", "127.0.0.1")
	t.Log("swarm initialised for this test; it leaves it at the end")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := dockerCLI(ctx, "", "swarm", "leave", "--force"); err != nil {
			t.Errorf("leave the swarm: %v", err)
		}
		// swarm init made the bridge that connects task containers to
		// the host; leave does not remove it.
		if !hadBridge {
			if _, err := dockerCLI(ctx, "", "network", "rm", "docker_gwbridge"); err != nil {
				t.Logf("remove docker_gwbridge: %v", err)
			}
		}
	})
}

func networkExists(t *testing.T, name string) bool {
	t.Helper()
	out := mustDocker(t, time.Minute, "network", "ls", "--format", "{{.Name}}")
	return slices.Contains(strings.Fields(out), name)
}

// deploySwarmStack runs the README's commands (the secret, docker stack
// deploy) with the test's override, and waits for 3 healthy replicas.
func deploySwarmStack(t *testing.T) *swarmStack {
	name := strings.ReplaceAll(docker.ProjectName("oneboxswarm"), "-", "")
	st := &swarmStack{t: t, dc: suite.dc, name: name, service: name + "_onebox", network: name + "_default"}
	st.client = buildLoadClient(t)
	dir := t.TempDir()
	stackFile := readFileString(t, filepath.Join(suite.repo, "deploy", "swarm", "stack.yaml"))
	if strings.Count(stackFile, stackPorts) != 1 {
		t.Fatalf("deploy/swarm/stack.yaml: want the onebox service's ports block once:\n%s", stackPorts)
	}
	mustWrite(t, filepath.Join(dir, "stack.yaml"), strings.Replace(stackFile, stackPorts, "", 1))
	mustWrite(t, filepath.Join(dir, "override.yaml"), swarmOverride)

	createSwarmSecret(t)
	t.Cleanup(st.remove)
	start := time.Now()
	mustDocker(t, 2*time.Minute, "stack", "deploy", "--resolve-image", "never",
		"-c", filepath.Join(dir, "stack.yaml"), "-c", filepath.Join(dir, "override.yaml"), name)
	st.waitReplicas(t, 3, nil, 4*time.Minute)
	t.Logf("stack %s: 3 replicas healthy %s after deploy", name, time.Since(start).Round(100*time.Millisecond))
	return st
}

// createSwarmSecret creates the stack's secret, labelled as the test's. One
// left by an interrupted run (it has the label) is replaced; any other is
// someone's real one, and the test stops rather than touch it.
func createSwarmSecret(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	label, err := dockerCLI(ctx, "", "secret", "inspect", "--format", `{{index .Spec.Labels "onebox-test"}}`, swarmSecret)
	switch {
	case err != nil && !strings.Contains(label, "not found") && !strings.Contains(label, "No such secret"):
		t.Fatal(err)
	case err == nil && strings.TrimSpace(label) != "swarm":
		t.Fatalf("a docker secret %s that this test did not make exists: remove it, or run the test on another daemon", swarmSecret)
	case err == nil:
		mustDocker(t, time.Minute, "secret", "rm", swarmSecret)
	}
	if _, err := dockerCLI(ctx, "pw-"+randomHex(8), "secret", "create", "--label", "onebox-test=swarm", swarmSecret, "-"); err != nil {
		t.Fatal(err)
	}
}

func readFileString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// buildLoadClient builds integration/loadclient, static, for the client
// container to run from a bind mount.
func buildLoadClient(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "loadclient")
	cmd := exec.Command("go", "build", "-o", out, "./integration/loadclient")
	cmd.Dir = suite.repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the load client: %v\n%s", err, b)
	}
	return out
}

// remove takes the stack down and waits until its containers are gone, so
// that its volume and network can go too; the logs first when it failed.
func (st *swarmStack) remove() {
	t := st.t
	if t.Failed() {
		st.dumpLogs()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := dockerCLI(ctx, "", "stack", "rm", st.name); err != nil {
		t.Errorf("remove stack: %v", err)
	}
	for ctx.Err() == nil {
		cts, err := st.dc.LabeledContainers(ctx, "com.docker.stack.namespace="+st.name)
		if err == nil && len(cts) == 0 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	// The network goes a moment after the last container; the volume
	// cannot go before it is unused.
	for _, args := range [][]string{{"volume", "rm", st.name + "_db-data"}, {"secret", "rm", swarmSecret}} {
		if _, err := dockerCLI(ctx, "", args...); err != nil {
			t.Errorf("clean up: %v", err)
		}
	}
}

// dumpLogs saves every container's log of the stack under
// build/integration/logs/ and prints the tail of the onebox ones.
func (st *swarmStack) dumpLogs() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cts, err := st.dc.LabeledContainers(ctx, "com.docker.stack.namespace="+st.name)
	if err != nil {
		st.t.Logf("list containers for logs: %v", err)
		return
	}
	dir := filepath.Join(suite.repo, "build", "integration", "logs")
	_ = os.MkdirAll(dir, 0o755)
	for _, c := range cts {
		logs, _ := st.dc.Logs(ctx, c.ID)
		_ = os.WriteFile(filepath.Join(dir, c.Name+".log"), []byte(logs), 0o644)
		lines := strings.Split(strings.TrimRight(logs, "\n"), "\n")
		lines = lines[max(0, len(lines)-40):]
		st.t.Logf("---- %s (%s, %s) ----\n%s", c.Name, c.State, c.Health, strings.Join(lines, "\n"))
	}
}

// replicas lists the onebox service's running containers.
func (st *swarmStack) replicas(t *testing.T) []docker.Container {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	all, err := st.dc.LabeledContainers(ctx, docker.LabelSwarmService+"="+st.service)
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(all, func(c docker.Container) bool { return c.State != "running" })
}

// waitReplicas waits until exactly n containers of the service run, all
// healthy and none of them in old (the containers an update or a kill
// replaces), and returns them.
func (st *swarmStack) waitReplicas(t *testing.T, n int, old []string, limit time.Duration) []docker.Container {
	t.Helper()
	var got []docker.Container
	testutil.EventuallyWhy(t, limit, 500*time.Millisecond, fmt.Sprintf("%d healthy replicas of %s", n, st.service), func() (bool, string) {
		got = st.replicas(t)
		var why []string
		for _, c := range got {
			if c.Health != "healthy" || slices.Contains(old, c.ID) {
				why = append(why, fmt.Sprintf("%s %s old=%v", c.Name, c.Health, slices.Contains(old, c.ID)))
			}
		}
		return len(got) == n && len(why) == 0, fmt.Sprintf("%d running, not yet: %v", len(got), why)
	})
	return got
}

func ids(cts []docker.Container) []string {
	out := make([]string, len(cts))
	for i, c := range cts {
		out[i] = c.ID
	}
	return out
}

func (st *swarmStack) ips(t *testing.T, cts []docker.Container) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := make([]string, len(cts))
	for i, c := range cts {
		ip, err := st.dc.IPAddress(ctx, c.ID, st.network)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = ip
	}
	return out
}
