package proxy

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"mime"
	"os"
	"path"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The open-file cache (nginx's open_file_cache, on by default here): the
// result of looking a name up under a root — missing, directory, or a file
// with its headers and, when small, its bytes — is kept for cacheValid and
// then checked again with one stat. Hot small files are thus served without
// any system call besides the socket write, and the try_files probes in
// front of the upstream ("$uri", "$uri/") cost a map lookup, not a stat.
const (
	cacheValid    = time.Second // how long an entry is trusted before it is stat'ed again
	cacheMaxData  = 256 << 10   // files up to this size are kept in memory
	cacheMaxItems = 8192        // entries per root; a full cache drops entries at random
	gzipMinSize   = 256         // smaller bodies are not worth compressing
)

type entryKind uint8

const (
	kindMissing entryKind = iota
	kindFile
	kindDir
	kindOther // sockets, devices, unreadable: never served
)

// fileEntry is immutable once published, except checked.
type fileEntry struct {
	kind    entryKind
	name    string       // the name under the root, for files opened per request
	checked atomic.Int64 // monotonic nanoseconds of the last stat
	size    int64
	mod     time.Time
	ino     uint64
	dev     uint64

	ctype    string
	hdrType  []string // header values, shared read-only by every response
	hdrLen   []string
	hdrMod   []string
	hdrETag  []string
	etag     string
	data     []byte     // the whole file when size <= cacheMaxData
	gz       *fileEntry // a gzip variant (precompressed sibling or compressed here), or nil
	compress bool       // the type is worth compressing
}

// fileCache caches lookups under one os.Root.
type fileCache struct {
	root  *os.Root
	gzip  bool
	epoch time.Time

	mu sync.RWMutex
	m  map[string]*fileEntry
}

func newFileCache(root *os.Root, gzipOn bool) *fileCache {
	return &fileCache{root: root, gzip: gzipOn, epoch: time.Now(), m: make(map[string]*fileEntry)}
}

func (c *fileCache) now() int64 { return int64(time.Since(c.epoch)) }

// get returns the entry for name, a cleaned slash-separated path relative to
// the root ("." for the root itself). It never fails: errors are entries.
func (c *fileCache) get(name string) *fileEntry {
	c.mu.RLock()
	e := c.m[name]
	c.mu.RUnlock()
	now := c.now()
	if e != nil {
		if now-e.checked.Load() < int64(cacheValid) {
			return e
		}
		// Stale: one stat decides whether the entry still stands.
		fi, err := c.root.Stat(name)
		if err == nil && e.kind != kindMissing && sameFile(e, fi) {
			e.checked.Store(now)
			return e
		}
		if err != nil && e.kind == kindMissing && errorsIsNotExist(err) {
			e.checked.Store(now)
			return e
		}
	}
	e = c.load(name)
	e.checked.Store(now)
	c.mu.Lock()
	if len(c.m) >= cacheMaxItems {
		for k := range c.m { // map order is random enough for eviction
			delete(c.m, k)
			if len(c.m) < cacheMaxItems*3/4 {
				break
			}
		}
	}
	c.m[name] = e
	c.mu.Unlock()
	return e
}

func errorsIsNotExist(err error) bool {
	return err != nil && (os.IsNotExist(err) || isENOTDIR(err))
}

func isENOTDIR(err error) bool {
	var pe *fs.PathError
	if e, ok := err.(*fs.PathError); ok {
		pe = e
		return pe.Err == syscall.ENOTDIR
	}
	return false
}

func sameFile(e *fileEntry, fi fs.FileInfo) bool {
	dev, ino := devIno(fi)
	switch {
	case fi.IsDir():
		return e.kind == kindDir && e.ino == ino && e.dev == dev
	case fi.Mode().IsRegular():
		return e.kind == kindFile && e.size == fi.Size() && e.mod.Equal(fi.ModTime()) && e.ino == ino && e.dev == dev
	}
	return e.kind == kindOther
}

func devIno(fi fs.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), st.Ino
	}
	return 0, 0
}

// getBytes is get for a name built in a buffer: a fresh cached entry is
// found without converting the name to a string.
func (c *fileCache) getBytes(name []byte) *fileEntry {
	c.mu.RLock()
	e := c.m[string(name)]
	c.mu.RUnlock()
	if e != nil && c.now()-e.checked.Load() < int64(cacheValid) {
		return e
	}
	return c.get(string(name))
}

// load looks name up afresh.
func (c *fileCache) load(name string) *fileEntry {
	f, err := c.root.Open(name)
	if err != nil {
		if errorsIsNotExist(err) {
			return &fileEntry{kind: kindMissing}
		}
		// Permission denied, a symlink leaving the root, a loop: never served.
		return &fileEntry{kind: kindOther}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return &fileEntry{kind: kindOther}
	}
	dev, ino := devIno(fi)
	if fi.IsDir() {
		return &fileEntry{kind: kindDir, dev: dev, ino: ino}
	}
	if !fi.Mode().IsRegular() {
		return &fileEntry{kind: kindOther}
	}
	e := &fileEntry{kind: kindFile, name: name, size: fi.Size(), mod: fi.ModTime(), dev: dev, ino: ino}
	e.ctype = contentType(name)
	e.setHeaders()
	e.compress = compressible(e.ctype)
	if fi.Size() <= cacheMaxData {
		data := make([]byte, fi.Size())
		if _, err := io.ReadFull(f, data); err != nil {
			return &fileEntry{kind: kindOther}
		}
		e.data = data
	}
	if c.gzip && e.compress && fi.Size() >= gzipMinSize {
		// A precompressed sibling wins (nginx gzip_static); else small
		// files are compressed once here.
		if gz := c.loadSibling(name + ".gz"); gz != nil {
			gz.hdrType = e.hdrType
			e.gz = gz
		} else if e.data != nil {
			e.gz = compressEntry(e)
		}
	}
	return e
}

// loadSibling opens a precompressed name.gz, or returns nil.
func (c *fileCache) loadSibling(name string) *fileEntry {
	f, err := c.root.Open(name)
	if err != nil {
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	g := &fileEntry{kind: kindFile, name: name, size: fi.Size(), mod: fi.ModTime()}
	if fi.Size() <= cacheMaxData {
		data := make([]byte, fi.Size())
		if _, err := io.ReadFull(f, data); err != nil {
			return nil
		}
		g.data = data
	}
	g.setHeaders()
	return g
}

func compressEntry(e *fileEntry) *fileEntry {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = zw.Write(e.data)
	_ = zw.Close()
	if buf.Len() >= len(e.data) {
		return nil
	}
	g := &fileEntry{kind: kindFile, size: int64(buf.Len()), mod: e.mod, data: buf.Bytes()}
	g.setHeaders()
	g.hdrType = e.hdrType
	return g
}

// setHeaders prepares the header values once; responses share the slices.
func (e *fileEntry) setHeaders() {
	if e.ctype != "" {
		e.hdrType = []string{e.ctype}
	}
	e.hdrLen = []string{strconv.FormatInt(e.size, 10)}
	e.hdrMod = []string{e.mod.UTC().Format(timeFormatHTTP)}
	// nginx's ETag: hex modification time and size.
	e.etag = `"` + strconv.FormatInt(e.mod.Unix(), 16) + "-" + strconv.FormatInt(e.size, 16) + `"`
	e.hdrETag = []string{e.etag}
}

const timeFormatHTTP = "Mon, 02 Jan 2006 15:04:05 GMT"

// contentType is the type by extension, application/octet-stream otherwise
// (nginx's default_type); content is never sniffed.
func contentType(name string) string {
	ext := path.Ext(name)
	if ext == "" {
		return "application/octet-stream"
	}
	if t, ok := extraTypes[ext]; ok {
		return t
	}
	if t := mime.TypeByExtension(ext); t != "" {
		return t
	}
	return "application/octet-stream"
}

// extraTypes pins types whose system mime.types entry varies between hosts.
var extraTypes = map[string]string{
	".html":  "text/html; charset=utf-8",
	".htm":   "text/html; charset=utf-8",
	".css":   "text/css; charset=utf-8",
	".js":    "text/javascript; charset=utf-8",
	".mjs":   "text/javascript; charset=utf-8",
	".json":  "application/json",
	".txt":   "text/plain; charset=utf-8",
	".svg":   "image/svg+xml",
	".wasm":  "application/wasm",
	".xml":   "text/xml; charset=utf-8",
	".ico":   "image/x-icon",
	".webp":  "image/webp",
	".woff2": "font/woff2",
	".map":   "application/json",
}

// compressible reports whether a content type gains from gzip.
func compressible(ct string) bool {
	if len(ct) >= 5 && ct[:5] == "text/" {
		return true
	}
	for _, p := range []string{"application/json", "application/javascript", "application/xml", "image/svg+xml", "application/wasm", "application/manifest+json", "application/rss+xml", "application/atom+xml"} {
		if len(ct) >= len(p) && ct[:len(p)] == p {
			return true
		}
	}
	return false
}
