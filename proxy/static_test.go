package proxy

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTryFilesAndIndex(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"index.html":           "root index",
		"about.html":           "about page",
		"docs/index.htm":       "docs index htm",
		"empty/":               "",
		"both/index.html":      "both html",
		"both/index.htm":       "both htm",
		"maintenance.html":     "down for maintenance",
		"style.css":            "body{}",
		"data.json":            `{"a":1}`,
		"noext":                "raw",
		".well-known/acme.txt": "token",
	})
	tests := []struct {
		name     string
		try      string
		path     string
		status   int
		body     string
		location string
		ctype    string
	}{
		{"file", "", "/about.html", 200, "about page", "", "text/html; charset=utf-8"},
		{"root index", "", "/", 200, "root index", "", "text/html; charset=utf-8"},
		{"second index name", "", "/docs/", 200, "docs index htm", "", ""},
		{"first index wins", "", "/both/", 200, "both html", "", ""},
		{"dir without slash redirects relative", "", "/docs", 301, "", "./docs/", ""},
		{"redirect keeps query", "", "/docs?x=1", 301, "", "./docs/?x=1", ""},
		{"dir without index is no listing", "", "/empty/", 404, "", "", ""},
		{"missing", "", "/nope.html", 404, "", "", ""},
		{"css type", "", "/style.css", 200, "body{}", "", "text/css; charset=utf-8"},
		{"json type", "", "/data.json", 200, `{"a":1}`, "", "application/json"},
		{"no extension is octet-stream", "", "/noext", 200, "raw", "", "application/octet-stream"},
		{"well-known served", "", "/.well-known/acme.txt", 200, "token", "", ""},
		{"literal fallback uri", "$uri /maintenance.html", "/anything", 200, "down for maintenance", "", ""},
		{"uri.html candidate", "$uri $uri.html =404", "/about", 200, "about page", "", ""},
		{"status fallback", "$uri =403", "/nothing", 403, "", "", ""},
		{"$uri ending in a slash checks a directory (nginx)", "$uri =404", "/docs/", 200, "docs index htm", "", ""},
		{"$uri without slash does not match dirs", "$uri =404", "/docs", 404, "", "", ""},
		{"@app without pool is 404", "$uri @app", "/dynamic", 404, "", "", ""},
		{"@app without pool serves files", "$uri @app", "/about.html", 200, "about page", "", ""},
		{"protocol-relative redirect impossible", "", "//evil.com/../docs", 301, "", "./docs/", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := map[string]string{"ROOT": root, "TRY_FILES": "$uri $uri/ =404"}
			if tt.try != "" {
				vars["TRY_FILES"] = tt.try
			}
			_, addr := startServer(t, envConfig(t, vars), Deps{})
			resp := rawRequest(t, addr, "GET "+tt.path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			if resp.status != tt.status {
				t.Fatalf("status %d, want %d (body %q)", resp.status, tt.status, resp.body)
			}
			if tt.body != "" && resp.body != tt.body {
				t.Errorf("body %q, want %q", resp.body, tt.body)
			}
			if got := resp.header.Get("Location"); got != tt.location {
				t.Errorf("Location %q, want %q", got, tt.location)
			}
			if tt.ctype != "" && resp.header.Get("Content-Type") != tt.ctype {
				t.Errorf("Content-Type %q, want %q", resp.header.Get("Content-Type"), tt.ctype)
			}
			if got := resp.header.Get("Server"); got != "onebox" {
				t.Errorf("Server %q, want onebox", got)
			}
		})
	}
}

// TestTraversalCanaries plants canary files outside the root, dotfiles
// inside it and an alias trap, then tries many encodings: no response may
// ever carry a canary.
func TestTraversalCanaries(t *testing.T) {
	base := t.TempDir()
	writeFiles(t, base, map[string]string{
		"secret.txt":            "CANARY-OUTSIDE",
		"www/index.html":        "welcome",
		"www/sub/file.txt":      "fine",
		"www/.env":              "CANARY-DOTENV",
		"www/.git/config":       "CANARY-DOTGIT",
		"www/sub/.hidden":       "CANARY-HIDDEN",
		"www/.well-known/ok":    "well-known",
		"www/.well-known/.key":  "CANARY-WKDOT",
		"app/app.py":            "CANARY-APP",
		"app/static/style.css":  "css",
		"app/static/.secret":    "CANARY-ALIASDOT",
		"www/%2e%2e/secret.txt": "literal", // a real file named "%2e%2e": served, as URLs are decoded once
	})
	www := filepath.Join(base, "www")
	for link, target := range map[string]string{
		"link-out":    filepath.Join(base, "secret.txt"),
		"linkdir-out": base,
		"rel-out":     "../secret.txt",
		"sub/link-up": "../../secret.txt",
	} {
		if err := os.Symlink(target, filepath.Join(www, link)); err != nil {
			t.Fatal(err)
		}
	}
	cfg := envConfig(t, map[string]string{
		"ROOT": www, "TRY_FILES": "$uri $uri/ =404",
		"ALIASES": "/static=" + filepath.Join(base, "app", "static"),
	})
	_, addr := startServer(t, cfg, Deps{})

	paths := []string{
		"/../secret.txt", "/../../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E/secret.txt",
		"/.%2e/secret.txt", "/%2e./secret.txt", "/%252e%252e/secret.txt", "/..%2fsecret.txt",
		"/..%2Fsecret.txt", "/%2e%2e%2fsecret.txt", "/..%5csecret.txt", "/..\\secret.txt",
		"/..%255csecret.txt", "/sub/../../secret.txt", "/sub/%2e%2e/%2e%2e/secret.txt",
		"/./../secret.txt", "//../secret.txt", "/..;/secret.txt", "/%c0%ae%c0%ae/secret.txt",
		"/%c0%af../secret.txt", "/..%c0%afsecret.txt", "/%u002e%u002e/secret.txt",
		"/secret.txt%00.html", "/index.html%00/../../secret.txt", "/link-out", "/link-out/",
		"/linkdir-out/secret.txt", "/linkdir-out/www/.env", "/rel-out", "/sub/link-up",
		"/.env", "/%2eenv", "/%2Eenv", "/.git/config", "/.git/", "/.git", "/%2egit/config",
		"/sub/../.env", "/sub/%2e%2e/.env", "/.well-known/../.env", "/.well-known/%2e%2e/.env",
		"/.well-known/.key", "/sub/.hidden", "/sub/%2ehidden", "/static../app.py",
		"/static/../app.py", "/static/..%2fapp.py", "/static%2f..%2fapp.py",
		"/static/%2e%2e/app.py", "/static/../../secret.txt", "/static/.secret",
		"/static..%2fapp.py", "/static/./../app.py", "/static//../app.py", "/static/%2e%2e%2fapp.py",
		"/static/..%5capp.py", "/sub/..%2f..%2fsecret.txt", "/..%2f..%2fsecret.txt",
		"/%2e%2e%5csecret.txt", "/sub%2f..%2f..%2fsecret.txt", "/.%2e/.%2e/secret.txt",
		"/static/%252e%252e/app.py", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
		"http://x/../secret.txt", "http://x/%2e%2e/secret.txt", "../secret.txt", "*",
	}
	if len(paths) < 40 {
		t.Fatalf("only %d encodings", len(paths))
	}
	for _, p := range paths {
		for _, method := range []string{"GET", "HEAD"} {
			resp := rawRequest(t, addr, method+" "+p+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			if strings.Contains(resp.body, "CANARY") {
				t.Errorf("%s %s leaked %q (status %d)", method, p, resp.body, resp.status)
			}
			if resp.status == 200 && method == "GET" && resp.body != "welcome" && resp.body != "fine" && resp.body != "css" && resp.body != "literal" {
				t.Errorf("%s %s: 200 with unexpected body %q", method, p, resp.body)
			}
		}
	}
	// The safe files around the canaries are served, so the refusals above
	// are not an accident of a broken server.
	for p, want := range map[string]string{"/sub/file.txt": "fine", "/static/style.css": "css", "/.well-known/ok": "well-known", "/sub/../index.html": "welcome"} {
		if resp := rawRequest(t, addr, "GET "+p+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); resp.status != 200 || resp.body != want {
			t.Errorf("GET %s: %d %q, want 200 %q", p, resp.status, resp.body, want)
		}
	}
}

func TestAliases(t *testing.T) {
	base := t.TempDir()
	writeFiles(t, base, map[string]string{
		"www/index.html":          "home",
		"app/static/css/site.css": "css",
		"app/static/index.html":   "static index",
		"app/app.py":              "CANARY-APP",
		"media/a.png":             "png",
	})
	for _, spec := range []string{
		"/static/=" + base + "/app/static/",
		"/static=" + base + "/app/static",
		"/static/=" + base + "/app/static",
		"/static=" + base + "/app/static/",
	} {
		t.Run(spec[:8], func(t *testing.T) {
			cfg := envConfig(t, map[string]string{"ROOT": base + "/www", "TRY_FILES": "$uri $uri/ =404", "ALIASES": spec + ",/media/=" + base + "/media/"})
			_, addr := startServer(t, cfg, Deps{})
			for _, c := range []struct {
				path   string
				status int
				body   string
			}{
				{"/static/css/site.css", 200, "css"},
				{"/static/", 200, "static index"},
				{"/static", 301, ""},
				{"/static../app.py", 404, ""},
				{"/static/../app.py", 404, ""},
				{"/staticx/app.py", 404, ""},
				{"/media/a.png", 200, "png"},
				{"/", 200, "home"},
			} {
				resp := rawRequest(t, addr, "GET "+c.path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
				if resp.status != c.status || (c.body != "" && resp.body != c.body) || strings.Contains(resp.body, "CANARY") {
					t.Errorf("GET %s: %d %q, want %d %q", c.path, resp.status, resp.body, c.status, c.body)
				}
			}
		})
	}
}

func TestConditionalAndRange(t *testing.T) {
	root := t.TempDir()
	big := strings.Repeat("0123456789", 40000) // 400 kB: served from disk, not memory
	writeFiles(t, root, map[string]string{"small.txt": "hello world", "big.bin": big})
	_, addr := startServer(t, envConfig(t, map[string]string{"ROOT": root, "GZIP": "false"}), Deps{})
	for _, name := range []string{"/small.txt", "/big.bin"} {
		resp, body := get(t, addr, "", name)
		if resp.StatusCode != 200 || resp.Header.Get("ETag") == "" || resp.Header.Get("Last-Modified") == "" {
			t.Fatalf("%s: %d etag %q last-modified %q", name, resp.StatusCode, resp.Header.Get("ETag"), resp.Header.Get("Last-Modified"))
		}
		if name == "/big.bin" && body != big {
			t.Fatalf("big body differs (%d bytes)", len(body))
		}
		etag := resp.Header.Get("ETag")
		r2, _ := get(t, addr, "", name, "If-None-Match", etag)
		if r2.StatusCode != http.StatusNotModified {
			t.Errorf("%s If-None-Match: %d, want 304", name, r2.StatusCode)
		}
		r3, _ := get(t, addr, "", name, "If-Modified-Since", resp.Header.Get("Last-Modified"))
		if r3.StatusCode != http.StatusNotModified {
			t.Errorf("%s If-Modified-Since: %d, want 304", name, r3.StatusCode)
		}
		r4, b4 := get(t, addr, "", name, "Range", "bytes=2-6")
		want := "llo w"
		if name == "/big.bin" {
			want = big[2:7]
		}
		if r4.StatusCode != http.StatusPartialContent || b4 != want {
			t.Errorf("%s Range: %d %q, want 206 %q", name, r4.StatusCode, b4, want)
		}
	}
}

func TestStaticMethods(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"a.txt": "a"})
	_, addr := startServer(t, envConfig(t, map[string]string{"ROOT": root}), Deps{})
	resp := rawRequest(t, addr, "POST /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	if resp.status != http.StatusMethodNotAllowed {
		t.Errorf("POST to a file: %d, want 405", resp.status)
	}
	resp = rawRequest(t, addr, "HEAD /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if resp.status != 200 || resp.header.Get("Content-Length") != "1" {
		t.Errorf("HEAD: %d length %q", resp.status, resp.header.Get("Content-Length"))
	}
}

// TestCacheSeesChanges: the open-file cache must notice a changed file
// once its validity has passed.
func TestCacheSeesChanges(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"f.txt": "one"})
	r, err := os.OpenRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c := newFileCache(r, false)
	if e := c.get("f.txt"); e.kind != kindFile || string(e.data) != "one" {
		t.Fatalf("first get: kind %d data %q", e.kind, e.data)
	}
	if err := os.WriteFile(filepath.Join(root, "f.txt"), []byte("three"), 0o644); err != nil {
		t.Fatal(err)
	}
	if e := c.get("f.txt"); string(e.data) != "one" {
		t.Fatalf("within validity: %q, want the cached one", e.data)
	}
	c.epoch = c.epoch.Add(-2 * cacheValid) // age every entry past its validity
	if e := c.get("f.txt"); string(e.data) != "three" {
		t.Fatalf("after validity: %q, want three", e.data)
	}
	if e := c.get("missing"); e.kind != kindMissing {
		t.Fatalf("missing: kind %d", e.kind)
	}
	writeFiles(t, root, map[string]string{"missing": "now here"})
	c.epoch = c.epoch.Add(-2 * cacheValid)
	if e := c.get("missing"); e.kind != kindFile {
		t.Fatalf("created file: kind %d, want file", e.kind)
	}
}
