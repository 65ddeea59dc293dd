package proxy

import (
	"errors"
	"regexp"
	"sort"
	"strings"
)

// nameKind is the form of a server name, as nginx's server_name knows them.
type nameKind int

const (
	nameExact    nameKind = iota // www.example.com
	nameLeading                  // *.example.com: suffix ".example.com"
	nameDotted                   // .example.com: example.com and its subdomains
	nameTrailing                 // www.example.*: prefix "www.example."
	nameRegex                    // ~^www\d+\.example\.com$
)

type serverName struct {
	kind nameKind
	text string // lower case: the exact name, the suffix (".example.com") or the prefix ("www.example.")
	re   *regexp.Regexp
}

// parseServerName checks one PROXY_SERVER_NAMES entry.
func parseServerName(n string) (serverName, error) {
	if strings.HasPrefix(n, "~") {
		re, err := regexp.Compile(n[1:])
		if err != nil || n == "~" {
			return serverName{}, errors.New("a valid regular expression after ~ (RE2 syntax)")
		}
		return serverName{kind: nameRegex, re: re}, nil
	}
	l := strings.TrimSuffix(strings.ToLower(n), ".")
	bad := errors.New("a host name, *.example.com, www.example.*, .example.com or ~regex")
	if l == "" || strings.ContainsAny(l, " /\\:@?#\x00") {
		return serverName{}, bad
	}
	switch {
	case strings.HasPrefix(l, "*."):
		if strings.Contains(l[2:], "*") || len(l) < 3 {
			return serverName{}, bad
		}
		return serverName{kind: nameLeading, text: l[1:]}, nil
	case strings.HasSuffix(l, ".*"):
		if strings.Contains(l[:len(l)-2], "*") || len(l) < 3 {
			return serverName{}, bad
		}
		return serverName{kind: nameTrailing, text: l[:len(l)-1]}, nil
	case strings.Contains(l, "*"):
		return serverName{}, bad
	case strings.HasPrefix(l, "."):
		if len(l) < 2 {
			return serverName{}, bad
		}
		return serverName{kind: nameDotted, text: l}, nil
	}
	return serverName{kind: nameExact, text: l}, nil
}

type wildName struct {
	text string
	site *site
}

type regexName struct {
	re   *regexp.Regexp
	site *site
}

// hostTable selects a site for a Host header with nginx's precedence: exact
// name, longest leading wildcard, longest trailing wildcard, first regex in
// configuration order, then the default site.
type hostTable struct {
	single   bool // one site and no names: every request goes to def
	exact    map[string]*site
	leading  []wildName // suffixes, longest first
	trailing []wildName // prefixes, longest first
	regex    []regexName
	def      *site
}

func newHostTable(sites []*site, def *site) *hostTable {
	t := &hostTable{exact: map[string]*site{}, def: def}
	for _, s := range sites {
		for _, n := range s.names {
			switch n.kind {
			case nameExact:
				if _, ok := t.exact[n.text]; !ok {
					t.exact[n.text] = s
				}
			case nameDotted:
				// nginx: ".example.com" is "example.com" plus "*.example.com".
				if _, ok := t.exact[n.text[1:]]; !ok {
					t.exact[n.text[1:]] = s
				}
				t.leading = append(t.leading, wildName{n.text, s})
			case nameLeading:
				t.leading = append(t.leading, wildName{n.text, s})
			case nameTrailing:
				t.trailing = append(t.trailing, wildName{n.text, s})
			case nameRegex:
				t.regex = append(t.regex, regexName{n.re, s})
			}
		}
	}
	byLen := func(w []wildName) {
		sort.SliceStable(w, func(i, j int) bool { return len(w[i].text) > len(w[j].text) })
	}
	byLen(t.leading)
	byLen(t.trailing)
	t.single = len(sites) == 1 && len(t.exact) == 0 && len(t.leading) == 0 && len(t.trailing) == 0 && len(t.regex) == 0
	return t
}

// normalizeHost lower-cases a Host header and drops the port and a trailing
// dot. It allocates only when the header has upper-case letters.
func normalizeHost(h string) string {
	if strings.HasPrefix(h, "[") { // IPv6 literal
		if i := strings.IndexByte(h, ']'); i > 0 {
			return strings.ToLower(h[:i+1])
		}
		return ""
	}
	if i := strings.IndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	return strings.ToLower(h)
}

// lookup returns the site for a request's Host header.
func (t *hostTable) lookup(host string) *site {
	if t.single || host == "" {
		return t.def
	}
	h := normalizeHost(host)
	if s, ok := t.exact[h]; ok {
		return s
	}
	for _, w := range t.leading {
		if len(h) > len(w.text) && strings.HasSuffix(h, w.text) {
			return w.site
		}
	}
	for _, w := range t.trailing {
		if len(h) > len(w.text) && strings.HasPrefix(h, w.text) {
			return w.site
		}
	}
	for _, r := range t.regex {
		if r.re.MatchString(h) {
			return r.site
		}
	}
	return t.def
}

// emptyHostLabel reports a Host with an empty label (".a.test", "a..b"):
// no such name exists, and matching it against ".example.com" or
// "*.example.com" server names would be guesswork (400, as nginx).
// One trailing dot (a fully qualified name) is allowed.
func emptyHostLabel(h string) bool {
	if h == "" || h[0] == '[' {
		return false
	}
	if i := strings.IndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	return h != "" && (h[0] == '.' || strings.Contains(h, ".."))
}
