package supervisor

import (
	"context"
	"errors"
)

// ErrExited is returned (wrapped) by a component whose Run returned before it
// was asked to stop: the first component to return stops the whole box.
var ErrExited = errors.New("exited before stop")

// Component is a long-running part of the box (proxy, pool, database gate).
// Run blocks until ctx is cancelled, then drains and returns nil; any return
// before that is a failure that stops the box.
type Component interface {
	Run(ctx context.Context) error
}

// Readier is implemented by components that need time before the next one in
// the start order may start (the database gate before the pool, the pool
// before the proxy). The channel is closed once, when the component is ready.
// Components without it are ready as soon as they start, so a component
// that binds a listener must implement it and close the channel only once
// bound: the box must not report ready while connections are refused.
type Readier interface {
	Ready() <-chan struct{}
}

// Checker is implemented by components whose readiness can come and go while
// they run (the database). Check returns nil while ready; its error is shown
// by /readyz.
type Checker interface {
	Check() error
}

// Statuser is implemented by components that report state on /status. The
// value is encoded as JSON.
type Statuser interface {
	Status() any
}

// Reloader is implemented by components that act on HUP and POST /reload:
// the pool starts a new worker generation, the proxy re-reads certificates.
// Reload returns when the reload has succeeded or failed; a failed reload
// keeps the old generation running.
type Reloader interface {
	Reload(ctx context.Context) error
}

// Scaler is implemented by the pool, for TTIN/TTOU and POST /scale. With
// relative set, n is added to the count (+1, -1); else n is the new count.
// The count never goes below 1. It returns the new target count.
type Scaler interface {
	Scale(n int, relative bool) (int, error)
}

// LogReopener is implemented by components that write log files, for USR1.
type LogReopener interface {
	ReopenLogs() error
}

// LameDucker is implemented by components that serve clients (the proxy).
// LameDuck is called once when a stop begins with ONEBOX_SHUTDOWN_DELAY set:
// the component keeps accepting and serving, but tells clients to go
// elsewhere (HTTP/1 Connection: close, HTTP/2 GOAWAY) until its context is
// cancelled at the end of the delay.
type LameDucker interface {
	LameDuck()
}
