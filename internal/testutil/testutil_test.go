package testutil

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a T that records a failure instead of stopping the goroutine.
type recorder struct {
	failed []string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = append(r.failed, fmt.Sprintf(format, args...))
}

func TestEventuallyReturnsOnceTheConditionHolds(t *testing.T) {
	var r recorder
	calls := 0
	Eventually(&r, time.Minute, time.Millisecond, "third call", func() bool {
		calls++
		return calls == 3
	})
	if calls != 3 || len(r.failed) != 0 {
		t.Fatalf("calls %d, failures %q; want 3 calls and no failure", calls, r.failed)
	}
}

func TestEventuallyFailsNamingWhatAndLimit(t *testing.T) {
	var r recorder
	took := Eventually(&r, 20*time.Millisecond, time.Millisecond, "the door opens", func() bool { return false })
	if len(r.failed) != 1 || r.failed[0] != "the door opens: not within 20ms" {
		t.Fatalf("failures %q; want one, naming the condition and the limit", r.failed)
	}
	if took < 20*time.Millisecond {
		t.Fatalf("gave up after %s, before the 20ms limit", took)
	}
}

func TestEventuallyWhyReportsTheLastReason(t *testing.T) {
	var r recorder
	n := 0
	EventuallyWhy(&r, 20*time.Millisecond, time.Millisecond, "ready", func() (bool, string) {
		n++
		return false, fmt.Sprintf("attempt %d", n)
	})
	want := fmt.Sprintf("ready: not within 20ms (last: attempt %d)", n)
	if len(r.failed) != 1 || r.failed[0] != want {
		t.Fatalf("failures %q; want [%q]", r.failed, want)
	}
}

func TestSyncBufferConcurrentWriters(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				fmt.Fprint(&b, "x")
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	if b.Len() != 800 || b.String() != strings.Repeat("x", 800) {
		t.Fatalf("after 8×100 writes: len %d", b.Len())
	}
	b.Reset()
	if b.Len() != 0 || b.String() != "" {
		t.Fatalf("after Reset: %q", b.String())
	}
}
