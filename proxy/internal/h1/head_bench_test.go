package h1

import (
	"bufio"
	"bytes"
	"net/http"
	"net/url"
	"testing"
)

// browserRequest is a request head as a browser sends it.
const browserRequest = "GET /articles/42?page=2 HTTP/1.1\r\nHost: example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
	"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
	"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n" +
	"Connection: keep-alive\r\nCookie: session=abc123; theme=dark\r\nUpgrade-Insecure-Requests: 1\r\n" +
	"Sec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Site: none\r\n\r\n"

// BenchmarkParseRequest is the head of a browser's request read and
// parsed as the connection loop does, buffers reused.
func BenchmarkParseRequest(b *testing.B) {
	rd := bytes.NewReader(nil)
	br := bufio.NewReaderSize(rd, 4<<10)
	r := &http.Request{Header: http.Header{}}
	var u url.URL
	var vals []string
	buf := make([]byte, 0, 4<<10)
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset([]byte(browserRequest))
		br.Reset(rd)
		head, err := readRequestHead(br, buf, MaxHeaderBytes)
		if err != nil {
			b.Fatal(err)
		}
		clear(r.Header)
		if err := parseRequest(string(head), br, r, &u, &vals); err != nil {
			b.Fatal(err)
		}
	}
}

// upstreamResponse is a response head as an app server sends it.
const upstreamResponse = "HTTP/1.1 200 OK\r\nServer: gunicorn\r\nDate: Sat, 05 Dec 2026 08:00:00 GMT\r\n" +
	"Connection: keep-alive\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 100\r\n" +
	"Set-Cookie: session=abc123; Path=/; HttpOnly\r\nCache-Control: no-cache\r\nVary: Cookie\r\n\r\n"

// BenchmarkReadResponse is an upstream's response head read into a
// client's header map, as UpConn.ReadResponse does.
func BenchmarkReadResponse(b *testing.B) {
	rd := bytes.NewReader(nil)
	br := bufio.NewReaderSize(rd, bufferSize)
	h := http.Header{}
	var resp Response
	var scratch []byte
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset([]byte(upstreamResponse))
		br.Reset(rd)
		clear(h)
		if err := readResponse(br, h, http.MethodGet, &resp, &scratch); err != nil {
			b.Fatal(err)
		}
	}
}
