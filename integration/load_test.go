//go:build integration

package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// load is a bounded load loop: a fixed number of clients, each sending one
// request after another, counting every response. A failure is a transport
// error or any status other than 200.
type load struct {
	total, failed atomic.Int64

	mu     sync.Mutex
	errors []string // the first few failures, for the report

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startLoad runs clients concurrent GET loops on url until stop.
func startLoad(url string, clients int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	tr := &http.Transport{MaxIdleConnsPerHost: clients, IdleConnTimeout: 30 * time.Second}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	for range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				resp, err := hc.Do(req)
				if ctx.Err() != nil {
					return // stopped mid-request: not the server's failure
				}
				l.total.Add(1)
				if err != nil {
					l.fail(err.Error())
					continue
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || err != nil {
					l.fail(fmt.Sprintf("status %d, body error %v", resp.StatusCode, err))
				}
			}
		}()
	}
	return l
}

func (l *load) fail(msg string) {
	l.failed.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errors) < 10 {
		l.errors = append(l.errors, time.Now().Format("15:04:05.000")+" "+msg)
	}
}

// waitFor blocks until at least n more requests have completed, so each
// phase of a test really ran under load.
func (l *load) waitFor(n int64, d time.Duration) bool {
	target := l.total.Load() + n
	deadline := time.Now().Add(d)
	for l.total.Load() < target {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// stop ends the loop and returns the counts.
func (l *load) stop() (total, failed int64, errs []string) {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total.Load(), l.failed.Load(), l.errors
}
