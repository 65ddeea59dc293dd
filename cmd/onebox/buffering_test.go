package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBinarySlowClientsNeverReachWorkers is issue 11's run: two
// single-threaded keep-alive Python workers behind onebox
// (APP_WORKER_CONNECTIONS=1), 8 clients that
// upload a body at 1 byte a second and 8 that read a 4 MiB reply through a
// tiny window; meanwhile a good client asks GET /hello and gets every
// answer. Without buffering it got none.
func TestBinarySlowClientsNeverReachWorkers(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Fatalf("python3 is needed for the sync worker: %v", err)
	}
	worker, _ := filepath.Abs("testdata/syncworker.py")
	listen, admin := freePort(t), freePort(t)
	cmd := exec.Command(onebox(t))
	cmd.Env = append(os.Environ(),
		"PROXY_LISTEN="+listen, "ONEBOX_ADMIN_LISTEN="+admin, "PROXY_ACCESS_LOG=off",
		"PROXY_TRY_FILES=@app", "PROXY_TEMP_DIR="+t.TempDir(),
		"APP_COMMAND=python3 "+worker, "APP_BIND=unix:"+filepath.Join(t.TempDir(), "app.sock"), "APP_WORKERS=2", "APP_WORKER_CONNECTIONS=1",
	)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() })
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		once := sync.Once{}
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["message"] == "onebox is ready" {
				once.Do(func() { close(ready) })
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("onebox not ready within 30s")
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(2)
		go func() { // a slow uploader: 1 byte a second of a 100-byte body
			defer wg.Done()
			c, err := net.Dial("tcp", listen)
			if err != nil {
				return
			}
			defer c.Close()
			_, _ = io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
			tick := time.NewTicker(time.Second) // the client's pace, not a wait for the server
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					_, _ = c.Write([]byte{'a'})
				}
			}
		}()
		go func() { // a slow reader: 4 MiB through a 4 KiB window, never read
			defer wg.Done()
			c, err := net.Dial("tcp", listen)
			if err != nil {
				return
			}
			defer c.Close()
			_ = c.(*net.TCPConn).SetReadBuffer(4 << 10)
			_, _ = io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
			<-stop
		}()
	}
	client := &http.Client{Timeout: 2 * time.Second}
	var answers, failed atomic.Int64
	end := time.Now().Add(4 * time.Second)
	for time.Now().Before(end) {
		resp, err := client.Get("http://" + listen + "/hello")
		if err != nil {
			if failed.Add(1) == 1 {
				t.Logf("first failure: %v", err)
			}
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 && string(b) == "hello\n" {
			answers.Add(1)
		} else if failed.Add(1) == 1 {
			t.Logf("first failure: %d %q", resp.StatusCode, b)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("good client: %d answers, %d failed in 4s beside 8 slow uploaders and 8 slow readers", answers.Load(), failed.Load())
	if failed.Load() != 0 || answers.Load() < 20 {
		t.Errorf("good client: %d answers, %d failed; want every answer (at least 20) and none failed", answers.Load(), failed.Load())
	}
	// The workers kept their connections alive: the one that answers has
	// served many requests on few connections.
	resp, err := client.Get("http://" + listen + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var conns, reqs int
	if _, err := fmt.Fscan(resp.Body, &conns, &reqs); err != nil {
		t.Fatalf("worker stats: %v", err)
	}
	t.Logf("one worker: %d requests on %d connections", reqs, conns)
	if conns < 1 || reqs < 10*conns {
		t.Errorf("one worker served %d requests on %d connections; want keep-alive (at least 10 per connection)", reqs, conns)
	}
}
