package h1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"onebox/internal/testutil"
)

// syncUpstream serves on a unix socket the way a single-threaded keep-alive
// worker does: n of them each accept one connection and serve it to its
// end before accepting the next. It counts the connections accepted.
func syncUpstream(t *testing.T, n int) (addr string, accepted *atomic.Int64) {
	t.Helper()
	addr = t.TempDir() + "/up.sock"
	ln, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted = new(atomic.Int64)
	for range n {
		go func() {
			for {
				nc, err := ln.Accept()
				if err != nil {
					return
				}
				accepted.Add(1)
				br := bufio.NewReader(nc)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						break
					}
					_, _ = io.Copy(io.Discard, req.Body)
					if _, err := io.WriteString(nc, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"); err != nil {
						break
					}
				}
				nc.Close()
			}
		}()
	}
	return addr, accepted
}

// exchange sends one GET on a connection from u and reads the answer.
func exchange(ctx context.Context, u *Upstream) error {
	c, err := u.Get(ctx, false, nil)
	if err != nil {
		return err
	}
	c.Writer().WriteString("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if err := c.Writer().Flush(); err != nil {
		c.Close()
		return err
	}
	resp, err := c.ReadResponse(http.Header{}, http.MethodGet)
	if err != nil {
		c.Close()
		return err
	}
	b, err := io.ReadAll(c.Body())
	if err != nil || resp.Status != 200 || string(b) != "ok\n" {
		c.Close()
		return errors.Join(err, errors.New("bad answer "+string(b)))
	}
	c.Done(true)
	return nil
}

// With the bound at the workers' number, 40 concurrent requests to two
// single-threaded keep-alive workers all get their answer on two
// connections. Without it (the second half) a request is sent on a third
// connection that no worker will accept while the two are kept idle.
func TestConnLimitSingleThreadedWorkers(t *testing.T) {
	addr, accepted := syncUpstream(t, 2)
	var max atomic.Int64
	max.Store(2)
	u := NewUpstream("unix", addr, UpstreamOptions{
		Connect: time.Second, Read: 10 * time.Second, Started: func() time.Time { return time.Time{} },
		MaxConns: func() int { return int(max.Load()) },
	})
	defer u.CloseIdle()
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for range 40 {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- exchange(context.Background(), u) }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a request failed under the bound: %v", err)
		}
	}
	if n := accepted.Load(); n > 2 {
		t.Errorf("%d connections accepted by 2 workers under a bound of 2; want at most 2", n)
	}

	// The bound lowered to 1 (the pool scaled down): a connection put
	// back past it is closed, and requests go on the one left.
	max.Store(1)
	for range 3 {
		if err := exchange(context.Background(), u); err != nil {
			t.Fatal(err)
		}
	}
	if n := u.Idle(); n != 1 {
		t.Errorf("%d idle connections after scaling the bound to 1; want 1", n)
	}
	if l := u.Limit(); l == nil || *l != (ConnLimit{Max: 1, Open: 1, Waiting: 0}) {
		t.Errorf("Limit() = %+v, want 1 allowed, 1 open, none waiting", l)
	}

	// No bound: a third connection sits in the backlog behind two idle
	// kept-alive ones and its request gets no answer.
	addr2, _ := syncUpstream(t, 2)
	free := NewUpstream("unix", addr2, UpstreamOptions{Connect: time.Second, Read: 300 * time.Millisecond, Started: func() time.Time { return time.Time{} }})
	defer free.CloseIdle()
	held := make([]*UpConn, 0, 2)
	for range 2 { // two connections the workers accepted, then kept idle
		c, err := free.Get(context.Background(), false, nil)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	for _, c := range held {
		c.Writer().WriteString("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		_ = c.Writer().Flush()
		if _, err := c.ReadResponse(http.Header{}, http.MethodGet); err != nil {
			t.Fatal(err)
		}
		_, _ = io.ReadAll(c.Body())
	}
	if l := free.Limit(); l != nil {
		t.Errorf("Limit() of an upstream without a bound = %+v, want nil", l)
	}
	third, err := free.Dial(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	third.Writer().WriteString("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = third.Writer().Flush()
	if _, err := third.ReadResponse(http.Header{}, http.MethodGet); !IsTimeout(err) {
		t.Errorf("a third connection to two held single-threaded workers: %v, want a read timeout (the reason for the bound)", err)
	}
	for _, c := range held {
		c.Done(true)
	}
}

// A request that waits for a free connection longer than the read timeout
// fails with ErrNoFreeConn (a timeout: 504), one whose context ends fails
// with the context's error, and neither keeps a slot: the connection in use
// is handed on afterwards.
func TestConnLimitWaitEnds(t *testing.T) {
	addr, _ := syncUpstream(t, 1)
	u := NewUpstream("unix", addr, UpstreamOptions{
		Connect: time.Second, Read: 200 * time.Millisecond, Started: func() time.Time { return time.Time{} },
		MaxConns: func() int { return 1 },
	})
	defer u.CloseIdle()
	c, err := u.Get(context.Background(), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Get(context.Background(), false, nil); !errors.Is(err, ErrNoFreeConn) || !IsTimeout(err) {
		t.Errorf("wait past the read timeout: %v, want ErrNoFreeConn, a timeout", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan error, 1)
	go func() { _, err := u.Dial(ctx, nil); got <- err }()
	waitWaiters(t, u, 1)
	cancel()
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Errorf("wait with its context cancelled: %v, want context.Canceled", err)
	}
	// A waiter for a pooled connection gets the one in use once it is
	// put back; a waiter for a fresh one gets the slot once it is closed.
	handed := make(chan *UpConn, 1)
	go func() {
		c, err := u.Get(context.Background(), false, nil)
		if err != nil {
			t.Error(err)
		}
		handed <- c
	}()
	waitWaiters(t, u, 1)
	c.idleFrom = time.Now()
	u.put(c)
	c2 := <-handed
	if c2 != c || !c2.Reused() {
		t.Fatalf("the waiter got %p (reused %v), want the connection put back, %p", c2, c2 != nil && c2.Reused(), c)
	}
	fresh := make(chan *UpConn, 1)
	go func() {
		c, err := u.Get(context.Background(), true, nil)
		if err != nil {
			t.Error(err)
		}
		fresh <- c
	}()
	waitWaiters(t, u, 1)
	c2.Close()
	c3 := <-fresh
	if c3 == nil || c3 == c2 || c3.Reused() {
		t.Fatal("a fresh waiter did not get a new connection once the old one closed")
	}
	c3.Close()
	if u.limit.open != 0 {
		t.Errorf("%d connections counted with none open; want 0", u.limit.open)
	}
}

// waitWaiters waits until n requests are queued on u's bound.
func waitWaiters(t *testing.T, u *Upstream, n int) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, "requests queued for a connection", func() bool {
		u.limit.mu.Lock()
		defer u.limit.mu.Unlock()
		return len(u.limit.waiters) == n
	})
}

// A request that wants a new connection at the bound (the retry, or a
// POST after a dead pooled connection) gets the slot of an idle one: a
// connection put back while it waits is closed to free the slot, and one
// already idle when it asks is closed the same way. Otherwise nothing would
// close the idle connection and the request would wait out the read
// timeout beside it.
func TestConnLimitFreshTakesIdleSlot(t *testing.T) {
	addr, accepted := syncUpstream(t, 1)
	u := NewUpstream("unix", addr, UpstreamOptions{
		Connect: time.Second, Read: 5 * time.Second, Started: func() time.Time { return time.Time{} },
		MaxConns: func() int { return 1 },
	})
	defer u.CloseIdle()
	c, err := u.Get(context.Background(), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	fresh := make(chan *UpConn, 1)
	go func() {
		c, err := u.Get(context.Background(), true, nil)
		if err != nil {
			t.Error(err)
		}
		fresh <- c
	}()
	waitWaiters(t, u, 1)
	u.put(c)
	c2 := <-fresh
	if c2 == nil {
		t.Fatal("the fresh waiter got no connection once one was put back")
	}
	if c2 == c || c2.Reused() {
		t.Errorf("the fresh waiter got the pooled connection (reused %v), want a new one", c2.Reused())
	}
	if n := u.Idle(); n != 0 {
		t.Errorf("%d idle connections after a fresh waiter took the slot; want 0", n)
	}
	if l := u.Limit(); *l != (ConnLimit{Max: 1, Open: 1, Waiting: 0}) {
		t.Errorf("Limit() = %+v, want 1 allowed, 1 open, none waiting", l)
	}
	// The new connection is served: the single worker was freed by the
	// close of the one put back.
	c2.Writer().WriteString("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if err := c2.Writer().Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.ReadResponse(http.Header{}, http.MethodGet); err != nil {
		t.Fatalf("the fresh connection: %v", err)
	}
	if _, err := io.ReadAll(c2.Body()); err != nil {
		t.Fatal(err)
	}
	c2.Done(true)
	if n := u.Idle(); n != 1 {
		t.Fatalf("%d idle connections, want the fresh one kept", n)
	}

	// At the bound with the connection idle: a fresh request closes it
	// and dials in its slot at once.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c3, err := u.Get(ctx, true, nil)
	if err != nil {
		t.Fatalf("a fresh request beside an idle connection at the bound: %v", err)
	}
	if c3 == c2 || c3.Reused() || u.Idle() != 0 {
		t.Errorf("got the idle connection (reused %v, %d idle), want a new one in its slot", c3.Reused(), u.Idle())
	}
	if l := u.Limit(); *l != (ConnLimit{Max: 1, Open: 1, Waiting: 0}) {
		t.Errorf("Limit() = %+v, want 1 allowed, 1 open, none waiting", l)
	}
	c3.Close()
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, "the single worker accepting the third connection", func() bool {
		return accepted.Load() == 3
	})
	if u.limit.open != 0 {
		t.Errorf("%d connections counted with none open; want 0", u.limit.open)
	}
}

// A request queued for a connection watches its plain-HTTP client: when
// the client closes its connection the wait ends with ErrClientGone (499)
// within about clientCheckInterval, long before the read timeout, and the
// request leaves the queue.
func TestConnLimitWaitEndsWhenClientLeaves(t *testing.T) {
	addr, _ := syncUpstream(t, 1)
	u := NewUpstream("unix", addr, UpstreamOptions{
		Connect: time.Second, Read: 30 * time.Second, Started: func() time.Time { return time.Time{} },
		MaxConns: func() int { return 1 },
	})
	defer u.CloseIdle()
	c, err := u.Get(context.Background(), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", t.TempDir()+"/client.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	served, err := ln.Accept() // the proxy's side of the client's connection
	if err != nil {
		t.Fatal(err)
	}
	defer served.Close()
	got := make(chan error, 1)
	go func() { _, err := u.Get(context.Background(), false, served); got <- err }()
	waitWaiters(t, u, 1)
	select {
	case err := <-got:
		t.Fatalf("the wait ended with the client still there: %v", err)
	case <-time.After(clientCheckInterval + clientCheckInterval/2): // a check has passed
	}
	client.Close()
	start := time.Now()
	select {
	case err := <-got:
		if !errors.Is(err, ErrClientGone) {
			t.Errorf("the client left: %v, want ErrClientGone", err)
		}
		t.Logf("the wait ended %v after the client left", time.Since(start))
	case <-time.After(10 * time.Second):
		t.Fatal("the wait did not end within 10s of the client leaving (the read timeout is 30s)")
	}
	if l := u.Limit(); *l != (ConnLimit{Max: 1, Open: 1, Waiting: 0}) {
		t.Errorf("Limit() = %+v, want 1 allowed, 1 open, none waiting", l)
	}
	u.put(c) // no one waits: it goes idle
	if n := u.Idle(); n != 1 {
		t.Errorf("%d idle connections after the put, want 1", n)
	}
}
