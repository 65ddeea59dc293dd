package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
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

	slowClientRun(t, listen, 4*time.Second)
	client := &http.Client{Timeout: 2 * time.Second}
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
	// /status shows the bound at work: 2 workers x 1 connection.
	sresp, err := client.Get("http://" + admin + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer sresp.Body.Close()
	var st struct {
		Components []struct {
			Name   string `json:"name"`
			Detail struct {
				Upstreams []struct {
					Bound *struct {
						Max  int `json:"max_conns"`
						Open int `json:"open"`
					} `json:"bound"`
				} `json:"upstreams"`
			} `json:"detail"`
		} `json:"components"`
	}
	if err := json.NewDecoder(sresp.Body).Decode(&st); err != nil {
		t.Fatalf("/status: %v", err)
	}
	found := false
	for _, c := range st.Components {
		if c.Name == "proxy" && len(c.Detail.Upstreams) == 1 {
			b := c.Detail.Upstreams[0].Bound
			found = b != nil && b.Max == 2 && b.Open >= 1 && b.Open <= 2
			if !found {
				t.Errorf("/status: the pool's bound is %+v, want max_conns 2 and 1 or 2 open", b)
			}
		}
	}
	if !found {
		t.Errorf("/status has no proxy upstream with a bound: %+v", st)
	}
}
