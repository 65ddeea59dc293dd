package proxy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// The proxy tests talk to a real upstream process: this test binary
// re-executed with ONEBOX_PROXY_TEST_UPSTREAM=1, serving HTTP on the
// listener inherited as fd 3 (as the pool's workers do).
func TestMain(m *testing.M) {
	if os.Getenv("ONEBOX_PROXY_TEST_UPSTREAM") == "1" {
		upstreamMain()
		return
	}
	os.Exit(m.Run())
}

// echoReply is what /echo answers: what the upstream received.
type echoReply struct {
	Method string              `json:"method"`
	URI    string              `json:"uri"`
	Host   string              `json:"host"`
	Header map[string][]string `json:"header"`
	Length int                 `json:"length"`
	SHA    string              `json:"sha"`
	TE     []string            `json:"te"`
}

func upstreamMain() {
	ln, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var conns, closed atomic.Int64
	release := make(chan struct{})
	aborted := make(chan struct{}, 16)
	var holds atomic.Int64
	held := make(chan struct{}, 16)
	mux := http.NewServeMux()
	var echoes atomic.Int64
	mux.HandleFunc("/echoes", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, strconv.FormatInt(echoes.Load(), 10))
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		echoes.Add(1)
		b, _ := io.ReadAll(r.Body)
		sum := sha256.Sum256(b)
		_ = json.NewEncoder(w).Encode(echoReply{r.Method, r.RequestURI, r.Host, r.Header, len(b), hex.EncodeToString(sum[:]), r.TransferEncoding})
	})
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Connection", "X-Secret-Hop")
		w.Header().Set("X-Secret-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-App", "yes")
		_, _ = io.WriteString(w, "hello from upstream\n")
	})
	mux.HandleFunc("/conns", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, strconv.FormatInt(conns.Load(), 10))
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		_, _ = io.WriteString(w, "slow done")
	})
	mux.HandleFunc("/hold", func(w http.ResponseWriter, r *http.Request) {
		// Answers only after 20 s; the request's context ends earlier
		// when the proxy closes the upstream connection.
		holds.Add(1)
		held <- struct{}{}
		select {
		case <-r.Context().Done():
			aborted <- struct{}{}
		case <-time.After(20 * time.Second):
			_, _ = io.WriteString(w, "held to the end")
		}
	})
	mux.HandleFunc("/aborted", func(w http.ResponseWriter, r *http.Request) {
		// Waits for one /hold to be abandoned by the proxy.
		select {
		case <-aborted:
			_, _ = io.WriteString(w, "aborted")
		case <-time.After(10 * time.Second):
			_, _ = io.WriteString(w, "not aborted")
		}
	})
	mux.HandleFunc("/held", func(w http.ResponseWriter, r *http.Request) {
		// Waits for a /hold to arrive.
		select {
		case <-held:
			_, _ = io.WriteString(w, "held")
		case <-time.After(10 * time.Second):
			_, _ = io.WriteString(w, "nothing held")
		}
	})
	mux.HandleFunc("/partial-head", func(w http.ResponseWriter, r *http.Request) {
		// Half a response head, then silence until the proxy hangs up.
		c, bw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nX-Half: yes\r\n")
		_ = bw.Flush()
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.Copy(io.Discard, bw); err == nil { // EOF: the proxy closed it
			aborted <- struct{}{}
		}
	})
	mux.HandleFunc("/holds", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, strconv.FormatInt(holds.Load(), 10))
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(1<<20))
		chunk := make([]byte, 1<<10)
		for i := range chunk {
			chunk[i] = byte('a' + i%26)
		}
		for range 1 << 10 {
			_, _ = w.Write(chunk)
		}
	})
	mux.HandleFunc("/big4", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(4<<20))
		chunk := make([]byte, 64<<10)
		for range 64 {
			_, _ = w.Write(chunk)
		}
	})
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) {
		// Larger than any socket buffer the kernel grows to (tcp_wmem's
		// 4 MiB): a client reading none of it holds the rest in onebox.
		w.Header().Set("Content-Length", strconv.Itoa(32<<20))
		chunk := make([]byte, 64<<10)
		for range 512 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(20 * time.Second):
		}
		_, _ = io.WriteString(w, "data: second\n\n")
	})
	mux.HandleFunc("/stream-xab", func(w http.ResponseWriter, r *http.Request) {
		// Not an event stream: streams only because it asks to.
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("X-Accel-Buffering", "no")
		_, _ = io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(20 * time.Second):
		}
		_, _ = io.WriteString(w, "second\n")
	})
	mux.HandleFunc("/release", func(w http.ResponseWriter, r *http.Request) {
		release <- struct{}{}
	})
	mux.HandleFunc("/then-close", func(w http.ResponseWriter, r *http.Request) {
		// Answer as a keep-alive response, then close the connection: the
		// proxy pools it and finds it dead on the next request, as after
		// an upstream's idle timeout.
		b, _ := io.ReadAll(r.Body)
		c, bw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		body := "closed after " + r.Method + " " + strconv.Itoa(len(b))
		fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		_ = bw.Flush()
		_ = c.Close()
		closed.Add(1)
	})
	mux.HandleFunc("/malformed", func(w http.ResponseWriter, r *http.Request) {
		c, bw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nSet-Cookie: session=leak\r\nBad Line Without Colon\r\n\r\n")
		_ = bw.Flush()
		_ = c.Close()
	})
	mux.HandleFunc("/cut", func(w http.ResponseWriter, r *http.Request) {
		// A 1 MiB response cut after 256 KiB: past any memory buffer.
		_, _ = io.Copy(io.Discard, r.Body)
		c, bw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", 1<<20)
		_, _ = bw.Write(make([]byte, 256<<10))
		_ = bw.Flush()
		_ = c.Close()
	})
	mux.HandleFunc("/closed", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, strconv.FormatInt(closed.Load(), 10))
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want upgrade", 400)
			return
		}
		c, bw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprintf(bw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = bw.Flush()
		// echo line by line
		for {
			line, err := bw.ReadString('\n')
			if err != nil {
				return
			}
			_, _ = bw.WriteString("echo " + line)
			_ = bw.Flush()
		}
	})
	srv := &http.Server{Handler: mux, ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}}
	_ = srv.Serve(ln)
}

// testUpstream is a running upstream process.
type testUpstream struct {
	target string // for PROXY_UPSTREAM: unix:/path or http://127.0.0.1:port
	addr   string // dialable address, or the socket path
	cmd    *exec.Cmd
}

// startUpstream starts the upstream process on a fresh unix socket
// (unix=true) or loopback TCP port.
func startUpstream(t testing.TB, unix bool) *testUpstream {
	t.Helper()
	var ln net.Listener
	var err error
	u := &testUpstream{}
	if unix {
		p := filepath.Join(t.TempDir(), "app.sock")
		ln, err = net.Listen("unix", p)
		u.target, u.addr = "unix:"+p, p
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			u.target, u.addr = "http://"+ln.Addr().String(), ln.Addr().String()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	u.start(t, ln)
	return u
}

func (u *testUpstream) start(t testing.TB, ln net.Listener) {
	t.Helper()
	f, err := ln.(interface{ File() (*os.File, error) }).File()
	if err != nil {
		t.Fatal(err)
	}
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false)
	}
	ln.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "ONEBOX_PROXY_TEST_UPSTREAM=1")
	cmd.ExtraFiles = []*os.File{f}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	u.cmd = cmd
	// No reaper runs in this test process, so waiting here is safe.
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
}

// proxyTo starts a proxy whose default site sends everything to target.
func proxyTo(t testing.TB, target string, vars map[string]string) (*Server, string) {
	t.Helper()
	v := map[string]string{"TRY_FILES": "@app", "UPSTREAM": target}
	for k, x := range vars {
		v[k] = x
	}
	return startServer(t, envConfig(t, v), Deps{})
}

func echo(t testing.TB, addr string, req *http.Request) echoReply {
	t.Helper()
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e echoReply
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatal(err)
	}
	return e
}
