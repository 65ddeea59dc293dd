// Package docker holds the test-side helpers the integration suite uses to
// drive containers: a thin layer over the Docker Engine SDK
// (github.com/moby/moby/client) for finding a compose project's containers,
// waiting for health, exec, signals, stop/start/pause, networks and logs, and
// a runner for the compose CLI (compose.go).
//
// Every call negotiates the API version with the daemon, so the same code
// talks to an old daemon (API 1.41, Docker 20.10) and to current ones.
package docker

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// Compose labels, set on every container by both docker compose v2 and
// docker-compose v1.
const (
	LabelProject = "com.docker.compose.project"
	LabelService = "com.docker.compose.service"
)

// Client talks to the local Docker daemon.
type Client struct {
	api *client.Client
}

// New connects to the daemon named by the usual DOCKER_HOST / DOCKER_* variables
// (the local socket by default) and checks that it answers.
func New(ctx context.Context) (*Client, error) {
	api, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("create docker client: %w", err)
	}
	if _, err := api.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		api.Close()
		return nil, fmt.Errorf("ping docker daemon: %w", err)
	}
	return &Client{api: api}, nil
}

// Close releases the client's connections.
func (c *Client) Close() error { return c.api.Close() }

// APIVersion is the API version negotiated with the daemon.
func (c *Client) APIVersion() string { return c.api.ClientVersion() }

// API gives the SDK client for what this package does not wrap.
func (c *Client) API() *client.Client { return c.api }

// Container is one container of a compose project, as listed.
type Container struct {
	ID      string
	Name    string // without the leading slash
	Project string
	Service string
	State   string // running, exited, paused, …
	Health  string // healthy, unhealthy, starting, or "" without a healthcheck
}

// ProjectContainers lists every container (running or not) of a compose
// project, found by the compose project label, sorted by service then name.
func (c *Client) ProjectContainers(ctx context.Context, project string) ([]Container, error) {
	return c.LabeledContainers(ctx, LabelProject+"="+project)
}

// Swarm labels, set on every container of a swarm service's tasks.
const (
	LabelSwarmService = "com.docker.swarm.service.name"
	LabelSwarmTask    = "com.docker.swarm.task.name"
)

// LabeledContainers lists every container (running or not) with a label
// ("name=value", or "name" for any value), sorted by compose service then
// name; for a swarm task's container, Service is the swarm service's name.
func (c *Client) LabeledContainers(ctx context.Context, label string) ([]Container, error) {
	res, err := c.api.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", label),
	})
	if err != nil {
		return nil, fmt.Errorf("list containers labelled %q: %w", label, err)
	}
	out := make([]Container, 0, len(res.Items))
	for _, s := range res.Items {
		ct := Container{
			ID:      s.ID,
			Project: s.Labels[LabelProject],
			Service: s.Labels[LabelService],
			State:   string(s.State),
		}
		if ct.Service == "" {
			ct.Service = s.Labels[LabelSwarmService]
		}
		if len(s.Names) > 0 {
			ct.Name = strings.TrimPrefix(s.Names[0], "/")
		}
		switch {
		case s.Health != nil:
			if s.Health.Status != container.NoHealthcheck {
				ct.Health = string(s.Health.Status)
			}
		case s.State == container.StateRunning:
			// Older daemons (Docker 20.10 among them) list no
			// health: ask for it.
			if ct.Health, err = c.health(ctx, s.ID); err != nil {
				return nil, err
			}
		}
		out = append(out, ct)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// ServiceContainer returns the one container of a service in a project; it
// is an error when there is none or more than one.
func (c *Client) ServiceContainer(ctx context.Context, project, service string) (Container, error) {
	all, err := c.ProjectContainers(ctx, project)
	if err != nil {
		return Container{}, err
	}
	var found []Container
	for _, ct := range all {
		if ct.Service == service {
			found = append(found, ct)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return Container{}, fmt.Errorf("find service %q of project %q: no container", service, project)
	default:
		return Container{}, fmt.Errorf("find service %q of project %q: %d containers", service, project, len(found))
	}
}

// Inspect returns the daemon's full view of a container.
func (c *Client) Inspect(ctx context.Context, id string) (container.InspectResponse, error) {
	res, err := c.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return container.InspectResponse{}, fmt.Errorf("inspect container %s: %w", short(id), err)
	}
	return res.Container, nil
}

// HostPort returns the host address ("127.0.0.1:32768") that a container port
// ("8080/tcp") is published on. A binding on all addresses is given as
// 127.0.0.1, since the tests connect from this host.
func (c *Client) HostPort(ctx context.Context, id, port string) (string, error) {
	ins, err := c.Inspect(ctx, id)
	if err != nil {
		return "", err
	}
	if ins.NetworkSettings != nil {
		for p, bindings := range ins.NetworkSettings.Ports {
			if p.String() != port {
				continue
			}
			for _, b := range bindings {
				if b.HostPort == "" {
					continue
				}
				ip := "127.0.0.1"
				if b.HostIP.IsValid() && !b.HostIP.IsUnspecified() && b.HostIP.Is4() {
					ip = b.HostIP.String()
				}
				return ip + ":" + b.HostPort, nil
			}
		}
	}
	return "", fmt.Errorf("find host port of %s in container %s: not published", port, short(id))
}

// health is a container's health status, "" without a healthcheck.
func (c *Client) health(ctx context.Context, id string) (string, error) {
	ins, err := c.Inspect(ctx, id)
	if isNotFound(err) {
		return "", nil // removed since it was listed
	}
	if err != nil {
		return "", err
	}
	if ins.State == nil || ins.State.Health == nil || ins.State.Health.Status == container.NoHealthcheck {
		return "", nil
	}
	return string(ins.State.Health.Status), nil
}

// IPAddress returns a container's IPv4 address on a network (by name).
func (c *Client) IPAddress(ctx context.Context, id, netName string) (string, error) {
	ins, err := c.Inspect(ctx, id)
	if err != nil {
		return "", err
	}
	if ins.NetworkSettings != nil {
		if ep, ok := ins.NetworkSettings.Networks[netName]; ok && ep != nil && ep.IPAddress.IsValid() {
			return ep.IPAddress.String(), nil
		}
	}
	return "", fmt.Errorf("find address of container %s on network %q: not attached", short(id), netName)
}

// Kill sends a signal ("HUP", "SIGTTIN", "9") to the container's main process.
func (c *Client) Kill(ctx context.Context, id, signal string) error {
	if _, err := c.api.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: signal}); err != nil {
		return fmt.Errorf("send %s to container %s: %w", signal, short(id), err)
	}
	return nil
}

// Stop stops a container as `docker stop -t` does: its stop signal, then
// SIGKILL after timeout. It returns when the container has stopped.
func (c *Client) Stop(ctx context.Context, id string, timeout time.Duration) error {
	secs := int(timeout.Round(time.Second) / time.Second)
	if _, err := c.api.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &secs}); err != nil {
		return fmt.Errorf("stop container %s: %w", short(id), err)
	}
	return nil
}

// Start starts a created or stopped container.
func (c *Client) Start(ctx context.Context, id string) error {
	if _, err := c.api.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("start container %s: %w", short(id), err)
	}
	return nil
}

// Pause freezes every process of a container (cgroup freezer).
func (c *Client) Pause(ctx context.Context, id string) error {
	if _, err := c.api.ContainerPause(ctx, id, client.ContainerPauseOptions{}); err != nil {
		return fmt.Errorf("pause container %s: %w", short(id), err)
	}
	return nil
}

// Unpause thaws a paused container.
func (c *Client) Unpause(ctx context.Context, id string) error {
	if _, err := c.api.ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{}); err != nil {
		return fmt.Errorf("unpause container %s: %w", short(id), err)
	}
	return nil
}

// Disconnect removes a container from a network (by name or id), as if its
// cable were pulled; Connect plugs it back in.
func (c *Client) Disconnect(ctx context.Context, netName, id string) error {
	if _, err := c.api.NetworkDisconnect(ctx, netName, client.NetworkDisconnectOptions{Container: id, Force: true}); err != nil {
		return fmt.Errorf("disconnect container %s from network %q: %w", short(id), netName, err)
	}
	return nil
}

// Connect attaches a container to a network, with optional DNS aliases (a
// compose service needs its service name back as an alias to be found again).
func (c *Client) Connect(ctx context.Context, netName, id string, aliases ...string) error {
	opts := client.NetworkConnectOptions{Container: id}
	if len(aliases) > 0 {
		opts.EndpointConfig = &network.EndpointSettings{Aliases: aliases}
	}
	if _, err := c.api.NetworkConnect(ctx, netName, opts); err != nil {
		return fmt.Errorf("connect container %s to network %q: %w", short(id), netName, err)
	}
	return nil
}

// Networks returns the names of the networks a container is attached to.
func (c *Client) Networks(ctx context.Context, id string) ([]string, error) {
	ins, err := c.Inspect(ctx, id)
	if err != nil {
		return nil, err
	}
	var names []string
	if ins.NetworkSettings != nil {
		for name := range ins.NetworkSettings.Networks {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names, nil
}

// Logs returns everything the container wrote to stdout and stderr so far, in
// the order the daemon recorded it.
func (c *Client) Logs(ctx context.Context, id string) (string, error) {
	rc, err := c.api.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return "", fmt.Errorf("read logs of container %s: %w", short(id), err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	// Both streams into one buffer keeps their interleaving; a container
	// without a TTY always sends the multiplexed format.
	if _, err := stdcopy.StdCopy(&buf, &buf, rc); err != nil {
		return buf.String(), fmt.Errorf("read logs of container %s: %w", short(id), err)
	}
	return buf.String(), nil
}

// ImageSize returns the size in bytes of a local image.
func (c *Client) ImageSize(ctx context.Context, ref string) (int64, error) {
	res, err := c.api.ImageInspect(ctx, ref)
	if err != nil {
		return 0, fmt.Errorf("inspect image %q: %w", ref, err)
	}
	return res.Size, nil
}

// HasImage reports whether the daemon holds an image.
func (c *Client) HasImage(ctx context.Context, ref string) (bool, error) {
	_, err := c.api.ImageInspect(ctx, ref)
	if err == nil {
		return true, nil
	}
	if isNotFound(err) {
		return false, nil
	}
	return false, fmt.Errorf("inspect image %q: %w", ref, err)
}

func isNotFound(err error) bool { return cerrdefs.IsNotFound(err) }

// short abbreviates a container id for messages, as docker ps does.
func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
