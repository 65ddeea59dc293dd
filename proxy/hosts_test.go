package proxy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"onebox/config"
)

// TestHostSelection follows nginx's documented order: exact name, longest
// leading wildcard, longest trailing wildcard, first matching regex in
// order, then the default site.
func TestHostSelection(t *testing.T) {
	mk := func(name string, names ...string) *site {
		s := &site{name: name}
		for _, n := range names {
			sn, err := parseServerName(n)
			if err != nil {
				t.Fatalf("parse %q: %v", n, err)
			}
			s.names = append(s.names, sn)
		}
		return s
	}
	def := mk("default")
	exact := mk("exact", "www.example.com", "Example.ORG.")
	lead := mk("lead", "*.example.com")
	leadLong := mk("leadlong", "*.api.example.com")
	dotted := mk("dotted", ".example.net")
	trail := mk("trail", "www.example.*")
	trailLong := mk("traillong", "www.example.co.*")
	re1 := mk("re1", `~^shop\d+\.example\.io$`)
	re2 := mk("re2", `~^shop`, `~example\.io$`)
	tbl := newHostTable([]*site{def, exact, lead, leadLong, dotted, trail, trailLong, re1, re2}, def)

	tests := []struct{ host, want string }{
		{"www.example.com", "exact"},      // exact beats *.example.com and www.example.*
		{"WWW.Example.Com", "exact"},      // case-insensitive
		{"www.example.com:8080", "exact"}, // port ignored
		{"www.example.com.", "exact"},     // trailing dot ignored
		{"example.org", "exact"},          // configured with upper case and a dot
		{"a.example.com", "lead"},
		{"a.b.example.com", "lead"},
		{"x.api.example.com", "leadlong"}, // longest leading wildcard
		{"example.com", "default"},        // *.example.com does not match the bare name
		{"example.net", "dotted"},         // .example.net matches the name itself
		{"a.example.net", "dotted"},       // and its subdomains
		{"www.example.org", "trail"},      // trailing wildcard
		{"www.example.co.uk", "traillong"},
		{"shop12.example.io", "re1"}, // first regex in order
		{"shop.example.io", "re2"},
		{"shopping.test", "re2"},
		{"a.example.io", "re2"},
		{"unknown.test", "default"},
		{"", "default"}, // HTTP/1.0 without Host
		{"[::1]:8080", "default"},
		{"127.0.0.1", "default"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			if got := tbl.lookup(tt.host).name; got != tt.want {
				t.Errorf("lookup(%q) = %s, want %s", tt.host, got, tt.want)
			}
		})
	}
}

// TestNamedSitesEndToEnd: named sites, a named default, and HTTP/1.0
// without Host.
func TestNamedSitesEndToEnd(t *testing.T) {
	base := t.TempDir()
	writeFiles(t, base, map[string]string{"main/index.html": "main", "docs/index.html": "docs", "shop/index.html": "shop"})
	cfg := envConfig(t, map[string]string{"ROOT": base + "/main", "SERVER_NAMES": "example.com", "SITES": "docs,shop"})
	cfg.Sites = []Site{
		siteFromEnv(t, "docs", map[string]string{"SERVER_NAMES": "docs.example.com *.docs.example.com", "ROOT": base + "/docs"}),
		siteFromEnv(t, "shop", map[string]string{"SERVER_NAMES": "~^shop", "ROOT": base + "/shop", "DEFAULT": "true"}),
	}
	_, addr := startServer(t, cfg, Deps{})
	for host, want := range map[string]string{
		"example.com":         "main",
		"docs.example.com":    "docs",
		"v2.docs.example.com": "docs",
		"shop.example.com":    "shop",
		"other.test":          "shop", // the named default wins over the unnamed site
	} {
		if _, body := get(t, addr, host, "/"); body != want {
			t.Errorf("Host %s: %q, want %q", host, body, want)
		}
	}
	if resp := rawRequest(t, addr, "GET / HTTP/1.0\r\n\r\n"); resp.body != "shop" {
		t.Errorf("HTTP/1.0 without Host: %q, want the default site", resp.body)
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := func() Config {
		c := envConfig(t, map[string]string{"ROOT": dir})
		return c
	}
	tests := []struct {
		name  string
		edit  func(*Config)
		wants []string // Vars reported, in order
	}{
		{"defaults with a root", func(*Config) {}, nil},
		{"proxy only needs no root", func(c *Config) { c.Site.Root = "/does/not/exist"; c.Site.TryFiles = []string{"@app"} }, nil},
		{"missing root", func(c *Config) { c.Site.Root = "/does/not/exist" }, []string{"ROOT"}},
		{"root is a file", func(c *Config) { c.Site.Root = file }, []string{"ROOT"}},
		{"bad listen", func(c *Config) { c.Listen = "8080" }, []string{"LISTEN"}},
		{"bad regex", func(c *Config) { c.Site.ServerNames = []string{"~^(a"} }, []string{"SERVER_NAMES"}},
		{"bad wildcard", func(c *Config) { c.Site.ServerNames = []string{"www.*.com"} }, []string{"SERVER_NAMES"}},
		{"bad cidr", func(c *Config) { c.TrustedProxies = []string{"10.0.0.0/33", "10.1.1.1", "fd00::/8"} }, []string{"TRUSTED_PROXIES"}},
		{"bad alias syntax", func(c *Config) { c.Site.Aliases = []string{"static=/x", "/a/=" + dir, "/b/../c=" + dir, "/=" + dir} }, []string{"ALIASES", "ALIASES", "ALIASES"}},
		{"alias dir missing", func(c *Config) { c.Site.Aliases = []string{"/s/=/does/not/exist"} }, []string{"ALIASES"}},
		{"bad upstream", func(c *Config) { c.Site.Upstream = "https://x" }, []string{"UPSTREAM"}},
		{"upstream host:port is not a URL", func(c *Config) { c.Site.Upstream = "localhost:8000" }, []string{"UPSTREAM"}},
		{"good upstreams", func(c *Config) { c.Site.Upstream = "unix:/run/app.sock" }, nil},
		{"bad access log", func(c *Config) { c.AccessLog = "common" }, []string{"ACCESS_LOG"}},
		{"bad try_files", func(c *Config) { c.Site.TryFiles = []string{"@app", "$uri"} }, []string{"TRY_FILES"}},
		{"bad index", func(c *Config) { c.Site.Index = []string{"../x.html"} }, []string{"INDEX"}},
		{"tls half set", func(c *Config) { c.TLSCertFile = file }, []string{"TLS_KEY_FILE"}},
		{"tls unreadable", func(c *Config) { c.TLSCertFile, c.TLSKeyFile = file, file }, []string{"TLS_CERT_FILE"}},
		{"redirect without tls", func(c *Config) { c.TLSRedirect = true }, []string{"TLS_REDIRECT"}},
		{"negative timeout", func(c *Config) { c.ReadTimeout = -1 }, []string{"READ_TIMEOUT"}},
		{"two defaults and a bad named site", func(c *Config) {
			c.SiteNames = []string{"docs", "shop"}
			c.Sites = []Site{
				{Name: "docs", Root: "/nope", Index: []string{"index.html"}, TryFiles: []string{"$uri", "=404"}, Default: true},
				{Name: "shop", Root: dir, TryFiles: []string{"@app"}, Default: true, ServerNames: []string{"~("}},
			}
		}, []string{"SITE_DOCS_ROOT", "SITE_SHOP_SERVER_NAMES", "SITE_SHOP_DEFAULT"}},
		{"same name twice", func(c *Config) {
			c.Site.ServerNames = []string{"a.test"}
			c.Sites = []Site{{Name: "b", Root: dir, TryFiles: []string{"@app"}, ServerNames: []string{"A.test"}}}
		}, []string{"SITE_B_SERVER_NAMES"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			tt.edit(&c)
			ps := c.Validate()
			var got []string
			for _, p := range ps {
				got = append(got, p.Var)
			}
			if strings.Join(got, ",") != strings.Join(tt.wants, ",") {
				t.Errorf("problems %v, want vars %v", ps, tt.wants)
			}
			if len(ps) > 0 {
				if _, err := New(c, Deps{}); !errors.Is(err, config.ErrInvalid) {
					t.Errorf("New: %v, want an ErrInvalid", err)
				}
				for _, p := range ps {
					if p.Want == "" {
						t.Errorf("problem %s says nothing about what is wanted", p.Var)
					}
				}
			}
		})
	}
}
