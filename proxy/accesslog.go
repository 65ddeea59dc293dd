package proxy

import (
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// accessLog writes one line per request, in nginx's combined format or as
// JSON. Each line is one Write, so lines from concurrent requests never
// interleave.
type accessLog struct {
	mu   sync.Mutex
	w    io.Writer
	json bool
	skip map[string]bool
}

func newAccessLog(w io.Writer, json bool, skip []string) *accessLog {
	a := &accessLog{w: w, json: json, skip: map[string]bool{}}
	for _, p := range skip {
		a.skip[p] = true
	}
	return a
}

var logBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// finish logs the request and counts it.
func (s *Server) finish(rec *recorder, r *http.Request, st *site, start time.Time) {
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	d := time.Since(start)
	st.m.observe(status, rec.bytes, d)
	if s.access == nil || (len(s.access.skip) > 0 && s.access.skip[r.URL.Path]) {
		return
	}
	if rec.clientIP == "" {
		rec.clientIP = s.clientIP(r)
	}
	bp := logBufPool.Get().(*[]byte)
	b := (*bp)[:0]
	if s.access.json {
		b = appendJSONLine(b, rec, r, st, status, start, d)
	} else {
		b = appendCombined(b, rec, r, status, start)
	}
	s.access.mu.Lock()
	_, _ = s.access.w.Write(b)
	s.access.mu.Unlock()
	*bp = b
	logBufPool.Put(bp)
}

// logRefused logs and counts a request the connection loop refused before
// any site saw it (malformed, too large): under the default site, with the
// request line as received, as nginx logs its 400s.
func (s *Server) logRefused(remote, line string, status int, bytes int64) {
	r := &http.Request{RemoteAddr: remote, Header: http.Header{}, URL: &url.URL{}}
	method, rest, _ := strings.Cut(line, " ")
	uri, proto, _ := strings.Cut(rest, " ")
	r.Method, r.RequestURI, r.Proto = method, uri, proto
	rec := &recorder{status: status, bytes: bytes, upstreamTime: -1}
	s.finish(rec, r, s.hosts.def, time.Now())
}

// appendCombined writes nginx's
//
//	$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"
func appendCombined(b []byte, rec *recorder, r *http.Request, status int, start time.Time) []byte {
	b = append(b, rec.clientIP...)
	b = append(b, " - "...)
	if u := basicUser(r); u != "" {
		b = appendNginxEscaped(b, u)
	} else {
		b = append(b, '-')
	}
	b = append(b, " ["...)
	b = start.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, "] \""...)
	b = appendNginxEscaped(b, r.Method)
	if r.RequestURI != "" || r.Proto != "" { // empty for a refused line without spaces
		b = append(b, ' ')
		b = appendNginxEscaped(b, r.RequestURI)
		b = append(b, ' ')
		b = appendNginxEscaped(b, r.Proto)
	}
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, rec.bytes, 10)
	b = append(b, " \""...)
	b = appendHeaderVar(b, r.Header["Referer"])
	b = append(b, "\" \""...)
	b = appendHeaderVar(b, r.Header["User-Agent"])
	b = append(b, "\"\n"...)
	return b
}

// appendHeaderVar is nginx's $http_NAME: "-" when the header is absent, the
// first value otherwise.
func appendHeaderVar(b []byte, vv []string) []byte {
	if len(vv) == 0 {
		return append(b, '-')
	}
	return appendNginxEscaped(b, vv[0])
}

// appendNginxEscaped escapes as nginx's access log does (escape=default):
// '"', '\', control characters, DEL and every byte above 0x7e become \xHH
// with upper-case hex digits.
func appendNginxEscaped(b []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			b = append(b, '\\', 'x', hex[c>>4], hex[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return b
}

func basicUser(r *http.Request) string {
	if r.Header["Authorization"] == nil {
		return ""
	}
	u, _, ok := r.BasicAuth()
	if !ok {
		return ""
	}
	return u
}

func appendJSONLine(b []byte, rec *recorder, r *http.Request, st *site, status int, start time.Time, d time.Duration) []byte {
	b = append(b, `{"time":"`...)
	b = start.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, `","remote_addr":`...)
	b = appendJSONString(b, rec.clientIP)
	b = append(b, `,"site":`...)
	b = appendJSONString(b, st.name)
	b = append(b, `,"host":`...)
	b = appendJSONString(b, r.Host)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, r.Method)
	b = append(b, `,"uri":`...)
	b = appendJSONString(b, r.RequestURI)
	b = append(b, `,"protocol":`...)
	b = appendJSONString(b, r.Proto)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, rec.bytes, 10)
	b = append(b, `,"referer":`...)
	b = appendJSONString(b, first(r.Header["Referer"]))
	b = append(b, `,"user_agent":`...)
	b = appendJSONString(b, first(r.Header["User-Agent"]))
	b = append(b, `,"request_time":`...)
	b = strconv.AppendFloat(b, d.Seconds(), 'f', 6, 64)
	if rec.upstreamTime >= 0 {
		b = append(b, `,"upstream_addr":`...)
		b = appendJSONString(b, rec.upstreamAddr)
		b = append(b, `,"upstream_time":`...)
		b = strconv.AppendFloat(b, rec.upstreamTime.Seconds(), 'f', 6, 64)
	}
	b = append(b, "}\n"...)
	return b
}

func first(vv []string) string {
	if len(vv) == 0 {
		return ""
	}
	return vv[0]
}

// appendJSONString quotes s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
