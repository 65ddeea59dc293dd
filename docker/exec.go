package docker

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// ExecResult is what a command run in a container left behind.
type ExecResult struct {
	ExitCode int
	Stdout   string
	Stderr   string
}

// Exec runs a command inside a running container, as its default user, and
// returns its exit code and output. A non-zero exit code is not an error; an
// error means the command could not be run or its outcome not read.
func (c *Client) Exec(ctx context.Context, id string, cmd ...string) (ExecResult, error) {
	created, err := c.api.ExecCreate(ctx, id, client.ExecCreateOptions{
		Cmd:          cmd,
		AttachStdout: true,
		AttachStderr: true,
	})
	if err != nil {
		return ExecResult{}, fmt.Errorf("create exec %q in container %s: %w", cmd, short(id), err)
	}
	att, err := c.api.ExecAttach(ctx, created.ID, client.ExecAttachOptions{})
	if err != nil {
		return ExecResult{}, fmt.Errorf("start exec %q in container %s: %w", cmd, short(id), err)
	}
	defer att.Close()
	// The hijacked connection ignores ctx: close it when ctx ends so a hung
	// command cannot hang the test past its deadline.
	stop := context.AfterFunc(ctx, att.Close)
	defer stop()

	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, att.Reader); err != nil {
		return ExecResult{Stdout: stdout.String(), Stderr: stderr.String()},
			fmt.Errorf("read output of exec %q in container %s: %w", cmd, short(id), err)
	}
	res := ExecResult{Stdout: stdout.String(), Stderr: stderr.String()}

	// The output stream ends when the process exits, but the daemon records
	// the exit code a moment later; ask until it is there.
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		ins, err := c.api.ExecInspect(ctx, created.ID, client.ExecInspectOptions{})
		if err != nil {
			return res, fmt.Errorf("inspect exec %q in container %s: %w", cmd, short(id), err)
		}
		if !ins.Running {
			res.ExitCode = ins.ExitCode
			return res, nil
		}
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("wait for exec %q in container %s: %w", cmd, short(id), ctx.Err())
		case <-time.After(delay):
		}
	}
}

// RunOptions describe a one-off container for Run.
type RunOptions struct {
	Image string
	Cmd   []string // empty: the image's CMD
	Env   []string // NAME=value
	User  string   // empty: the image's USER
	// PIDMode "container:<id>" joins another container's PID namespace, to
	// act on its processes from inside (kill one, read its /proc).
	PIDMode string
	// ReadOnly mounts the root file system read-only; Tmpfs adds tmpfs mounts
	// (path → options, "" for the defaults).
	ReadOnly bool
	Tmpfs    map[string]string
	Network  string // empty: the default bridge
	// Labels are set on the container, e.g. to find it for clean-up.
	Labels map[string]string
	// Binds are bind mounts, as docker run -v: "/host/dir:/in/container[:ro]".
	Binds []string
}

// RunResult is the outcome of a one-off container.
type RunResult struct {
	ExitCode int
	Logs     string // stdout and stderr, interleaved
}

// Run creates a container, starts it, waits for it to exit, collects its logs
// and removes it, as `docker run --rm` does. A non-zero exit code is not an
// error.
func (c *Client) Run(ctx context.Context, opts RunOptions) (RunResult, error) {
	id, err := c.create(ctx, opts)
	if err != nil {
		return RunResult{}, err
	}
	defer func() { _ = c.Remove(ctx, id) }()

	// Subscribe before starting, or a fast container's exit is missed.
	wait := c.api.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if err := c.Start(ctx, id); err != nil {
		return RunResult{}, err
	}
	var res RunResult
	select {
	case w := <-wait.Result:
		if w.Error != nil {
			return res, fmt.Errorf("wait for container %s: %s", short(id), w.Error.Message)
		}
		res.ExitCode = int(w.StatusCode)
	case err := <-wait.Error:
		return res, fmt.Errorf("wait for container %s: %w", short(id), err)
	}
	res.Logs, err = c.Logs(ctx, id)
	return res, err
}

func (c *Client) create(ctx context.Context, opts RunOptions) (string, error) {
	created, err := c.api.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{
			Image:  opts.Image,
			Cmd:    opts.Cmd,
			Env:    opts.Env,
			User:   opts.User,
			Labels: opts.Labels,
		},
		HostConfig: &container.HostConfig{
			PidMode:        container.PidMode(opts.PIDMode),
			ReadonlyRootfs: opts.ReadOnly,
			Tmpfs:          opts.Tmpfs,
			NetworkMode:    container.NetworkMode(opts.Network),
			Binds:          opts.Binds,
		},
	})
	if err != nil {
		return "", fmt.Errorf("create container from %q: %w", opts.Image, err)
	}
	return created.ID, nil
}

// RunDetached creates and starts a container, as `docker run -d` does, and
// returns its id; the caller stops it (Kill, WaitExit) and removes it
// (Remove).
func (c *Client) RunDetached(ctx context.Context, opts RunOptions) (string, error) {
	id, err := c.create(ctx, opts)
	if err != nil {
		return "", err
	}
	if err := c.Start(ctx, id); err != nil {
		_ = c.Remove(ctx, id)
		return "", err
	}
	return id, nil
}

// Remove removes a container, running or not, as `docker rm -f` does. It is
// meant for clean-up, so it runs even when ctx has ended.
func (c *Client) Remove(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if _, err := c.api.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true}); err != nil && !isNotFound(err) {
		return fmt.Errorf("remove container %s: %w", short(id), err)
	}
	return nil
}
