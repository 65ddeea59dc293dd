package supervisor

import "sync/atomic"

// State is where the box, or one of its components, stands; /status shows it.
type State string

// The box goes starting → running → stopping; a component goes waiting →
// starting → ready → stopping → stopped, or ends failed.
const (
	StateStarting State = "starting"
	StateRunning  State = "running"
	StateStopping State = "stopping"
	StateWaiting  State = "waiting"
	StateReady    State = "ready"
	StateStopped  State = "stopped"
	StateFailed   State = "failed"
)

// stateCell is a State read by the admin endpoint while the run loop writes
// it.
type stateCell struct{ v atomic.Value }

func (c *stateCell) Load() State {
	s, _ := c.v.Load().(State)
	return s
}

func (c *stateCell) Store(s State) { c.v.Store(s) }
