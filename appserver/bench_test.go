package appserver

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"onebox/internal/process"
)

// hammer runs GET url from parallel clients for b.N requests and reports
// req/s. b.SetParallelism(16) gives 32 clients on 2 cores, enough to keep
// the server side busy.
func hammer(b *testing.B, url string) {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	b.SetParallelism(16)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

// BenchmarkPool is GET /hello through the pool's TCP socket to 2 workers
// (the benchmark client shares the 2 cores). Compare with
// BenchmarkOneProcess: the master is not on the request path, so the pool
// should cost nothing.
func BenchmarkPool(b *testing.B) {
	for _, n := range []int{1, 2, 4} {
		b.Run(strconv.Itoa(n)+"workers", func(b *testing.B) {
			cfg := Config{Command: goCommand("go"), Bind: "127.0.0.1:0", Workers: n, MaxWorkers: 12,
				Timeout: 30 * time.Second, GracefulTimeout: 5 * time.Second, BootTimeout: 5 * time.Second}
			m, err := New(cfg, Deps{Log: zerolog.Nop(), Start: reaper.Start, Shim: []string{os.Args[0], ShimArg}})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- m.Run(ctx) }()
			defer func() { cancel(); <-done }()
			<-m.Ready()
			hammer(b, "http://"+m.Addr()+"/hello")
		})
	}
}

// BenchmarkOneProcess is the same handler in one process run alone (PORT),
// no pool.
func BenchmarkOneProcess(b *testing.B) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(os.Args[0], "test-worker", "alone")
	cmd.Env = append(os.Environ(), "PORT="+port)
	// The pid comes from Start: the reaper releases cmd.Process, whose Pid
	// is then -1, and kill(-1) signals every process on the machine.
	pid, exited, err := reaper.Start(cmd)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { process.SignalGroup(pid, syscall.SIGTERM); <-exited }()
	// Run alone there is no readiness signal: retry the first request.
	for i := 0; ; i++ {
		resp, err := http.Get("http://" + addr + "/hello")
		if err == nil {
			resp.Body.Close()
			break
		}
		if i == 500 {
			b.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	hammer(b, "http://"+addr+"/hello")
}

// BenchmarkStartToReady is New + Run until Ready with 4 Go workers (no
// database, no prestart): the pool's share of onebox's start-up time.
func BenchmarkStartToReady(b *testing.B) {
	for b.Loop() {
		cfg := Config{Command: goCommand("go"), Bind: "unix:" + b.TempDir() + "/app.sock", Workers: 4, MaxWorkers: 12,
			Timeout: 30 * time.Second, GracefulTimeout: 5 * time.Second, BootTimeout: 5 * time.Second}
		m, err := New(cfg, Deps{Log: zerolog.Nop(), Start: reaper.Start, Shim: []string{os.Args[0], ShimArg}})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx) }()
		<-m.Ready()
		b.StopTimer()
		cancel()
		<-done
		b.StartTimer()
	}
}
