package h1

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestReadResponse(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		raw     string
		status  int
		header  http.Header
		body    string
		close   bool
		wantErr bool
		rest    string // what must be left for the next response
	}{
		{name: "content-length", raw: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhelloNEXT",
			status: 200, header: http.Header{"Content-Type": {"text/plain"}, "Content-Length": {"5"}}, body: "hello", rest: "NEXT"},
		{name: "chunked with trailer", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 9\r\n\r\nNEXT",
			status: 200, header: http.Header{}, body: "abcde", rest: "NEXT"},
		{name: "hop-by-hop and listed dropped", raw: "HTTP/1.1 200 OK\r\nConnection: x-a, keep-alive\r\nX-A: 1\r\nKeep-Alive: timeout=5\r\nServer: gunicorn\r\nDate: x\r\nX-B: 2\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n",
			status: 200, header: http.Header{"X-B": {"2"}, "Set-Cookie": {"a=1", "b=2"}, "Content-Length": {"0"}}},
		{name: "connection close", raw: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
			status: 200, header: http.Header{"Content-Length": {"2"}}, body: "ok", close: true},
		{name: "http/1.0 until close", raw: "HTTP/1.0 200 OK\r\n\r\nall of it",
			status: 200, header: http.Header{}, body: "all of it", close: true},
		{name: "interim responses skipped", raw: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
			status: 204, header: http.Header{}},
		{name: "HEAD has no body", method: "HEAD", raw: "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nNEXT",
			status: 200, header: http.Header{"Content-Length": {"99"}}, rest: "NEXT"},
		{name: "both framings: chunked wins, then close", raw: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
			status: 200, header: http.Header{}, body: "x", close: true},
		{name: "conflicting lengths", raw: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc", wantErr: true},
		{name: "folded header", raw: "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", wantErr: true},
		{name: "bad status", raw: "HTTP/1.1 2x0 OK\r\n\r\n", wantErr: true},
		{name: "not http", raw: "SSH-2.0-OpenSSH\r\n\r\n", wantErr: true},
		{name: "unknown transfer-encoding", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", wantErr: true},
		{name: "empty", raw: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tt.raw))
			h := http.Header{}
			m := tt.method
			if m == "" {
				m = "GET"
			}
			r := new(Response)
			var scratch []byte
			err := readResponse(br, h, m, r, &scratch)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("no error, status %d", r.Status)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != tt.status || r.Close != tt.close {
				t.Errorf("status %d close %v, want %d %v", r.Status, r.Close, tt.status, tt.close)
			}
			if !equalHeader(h, tt.header) {
				t.Errorf("header %v, want %v", h, tt.header)
			}
			b, err := io.ReadAll(bodyOf(br, r))
			if err != nil || string(b) != tt.body {
				t.Errorf("body %q %v, want %q", b, err, tt.body)
			}
			if rest, _ := io.ReadAll(br); !r.Close && string(rest) != tt.rest {
				t.Errorf("left %q, want %q", rest, tt.rest)
			}
		})
	}
}

func equalHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if strings.Join(v, "\x00") != strings.Join(b[k], "\x00") {
			return false
		}
	}
	return true
}
