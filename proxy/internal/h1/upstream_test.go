package h1

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"onebox/internal/testutil"
)

// clientGone: an open client is there even when its read deadline has
// passed (a long request on a fresh connection outlives the head timeout),
// pipelined bytes mean it is there, and a close or a reset means gone.
func TestClientGone(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pair := func() (server, client net.Conn) {
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		server, err = ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { server.Close(); client.Close() })
		return server, client
	}

	s, c := pair()
	if clientGone(s) {
		t.Error("an open, quiet client is reported gone")
	}
	_ = s.SetReadDeadline(time.Now().Add(-time.Second))
	if clientGone(s) {
		t.Error("an open client with an expired read deadline is reported gone")
	}
	if _, err := c.Write([]byte("GET /next HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(make([]byte, 1)); err != nil { // the byte has arrived
		t.Fatal(err)
	}
	if clientGone(s) {
		t.Error("a client with pipelined bytes is reported gone")
	}

	s, c = pair()
	c.Close()
	// The FIN is seen by a blocking read once it arrives; a non-blocking
	// peek after that must see it too.
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after the client's close: %v, want EOF", err)
	}
	if !clientGone(s) {
		t.Error("a client that closed is not reported gone")
	}
	s.Close()
	if !clientGone(s) {
		t.Error("a connection closed on our side is not reported gone")
	}
}

// peek tells the three states apart without consuming a byte: what
// clientGone and UpConn.Alive both read.
func TestPeek(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if st, err := peek(s); st != peekOpen || err != nil {
		t.Errorf("quiet peer: %v, %v; want open", st, err)
	}
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	var st peekState
	testutil.Eventually(t, 5*time.Second, time.Millisecond, "the byte to arrive", func() bool {
		st, _ = peek(s)
		return st != peekOpen
	})
	if st != peekData {
		t.Fatalf("a waiting byte: %v, want data", st)
	}
	b := make([]byte, 1)
	if n, err := s.Read(b); n != 1 || b[0] != 'x' {
		t.Fatalf("the peeked byte was consumed: %d %q %v", n, b, err)
	}
	_ = s.SetReadDeadline(time.Now().Add(-time.Second))
	if st, err := peek(s); st != peekClosed || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("past deadline: %v, %v; want closed with the deadline's error", st, err)
	}
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	c.Close()
	if _, err := s.Read(b); err != io.EOF {
		t.Fatalf("read after the peer's close: %v, want EOF", err)
	}
	if st, _ := peek(s); st != peekClosed {
		t.Errorf("closed peer: %v, want closed", st)
	}
}
