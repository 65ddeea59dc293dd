package h1

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
)

// Response is an upstream response head, read by UpConn.ReadResponse. The
// headers the client may see are already in the client's header map.
type Response struct {
	Status        int
	ContentLength int64 // -1: unknown (chunked or until close)
	Chunked       bool
	Close         bool    // the connection cannot be reused after this response
	Upgrade       string  // Upgrade header of a 101
	Raw           []Field // every header as received, for a 101 hand-over
	HasEncoding   bool    // Content-Encoding present
	HasRange      bool    // Content-Range present
	NoTransform   bool    // Cache-Control: no-transform
	ContentType   string
	lb            lengthBody // the body reader for Content-Length bodies, kept here to save an allocation
}

// Field is one header or trailer field as received.
type Field struct{ Name, Value string }

// ErrBadResponse is an upstream response that cannot be read as HTTP/1.
var ErrBadResponse = errors.New("malformed upstream response")

// readResponse reads the upstream's status line and headers from br
// straight into dst, the client's header map, dropping hop-by-hop headers,
// those the Connection header names, and Server and Date (ours are sent,
// as nginx does). It replaces http.ReadResponse on the hot path: the whole
// head becomes one string and the values one slice, so a response costs
// two allocations instead of about fifteen. 1xx responses other than 101
// are skipped.
func readResponse(br *bufio.Reader, dst http.Header, method string, r *Response, scratch *[]byte) error {
	for interim := 0; ; interim++ {
		// Skip interim responses (100 Continue, 103 Early Hints) whole,
		// a few of them, as net/http does.
		if interim > 5 {
			return ErrBadResponse
		}
		if p, err := br.Peek(13); err == nil && bytes.HasPrefix(p, []byte("HTTP/1.")) && p[9] == '1' && string(p[9:12]) != "101" {
			head, _, err := readResponseHead(br, (*scratch)[:0])
			*scratch = head[:0]
			if err != nil {
				return err
			}
			continue
		}
		return readResponseOnce(br, dst, method, r, scratch)
	}
}

// readResponseOnce reads one response head: the head's bytes, its status
// line, its fields and the framing of its body.
func readResponseOnce(br *bufio.Reader, dst http.Header, method string, r *Response, scratch *[]byte) error {
	head, lines, err := readResponseHead(br, (*scratch)[:0])
	defer func() { *scratch = head[:0] }()
	if err != nil {
		return err
	}
	s := string(head) // the one string every key and value points into
	*r = Response{ContentLength: -1}
	statusLine, fields := nextLine(s)
	if err := r.parseStatusLine(statusLine); err != nil {
		return err
	}
	cl, err := r.parseFields(fields, lines, dst)
	if err != nil {
		return err
	}
	return r.frame(method, cl, dst)
}

// responseHead bounds an upstream response head: twice a request's, and
// no line longer than the connection's buffer.
var responseHead = headLimits{max: MaxHeaderBytes * 2}

// readResponseHead reads a response head, status line to empty line, into
// buf with readHead and counts its lines. What readHead refuses is
// ErrBadResponse.
func readResponseHead(br *bufio.Reader, buf []byte) (head []byte, lines int, err error) {
	head, lines, err = readHead(br, buf, responseHead)
	if _, refused := err.(headError); refused {
		return head, lines, ErrBadResponse
	}
	if err != nil && len(head) > 0 {
		// Keep the cause: a timeout is 504, a departed client 499.
		// (With nothing at all read, err stays as it is: a pooled
		// connection the upstream closed, retryable.)
		return head, lines, fmt.Errorf("%w: %w", ErrBadResponse, err)
	}
	return head, lines, err
}

// parseStatusLine sets the status, and Close for HTTP/1.0.
func (r *Response) parseStatusLine(statusLine string) error {
	proto, rest, ok := strings.Cut(statusLine, " ")
	if !ok || len(rest) < 3 || (proto != "HTTP/1.1" && proto != "HTTP/1.0") {
		return ErrBadResponse
	}
	code, err := strconv.Atoi(rest[:3])
	if err != nil || code < 100 || code > 999 || (len(rest) > 3 && rest[3] != ' ') {
		return ErrBadResponse
	}
	r.Status = code
	r.Close = proto == "HTTP/1.0"
	return nil
}

// parseFields reads the header fields of s into dst, as readResponse says,
// and notes on r what the proxy needs of them. It returns the
// Content-Length as sent, "" without one.
func (r *Response) parseFields(s string, lines int, dst http.Header) (cl string, err error) {
	http10 := r.Close
	vals := make([]string, 0, lines)
	if r.Status == http.StatusSwitchingProtocols {
		r.Raw = make([]Field, 0, lines)
	}
	var connTokens []string
	for s != "" {
		var line string
		line, s = nextLine(s)
		if line == "" {
			break
		}
		k, v, problem := parseField(line)
		if problem != "" {
			return "", ErrBadResponse
		}
		if r.Raw != nil {
			r.Raw = append(r.Raw, Field{k, v})
		}
		switch k {
		case "Connection":
			connTokens = r.connectionTokens(v, http10, connTokens)
			continue
		case "Transfer-Encoding":
			if !TokenEqual(v, "chunked") {
				return "", ErrBadResponse
			}
			r.Chunked = true
			continue
		case "Content-Length":
			if cl != "" && cl != v {
				return "", ErrBadResponse
			}
			cl = v
		case "Upgrade":
			r.Upgrade = v
			continue
		case "Content-Encoding":
			r.HasEncoding = true
		case "Content-Range":
			r.HasRange = true
		case "Content-Type":
			r.ContentType = v
		case "Cache-Control":
			if strings.Contains(v, "no-transform") {
				r.NoTransform = true
			}
		case "Server", "Date", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Proxy-Authenticate":
			continue
		}
		vals = addValue(dst, vals, k, v)
	}
	for _, t := range connTokens {
		delete(dst, canonicalKey(t))
	}
	return cl, nil
}

// connectionTokens reads a Connection value: close and keep-alive set
// Close, other tokens (headers to drop) are appended to tokens.
func (r *Response) connectionTokens(v string, http10 bool, tokens []string) []string {
	for rest := v; rest != ""; {
		var t string
		t, rest, _ = strings.Cut(rest, ",")
		t = strings.Trim(t, " \t")
		switch {
		case TokenEqual(t, "close"):
			r.Close = true
		case TokenEqual(t, "keep-alive"):
			if http10 {
				r.Close = false
			}
		default:
			tokens = append(tokens, t)
		}
	}
	return tokens
}

// frame settles how the body is delimited (RFC 9112 §6.3): none, chunked,
// Content-Length, or until the upstream closes.
func (r *Response) frame(method, cl string, dst http.Header) error {
	noBody := method == http.MethodHead || r.Status < 200 || r.Status == http.StatusNoContent || r.Status == http.StatusNotModified
	switch {
	case noBody:
		r.ContentLength = 0
		r.Chunked = false
	case r.Chunked:
		delete(dst, "Content-Length")
		if cl != "" {
			// Both framings: process the chunked one, as RFC 9112 §6.3
			// says, and do not reuse a connection that sent this.
			r.Close = true
		}
	case cl != "":
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n < 0 {
			return ErrBadResponse
		}
		r.ContentLength = n
	default:
		r.Close = true // the body runs until the upstream closes
	}
	return nil
}

// bodyOf returns a reader of the response body.
func bodyOf(br *bufio.Reader, r *Response) io.Reader {
	switch {
	case r.ContentLength == 0:
		return eofReader{}
	case r.Chunked:
		return &chunkedBody{cr: httputil.NewChunkedReader(br), br: br}
	case r.ContentLength > 0:
		r.lb = lengthBody{br: br, n: r.ContentLength}
		return &r.lb
	}
	return br // until EOF
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// lengthBody reads exactly n bytes; fewer is io.ErrUnexpectedEOF.
type lengthBody struct {
	br *bufio.Reader
	n  int64
}

func (b *lengthBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.br.Read(p)
	b.n -= int64(n)
	if err == io.EOF {
		return n, io.ErrUnexpectedEOF
	}
	if b.n == 0 && err == nil {
		err = io.EOF
	}
	return n, err
}

// chunkedBody decodes a chunked body and then reads its trailer section,
// so the connection is left at the next message. The trailer section is
// bounded like a head (MaxHeaderBytes) and parsed as strictly; bad is
// the error for a malformed or oversized one.
type chunkedBody struct {
	cr      io.Reader
	br      *bufio.Reader
	trailer []Field
	bad     error
}

func (b *chunkedBody) Read(p []byte) (int, error) {
	n, err := b.cr.Read(p)
	if err != io.EOF {
		return n, err
	}
	bad := b.bad
	if bad == nil {
		bad = ErrBadResponse
	}
	size := 0
	for {
		line, err := b.br.ReadSlice('\n')
		size += len(line)
		switch {
		case err == bufio.ErrBufferFull || size > MaxHeaderBytes:
			return n, bad
		case err != nil:
			return n, io.ErrUnexpectedEOF
		}
		if len(line) == 1 || len(line) == 2 && line[0] == '\r' {
			return n, io.EOF
		}
		l, _ := nextLine(string(line))
		k, v, problem := parseField(l)
		if problem != "" {
			return n, bad
		}
		b.trailer = append(b.trailer, Field{k, v})
	}
}
