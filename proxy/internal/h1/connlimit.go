package h1

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"
)

// connLimit bounds the connections open to one upstream (nginx's
// max_conns), in use and idle together, and queues whoever needs one past
// the bound. It exists for workers that serve one connection to its end
// before they accept the next (a single-threaded keep-alive server): a
// connection opened beyond their number sits in the socket's backlog
// while every worker is held by a connection the proxy keeps idle, and
// the request on it waits until an idle one is closed. With the bound the
// proxy never opens that connection: the request waits here for one that
// a worker serves, as it would wait for a free sync gunicorn worker.
type connLimit struct {
	max func() int // the bound now (the pool can be scaled); <= 0: none

	mu      sync.Mutex
	open    int // connections counted: dialling, in use or idle
	waiters []*connWaiter
}

// connWaiter is one request queued for a connection. ch receives a
// connection handed over from the pool, or nil: a slot to dial in.
type connWaiter struct {
	ch    chan *UpConn
	fresh bool // wants a new connection: only a slot will do
}

// ErrNoFreeConn is the error of a request that waited for a free upstream
// connection for the read timeout. It is a timeout (IsTimeout).
var ErrNoFreeConn = fmt.Errorf("no free upstream connection: %w", context.DeadlineExceeded)

// acquire returns an idle connection from idle (unless fresh), or nil with
// a slot counted for the caller to dial in; it waits past the bound,
// at most wait (0: until ctx ends), and, with a client connection to
// watch, until that client leaves (ErrClientGone).
func (l *connLimit) acquire(ctx context.Context, idle chan *UpConn, fresh bool, wait time.Duration, client net.Conn) (*UpConn, error) {
	l.mu.Lock()
	for {
		if !fresh {
			select {
			case c := <-idle: // put hands connections to the pool under mu
				l.mu.Unlock()
				return c, nil
			default:
			}
		}
		m := l.max()
		if m <= 0 || l.open < m {
			l.open++
			l.mu.Unlock()
			return nil, nil
		}
		if !fresh {
			break
		}
		// A new connection wanted at the bound: an idle connection's
		// slot serves it better than the connection (nothing else would
		// close it, and the request would wait out the read timeout).
		var c *UpConn
		select {
		case c = <-idle:
		default:
		}
		if c == nil {
			break
		}
		c.counted = false
		keep := l.open <= m // its slot is within the bound: the caller's
		if !keep {
			l.open-- // the bound came down: one fewer, then look again
		}
		l.mu.Unlock()
		c.Close()
		if keep {
			return nil, nil
		}
		l.mu.Lock()
	}
	w := &connWaiter{ch: make(chan *UpConn, 1), fresh: fresh}
	l.waiters = append(l.waiters, w)
	l.mu.Unlock()
	return l.wait(ctx, w, wait, client)
}

// wait waits, queued as w, for a connection or a slot (see acquire).
func (l *connLimit) wait(ctx context.Context, w *connWaiter, wait time.Duration, client net.Conn) (*UpConn, error) {
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	// On the plain listener ctx ends only with the connection's loop: the
	// client is checked as a read waiting on the upstream checks it.
	var check <-chan time.Time
	if client != nil {
		tk := time.NewTicker(clientCheckInterval)
		defer tk.Stop()
		check = tk.C
	}
	var err error
	for err == nil {
		select {
		case c := <-w.ch:
			return c, nil
		case <-ctx.Done():
			err = ctx.Err()
		case <-timeout:
			err = ErrNoFreeConn
		case <-check:
			if clientGone(client) {
				err = ErrClientGone
			}
		}
	}
	l.mu.Lock()
	for i, x := range l.waiters {
		if x == w {
			l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
			l.mu.Unlock()
			return nil, err
		}
	}
	l.mu.Unlock()
	// Served while giving up: pass on what was handed over.
	if c := <-w.ch; c != nil {
		c.u.put(c)
	} else {
		l.release()
	}
	return nil, err
}

// handOver gives c to the first waiter that takes a pooled connection;
// false when none waits. Called with mu held.
func (l *connLimit) handOver(c *UpConn) bool {
	for i, w := range l.waiters {
		if !w.fresh {
			l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
			w.ch <- c
			return true
		}
	}
	return false
}

// handSlot gives the slot of a connection about to be closed to the first
// waiter, which wants a fresh one (handOver found none that takes a
// pooled one); false when none waits. Called with mu held.
func (l *connLimit) handSlot() bool {
	if len(l.waiters) == 0 {
		return false
	}
	w := l.waiters[0]
	l.waiters = l.waiters[1:]
	w.ch <- nil
	return true
}

// over reports whether more connections are open than the bound allows
// (the pool was scaled down). Called with mu held.
func (l *connLimit) over() bool {
	m := l.max()
	return m > 0 && l.open > m
}

// release uncounts a connection that is closed (or a slot not dialled):
// the first waiter gets the slot.
func (l *connLimit) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if len(l.waiters) == 0 {
		return
	}
	if m := l.max(); m > 0 && l.open >= m {
		return
	}
	w := l.waiters[0]
	l.waiters = l.waiters[1:]
	l.open++
	w.ch <- nil
}

// ConnLimit is an upstream's bound on connections as it stands: the bound,
// the connections open (in use and idle) and the requests waiting for one.
type ConnLimit struct {
	Max     int `json:"max_conns"`
	Open    int `json:"open"`
	Waiting int `json:"waiting"`
}

// Limit reports the bound on connections, or nil when there is none.
func (u *Upstream) Limit() *ConnLimit {
	if u.limit == nil {
		return nil
	}
	l := u.limit
	l.mu.Lock()
	defer l.mu.Unlock()
	return &ConnLimit{Max: l.max(), Open: l.open, Waiting: len(l.waiters)}
}
