package proxy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateACME(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := func() Config {
		return envConfig(t, map[string]string{"ROOT": dir, "ACME_DOMAINS": "www.example.com", "ACME_DIR": filepath.Join(dir, "acme")})
	}
	tests := []struct {
		name  string
		edit  func(*Config)
		wants []string // Vars reported, in order
	}{
		{"defaults with a name", func(*Config) {}, nil},
		{"redirect with acme only", func(c *Config) { c.TLSRedirect = true }, nil},
		{"names a CA cannot prove", func(c *Config) {
			c.ACME.Domains = []string{"*.example.com", "localhost", "10.0.0.1", "a..b", "-a.example.com", "www.example.com:443", "ok.example.com."}
		}, []string{"ACME_DOMAINS", "ACME_DOMAINS", "ACME_DOMAINS", "ACME_DOMAINS", "ACME_DOMAINS", "ACME_DOMAINS"}},
		{"a name twice", func(c *Config) { c.ACME.Domains = []string{"a.example.com", "A.example.com"} }, []string{"ACME_DOMAINS"}},
		{"bad email, CA, roots and dir", func(c *Config) {
			c.ACME.Email, c.ACME.CA, c.ACME.CARoots, c.ACME.Dir = "ops", "ftp://ca", file, file
		}, []string{"ACME_EMAIL", "ACME_CA", "ACME_CA_ROOTS", "ACME_DIR"}},
		{"dir without a parent", func(c *Config) { c.ACME.Dir = "/does/not/exist/acme" }, []string{"ACME_DIR"}},
		{"relative dir", func(c *Config) { c.ACME.Dir = "acme" }, []string{"ACME_DIR"}},
		{"bad tls listen", func(c *Config) { c.TLSListen = "8443" }, []string{"TLS_LISTEN"}},
		{"a name no site answers", func(c *Config) {
			c.Site.ServerNames = []string{"example.com"}
			c.ACME.Domains = []string{"example.com", "www.example.com"}
		}, []string{"ACME_DOMAINS"}},
		{"names sites answer by every kind of server name", func(c *Config) {
			c.Site.ServerNames = []string{".example.com", "*.example.org", "www.example.*", "~^app\\d+\\.example\\.net$"}
			c.ACME.Domains = []string{"example.com", "a.example.com", "b.example.org", "www.example.io", "app7.example.net"}
		}, nil},
		{"a named default site without names answers all", func(c *Config) {
			c.Site.ServerNames = []string{"example.com"}
			c.SiteNames = []string{"any"}
			c.Sites = []Site{{Name: "any", Root: dir, TryFiles: []string{"@app"}, Default: true}}
			c.ACME.Domains = []string{"other.example.net"}
		}, nil},
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
		})
	}
}
