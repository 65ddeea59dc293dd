package supervisor_test

import (
	"context"
	"net/http"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"onebox/internal/testutil"
	"onebox/supervisor"
)

// recorder is a component that records what reaches it, in order, into a
// log shared by all recorders.
type recorder struct {
	name   string
	events *events
	onStop func() // runs when asked to stop, before Run returns
}

type events struct {
	mu   sync.Mutex
	list []string
	ch   chan string
}

func (e *events) add(s string) {
	e.mu.Lock()
	e.list = append(e.list, s)
	e.mu.Unlock()
	e.ch <- s
}

// next waits for the next event.
func (e *events) next(t *testing.T) string {
	t.Helper()
	select {
	case s := <-e.ch:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
		return ""
	}
}

func (r *recorder) Run(ctx context.Context) error {
	<-ctx.Done()
	if r.onStop != nil {
		r.onStop()
	}
	r.events.add(r.name + " stopped")
	return nil
}
func (r *recorder) Reload(context.Context) error { r.events.add(r.name + " reload"); return nil }
func (r *recorder) Scale(n int, relative bool) (int, error) {
	if relative && n > 0 {
		r.events.add(r.name + " scale +1")
	} else {
		r.events.add(r.name + " scale -1")
	}
	return 1, nil
}
func (r *recorder) ReopenLogs() error { r.events.add(r.name + " reopen"); return nil }

// Real signals, sent to this test process, reach the components that act on
// them; QUIT stops gracefully, in reverse start order, and /readyz answers 503
// while the stop is under way.
func TestSignalsReachComponentsAndStopIsReversed(t *testing.T) {
	ev := &events{ch: make(chan string, 32)}
	sup := supervisor.New(supervisor.Config{ShutdownTimeout: 5 * time.Second, AdminListen: "127.0.0.1:0"}, zerolog.Nop(), nil)
	duringStop := make(chan int, 1)
	first := &recorder{name: "first", events: ev}
	second := &recorder{name: "second", events: ev, onStop: func() {
		resp, err := http.Get("http://" + sup.AdminAddr() + "/readyz")
		if err == nil {
			resp.Body.Close()
			duringStop <- resp.StatusCode
		} else {
			duringStop <- 0
		}
	}}
	sup.Add("first", first)
	sup.Add("second", second)
	done := make(chan error, 1)
	go func() { done <- sup.Run(context.Background()) }()
	testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, "ready", func() bool { return sup.AdminAddr() != "" && sup.Ready() == nil })

	self := os.Getpid()
	for _, tc := range []struct {
		sig  syscall.Signal
		want []string
	}{
		{syscall.SIGHUP, []string{"first reload", "second reload"}},
		{syscall.SIGTTIN, []string{"first scale +1"}},
		{syscall.SIGTTOU, []string{"first scale -1"}},
		{syscall.SIGUSR1, []string{"first reopen", "second reopen"}},
	} {
		if err := syscall.Kill(self, tc.sig); err != nil {
			t.Fatal(err)
		}
		for _, want := range tc.want {
			if got := ev.next(t); got != want {
				t.Fatalf("after %s: event %q, want %q", tc.sig, got, want)
			}
		}
	}

	if err := syscall.Kill(self, syscall.SIGQUIT); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"second stopped", "first stopped"} {
		if got := ev.next(t); got != want {
			t.Fatalf("stop order: event %q, want %q", got, want)
		}
	}
	if code := <-duringStop; code != http.StatusServiceUnavailable {
		t.Errorf("/readyz during the stop = %d, want 503", code)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after QUIT = %v, want nil (a clean stop)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after QUIT")
	}
}
