package proxy

import (
	"io"
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
