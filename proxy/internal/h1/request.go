package h1

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
)

// The plain-HTTP listener reads requests with this parser rather than
// net/http's server (Server says why). It is strict where ambiguity
// would let a request be read two ways (RFC 9112): one Host, one
// Content-Length value, Transfer-Encoding only as a lone "chunked" on
// HTTP/1.1, no obsolete line folding, no whitespace before a colon, no
// control characters in names or values.

// RequestError is a request the parser refuses: the status to answer
// with, after which the connection is closed.
type RequestError struct {
	Status int
	msg    string
}

func (e *RequestError) Error() string { return "bad request: " + e.msg }

func badRequest(msg string) error { return &RequestError{http.StatusBadRequest, msg} }

// errHeadTooLarge is a request head past MaxHeaderBytes.
var errHeadTooLarge = &RequestError{http.StatusRequestHeaderFieldsTooLarge, "request head too large"}

// errBadTrailer is a request's chunked trailer section that is malformed
// or larger than a head may be.
var errBadTrailer = badRequest("malformed or oversized trailer section")

// errTooManyFields is a request head of more than MaxHeaderFields fields.
var errTooManyFields = &RequestError{http.StatusRequestHeaderFieldsTooLarge, "too many header fields"}

// errURITooLong is a request line past MaxHeaderBytes.
var errURITooLong = &RequestError{http.StatusRequestURITooLong, "request line too long"}

// maxLeadingEmptyLines is how many empty lines before a request line are
// skipped (RFC 9112 §2.2 asks for at least one, for clients that end a
// POST body with an extra CRLF); more is a bad request, so that a client
// cannot hold a connection with an endless run of them.
const maxLeadingEmptyLines = 2

// requestHead bounds a request head: nginx's large_client_header_buffers
// answers 414 past 8 KiB of request line.
var requestHead = headLimits{firstLine: MaxRequestLine, skipEmpty: maxLeadingEmptyLines, longLines: true}

// readRequestHead reads one request head (request line to the empty line)
// into buf, bounded by max bytes. It returns the head with its line
// endings; io.EOF when the connection ended before a request.
func readRequestHead(br *bufio.Reader, buf []byte, max int) ([]byte, error) {
	lim := requestHead
	lim.max = max
	head, _, err := readHead(br, buf, lim)
	switch err {
	case nil:
		return head, nil
	case errFirstLineTooLong:
		return head, errURITooLong
	case errHeadTooBig:
		return head, errHeadTooLarge
	case errEmptyLines:
		return head, badRequest("empty lines instead of a request line")
	case io.EOF:
		if len(head) > 0 {
			return head, io.ErrUnexpectedEOF
		}
	}
	return head, err
}

// parseRequest fills r from a request head read by readRequestHead. The header
// map and value slice are the connection's, reused per request: the
// handler does not keep them past its return. The body is read from br.
func parseRequest(head string, br *bufio.Reader, r *http.Request, u *url.URL, vals *[]string) error {
	line, rest := nextLine(head)
	if err := parseRequestLine(line, r, u); err != nil {
		return err
	}
	f, err := parseRequestFields(rest, r.Header, vals)
	if err != nil {
		return err
	}
	switch {
	case f.hosts > 1:
		return badRequest("more than one Host header")
	case f.hosts == 0 && r.ProtoMinor == 1 && r.Method != http.MethodConnect:
		return badRequest("missing required Host header")
	case !validHost(f.host):
		return badRequest("malformed Host header")
	}
	r.Host = f.host
	if u.Host != "" {
		r.Host = u.Host // absolute form: the target's authority wins (RFC 9112 §3.2.2)
	}
	return frameRequest(r, br, f)
}

// parseRequestLine sets the method, target, URL and protocol version.
func parseRequestLine(line string, r *http.Request, u *url.URL) error {
	method, line, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(line, " ")
	if !ok1 || !ok2 || !isToken(method) || target == "" {
		return badRequest("malformed request line")
	}
	switch proto {
	case "HTTP/1.1":
		r.ProtoMinor = 1
	case "HTTP/1.0":
		r.ProtoMinor = 0
	default:
		switch {
		case len(proto) != 8 || !strings.HasPrefix(proto, "HTTP/") || proto[6] != '.' || !isDigit(proto[5]) || !isDigit(proto[7]):
			return badRequest("malformed protocol version")
		case proto[5] == '1':
			// A later HTTP/1 minor version is read as the highest we
			// implement (RFC 9112 §2.3), as nginx and net/http do.
			r.ProtoMinor, proto = 1, "HTTP/1.1"
		default:
			return &RequestError{http.StatusHTTPVersionNotSupported, "unsupported protocol version " + proto}
		}
	}
	r.Method, r.RequestURI, r.Proto, r.ProtoMajor = method, target, proto, 1
	if err := parseTarget(method, target, u); err != nil {
		return err
	}
	r.URL = u
	return nil
}

// framingFields are the fields that frame a request, kept out of the
// header map: Host, Content-Length and Transfer-Encoding, with how many
// times each came.
type framingFields struct {
	host, cl, te    string
	hosts, cls, tes int
}

// parseRequestFields reads the header fields of rest into h; the values
// share the slice *vals, the connection's.
func parseRequestFields(rest string, h http.Header, vals *[]string) (f framingFields, err error) {
	vs := (*vals)[:0]
	fields := 0
	for rest != "" {
		var line string
		line, rest = nextLine(rest)
		if line == "" {
			break
		}
		if fields++; fields > MaxHeaderFields {
			return f, errTooManyFields
		}
		k, v, problem := parseField(line)
		if problem != "" {
			return f, badRequest(problem)
		}
		switch k {
		case "Host":
			f.host = v
			f.hosts++
			continue // r.Host carries it, as with net/http
		case "Content-Length":
			if f.cls > 0 && v != f.cl {
				return f, badRequest("conflicting Content-Length")
			}
			f.cl = v
			f.cls++
			continue
		case "Transfer-Encoding":
			f.te = v
			f.tes++
			continue
		}
		vs = addValue(h, vs, k, v)
	}
	*vals = vs
	return f, nil
}

// frameRequest sets the body from Content-Length and Transfer-Encoding
// (RFC 9112 §6), and whether the connection closes after the response.
func frameRequest(r *http.Request, br *bufio.Reader, f framingFields) error {
	r.Body, r.ContentLength, r.TransferEncoding = http.NoBody, 0, nil
	var clen uint64
	if f.cls > 0 {
		// Checked even beside a Transfer-Encoding that overrides it.
		n, err := strconv.ParseUint(f.cl, 10, 63)
		if err != nil {
			return badRequest("malformed Content-Length")
		}
		clen = n
	}
	switch {
	case f.tes > 1:
		return badRequest("more than one Transfer-Encoding header")
	case f.tes == 1 && r.ProtoMinor == 0:
		return badRequest("Transfer-Encoding in an HTTP/1.0 request")
	case f.tes == 1 && !TokenEqual(f.te, "chunked"):
		return &RequestError{http.StatusNotImplemented, "unsupported Transfer-Encoding"}
	case f.tes == 1:
		// With a Content-Length too, chunked wins (RFC 9112 §6.3) and the
		// handler closes the connection after the response.
		r.TransferEncoding = hdrChunked
		r.ContentLength = -1
		r.Body = &requestBody{r: &chunkedBody{cr: httputil.NewChunkedReader(br), br: br, bad: errBadTrailer}}
	case f.cls > 0: // equal values (checked above) frame the body as one
		r.ContentLength = int64(clen)
		if clen > 0 {
			r.Body = &requestBody{r: &lengthBody{br: br, n: int64(clen)}}
		}
	}
	// Both framings: chunked was used, and the connection is not trusted
	// after the response (RFC 9112 §6.3), whatever the handler does.
	r.Close = wantsClose(r) || f.tes == 1 && f.cls > 0
	return nil
}

var hdrChunked = []string{"chunked"}

// parseTarget parses the request target as url.ParseRequestURI does, with a
// fast path for the usual origin form that allocates nothing.
func parseTarget(method, target string, u *url.URL) error {
	*u = url.URL{}
	if target[0] == '/' && plainTarget(target) {
		u.Path, u.RawQuery, u.ForceQuery = target, "", false
		if i := strings.IndexByte(target, '?'); i >= 0 {
			u.Path, u.RawQuery = target[:i], target[i+1:]
			u.ForceQuery = u.RawQuery == ""
		}
		return nil
	}
	if method == http.MethodConnect && target[0] != '/' {
		target = "http://" + target // authority form, as net/http reads it
	}
	p, err := url.ParseRequestURI(target)
	if err != nil {
		return badRequest("malformed request target")
	}
	if method == http.MethodConnect {
		p.Scheme = ""
	}
	*u = *p
	return nil
}

// plainTarget reports whether url.ParseRequestURI would take the target
// as it is: a path of bytes that net/url never escapes (so RawPath stays
// empty), then an optional query of printable ASCII without '#'.
func plainTarget(s string) bool {
	i := 0
	for ; i < len(s) && s[i] != '?'; i++ {
		if !pathChar[s[i]] {
			return false
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
	}
	return true
}

var pathChar = byteSet("-._~$&+,/:;=@")

// TokenEqual compares a header token (trimmed of spaces and tabs) with
// another, folding ASCII case only: strings.EqualFold would also take
// "chun\u212Aed" (Kelvin sign) for "chunked", which no other hop would.
func TokenEqual(s, t string) bool {
	s = strings.Trim(s, " \t")
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if lowerASCII(s[i]) != lowerASCII(t[i]) {
			return false
		}
	}
	return true
}

// ConnectionListed reports whether name is listed in a Connection header.
func ConnectionListed(conn []string, name string) bool {
	for _, v := range conn {
		for t := range strings.SplitSeq(v, ",") {
			if TokenEqual(t, name) {
				return true
			}
		}
	}
	return false
}

// wantsClose reads the request's Connection header: HTTP/1.1 keeps the
// connection unless told "close", HTTP/1.0 closes it unless told
// "keep-alive".
func wantsClose(r *http.Request) bool {
	conn := r.Header["Connection"]
	if r.ProtoMinor == 0 {
		return !ConnectionListed(conn, "keep-alive")
	}
	return ConnectionListed(conn, "close")
}

// byteSet is a lookup table of ASCII letters, digits and the bytes of
// extra.
func byteSet(extra string) (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for i := 0; i < len(extra); i++ {
		t[extra[i]] = true
	}
	return t
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// validHost allows the characters of RFC 3986's host and port: an empty
// Host is valid (HTTP/1.0, or "Host:" with no value).
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		if !hostChar[h[i]] {
			return false
		}
	}
	return true
}

var hostChar = byteSet("-._~!$&'()*+,;=:[]%")

// requestBody is a request body on the plain-HTTP listener. It remembers
// whether it was read to its end, so the connection knows whether the next
// request starts where the reader stands, and it sends "100 Continue"
// before the first read when the client waits for one.
type requestBody struct {
	r           io.Reader
	eof         bool
	err         error
	continue100 func() // set while a 100 Continue is owed
}

func (b *requestBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.continue100 != nil {
		b.continue100()
		b.continue100 = nil
	}
	n, err := b.r.Read(p)
	switch {
	case err == io.EOF:
		b.eof = true
	case err != nil:
		// The client's fault, not the upstream's: answered 408 or 400
		// by the proxy, not counted as an upstream error.
		var re *RequestError
		switch {
		case errors.As(err, &re):
		case IsTimeout(err):
			err = &RequestError{http.StatusRequestTimeout, "request body: " + err.Error()}
		default:
			err = &RequestError{http.StatusBadRequest, "request body: " + err.Error()}
		}
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

// remaining is how many body bytes are still unread, -1 when unknown
// (chunked).
func (b *requestBody) remaining() int64 {
	if lb, ok := b.r.(*lengthBody); ok {
		return lb.n
	}
	return -1
}

// skipped reports, before the connection reads on, that an unread rest
// will not be read and dropped: the client waits for a 100 Continue that
// never came (it may or may not send the body), the body already failed,
// or the rest is longer than maxDiscard.
func (b *requestBody) skipped() bool {
	return !b.eof && (b.continue100 != nil || b.err != nil || b.remaining() > maxDiscard)
}

// Close does nothing: the connection decides, once the handler returns,
// whether an unread rest is discarded or the connection closed.
func (b *requestBody) Close() error { return nil }
