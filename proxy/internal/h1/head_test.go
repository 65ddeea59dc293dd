package h1

import (
	"bufio"
	"strings"
	"testing"
)

// parseField is the one field-line parser of request heads, response
// heads and trailer sections.
func TestParseField(t *testing.T) {
	for _, tc := range []struct {
		line, name, value, problem string
	}{
		{"Host: example.com", "Host", "example.com", ""},
		{"content-type:text/html", "Content-Type", "text/html", ""},
		{"X-A: \t padded \t", "X-A", "padded", ""},
		{"X-Empty:", "X-Empty", "", ""},
		{"X-Obs: caf\xc3\xa9", "X-Obs", "caf\xc3\xa9", ""},
		{" folded: x", "", "", "obsolete line folding"},
		{"\tfolded", "", "", "obsolete line folding"},
		{"no colon", "", "", "malformed header line"},
		{"Space Before : x", "", "", "malformed header line"},
		{"Host : x", "", "", "malformed header line"},
		{": no name", "", "", "malformed header line"},
		{"X-CR: a\rb", "", "", "invalid header value"},
		{"X-NUL: a\x00b", "", "", "invalid header value"},
		{"X-DEL: a\x7fb", "", "", "invalid header value"},
	} {
		name, value, problem := parseField(tc.line)
		if name != tc.name || value != tc.value || problem != tc.problem {
			t.Errorf("parseField(%q) = %q, %q, %q; want %q, %q, %q", tc.line, name, value, problem, tc.name, tc.value, tc.problem)
		}
	}
}

// readHead's limits, as the response side sets them: no leading empty
// line, no line longer than the buffer, the whole head bounded.
func TestReadHeadLimits(t *testing.T) {
	lim := headLimits{max: 64}
	for _, tc := range []struct {
		name, raw string
		lines     int
		want      error
	}{
		{"a head", "HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody", 3, nil},
		{"bare LF", "HTTP/1.1 200 OK\nA: b\n\n", 3, nil},
		{"leading empty line", "\r\nHTTP/1.1 200 OK\r\n\r\n", 0, errEmptyLines},
		{"start line past max", "HTTP/1.1 200 " + strings.Repeat("x", 64) + "\r\n\r\n", 0, errFirstLineTooLong},
		{"head past max", "HTTP/1.1 200 OK\r\n" + strings.Repeat("A: b\r\n", 10) + "\r\n", 0, errHeadTooBig},
		{"line past the buffer", "HTTP/1.1 200 OK\r\nA: " + strings.Repeat("b", 40) + "\r\n\r\n", 0, errLineTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tc.raw), 32) // bufio's minimum is 16
			l := lim
			if tc.want != errLineTooLong {
				br = bufio.NewReader(strings.NewReader(tc.raw))
			}
			head, lines, err := readHead(br, nil, l)
			if err != tc.want {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if err == nil && (lines != tc.lines || !strings.HasPrefix(tc.raw, string(head)) || !strings.HasSuffix(string(head), "\n\n") && !strings.HasSuffix(string(head), "\r\n\r\n")) {
				t.Errorf("head %q, %d lines; want the head of %q, %d lines", head, lines, tc.raw, tc.lines)
			}
		})
	}
}
