package h1

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// WriteRequest frames each kind of body as the bytes an upstream reads.
func TestWriteRequest(t *testing.T) {
	head := "GET /p?q HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nX-Forwarded-For: 192.0.2.7\r\n"
	fields := []Field{{"Accept", "*/*"}, {"X-Forwarded-For", "192.0.2.7"}}
	for _, tc := range []struct {
		name    string
		method  string
		length  int64
		body    io.Reader
		spooled io.WriterTo
		want    string
	}{
		{"no body", "GET", 0, nil, nil, head + "\r\n"},
		{"POST without a body", "POST", 0, nil, nil, strings.Replace(head, "GET", "POST", 1) + "Content-Length: 0\r\n\r\n"},
		{"known length", "PUT", 5, strings.NewReader("hello and more"), nil, strings.Replace(head, "GET", "PUT", 1) + "Content-Length: 5\r\n\r\nhello"},
		{"unknown length", "POST", -1, strings.NewReader("hello"), nil, strings.Replace(head, "GET", "POST", 1) + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
		{"spooled", "POST", 5, nil, bytes.NewBufferString("hello"), strings.Replace(head, "GET", "POST", 1) + "Content-Length: 5\r\n\r\nhello"},
		{"spooled empty", "POST", 0, nil, new(bytes.Buffer), strings.Replace(head, "GET", "POST", 1) + "Content-Length: 0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, got := upConnPair(t)
			q := &Outgoing{Method: tc.method, Target: "/p?q", Host: "example.com", Fields: fields, ContentLength: tc.length}
			if err := c.WriteRequest(q, tc.body, tc.spooled); err != nil {
				t.Fatal(err)
			}
			c.Close()
			if s := string(<-got); s != tc.want {
				t.Errorf("sent %q\nwant %q", s, tc.want)
			}
		})
	}
}

// upConnPair returns a fresh UpConn and what its peer reads until it closes.
func upConnPair(t *testing.T) (*UpConn, <-chan []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan []byte, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer nc.Close()
		_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(nc)
		got <- b
	}()
	u := NewUpstream("tcp", ln.Addr().String(), UpstreamOptions{Connect: 5 * time.Second, Started: func() time.Time { return time.Time{} }})
	c, err := u.Dial(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, got
}

// Target: the origin form and a Host an HTTP/1.1 upstream accepts.
func TestTarget(t *testing.T) {
	for _, tc := range []struct {
		uri, host string
		major     int
		url       string
		target, h string
	}{
		{"/a?b", "example.com", 1, "/a?b", "/a?b", "example.com"},
		{"http://other.example/p?q", "other.example", 1, "http://other.example/p?q", "/p?q", "other.example"},
		{"/x", "", 1, "/x", "/x", "localhost"},
		{"", "example.com", 2, "/h2?z", "/h2?z", "example.com"},
	} {
		u, err := url.ParseRequestURI(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		r := &http.Request{RequestURI: tc.uri, Host: tc.host, ProtoMajor: tc.major, URL: u}
		if target, h := Target(r); target != tc.target || h != tc.h {
			t.Errorf("Target(%q, host %q) = %q, %q; want %q, %q", tc.uri, tc.host, target, h, tc.target, tc.h)
		}
	}
}
