// Command loadclient is the integration suite's load client for the Swarm
// scenario (integration/swarm_test.go). It runs in a container on the
// stack's overlay network, since the routing mesh and service VIPs need IPVS,
// which the test machines' kernel lacks; the service runs with
// endpoint_mode dnsrr, so its name resolves to every ready task's address.
//
// Each of -workers loops sends POSTs on its own kept-alive connection, which
// it closes itself every -conn-requests requests. A new connection resolves the service name again and dials the addresses in a
// random order, taking the first that answers (as a browser falls back over
// a name's addresses), so replicas that come and go are found. POSTs are not
// retried by Go's client once written, so a connection the server closes
// under a request shows up as a failure: GETs would hide it.
//
// Progress goes to <-dir>/progress.json a few times a second; on SIGTERM (or
// after -max) the client stops, writes <-dir>/result.json and exits 0. A
// request cut short by the stop itself is not counted.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Failure is one failed request: a transport error or an unexpected status.
type Failure struct {
	At     time.Time `json:"at"`
	Remote string    `json:"remote"` // the replica's address, "" when no connection was made
	Error  string    `json:"error"`
}

// Result is what result.json holds; progress.json holds the same while the
// client runs.
type Result struct {
	Total    int64            `json:"total"`
	Failed   int64            `json:"failed"`
	Dials    int64            `json:"dials"`       // connections made
	DialErrs int64            `json:"dial_errors"` // addresses that did not answer (another was tried)
	Replicas map[string]int64 `json:"replicas"`    // requests answered, by the replica's address
	Failures []Failure        `json:"failures"`    // the first maxFailures
	Done     bool             `json:"done"`
}

const maxFailures = 100

type client struct {
	url, host string
	port      string
	body      []byte
	want      int

	total, failed, dials, dialErrs atomic.Int64

	mu       sync.Mutex
	failures []Failure
	replicas map[string]int64
	perConn  int // requests on one connection before the client closes it
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadclient:", err)
		os.Exit(1)
	}
}

func run() error {
	service := flag.String("service", "", "the service name to resolve for each new connection")
	port := flag.String("port", "8080", "the service's port")
	path := flag.String("path", "/api/messages", "the path to POST to")
	want := flag.Int("status", http.StatusCreated, "the status a successful POST answers")
	workers := flag.Int("workers", 8, "concurrent connections, one request at a time on each")
	perConn := flag.Int("conn-requests", 100, "requests on one connection before the client closes it and dials again, so new replicas get a share (0: never)")
	limit := flag.Duration("max", 5*time.Minute, "stop after this long even without SIGTERM")
	dir := flag.String("dir", "/out", "where progress.json and result.json go")
	flag.Parse()
	if *service == "" {
		return errors.New("-service is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *limit)
	defer cancel()

	c := &client{
		url:      "http://" + net.JoinHostPort(*service, *port) + *path,
		host:     *service,
		port:     *port,
		body:     []byte(`{"name":"loadclient","message":"a POST under a rolling update"}`),
		want:     *want,
		replicas: map[string]int64{},
		perConn:  *perConn,
	}
	var wg sync.WaitGroup
	for range *workers {
		wg.Add(1)
		go func() { defer wg.Done(); c.loop(ctx) }()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return c.write(*dir, "result.json", true)
		case <-tick.C:
			if err := c.write(*dir, "progress.json", false); err != nil {
				return err
			}
		}
	}
}

// loop sends one POST after another on one kept-alive connection (a new one
// when the server closed it) until ctx ends.
func (c *client) loop(ctx context.Context) {
	tr := &http.Transport{
		DialContext:         c.dial,
		MaxIdleConnsPerHost: 1,
		MaxConnsPerHost:     1,
		IdleConnTimeout:     time.Minute,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	for n := 1; ctx.Err() == nil; n++ {
		if c.perConn > 0 && n%c.perConn == 0 {
			// Closed by the client between two requests: no request can
			// be caught by it, as one can by a server's close.
			tr.CloseIdleConnections()
		}
		var remote string
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { remote = i.Conn.RemoteAddr().String() }}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodPost, c.url, bytes.NewReader(c.body))
		if err != nil {
			c.fail(remote, err)
			return
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if ctx.Err() != nil {
			return // stopped mid-request: not the server's failure
		}
		c.total.Add(1)
		switch {
		case err != nil:
			c.fail(remote, err)
		case resp.StatusCode != c.want:
			c.fail(remote, fmt.Errorf("status %d, want %d", resp.StatusCode, c.want))
		default:
			c.answered(remote)
		}
	}
}

// dial resolves the service name now, as a client that caches nothing would,
// and tries its addresses in a random order.
func (c *client) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	addrs, err := net.DefaultResolver.LookupHost(ctx, c.host)
	if err != nil {
		return nil, err
	}
	rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	d := net.Dialer{Timeout: time.Second}
	var errs []error
	for _, a := range addrs {
		conn, err := d.DialContext(ctx, network, net.JoinHostPort(a, c.port))
		if err == nil {
			c.dials.Add(1)
			return conn, nil
		}
		c.dialErrs.Add(1)
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("dial %s (%v): %w", c.host, addrs, errors.Join(errs...))
}

func (c *client) fail(remote string, err error) {
	c.failed.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.failures) < maxFailures {
		c.failures = append(c.failures, Failure{At: time.Now().UTC(), Remote: remote, Error: err.Error()})
	}
}

func (c *client) answered(remote string) {
	host, _, _ := net.SplitHostPort(remote)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.replicas[host]++
}

// write saves the counts to dir/name, atomically (a reader never sees half).
func (c *client) write(dir, name string, done bool) error {
	c.mu.Lock()
	r := Result{
		Total:    c.total.Load(),
		Failed:   c.failed.Load(),
		Dials:    c.dials.Load(),
		DialErrs: c.dialErrs.Load(),
		Replicas: maps.Clone(c.replicas),
		Failures: append([]Failure{}, c.failures...),
		Done:     done,
	}
	c.mu.Unlock()
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+name)
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
