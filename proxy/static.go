package proxy

import (
	"bytes"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// cleanURLPath turns a decoded URL path into a cleaned, rooted path. ok is
// false for what must be refused with 400: NUL, backslashes, or ".."
// climbing above the root. dot reports a segment starting with "." other
// than a leading /.well-known/ (dotfiles are never served from disk).
func cleanURLPath(p string) (clean string, dot, ok bool) {
	if p == "" || p[0] != '/' || strings.IndexByte(p, 0) >= 0 || strings.IndexByte(p, '\\') >= 0 {
		return "", false, false
	}
	// Fast path: already clean and no dot segment (the common case, no
	// allocation).
	if !strings.Contains(p, "//") && !strings.Contains(p, "/.") {
		return p, false, true
	}
	segs := make([]string, 0, 8)
	for _, s := range strings.Split(p[1:], "/") {
		switch s {
		case "", ".":
		case "..":
			if len(segs) == 0 {
				return "", false, false
			}
			segs = segs[:len(segs)-1]
		default:
			segs = append(segs, s)
		}
	}
	for i, s := range segs {
		if s[0] == '.' && !(i == 0 && s == ".well-known" && len(segs) > 1) {
			dot = true
		}
	}
	clean = "/" + strings.Join(segs, "/")
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	return clean, dot, true
}

// hasEncodedSeparator reports %2F or %5C in the raw request path: an encoded
// slash or backslash has no business in a file name and is a classic way to
// smuggle traversal past a prefix check.
func hasEncodedSeparator(raw string) bool {
	for i := 0; i+2 < len(raw); i++ {
		if raw[i] == '%' && (raw[i+1] == '2' && (raw[i+2] == 'f' || raw[i+2] == 'F') || raw[i+1] == '5' && (raw[i+2] == 'c' || raw[i+2] == 'C')) {
			return true
		}
	}
	return false
}

// relName turns a cleaned rooted path into a name for os.Root ("." for /).
func relName(p string) string {
	p = strings.Trim(p, "/")
	if p == "" {
		return "."
	}
	return p
}

// fileRoot is one directory served with the safety rules: a site's root or
// an alias directory.
type fileRoot struct {
	dir   string
	root  *os.Root
	cache *fileCache
}

func openFileRoot(dir string, gzipOn bool) (*fileRoot, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &fileRoot{dir: dir, root: r, cache: newFileCache(r, gzipOn)}, nil
}

// result of trying one candidate.
type tryResult int

const (
	tryMiss tryResult = iota
	tryDone
)

// tryCandidate tries one try_files candidate (already expanded) under fr;
// a candidate ending in "/" matches a directory holding an index file.
// uriHasSlash tells whether the request path ended with "/", for the
// directory redirect.
func (s *Server) tryCandidate(w http.ResponseWriter, r *http.Request, st *site, fr *fileRoot, cand string, dir bool, reqPath string) tryResult {
	clean, dot, ok := cleanURLPath(cand)
	if !ok || dot || fr == nil {
		return tryMiss
	}
	if dir {
		e := fr.cache.get(relName(clean))
		if e.kind != kindDir {
			return tryMiss
		}
		ix := st.findIndex(fr, clean)
		if ix == nil {
			return tryMiss // no listings: a directory without an index is not a match
		}
		if !strings.HasSuffix(reqPath, "/") {
			redirectSlash(w, r, reqPath)
			return tryDone
		}
		s.serveEntry(w, r, fr, ix)
		return tryDone
	}
	e := fr.cache.get(relName(clean))
	if e.kind != kindFile {
		return tryMiss
	}
	s.serveEntry(w, r, fr, e)
	return tryDone
}

func (st *site) findIndex(fr *fileRoot, dir string) *fileEntry {
	base := strings.Trim(dir, "/")
	var buf [256]byte
	for _, ix := range st.index {
		// Build "dir/index.html" on the stack: a cache hit then costs no
		// allocation.
		b := buf[:0]
		if base != "" {
			b = append(append(b, base...), '/')
		}
		b = append(b, ix...)
		e := fr.cache.getBytes(b)
		if e.kind == kindFile {
			return e
		}
	}
	return nil
}

// redirectSlash answers 301 to the same path with a slash, as a relative
// reference ("./name/") so that no path can turn it into an absolute or
// protocol-relative URL such as //evil.com.
func redirectSlash(w http.ResponseWriter, r *http.Request, p string) {
	last := p[strings.LastIndexByte(p, '/')+1:]
	loc := "./" + url.PathEscape(last) + "/"
	if r.URL.RawQuery != "" {
		loc += "?" + r.URL.RawQuery
	}
	w.Header()["Location"] = []string{loc}
	writeStatusPage(w, r, http.StatusMovedPermanently)
}

// serveEntry writes a cached file: straight from memory on the hot path,
// through http.ServeContent for conditional and range requests, and from
// the disk (sendfile) for large files.
func (s *Server) serveEntry(w http.ResponseWriter, r *http.Request, fr *fileRoot, e *fileEntry) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header()["Allow"] = allowGetHead
		writeStatusPage(w, r, http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	body := e
	if e.gz != nil && acceptsGzip(r) {
		body = e.gz
		h["Content-Encoding"] = hdrGzip
	}
	if e.gz != nil {
		h["Vary"] = hdrVaryAE
	}
	h["Content-Type"] = e.hdrType
	h["Etag"] = body.hdrETag
	if body.data != nil && !isConditional(r) {
		h["Last-Modified"] = body.hdrMod
		h["Content-Length"] = body.hdrLen
		h["Accept-Ranges"] = hdrBytes
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(body.data)
		}
		return
	}
	if body.data != nil {
		http.ServeContent(w, r, "", body.mod, bytes.NewReader(body.data))
		return
	}
	f, err := fr.root.Open(body.name)
	if err != nil {
		delete(h, "Etag")
		delete(h, "Content-Encoding")
		writeStatusPage(w, r, http.StatusNotFound)
		return
	}
	defer f.Close()
	http.ServeContent(w, r, "", body.mod, f)
}

var (
	allowGetHead = []string{"GET, HEAD"}
	hdrGzip      = []string{"gzip"}
	hdrVaryAE    = []string{"Accept-Encoding"}
	hdrBytes     = []string{"bytes"}
)

func isConditional(r *http.Request) bool {
	h := r.Header
	return h["Range"] != nil || h["If-None-Match"] != nil || h["If-Modified-Since"] != nil || h["If-Match"] != nil || h["If-Unmodified-Since"] != nil
}

// acceptsGzip is a lenient check of Accept-Encoding: gzip present and not
// refused with q=0.
func acceptsGzip(r *http.Request) bool {
	for _, v := range r.Header["Accept-Encoding"] {
		for part := range strings.SplitSeq(v, ",") {
			name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if strings.EqualFold(strings.TrimSpace(name), "gzip") || strings.TrimSpace(name) == "*" {
				q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
				if q == "q=0" || q == "q=0.0" || q == "q=0.00" || q == "q=0.000" {
					return false
				}
				return true
			}
		}
	}
	return false
}
