package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

// discardWriter is the cheapest ResponseWriter: the benchmarks below
// measure the proxy's own request path (host selection, try_files, the
// upstream exchange), not net/http's server.
type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }

func benchRequest(path string) *http.Request {
	r := httptest.NewRequest("GET", path, nil)
	r.RemoteAddr = "127.0.0.1:50000"
	r.Header.Set("User-Agent", "wrk")
	r.Header.Set("Accept", "*/*")
	return r
}

func benchServe(b *testing.B, s *Server, path string, want int) {
	b.ReportAllocs()
	r := benchRequest(path)
	w := &discardWriter{h: http.Header{}}
	cpu0 := cpuTime(b)
	for b.Loop() {
		clear(w.h)
		w.code = 0
		s.ServeHTTP(w, r)
		if w.code != want {
			b.Fatalf("status %d, want %d", w.code, want)
		}
	}
	// The process's CPU time (user + system) per request: steadier than
	// ns/op on a shared machine, and for the proxied benchmarks it leaves
	// out the upstream, a separate process.
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkProxyUnix: the default site proxying GET /hello to the upstream
// process on a unix socket, through the default try_files ($uri $uri/ @app,
// so the two file probes are included).
func BenchmarkProxyUnix(b *testing.B) {
	up := startUpstream(b, true)
	root := b.TempDir()
	s, err := New(envConfig(b, map[string]string{"ROOT": root, "UPSTREAM": up.target}), Deps{})
	if err != nil {
		b.Fatal(err)
	}
	benchServe(b, s, "/hello", 200)
}

func BenchmarkProxyTCP(b *testing.B) {
	up := startUpstream(b, false)
	s, err := New(envConfig(b, map[string]string{"TRY_FILES": "@app", "UPSTREAM": up.target}), Deps{})
	if err != nil {
		b.Fatal(err)
	}
	benchServe(b, s, "/hello", 200)
}

func BenchmarkStatic1K(b *testing.B) {
	root := b.TempDir()
	writeFiles(b, root, map[string]string{"index.html": strings.Repeat("x", 1024)})
	s, err := New(envConfig(b, map[string]string{"ROOT": root}), Deps{})
	if err != nil {
		b.Fatal(err)
	}
	benchServe(b, s, "/", 200)
}

func BenchmarkStaticWithAccessLog(b *testing.B) {
	root := b.TempDir()
	writeFiles(b, root, map[string]string{"index.html": strings.Repeat("x", 1024)})
	s, err := New(envConfig(b, map[string]string{"ROOT": root, "ACCESS_LOG": "combined"}), Deps{AccessLog: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	benchServe(b, s, "/", 200)
}

func BenchmarkHostLookup(b *testing.B) {
	sites := []*site{{name: "a"}, {name: "b"}, {name: "c"}}
	for i, n := range []string{"www.example.com", "*.example.org", "~^shop"} {
		sn, _ := parseServerName(n)
		sites[i].names = []serverName{sn}
	}
	t := newHostTable(sites, sites[0])
	b.ReportAllocs()
	for b.Loop() {
		if t.lookup("x.example.org:8080") != sites[1] {
			b.Fatal("wrong site")
		}
	}
}

// BenchmarkH1ProxyLoopback is the whole plain-HTTP path: a keep-alive
// client on loopback TCP, the HTTP/1 loop, the proxy and the upstream
// process on a unix socket. The client is raw and allocates nothing, so
// allocs/op are the server's.
func BenchmarkH1ProxyLoopback(b *testing.B) {
	up := startUpstream(b, true)
	_, addr := proxyTo(b, up.target, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET /hello HTTP/1.1\r\nHost: bench\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n")
	br := bufio.NewReaderSize(c, 16<<10)
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if err := readRawResponse(br); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// readRawResponse reads one 200 response with a Content-Length, without
// allocating.
func readRawResponse(br *bufio.Reader) error {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("status line %q", line)
	}
	n := -1
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			n = 0
			for _, d := range bytes.TrimRight(v, "\r\n") {
				n = n*10 + int(d-'0')
			}
		}
	}
	if n < 0 {
		return errors.New("no Content-Length")
	}
	_, err = br.Discard(n)
	return err
}
