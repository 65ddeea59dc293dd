// Package testutil holds small helpers shared by the test files: polling a
// condition that has no signal of its own, and a log sink safe for
// concurrent writers.
package testutil

import (
	"bytes"
	"sync"
	"time"
)

// T is the part of testing.TB the helpers use; a *testing.T satisfies it.
type T interface {
	Helper()
	Fatalf(format string, args ...any)
}

// Eventually checks cond every interval until it holds or limit passes, and
// returns how long that took. On timeout it fails t with "<what>: not
// within <limit>". It only observes state; it synchronises nothing.
func Eventually(t T, limit, every time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	return EventuallyWhy(t, limit, every, what, func() (bool, string) { return cond(), "" })
}

// EventuallyWhy is Eventually for a condition that also says why it does
// not hold yet; the failure message ends with the last reason given.
func EventuallyWhy(t T, limit, every time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok, why := cond()
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			if why == "" {
				t.Fatalf("%s: not within %s", what, limit)
			} else {
				t.Fatalf("%s: not within %s (last: %s)", what, limit, why)
			}
			return time.Since(start)
		}
		time.Sleep(every)
	}
}

// SyncBuffer is a bytes.Buffer safe for a writer in another goroutine (a
// logger, a child's output) and the test reading it. The zero value is
// ready to use.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p to the buffer.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns a copy of what was written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Len returns the number of bytes written so far.
func (b *SyncBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// Reset empties the buffer.
func (b *SyncBuffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Reset()
}
