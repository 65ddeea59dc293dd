package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"onebox/internal/testutil"
)

// slowClientRun is issue 11's load on the HTTP server at addr: 8 clients
// upload a 100-byte body (POST /upload) at 1 byte a second and 8 ask for
// the 4 MiB GET /big through a 4 KiB receive window and never read it,
// while a good client asks GET /hello for d with a 5 s timeout per
// request. It returns the good client's answers and failures, and fails
// the test unless every answer came (at least 20) and none failed.
func slowClientRun(t *testing.T, addr string, d time.Duration) (answers, failed int64) {
	t.Helper()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(2)
		go func() { // a slow uploader: 1 byte a second of a 100-byte body
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
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
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer c.Close()
			_ = c.(*net.TCPConn).SetReadBuffer(4 << 10)
			_, _ = io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
			<-stop
		}()
	}
	// 5 s leaves room for a loaded machine and still fails a request
	// blocked behind a slow client: the slow clients hold what they took
	// until stop, closed only after this loop, and an upload at 1 byte a
	// second of 100 bytes lasts 100 s, so a blocked request is never
	// released and its timeout counts it as failed.
	client := &http.Client{Timeout: 5 * time.Second}
	var ok, bad atomic.Int64
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		resp, err := client.Get("http://" + addr + "/hello")
		if err != nil {
			if bad.Add(1) == 1 {
				t.Logf("first failure: %v", err)
			}
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 && string(b) == "hello\n" {
			ok.Add(1)
		} else if bad.Add(1) == 1 {
			t.Logf("first failure: %d %q", resp.StatusCode, b)
		}
	}
	close(stop)
	wg.Wait()
	answers, failed = ok.Load(), bad.Load()
	t.Logf("good client: %d answers, %d failed in %v beside 8 slow uploaders and 8 slow readers", answers, failed, d)
	if failed != 0 || answers < 20 {
		t.Errorf("good client: %d answers, %d failed; want every answer (at least 20) and none failed", answers, failed)
	}
	return answers, failed
}

// TestSlowClientsBehindNginx is the anchor for TestBinarySlowClientsNeverReachWorkers:
// the same load on nginx (Debian's, the tutorial's proxy_pass to a unix
// socket, buffering on as by default) in front of gunicorn -w 4 with sync
// workers serving the same answers. docs/proxy.md shows both runs.
func TestSlowClientsBehindNginx(t *testing.T) {
	for _, bin := range []string{"nginx", "gunicorn"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is needed for the comparison (apt-get install nginx gunicorn): %v", bin, err)
		}
	}
	dir := t.TempDir()
	app, _ := filepath.Abs("testdata")
	sock := filepath.Join(dir, "gunicorn.sock")
	listen := freePort(t)
	startGroup(t, exec.Command("gunicorn", "--workers", "4", "--worker-class", "sync", "--bind", "unix:"+sock,
		"--chdir", app, "--log-level", "warning", "slowapp:app"))
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, "gunicorn's socket", func() bool {
		_, err := os.Stat(sock)
		return err == nil
	})
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // the workers must reach the socket and temp paths in a 0700 directory
	}
	conf := fmt.Sprintf(`%s
daemon off;
worker_processes auto;
pid %[2]s/nginx.pid;
error_log stderr error;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path %[2]s/client_body;
	proxy_temp_path %[2]s/proxy;
	fastcgi_temp_path %[2]s/fastcgi;
	uwsgi_temp_path %[2]s/uwsgi;
	scgi_temp_path %[2]s/scgi;
	upstream app { server unix:%[3]s; }
	server {
		listen %[4]s;
		location / {
			proxy_pass http://app;
			proxy_set_header Host $host;
			proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
		}
	}
}
`, user, dir, sock, listen)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	startGroup(t, exec.Command("nginx", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", "stderr"))
	testutil.EventuallyWhy(t, 30*time.Second, 50*time.Millisecond, "nginx and gunicorn answer", func() (bool, string) {
		resp, err := http.Get("http://" + listen + "/hello")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, resp.Status
	})
	slowClientRun(t, listen, 4*time.Second)
}

// startGroup starts cmd in a process group of its own, its output on the
// test's stderr, and stops it when the test ends: TERM to the process (a
// master stops its workers), then KILL to the group after 5 s.
func startGroup(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
}
