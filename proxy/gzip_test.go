package proxy

import (
	"bytes"
	"compress/gzip"
	"io"
	"strings"
	"testing"
)

func gunzip(t *testing.T, s string) string {
	t.Helper()
	zr, err := gzip.NewReader(strings.NewReader(s))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func gz(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	io.WriteString(zw, s)
	zw.Close()
	return b.String()
}

func TestGzipStatic(t *testing.T) {
	root := t.TempDir()
	js := strings.Repeat("function f(){return 1}\n", 200)
	css := strings.Repeat("body{color:red}\n", 100)
	writeFiles(t, root, map[string]string{
		"app.js":      js,
		"site.css":    css,
		"site.css.gz": gz(t, "/* precompressed */"+css),
		"tiny.txt":    "tiny",
		"img.png":     strings.Repeat("\x89PNG", 200),
	})
	tests := []struct {
		name, path, accept string
		wantGzip           bool
		wantBody           string
	}{
		{"compressed here", "/app.js", "gzip, deflate", true, js},
		{"not accepted", "/app.js", "", false, js},
		{"refused with q=0", "/app.js", "gzip;q=0", false, js},
		{"precompressed sibling", "/site.css", "gzip", true, "/* precompressed */" + css},
		{"sibling not for plain clients", "/site.css", "", false, css},
		{"too small", "/tiny.txt", "gzip", false, "tiny"},
		{"not compressible", "/img.png", "gzip", false, strings.Repeat("\x89PNG", 200)},
	}
	_, addr := startServer(t, envConfig(t, map[string]string{"ROOT": root}), Deps{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var resp, body = get(t, addr, "", tt.path)
			if tt.accept != "" {
				resp, body = get(t, addr, "", tt.path, "Accept-Encoding", tt.accept)
			}
			isGzip := resp.Header.Get("Content-Encoding") == "gzip"
			if isGzip != tt.wantGzip {
				t.Fatalf("Content-Encoding %q, want gzip=%v", resp.Header.Get("Content-Encoding"), tt.wantGzip)
			}
			if isGzip {
				body = gunzip(t, body)
				if resp.Header.Get("Vary") != "Accept-Encoding" {
					t.Errorf("Vary %q", resp.Header.Get("Vary"))
				}
			}
			if body != tt.wantBody {
				t.Errorf("body differs: %d bytes, want %d", len(body), len(tt.wantBody))
			}
		})
	}
	// PROXY_GZIP=false turns it off.
	_, addr2 := startServer(t, envConfig(t, map[string]string{"ROOT": root, "GZIP": "false"}), Deps{})
	if resp, _ := get(t, addr2, "", "/app.js", "Accept-Encoding", "gzip"); resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("gzip off: Content-Encoding %q", resp.Header.Get("Content-Encoding"))
	}
}

func TestGzipProxied(t *testing.T) {
	up := startUpstream(t, true)
	_, addr := proxyTo(t, up.target, nil)
	resp, body := get(t, addr, "", "/big", "Accept-Encoding", "gzip")
	if resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Content-Length") != "" {
		t.Fatalf("headers %v", resp.Header)
	}
	if plain := gunzip(t, body); len(plain) != 1<<20 || len(body) > 100000 {
		t.Errorf("gunzipped %d bytes from %d", len(plain), len(body))
	}
	// Small bodies pass as they are.
	if resp, body := get(t, addr, "", "/hello", "Accept-Encoding", "gzip"); resp.Header.Get("Content-Encoding") != "" || body != "hello from upstream\n" {
		t.Errorf("small: %q %q", resp.Header.Get("Content-Encoding"), body)
	}
}
