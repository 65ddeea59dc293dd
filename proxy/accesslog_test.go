package proxy

import (
	"encoding/json"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// lineWriter hands each access-log line to the test as it is written.
type lineWriter chan string

func (l lineWriter) Write(p []byte) (int, error) {
	l <- string(p)
	return len(p), nil
}

func (l lineWriter) next(t *testing.T) string {
	t.Helper()
	select {
	case s := <-l:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no access-log line")
		return ""
	}
}

var timeLocal = regexp.MustCompile(`\[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\]`)

func TestAccessLogCombined(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"ok.txt": "ok", "health": "up"})
	lines := make(lineWriter, 10)
	_, addr := startServer(t, envConfig(t, map[string]string{"ROOT": root, "ACCESS_LOG": "combined", "ACCESS_LOG_SKIP": "/health"}), Deps{AccessLog: lines})
	tests := []struct {
		raw  string
		want string // with [TIME] for $time_local
	}{
		{"GET /ok.txt HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/8.0\r\nReferer: http://r.test/\r\nConnection: close\r\n\r\n",
			`127.0.0.1 - - [TIME] "GET /ok.txt HTTP/1.1" 200 2 "http://r.test/" "curl/8.0"` + "\n"},
		{"GET /nope?q=\"x\" HTTP/1.0\r\nUser-Agent: a\"b\\c\td\xc3\xa9\r\n\r\n",
			`127.0.0.1 - - [TIME] "GET /nope?q=\x22x\x22 HTTP/1.0" 404 ` + itoa(len(statusPages[404])) + ` "-" "a\x22b\x5Cc\x09d\xC3\xA9"` + "\n"},
		{"HEAD /ok.txt HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dXNlcjpwdw==\r\nReferer:\r\nConnection: close\r\n\r\n",
			`127.0.0.1 - user [TIME] "HEAD /ok.txt HTTP/1.1" 200 0 "" "-"` + "\n"},
	}
	for _, tt := range tests {
		rawRequest(t, addr, tt.raw)
		got := lines.next(t)
		if !timeLocal.MatchString(got) {
			t.Fatalf("no $time_local in %q", got)
		}
		got = timeLocal.ReplaceAllString(got, "[TIME]")
		if got != tt.want {
			t.Errorf("line\n got %q\nwant %q", got, tt.want)
		}
	}
	// The skipped path logs nothing; the next line is the next request.
	rawRequest(t, addr, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	rawRequest(t, addr, "GET /ok.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if got := lines.next(t); !strings.Contains(got, `"GET /ok.txt HTTP/1.1" 200 2`) {
		t.Errorf("after a skipped path: %q", got)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestAccessLogJSONAndMetrics(t *testing.T) {
	up := startUpstream(t, true)
	lines := make(lineWriter, 10)
	reg := prometheus.NewRegistry()
	cfg := envConfig(t, map[string]string{"TRY_FILES": "@app", "UPSTREAM": up.target, "ACCESS_LOG": "json"})
	_, addr := startServer(t, cfg, Deps{AccessLog: lines, Metrics: reg})
	if resp := rawRequest(t, addr, "GET /hello HTTP/1.1\r\nHost: h.test\r\nUser-Agent: ua\"\xc3\xa9\r\nConnection: close\r\n\r\n"); resp.status != 200 {
		t.Fatal(resp.status)
	}
	var e map[string]any
	line := lines.next(t)
	if err := json.Unmarshal([]byte(line), &e); err != nil {
		t.Fatalf("not JSON: %q: %v", line, err)
	}
	for k, want := range map[string]any{"method": "GET", "uri": "/hello", "status": 200.0, "site": "default", "host": "h.test", "remote_addr": "127.0.0.1", "bytes": 20.0, "user_agent": "ua\"é", "upstream_addr": up.target} {
		if e[k] != want {
			t.Errorf("%s = %#v, want %#v", k, e[k], want)
		}
	}
	for _, k := range []string{"request_time", "upstream_time"} {
		if v, ok := e[k].(float64); !ok || v < 0 {
			t.Errorf("%s = %#v", k, e[k])
		}
	}
	get(t, addr, "", "/nothing-here") // the upstream's 404
	lines.next(t)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.GetCounter() != nil:
				counts[key] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				counts[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	for k, want := range map[string]float64{
		"onebox_proxy_requests_total,code=2xx,site=default":            1,
		"onebox_proxy_requests_total,code=4xx,site=default":            1,
		"onebox_proxy_request_duration_seconds,site=default":           2,
		"onebox_proxy_response_bytes_total,site=default":               20 + 19,
		"onebox_proxy_upstream_errors_total,kind=connect,site=default": 0,
	} {
		if counts[k] != want {
			t.Errorf("%s = %v, want %v", k, counts[k], want)
		}
	}
}

// Requests the connection loop refuses are logged as nginx logs its 400s:
// the request line as received, the status and the page's size; a
// connection that sends nothing is not logged.
func TestAccessLogRefusedRequests(t *testing.T) {
	root := t.TempDir()
	lines := make(lineWriter, 10)
	_, addr := startServer(t, envConfig(t, map[string]string{"ROOT": root, "ACCESS_LOG": "combined"}), Deps{AccessLog: lines})
	for _, tt := range []struct{ raw, want string }{
		{"GET / HTTP/9.9\r\nHost: x\r\n\r\n", `"GET / HTTP/9.9" 505 `},
		{"GET /a HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", `"GET /a HTTP/1.1" 400 `},
		{"\x16\x03\x01\x02\x00\r\n\r\n", `"\x16\x03\x01\x02\x00" 400 `},
	} {
		status, _, _ := exchange(t, addr, tt.raw)
		got := lines.next(t)
		if !strings.Contains(got, tt.want) || !strings.HasPrefix(got, "127.0.0.1 - - [") {
			t.Errorf("%q answered %d, logged %q; want it to contain %q", tt.raw, status, got, tt.want)
		}
	}
	// A well-formed request is logged after the refused ones, and nothing
	// else came between: a silent connection is not logged.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	rawRequest(t, addr, "GET /none HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if got := lines.next(t); !strings.Contains(got, `"GET /none HTTP/1.1" 404 `) {
		t.Errorf("next line %q, want the 404 of /none", got)
	}
}
