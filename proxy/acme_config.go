package proxy

import (
	"crypto/x509"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"onebox/config"
)

// ACMEConfig is automatic HTTPS, prefix PROXY_ACME_: certificates for
// Domains from an ACME CA (Let's Encrypt by default), obtained and renewed
// in the background and kept in Dir.
type ACMEConfig struct {
	Domains []string `env:"DOMAINS" envSeparator:" " help:"names to get certificates for from an ACME CA (Let's Encrypt), space-separated; each must be answered by a site; turns on the TLS listener"`
	Email   string   `env:"EMAIL" help:"the ACME account's contact address: the CA writes there about expiring or revoked certificates"`
	CA      string   `env:"CA" envDefault:"https://acme-v02.api.letsencrypt.org/directory" help:"the CA's ACME directory URL; Let's Encrypt's staging CA is https://acme-staging-v02.api.letsencrypt.org/directory"`
	CARoots string   `env:"CA_ROOTS" help:"PEM file of extra roots to trust when talking to the CA (a private or test CA)"`
	Dir     string   `env:"DIR" envDefault:"/var/lib/onebox/acme" help:"where the ACME account key and the certificates are kept (a volume: a restart reuses them, no new order)"`
}

// Enabled reports whether certificates come from an ACME CA.
func (c ACMEConfig) Enabled() bool { return len(c.Domains) > 0 }

// validateACME checks the ACME settings and that some site answers every
// ACME name; Problem.Var is relative to PROXY_. checkAddr is Validate's
// listen-address check, for PROXY_TLS_LISTEN when the certificate files
// have not checked it already.
func (c Config) validateACME(checkListen bool, checkAddr func(name, v string)) config.Problems {
	var ps config.Problems
	a := c.ACME
	if !a.Enabled() {
		return nil
	}
	if checkListen {
		checkAddr("TLS_LISTEN", c.TLSListen)
	}
	seen := map[string]bool{}
	for _, d := range a.Domains {
		n := strings.TrimSuffix(strings.ToLower(d), ".")
		switch {
		case !isACMEName(n):
			ps.Add("ACME_DOMAINS", d, "DNS names such as www.example.com, without wildcards, ports or IP addresses (HTTP-01 and TLS-ALPN-01 cannot prove those)")
		case seen[n]:
			ps.Add("ACME_DOMAINS", d, "each name once")
		case !c.answers(n):
			ps.Add("ACME_DOMAINS", d, "a name some site answers: add it to PROXY_SERVER_NAMES or to a PROXY_SITE_<NAME>_SERVER_NAMES")
		}
		seen[n] = true
	}
	if a.Email != "" && (!strings.Contains(a.Email, "@") || strings.ContainsAny(a.Email, " ,")) {
		ps.Add("ACME_EMAIL", a.Email, "one e-mail address such as ops@example.com")
	}
	if u, err := url.Parse(a.CA); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		ps.Add("ACME_CA", a.CA, "the CA's directory URL, such as https://acme-v02.api.letsencrypt.org/directory")
	}
	if a.CARoots != "" {
		b, err := os.ReadFile(a.CARoots)
		if err != nil || !x509.NewCertPool().AppendCertsFromPEM(b) {
			ps.Add("ACME_CA_ROOTS", a.CARoots, "a readable PEM file with at least one certificate")
		}
	}
	if fi, err := os.Stat(a.Dir); err == nil && !fi.IsDir() {
		ps.Add("ACME_DIR", a.Dir, "a directory (a volume), not a file")
	} else if err != nil {
		if pi, perr := os.Stat(filepath.Dir(a.Dir)); perr != nil || !pi.IsDir() || !filepath.IsAbs(a.Dir) {
			ps.Add("ACME_DIR", a.Dir, "an absolute path to a directory, or one whose parent exists (onebox creates it)")
		}
	}
	return ps
}

// isACMEName reports whether n (lower case) is a DNS name a CA can issue
// for by HTTP-01 or TLS-ALPN-01.
func isACMEName(n string) bool {
	if !strings.Contains(n, ".") || len(n) > 253 || net.ParseIP(n) != nil {
		return false
	}
	for _, label := range strings.Split(n, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// answers reports whether some site claims host by its server names, or
// the default site claims every name (it lists none). A name that only the
// fallback to a default site with other names would answer is not counted:
// that is nearly always a forgotten PROXY_SERVER_NAMES.
func (c Config) answers(host string) bool {
	all := append([]Site{c.Site}, c.Sites...)
	def := 0
	for i, s := range c.Sites {
		if s.Default {
			def = i + 1
		}
	}
	if len(all[def].ServerNames) == 0 {
		return true
	}
	for _, s := range all {
		for _, n := range s.ServerNames {
			if sn, err := parseServerName(n); err == nil && sn.matches(host) {
				return true
			}
		}
	}
	return false
}

// matches reports whether a normalised host matches the name, with the
// rules of hostTable.lookup.
func (n serverName) matches(h string) bool {
	switch n.kind {
	case nameExact:
		return h == n.text
	case nameDotted:
		return h == n.text[1:] || (len(h) > len(n.text) && strings.HasSuffix(h, n.text))
	case nameLeading:
		return len(h) > len(n.text) && strings.HasSuffix(h, n.text)
	case nameTrailing:
		return len(h) > len(n.text) && strings.HasPrefix(h, n.text)
	case nameRegex:
		return n.re.MatchString(h)
	}
	return false
}
