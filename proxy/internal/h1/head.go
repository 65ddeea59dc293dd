package h1

import (
	"bufio"
	"net/http"
	"net/textproto"
	"strings"
)

// A message head (RFC 9112 §2.1) is read the same way for a request from
// a client and for a response from an upstream: readHead collects the
// start line and the field lines up to the empty line, bounded, and
// parseField reads each field line with the same checks. The differences
// (the bounds, which errors are answered how) are the callers'.

// headLimits bound a head as readHead reads it.
type headLimits struct {
	max       int  // bytes in the whole head, line endings included
	firstLine int  // bytes in the start line; 0: only max bounds it
	skipEmpty int  // empty lines skipped before the start line
	longLines bool // a line may be longer than the reader's buffer
}

// headError is a head readHead refuses; the caller says what it answers.
type headError int

const (
	errFirstLineTooLong headError = iota + 1 // the start line is past firstLine or max
	errHeadTooBig                            // the head is past max
	errLineTooLong                           // a line is longer than the buffer (without longLines)
	errEmptyLines                            // more than skipEmpty empty lines before the start line
)

func (e headError) Error() string {
	switch e {
	case errFirstLineTooLong:
		return "start line too long"
	case errHeadTooBig:
		return "head too large"
	case errLineTooLong:
		return "head line too long"
	}
	return "empty lines instead of a start line"
}

// readHead appends one head (start line to the empty line, line endings
// kept) read from br to buf[:0], and counts its lines. A read error is
// returned as it is: when nothing at all was read it is the clean end of
// the connection (io.EOF), otherwise the head was cut.
func readHead(br *bufio.Reader, buf []byte, lim headLimits) (head []byte, lines int, err error) {
	head = buf[:0]
	lineStart := 0
	empty := 0
	for {
		frag, err := br.ReadSlice('\n')
		if lineStart == 0 && (lim.firstLine > 0 && len(head)+len(frag) > lim.firstLine || len(head)+len(frag) > lim.max) {
			return head, lines, errFirstLineTooLong
		}
		if len(head)+len(frag) > lim.max {
			return head, lines, errHeadTooBig
		}
		head = append(head, frag...)
		if err == bufio.ErrBufferFull {
			if !lim.longLines {
				return head, lines, errLineTooLong
			}
			continue // a line longer than the buffer: keep reading it
		}
		if err != nil {
			return head, lines, err
		}
		line := head[lineStart:]
		if len(line) == 1 || len(line) == 2 && line[0] == '\r' {
			if lineStart == 0 {
				if empty++; empty > lim.skipEmpty {
					return head, lines, errEmptyLines
				}
				head = head[:0]
				continue
			}
			return head, lines + 1, nil
		}
		lines++
		lineStart = len(head)
	}
}

// parseField reads one field line (its line ending removed) of a head or
// a trailer section: the name, canonicalized, and the value trimmed of
// spaces and tabs. problem is what is wrong with the line, "" when
// nothing: obsolete line folding, a name that is not a token, no colon,
// or a control character in the value (a bare CR could split a message
// in two on the next hop).
func parseField(line string) (name, value, problem string) {
	if line != "" && (line[0] == ' ' || line[0] == '\t') {
		return "", "", "obsolete line folding"
	}
	k, v, ok := strings.Cut(line, ":")
	if !ok || !isToken(k) {
		return "", "", "malformed header line"
	}
	v = strings.Trim(v, " \t")
	if !validHeaderValue(v) {
		return "", "", "invalid header value"
	}
	return canonicalKey(k), v, ""
}

// addValue adds the value v of field k to h. The value slices of a head
// share vals, the head's one allocation (or the connection's, reused),
// each key's slice capped so that a second value of the same key does
// not overwrite the next key's. It returns vals grown by v.
func addValue(h http.Header, vals []string, k, v string) []string {
	vals = append(vals, v)
	if old := h[k]; old != nil {
		h[k] = append(old, v)
	} else {
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	return vals
}

// nextLine cuts the first line off s, without its line ending.
func nextLine(s string) (line, rest string) {
	i := strings.IndexByte(s, '\n')
	if i < 0 {
		return s, ""
	}
	line, rest = s[:i], s[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

// canonicalKey canonicalizes a header name without allocating when it is
// already canonical (the usual case).
func canonicalKey(k string) string {
	upper := true
	for i := 0; i < len(k); i++ {
		c := k[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return textproto.CanonicalMIMEHeaderKey(k)
		}
		upper = c == '-'
	}
	return k
}

// isToken reports whether s is an RFC 9110 token (a method or field name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenChar[s[i]] {
			return false
		}
	}
	return true
}

var tokenChar = byteSet("!#$%&'*+-.^_`|~")

// validHeaderValue refuses control characters other than tab; obs-text
// (bytes ≥ 0x80) is allowed, as RFC 9110 §5.5 does.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
