package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// echoes is how many requests reached the upstream's /echo.
func echoes(t *testing.T, addr string) string {
	t.Helper()
	_, b := get(t, addr, "", "/echoes")
	return b
}

// TestRequestBuffering: a chunked upload reaches the app with a
// Content-Length and the same bytes, also when it goes through a temp
// file, and the temp directory is empty afterwards.
func TestRequestBuffering(t *testing.T) {
	up := startUpstream(t, true)
	tmp := t.TempDir()
	_, addr := proxyTo(t, up.target, map[string]string{"CLIENT_BODY_BUFFER_SIZE": "1k", "TEMP_DIR": tmp})
	for _, size := range []int{10, 48000} {
		body := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
		sum := sha256.Sum256(body)
		req, _ := http.NewRequest("POST", "http://"+addr+"/echo", io.MultiReader(bytes.NewReader(body)))
		req.ContentLength = -1 // chunked
		e := echo(t, addr, req)
		if e.Length != size || e.SHA != hex.EncodeToString(sum[:]) {
			t.Errorf("size %d: app got %d bytes, sha %s", size, e.Length, e.SHA)
		}
		if cl := e.Header["Content-Length"]; len(cl) != 1 || cl[0] != strconv.Itoa(size) || len(e.TE) != 0 {
			t.Errorf("size %d: app saw Content-Length %v, Transfer-Encoding %v; want %d and none", size, cl, e.TE, size)
		}
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("temp directory holds %v, want nothing", left)
	}
}

// TestRequestBufferingRefusals: a body over the maximum gets 413 and a
// client that stops mid-body gets 408 after the body timeout; the app sees
// neither.
func TestRequestBufferingRefusals(t *testing.T) {
	up := startUpstream(t, true)
	_, addr := proxyTo(t, up.target, map[string]string{"CLIENT_MAX_BODY_SIZE": "4k", "CLIENT_BODY_BUFFER_SIZE": "1k", "CLIENT_BODY_TIMEOUT": "300ms"})
	before := echoes(t, addr)
	big := strings.Repeat("x", 5000)
	r := rawRequest(t, addr, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+strconv.FormatInt(int64(len(big)), 16)+"\r\n"+big+"\r\n0\r\n\r\n")
	if r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked body over the maximum: %d, want 413", r.status)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_, _ = io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Errorf("stalled body: %d, close %v; want 408 and close", resp.StatusCode, resp.Close)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("408 after %v, before the 300ms body timeout", d)
	}
	if after := echoes(t, addr); after != before {
		t.Errorf("the app saw %s requests, want %s: refused bodies must not reach it", after, before)
	}
}

// TestResponseBuffering: a response larger than memory and the temp-file
// limit arrives whole; the upstream connection is back in the pool while
// a client that does not read still holds its response.
func TestResponseBuffering(t *testing.T) {
	up := startUpstream(t, true)
	_, addr := proxyTo(t, up.target, map[string]string{"BUFFER_SIZE": "4k", "MAX_TEMP_FILE_SIZE": "16k", "TEMP_DIR": t.TempDir()})
	resp, b := get(t, addr, "", "/big")
	if resp.StatusCode != 200 || len(b) != 1<<20 || b[1<<20-1] != byte('a'+(1<<10-1)%26) {
		t.Errorf("1 MiB past a 20 KiB buffer: %d, %d bytes", resp.StatusCode, len(b))
	}

	srv, addr := proxyTo(t, up.target, map[string]string{"TEMP_DIR": t.TempDir()})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.(*net.TCPConn).SetReadBuffer(4 << 10) // a slow reader with a small window
	_, _ = io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	deadline := time.Now().Add(10 * time.Second)
	for srv.upstreams[0].Idle() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("upstream connection not back in the pool while the client holds its 1 MiB response")
		}
		time.Sleep(10 * time.Millisecond)
	}
	n, err := io.Copy(io.Discard, io.LimitReader(c, 1<<20+100))
	if err != nil || n < 1<<20 {
		t.Errorf("slow reader got %d bytes, %v", n, err)
	}
}

// TestUnbufferedResponses: X-Accel-Buffering: no and text/event-stream
// reach the client before the response ends, and the client never sees
// X-Accel-Buffering.
func TestUnbufferedResponses(t *testing.T) {
	up := startUpstream(t, false)
	_, addr := proxyTo(t, up.target, nil)
	for _, path := range []string{"/stream-xab", "/stream"} {
		resp, err := noRedirect.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(resp.Body)
		line, err := br.ReadString('\n')
		if err != nil || !strings.Contains(line, "first") {
			t.Fatalf("%s: first part %q %v before the end", path, line, err)
		}
		if v := resp.Header["X-Accel-Buffering"]; v != nil {
			t.Errorf("%s: client saw X-Accel-Buffering %v", path, v)
		}
		if _, body := get(t, addr, "", "/release"); body != "" {
			t.Fatalf("release: %q", body)
		}
		rest, _ := io.ReadAll(br)
		resp.Body.Close()
		if !strings.Contains(string(rest), "second") {
			t.Errorf("%s: rest %q", path, rest)
		}
	}
}

// TestOnlyWebsocketUpgrades: an Upgrade other than websocket never
// reaches the app; the request is served as plain HTTP/1.1.
func TestOnlyWebsocketUpgrades(t *testing.T) {
	up := startUpstream(t, true)
	_, addr := proxyTo(t, up.target, nil)
	req, _ := http.NewRequest("GET", "http://"+addr+"/echo", nil)
	req.Header.Set("Connection", "Upgrade, HTTP2-Settings")
	req.Header.Set("Upgrade", "h2c")
	req.Header.Set("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")
	e := echo(t, addr, req)
	for _, k := range []string{"Upgrade", "Connection", "Http2-Settings"} {
		if v, ok := e.Header[k]; ok {
			t.Errorf("app saw %s: %v", k, v)
		}
	}
}

// TestEmptyHostLabel: a Host with an empty label is 400.
func TestEmptyHostLabel(t *testing.T) {
	up := startUpstream(t, true)
	_, addr := proxyTo(t, up.target, nil)
	for host, want := range map[string]int{"..a.test": 400, ".a.test": 400, "a..b": 400, "a.test.": 200, "a.test:8080": 200} {
		r := rawRequest(t, addr, "GET /echo HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n")
		if r.status != want {
			t.Errorf("Host %q: %d, want %d", host, r.status, want)
		}
	}
}

// TestClientTimeoutsAsSet: PROXY_CLIENT_HEADER_TIMEOUT answers a head cut
// short with 408, PROXY_KEEPALIVE_TIMEOUT closes an idle connection, each
// after the time set.
func TestClientTimeoutsAsSet(t *testing.T) {
	up := startUpstream(t, true)
	_, addr := proxyTo(t, up.target, map[string]string{"CLIENT_HEADER_TIMEOUT": "300ms", "KEEPALIVE_TIMEOUT": "400ms"})
	start := time.Now() // the first head's time counts from accept
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "GET /hello HTTP/1.1\r\nHost: x\r\n")
	_ = c.SetReadDeadline(start.Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); resp.StatusCode != http.StatusRequestTimeout || d < 250*time.Millisecond {
		t.Errorf("cut head: %d after %v, want 408 after 300ms", resp.StatusCode, d)
	}

	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	br := bufio.NewReader(c2)
	_, _ = io.WriteString(c2, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	idle := time.Now()
	_ = c2.SetReadDeadline(idle.Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: %v, want EOF (closed by the keep-alive timeout)", err)
	}
	if d := time.Since(idle); d < 400*time.Millisecond-100*time.Millisecond {
		t.Errorf("idle connection closed after %v, want about 400ms", d)
	}
}

// BenchmarkBufferedPost1M: a 1 MiB POST buffered (16 KiB in memory, the
// rest through a temp file) and sent to the upstream's /echo. Memory per
// request stays bounded: B/op is far below the body's size.
func BenchmarkBufferedPost1M(b *testing.B) {
	up := startUpstream(b, true)
	s, err := New(envConfig(b, map[string]string{"TRY_FILES": "@app", "UPSTREAM": up.target, "CLIENT_MAX_BODY_SIZE": "2m", "TEMP_DIR": b.TempDir()}), Deps{})
	if err != nil {
		b.Fatal(err)
	}
	body := bytes.Repeat([]byte("x"), 1<<20)
	rd := bytes.NewReader(body)
	r := benchRequest("/echo")
	r.Method = "POST"
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		rd.Reset(body)
		r.Body, r.ContentLength = io.NopCloser(rd), int64(len(body))
		clear(w.h)
		w.code = 0
		s.ServeHTTP(w, r)
		if w.code != 200 {
			b.Fatalf("status %d", w.code)
		}
	}
}

// BenchmarkBufferedResponse4M: a 4 MiB response (four times the upstream's
// /big) read into 64 KiB of memory and a temp file, then sent.
func BenchmarkBufferedResponse4M(b *testing.B) {
	up := startUpstream(b, true)
	s, err := New(envConfig(b, map[string]string{"TRY_FILES": "@app", "UPSTREAM": up.target, "TEMP_DIR": b.TempDir()}), Deps{})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(4 << 20)
	benchServe(b, s, "/big4", 200)
}
