package docker

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"
)

// WaitHealthy blocks until the container's healthcheck reports healthy. It
// follows the daemon's event stream rather than polling, and fails at once
// if the container dies or has no healthcheck. When ctx ends first, the error
// carries the last healthcheck output, which usually says why.
func (c *Client) WaitHealthy(ctx context.Context, id string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Subscribe first, then look at the current state: an event between the
	// two is then seen either way.
	ev := c.api.Events(ctx, client.EventsListOptions{
		Filters: make(client.Filters).Add("type", string(events.ContainerEventType)).Add("container", id),
	})
	check := func() (done bool, err error) {
		ins, err := c.Inspect(ctx, id)
		if err != nil {
			return false, err
		}
		st := ins.State
		switch {
		case st == nil:
			return false, fmt.Errorf("wait for container %s to be healthy: no state", short(id))
		case st.Health == nil:
			return false, fmt.Errorf("wait for container %s to be healthy: it has no healthcheck", short(id))
		case st.Health.Status == container.Healthy:
			return true, nil
		case !st.Running && !st.Restarting:
			return false, fmt.Errorf("wait for container %s to be healthy: it exited with code %d", short(id), st.ExitCode)
		}
		return false, nil
	}
	if done, err := check(); done || err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for container %s to be healthy: %w (last check: %s)", short(id), ctx.Err(), c.lastHealthOutput(id))
		case err := <-ev.Err:
			return fmt.Errorf("follow events of container %s: %w", short(id), err)
		case m := <-ev.Messages:
			switch {
			case strings.HasPrefix(string(m.Action), "health_status"), m.Action == events.ActionDie, m.Action == events.ActionStart:
				if done, err := check(); done || err != nil {
					return err
				}
			}
		}
	}
}

// lastHealthOutput is the output of the most recent healthcheck, for errors.
func (c *Client) lastHealthOutput(id string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ins, err := c.Inspect(ctx, id)
	if err != nil || ins.State == nil || ins.State.Health == nil || len(ins.State.Health.Log) == 0 {
		return "none"
	}
	last := ins.State.Health.Log[len(ins.State.Health.Log)-1]
	return fmt.Sprintf("status %s, exit %d, %q", ins.State.Health.Status, last.ExitCode, strings.TrimSpace(last.Output))
}

// WaitExit blocks until the container is not running and returns its exit
// code. It returns at once for a container that has already stopped.
func (c *Client) WaitExit(ctx context.Context, id string) (int, error) {
	wait := c.api.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case w := <-wait.Result:
		if w.Error != nil {
			return 0, fmt.Errorf("wait for container %s: %s", short(id), w.Error.Message)
		}
		return int(w.StatusCode), nil
	case err := <-wait.Error:
		return 0, fmt.Errorf("wait for container %s: %w", short(id), err)
	}
}
