package proxy

import (
	"crypto/tls"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"onebox/config"
)

// Validate reports every problem in the configuration at once, the named
// sites included. Each Problem.Var is relative to the PROXY_ prefix
// ("ROOT", "SITE_DOCS_ROOT").
func (c Config) Validate() config.Problems {
	var ps config.Problems
	checkAddr := func(name, v string) {
		if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
			ps.Add(name, v, "a listen address such as :8080 or 127.0.0.1:8080")
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			ps.Add(name, v, "a port between 0 and 65535")
		}
	}
	checkAddr("LISTEN", c.Listen)
	tlsOn := c.TLSCertFile != "" || c.TLSKeyFile != ""
	switch {
	case c.TLSCertFile != "" && c.TLSKeyFile == "":
		ps.Add("TLS_KEY_FILE", "", "a PEM key file, because PROXY_TLS_CERT_FILE is set")
	case c.TLSCertFile == "" && c.TLSKeyFile != "":
		ps.Add("TLS_CERT_FILE", "", "a PEM certificate file, because PROXY_TLS_KEY_FILE is set")
	case tlsOn:
		checkAddr("TLS_LISTEN", c.TLSListen)
		if _, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile); err != nil {
			ps.Add("TLS_CERT_FILE", c.TLSCertFile, "a readable PEM certificate matching PROXY_TLS_KEY_FILE ("+err.Error()+")")
		}
	}
	if c.ACME.Enabled() {
		ps = append(ps, c.validateACME(!tlsOn, checkAddr)...)
	}
	if c.TLSRedirect && !tlsOn && !c.ACME.Enabled() {
		ps.Add("TLS_REDIRECT", "true", "false unless PROXY_TLS_CERT_FILE and PROXY_TLS_KEY_FILE, or PROXY_ACME_DOMAINS, are set")
	}
	ps = append(ps, c.validateBuffering()...)
	if c.ConnectTimeout <= 0 {
		ps.Add("CONNECT_TIMEOUT", c.ConnectTimeout.String(), "a positive duration such as 5s")
	}
	if c.ReadTimeout < 0 {
		ps.Add("READ_TIMEOUT", c.ReadTimeout.String(), "a duration of 0 (no limit) or more")
	}
	if c.SendTimeout < 0 {
		ps.Add("SEND_TIMEOUT", c.SendTimeout.String(), "a duration of 0 (no limit) or more")
	}
	for _, p := range c.TrustedProxies {
		if _, err := parsePrefix(p); err != nil {
			ps.Add("TRUSTED_PROXIES", p, "CIDRs or addresses such as 10.0.0.0/8, 172.16.0.1")
		}
	}
	switch c.AccessLog {
	case "combined", "json", "off":
	default:
		ps.Add("ACCESS_LOG", c.AccessLog, "combined, json or off")
	}
	for _, p := range c.AccessLogSkip {
		if !strings.HasPrefix(p, "/") {
			ps.Add("ACCESS_LOG_SKIP", p, "paths starting with /")
		}
	}

	return append(ps, c.validateSites()...)
}

// validateSites checks the sites: the named ones must match PROXY_SITES,
// names must be unique, at most one may be the default, and no exact name
// may be claimed twice.
func (c Config) validateSites() config.Problems {
	var ps config.Problems
	seen := map[string]bool{}
	for _, n := range c.SiteNames {
		ln := strings.ToLower(strings.TrimSpace(n))
		if !ValidSiteName(n) {
			ps.Add("SITES", n, "site names of letters and digits only, such as docs,shop (a name becomes part of PROXY_SITE_<NAME>_* variable names)")
		} else if seen[ln] {
			ps.Add("SITES", n, "each site name once")
		}
		seen[ln] = true
	}
	var defaults []string
	owner := map[string]string{}
	all := append([]Site{c.Site}, c.Sites...)
	for i, s := range all {
		prefix := ""
		if i > 0 {
			prefix = "SITE_" + strings.ToUpper(s.Name) + "_"
			if s.Default {
				defaults = append(defaults, s.Name)
			}
		} else if s.Default {
			ps.Add("DEFAULT", "true", "only named sites (PROXY_SITE_<NAME>_DEFAULT) choose the default; the unnamed site is the default otherwise")
		}
		ps = append(ps, s.validate(prefix)...)
		for _, n := range s.ServerNames {
			n = strings.ToLower(n)
			if n == "" || strings.HasPrefix(n, "~") {
				continue
			}
			if o, ok := owner[n]; ok {
				ps.Add(prefix+"SERVER_NAMES", n, "a name no other site has (already used by "+o+")")
			}
			owner[n] = siteLabel(s.Name)
		}
	}
	if len(defaults) > 1 {
		for _, n := range defaults[1:] {
			ps.Add("SITE_"+strings.ToUpper(n)+"_DEFAULT", "true", "one default site only (site "+defaults[0]+" is already the default)")
		}
	}
	return ps
}

// siteNameRE is the rule for the names in PROXY_SITES. No underscore: a
// site "a_server" would make PROXY_SITE_A_SERVER_NAMES ambiguous with the
// SERVER_NAMES of a site "a".
var siteNameRE = regexp.MustCompile(`^[A-Za-z0-9]+$`)

// ValidSiteName reports whether name (surrounding spaces ignored) may be a
// site name in PROXY_SITES: letters and digits, in any case. Validate says
// why not.
func ValidSiteName(name string) bool { return siteNameRE.MatchString(strings.TrimSpace(name)) }

func siteLabel(name string) string {
	if name == "" {
		return "default"
	}
	return name
}

// validate checks one site; prefix is "" for the default site, else
// "SITE_<NAME>_".
func (s Site) validate(prefix string) config.Problems {
	var ps config.Problems
	for _, n := range s.ServerNames {
		if _, err := parseServerName(n); err != nil {
			ps.Add(prefix+"SERVER_NAMES", n, err.Error())
		}
	}
	if s.needsRoot() {
		if fi, err := os.Stat(s.Root); err != nil || !fi.IsDir() {
			ps.Add(prefix+"ROOT", s.Root, "an existing directory (PROXY_TRY_FILES serves files from it; set it to @app alone to proxy everything)")
		}
	}
	for _, ix := range s.Index {
		if ix == "" || strings.ContainsAny(ix, "/\\\x00") || strings.HasPrefix(ix, ".") {
			ps.Add(prefix+"INDEX", ix, "file names without slashes, not starting with a dot")
		}
	}
	if _, err := parseTryFiles(s.TryFiles); err != nil {
		ps.Add(prefix+"TRY_FILES", strings.Join(s.TryFiles, " "), err.Error())
	}
	if s.Upstream != "" {
		if _, _, err := parseUpstream(s.Upstream); err != nil || !(strings.HasPrefix(s.Upstream, "unix:") || strings.HasPrefix(s.Upstream, "http://")) {
			ps.Add(prefix+"UPSTREAM", s.Upstream, "http://host:port or unix:/path/to.sock")
		}
	}
	for _, a := range s.Aliases {
		al, err := parseAlias(a)
		if err != nil {
			ps.Add(prefix+"ALIASES", a, err.Error())
			continue
		}
		if fi, err := os.Stat(al.dir); err != nil || !fi.IsDir() {
			ps.Add(prefix+"ALIASES", a, "an existing directory after the = sign")
		}
	}
	return ps
}

// needsRoot reports whether the site's try_files reads files from its root.
func (s Site) needsRoot() bool {
	tf, err := parseTryFiles(s.TryFiles)
	if err != nil {
		return false
	}
	return len(tf.files) > 0 || tf.fallbackURI != ""
}

// parsePrefix accepts a CIDR or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// parseUpstream turns PROXY_UPSTREAM or APP_BIND into a network and address:
// "unix:/path", "http://host:port" or (APP_BIND only) "host:port".
func parseUpstream(s string) (network, addr string, err error) {
	switch {
	case strings.HasPrefix(s, "unix:"):
		p := strings.TrimPrefix(s, "unix:")
		if !strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "@") && !strings.HasPrefix(p, ".") {
			return "", "", errBadUpstream
		}
		return "unix", p, nil
	case strings.Contains(s, "://"):
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "http" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return "", "", errBadUpstream
		}
		host := u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), "80")
		}
		return "tcp", host, nil
	default:
		if _, _, err := net.SplitHostPort(s); err != nil {
			return "", "", errBadUpstream
		}
		return "tcp", s, nil
	}
}

// validateBuffering checks the body limit, the buffer sizes, the temp directory and the
// client timeouts.
func (c Config) validateBuffering() config.Problems {
	var ps config.Problems
	if c.ClientMaxBodySize < 0 {
		ps.Add("CLIENT_MAX_BODY_SIZE", c.ClientMaxBodySize.String(), "a size of 0 or more")
	}
	for _, b := range []struct {
		name string
		v    config.ByteSize
	}{{"CLIENT_BODY_BUFFER_SIZE", c.ClientBodyBufferSize}, {"BUFFER_SIZE", c.BufferSize}} {
		if b.v < 1<<10 || b.v > 64<<20 {
			ps.Add(b.name, b.v.String(), "a size from 1k to 64m")
		}
	}
	if c.MaxTempFileSize < 0 {
		ps.Add("MAX_TEMP_FILE_SIZE", c.MaxTempFileSize.String(), "a size of 0 (memory only) or more")
	}
	if !strings.HasPrefix(c.TempDir, "/") {
		ps.Add("TEMP_DIR", c.TempDir, "an absolute directory path such as /tmp")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"CLIENT_HEADER_TIMEOUT", c.ClientHeaderTimeout}, {"CLIENT_BODY_TIMEOUT", c.ClientBodyTimeout},
		{"CLIENT_SEND_TIMEOUT", c.ClientSendTimeout}, {"KEEPALIVE_TIMEOUT", c.KeepaliveTimeout}} {
		if d.v <= 0 {
			ps.Add(d.name, d.v.String(), "a positive duration such as 60s")
		}
	}
	return ps
}
