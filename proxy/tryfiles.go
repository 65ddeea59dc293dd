package proxy

import (
	"errors"
	"path"
	"strconv"
	"strings"
)

// tryFiles is a parsed PROXY_TRY_FILES: the candidates tried in order, then
// exactly one fallback (the upstream, a status code or a URI).
type tryFiles struct {
	files       []string // "$uri", "$uri/", "/maintenance.html", "$uri.html"…; a trailing slash means a directory with an index
	app         bool     // fallback @app
	code        int      // fallback =NNN
	fallbackURI string   // fallback URI, may contain $uri
}

var errTryFiles = errors.New("candidates ($uri, $uri/, /path) then one of @app, =404 (a status code) or a /uri")

// parseTryFiles checks and splits the try_files list. An empty list is
// nginx's behaviour without try_files: "$uri $uri/ =404".
func parseTryFiles(args []string) (tryFiles, error) {
	var clean []string
	for _, a := range args {
		if a = strings.TrimSpace(a); a != "" {
			clean = append(clean, a)
		}
	}
	if len(clean) == 0 {
		clean = []string{"$uri", "$uri/", "=404"}
	}
	var tf tryFiles
	for _, a := range clean[:len(clean)-1] {
		if !isFileArg(a) {
			return tryFiles{}, errTryFiles
		}
		tf.files = append(tf.files, a)
	}
	last := clean[len(clean)-1]
	switch {
	case last == "@app":
		tf.app = true
	case strings.HasPrefix(last, "="):
		n, err := strconv.Atoi(last[1:])
		if err != nil || n < 200 || n > 599 {
			return tryFiles{}, errTryFiles
		}
		tf.code = n
	case isFileArg(last):
		tf.fallbackURI = last
	default:
		return tryFiles{}, errTryFiles
	}
	return tf, nil
}

func isFileArg(a string) bool {
	return (strings.HasPrefix(a, "/") || strings.HasPrefix(a, "$uri")) && !strings.ContainsAny(a, "\\\x00?#")
}

// expand substitutes $uri in a try_files argument. dir reports an
// argument ending in "/" (a directory candidate); the slash itself is
// dropped, which spares "$uri/" an allocation per request.
func expand(arg, uri string) (p string, dir bool) {
	dir = strings.HasSuffix(arg, "/") || (arg == "$uri" && strings.HasSuffix(uri, "/"))
	switch arg {
	case "$uri", "$uri/":
		return uri, dir
	}
	if !strings.Contains(arg, "$uri") {
		return arg, dir
	}
	return strings.ReplaceAll(arg, "$uri", uri), dir
}

// alias is one PROXY_ALIASES mapping; prefix and the directory both end the
// match on a segment boundary, so "/static../x" never matches "/static/".
type alias struct {
	prefix string // "/static/", always ends with "/"
	dir    string // "/app/static", cleaned
}

// parseAlias reads "/static/=/app/static/". Slashes at the ends of either
// side are optional: the mapping is always made between whole segments,
// which defuses nginx's alias off-by-slash trap whatever the user writes.
func parseAlias(s string) (alias, error) {
	p, d, ok := strings.Cut(s, "=")
	p, d = strings.TrimSpace(p), strings.TrimSpace(d)
	if !ok || !strings.HasPrefix(p, "/") || !strings.HasPrefix(d, "/") {
		return alias{}, errors.New("/url/prefix/=/absolute/directory/")
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." || strings.ContainsAny(seg, "\\\x00?#%*") {
			return alias{}, errors.New("a URL prefix without . or .. segments, %, ?, # or backslashes")
		}
	}
	cp := path.Clean(p)
	if cp == "/" {
		return alias{}, errors.New("a URL prefix other than / (use PROXY_ROOT for /)")
	}
	return alias{prefix: cp + "/", dir: path.Clean(d)}, nil
}
