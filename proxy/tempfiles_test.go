package proxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"onebox/internal/testutil"
)

// bodyFiles lists this process's open descriptors of temp files under dir
// (nameless files show as dir/#inode or dir/.onebox-body-…, "(deleted)")
// and of the memfd fallback. A temp file left open would hold its disk
// space (or memory) although the directory looks empty.
func bodyFiles(dir string) []string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var open []string
	for _, e := range ents {
		l, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil && (strings.HasPrefix(l, dir+"/") || strings.HasPrefix(l, "/memfd:onebox-body")) {
			open = append(open, l)
		}
	}
	return open
}

// noBodyFiles waits until no temp file is open and the directory is empty.
func noBodyFiles(t *testing.T, dir, after string) {
	t.Helper()
	testutil.EventuallyWhy(t, 5*time.Second, 10*time.Millisecond, "no temp file left "+after, func() (bool, string) {
		left, _ := os.ReadDir(dir)
		open := bodyFiles(dir)
		return len(open) == 0 && len(left) == 0, "open: " + strings.Join(open, ", ") + "; in the directory: " + strconv.Itoa(len(left))
	})
}

// waitBodyFiles waits until n temp files are open: the body is past
// memory, on its way.
func waitBodyFiles(t *testing.T, dir string, n int, what string) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, what, func() bool { return len(bodyFiles(dir)) >= n })
}

// TestTempFilesLeaveNothing: request and response bodies past memory go to
// temp files, and none is left open after a success, an upstream error, a
// client that leaves mid-upload or mid-download, and a shutdown with
// both in flight.
func TestTempFilesLeaveNothing(t *testing.T) {
	up := startUpstream(t, true)
	tmp := t.TempDir()
	vars := map[string]string{"TRY_FILES": "@app", "UPSTREAM": up.target, "TEMP_DIR": tmp,
		"CLIENT_BODY_BUFFER_SIZE": "1k", "BUFFER_SIZE": "4k", "CLIENT_BODY_TIMEOUT": "20s"}
	_, addr, cancel, served := serveUntilCancel(t, envConfig(t, vars), Deps{Log: zerolog.New(io.Discard), DrainTimeout: 300 * time.Millisecond})
	defer cancel()

	// Success, both ways.
	body := bytes.Repeat([]byte("onebox!!"), 6000) // 48,000 bytes
	sum := sha256.Sum256(body)
	req, _ := http.NewRequest("POST", "http://"+addr+"/echo", bytes.NewReader(body))
	if e := echo(t, addr, req); e.Length != len(body) || e.SHA != hex.EncodeToString(sum[:]) {
		t.Errorf("buffered upload arrived as %d bytes, sha %s", e.Length, e.SHA)
	}
	if resp, b := get(t, addr, "", "/big"); resp.StatusCode != 200 || len(b) != 1<<20 {
		t.Errorf("buffered download: %d, %d bytes", resp.StatusCode, len(b))
	}
	noBodyFiles(t, tmp, "after success")

	// The upstream fails half-way through a response it was sent a
	// buffered body for: 502, and both files closed.
	r := rawRequest(t, addr, "POST /cut HTTP/1.1\r\nHost: x\r\nContent-Length: 48000\r\n\r\n"+string(body))
	if r.status != http.StatusBadGateway {
		t.Errorf("response cut by the upstream: %d, want 502", r.status)
	}
	noBodyFiles(t, tmp, "after an upstream error")

	// A client that leaves mid-upload, past memory.
	up1 := dialT(t, addr)
	_, _ = io.WriteString(up1, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"+string(body))
	waitBodyFiles(t, tmp, 1, "the upload in a temp file")
	up1.Close()
	noBodyFiles(t, tmp, "after a client left mid-upload")

	// A client that leaves mid-download: the response is in a temp file
	// while the client reads none of it.
	down := dialT(t, addr)
	_ = down.(*net.TCPConn).SetReadBuffer(4 << 10)
	_, _ = io.WriteString(down, "GET /huge HTTP/1.1\r\nHost: x\r\n\r\n")
	waitBodyFiles(t, tmp, 1, "the download in a temp file")
	down.Close()
	noBodyFiles(t, tmp, "after a client left mid-download")

	// Shutdown with an upload and a download in flight: the drain ends
	// them, and their files with them.
	up2 := dialT(t, addr)
	_, _ = io.WriteString(up2, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"+string(body))
	down2 := dialT(t, addr)
	_ = down2.(*net.TCPConn).SetReadBuffer(4 << 10)
	_, _ = io.WriteString(down2, "GET /huge HTTP/1.1\r\nHost: x\r\n\r\n")
	waitBodyFiles(t, tmp, 2, "an upload and a download in temp files")
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	noBodyFiles(t, tmp, "after shutdown")
}

// dialT connects to addr for the rest of the test.
func dialT(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestUnwritableTempDir is the documented behaviour of a PROXY_TEMP_DIR
// that cannot be written (the image's read-only root): the start-up log
// says so and where bodies go, bodies past memory go to anonymous memory
// (memfd) and arrive intact, and nothing stays open afterwards.
func TestUnwritableTempDir(t *testing.T) {
	up := startUpstream(t, true)
	dir := filepath.Join(t.TempDir(), "missing")
	var logs testutil.SyncBuffer
	_, addr := startServer(t, envConfig(t, map[string]string{"TRY_FILES": "@app", "UPSTREAM": up.target, "TEMP_DIR": dir,
		"CLIENT_BODY_BUFFER_SIZE": "1k", "BUFFER_SIZE": "4k"}), Deps{Log: zerolog.New(&logs).Level(zerolog.DebugLevel)})
	line := logs.String()
	if !strings.Contains(line, `"level":"warn"`) || !strings.Contains(line, `PROXY_TEMP_DIR=\"`+dir+`\" is not usable`) ||
		!strings.Contains(line, `"bodies_to":"anonymous memory (memfd)"`) {
		t.Errorf("start-up log lacks a warning naming PROXY_TEMP_DIR and memfd:\n%s", line)
	}
	body := bytes.Repeat([]byte("0123456789abcdef"), 3000)
	sum := sha256.Sum256(body)
	req, _ := http.NewRequest("POST", "http://"+addr+"/echo", bytes.NewReader(body))
	if e := echo(t, addr, req); e.Length != len(body) || e.SHA != hex.EncodeToString(sum[:]) {
		t.Errorf("upload through memfd arrived as %d bytes, sha %s", e.Length, e.SHA)
	}
	down := dialT(t, addr)
	_ = down.(*net.TCPConn).SetReadBuffer(4 << 10)
	_, _ = io.WriteString(down, "GET /huge HTTP/1.1\r\nHost: x\r\n\r\n")
	waitBodyFiles(t, dir, 1, "the download in a memfd")
	down.Close()
	if resp, b := get(t, addr, "", "/big"); resp.StatusCode != 200 || len(b) != 1<<20 || b[1<<20-1] != byte('a'+(1<<10-1)%26) {
		t.Errorf("download through memfd: %d, %d bytes", resp.StatusCode, len(b))
	}
	noBodyFiles(t, dir, "with a memfd")
}
