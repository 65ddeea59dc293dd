package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// acmeManager gets, serves and renews the certificates of PROXY_ACME_DOMAINS
// with autocert. autocert answers the challenges (HTTP-01 on the plain
// listener, TLS-ALPN-01 on the TLS listener), keeps the account key and the
// certificates in PROXY_ACME_DIR and renews each certificate in the
// background once a third of its lifetime is left. Around it, this type
// orders every name at start instead of at the first handshake, retries
// with backoff and logs why, refuses handshakes for names still without a
// certificate at once, and keeps the per-name state for /status and
// /metrics.
type acmeManager struct {
	m     *autocert.Manager
	http  http.Handler // autocert's HTTP-01 responder
	log   zerolog.Logger
	retry time.Duration // wait before the first retry; tripled each time up to maxRetry

	names map[string]*acmeName // fixed at construction; values guarded by mu
	order []string             // names in PROXY_ACME_DOMAINS order
	mu    sync.Mutex
	once  sync.Once
}

// acmeName is one name's state.
type acmeName struct {
	state     string // acmeWaiting, acmeObtaining, acmeValid or acmeFailed
	leaf      *x509.Certificate
	attempts  int
	lastError string
	nextRetry time.Time
	stored    int // certificates written to PROXY_ACME_DIR for this name
}

const (
	acmeWaiting   = "waiting"
	acmeObtaining = "obtaining"
	acmeValid     = "valid"
	acmeFailed    = "failed"
)

// autocert keeps a failed order's error for a minute and hands it back to
// every caller meanwhile; a retry sooner than that would not reach the CA.
const (
	firstRetry = time.Minute + 5*time.Second
	maxRetry   = 2 * time.Hour
)

// errACMEPending refuses a handshake for an ACME name whose certificate
// has not come yet; net/http logs it at debug level only.
var errACMEPending = errors.New("no certificate yet for this name: the ACME order is under way")

func newACME(c ACMEConfig, log zerolog.Logger, reg prometheus.Registerer) (*acmeManager, error) {
	hc := &http.Client{Timeout: time.Minute}
	if c.CARoots != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		b, err := os.ReadFile(c.CARoots)
		if err != nil {
			return nil, fmt.Errorf("read acme ca roots: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("read acme ca roots %q: no PEM certificate in it", c.CARoots)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		hc.Transport = tr
	}
	a := &acmeManager{log: log, retry: firstRetry, names: map[string]*acmeName{}}
	for _, d := range c.Domains {
		n := strings.TrimSuffix(strings.ToLower(d), ".")
		a.names[n] = &acmeName{state: acmeWaiting}
		a.order = append(a.order, n)
	}
	a.m = &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      acmeCache{autocert.DirCache(c.Dir), a},
		HostPolicy: a.hostPolicy,
		Email:      c.Email,
		Client:     &acme.Client{DirectoryURL: c.CA, HTTPClient: hc, UserAgent: "onebox"},
	}
	// HTTPHandler also tells autocert that HTTP-01 may be used, after
	// TLS-ALPN-01 (its order of preference).
	a.http = a.m.HTTPHandler(http.NotFoundHandler())
	if reg != nil {
		if err := reg.Register(a); err != nil {
			return nil, fmt.Errorf("register acme metrics: %w", err)
		}
	}
	return a, nil
}

// hostPolicy lets autocert order and answer challenges for our names only.
func (a *acmeManager) hostPolicy(_ context.Context, host string) error {
	if a.names[normalizeHost(host)] == nil {
		return fmt.Errorf("acme: %q is not in PROXY_ACME_DOMAINS", host)
	}
	return nil
}

// start orders (or loads from PROXY_ACME_DIR) every name in the
// background, once; plain HTTP is served meanwhile.
func (a *acmeManager) start(ctx context.Context) {
	a.once.Do(func() {
		for _, n := range a.order {
			go a.obtain(ctx, n)
		}
	})
}

// obtain gets name's first certificate, retrying with backoff; autocert
// renews it from then on. GetCertificate takes no context (autocert bounds
// an order by 5 minutes), so a stop does not wait for an order under way.
func (a *acmeManager) obtain(ctx context.Context, name string) {
	wait := a.retry
	for attempt := 1; ; attempt++ {
		a.mu.Lock()
		n := a.names[name]
		n.state, n.attempts = acmeObtaining, attempt
		stored := n.stored
		a.mu.Unlock()
		start := time.Now()
		cert, err := a.m.GetCertificate(serverHello(name))
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			a.obtained(name, cert, stored, time.Since(start))
			return
		}
		a.failed(name, err, attempt, wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(wait*3, maxRetry)
	}
}

func (a *acmeManager) obtained(name string, cert *tls.Certificate, storedBefore int, took time.Duration) {
	a.mu.Lock()
	n := a.names[name]
	n.state, n.lastError, n.nextRetry = acmeValid, "", time.Time{}
	if n.leaf == nil || cert.Leaf != nil && n.leaf.NotAfter.Before(cert.Leaf.NotAfter) {
		n.leaf = cert.Leaf
	}
	issued := n.stored > storedBefore
	leaf := n.leaf
	a.mu.Unlock()
	ev := a.log.Info().Str("name", name).Dur("took", took)
	if leaf != nil {
		ev = ev.Time("not_after", leaf.NotAfter).Str("issuer", leaf.Issuer.CommonName)
	}
	if issued {
		ev.Msg("acme certificate issued")
	} else {
		ev.Msg("acme certificate loaded from PROXY_ACME_DIR")
	}
}

func (a *acmeManager) failed(name string, err error, attempt int, wait time.Duration) {
	a.mu.Lock()
	n := a.names[name]
	n.state, n.lastError, n.nextRetry = acmeFailed, err.Error(), time.Now().Add(wait)
	a.mu.Unlock()
	ev := a.log.Warn().Err(err).Str("name", name).Int("attempt", attempt).Dur("retry_in", wait)
	var ae *acme.Error
	if errors.As(err, &ae) {
		ev = ev.Str("ca_problem", ae.ProblemType).Str("ca_detail", ae.Detail)
	}
	ev.Msg("acme certificate not obtained; will retry")
}

// stored is called for every entry autocert writes: a certificate of one
// of our names is the first issuance or a renewal.
func (a *acmeManager) stored(key string, data []byte) {
	n := a.names[key]
	if n == nil {
		return // the account key, a challenge token, an RSA variant
	}
	leaf := parseLeaf(data)
	a.mu.Lock()
	n.stored++
	renewed := n.state == acmeValid && leaf != nil && n.leaf != nil && leaf.SerialNumber.Cmp(n.leaf.SerialNumber) != 0
	if leaf != nil {
		n.leaf = leaf
	}
	a.mu.Unlock()
	if renewed {
		a.log.Info().Str("name", key).Time("not_after", leaf.NotAfter).Str("serial", leaf.SerialNumber.Text(16)).Msg("acme certificate renewed")
	}
}

// parseLeaf returns the first certificate of autocert's cache entry (the
// private key, then the chain, in PEM), or nil.
func parseLeaf(data []byte) *x509.Certificate {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil
		}
		if b.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil
			}
			return c
		}
	}
}

// acmeCache is autocert's directory cache, telling the manager what it
// stores.
type acmeCache struct {
	autocert.DirCache
	a *acmeManager
}

// Put stores data under key, then reports it.
func (c acmeCache) Put(ctx context.Context, key string, data []byte) error {
	if err := c.DirCache.Put(ctx, key, data); err != nil {
		return fmt.Errorf("store %q in PROXY_ACME_DIR: %w", key, err)
	}
	c.a.stored(key, data)
	return nil
}

// serverHello is a handshake of a modern client for name: autocert then
// serves (and orders) the ECDSA certificate, which every TLS 1.2 client of
// the last decade accepts, and never orders a second, RSA one.
func serverHello(name string) *tls.ClientHelloInfo {
	return &tls.ClientHelloInfo{
		ServerName:       name,
		SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
		SupportedCurves:  []tls.CurveID{tls.CurveP256},
		CipherSuites:     []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
	}
}

// certificate answers a handshake for an ACME name: the CA's TLS-ALPN-01
// probe, or the name's certificate. It returns (nil, nil) for other names
// and errACMEPending while the name has no certificate yet.
func (a *acmeManager) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := normalizeHost(hello.ServerName)
	a.mu.Lock()
	n := a.names[name]
	valid := n != nil && n.state == acmeValid
	a.mu.Unlock()
	switch {
	case n == nil:
		return nil, nil
	case len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acme.ALPNProto:
		a.log.Info().Str("name", name).Msg("acme tls-alpn-01 challenge answered")
		return a.m.GetCertificate(hello)
	case !valid:
		return nil, errACMEPending
	}
	return a.m.GetCertificate(serverHello(name))
}

// valid reports whether a plain-HTTP Host is an ACME name holding a
// certificate, so redirecting it to HTTPS will work.
func (a *acmeManager) valid(host string) (string, bool) {
	name := normalizeHost(host)
	a.mu.Lock()
	defer a.mu.Unlock()
	n := a.names[name]
	return name, n != nil && n.state == acmeValid
}

// httpHandler wraps the plain listener's handler: HTTP-01 challenges for
// our names are answered, and the other requests for a name that has its
// certificate are redirected to HTTPS on port 443 (where the CA reached
// it: behind a port mapping such as 443 → 8443 the listener's own port
// would be wrong). Names still waiting are served in plain HTTP.
func (a *acmeManager) httpHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, valid := a.valid(r.Host)
		if a.names[name] == nil {
			next.ServeHTTP(w, r)
			return
		}
		if strings.HasPrefix(r.URL.Path, acmeChallenge) {
			a.log.Info().Str("name", name).Str("path", r.URL.Path).Msg("acme http-01 challenge answered")
			a.http.ServeHTTP(w, r)
			return
		}
		if !valid {
			next.ServeHTTP(w, r)
			return
		}
		w.Header()["Server"] = hdrServer
		w.Header()["Location"] = []string{"https://" + name + r.URL.RequestURI()}
		writeStatusPage(w, r, http.StatusPermanentRedirect)
	})
}

// acmeStatus is one name's line in /status.
type acmeStatus struct {
	Name      string     `json:"name"`
	State     string     `json:"state"`
	NotAfter  *time.Time `json:"not_after,omitempty"`
	Issuer    string     `json:"issuer,omitempty"`
	Serial    string     `json:"serial,omitempty"`
	Attempts  int        `json:"attempts,omitempty"`
	LastError string     `json:"last_error,omitempty"`
	NextRetry *time.Time `json:"next_retry,omitempty"`
}

func (a *acmeManager) status() []acmeStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]acmeStatus, 0, len(a.order))
	for _, name := range a.order {
		n := a.names[name]
		st := acmeStatus{Name: name, State: n.state, Attempts: n.attempts, LastError: n.lastError}
		if n.leaf != nil {
			na := n.leaf.NotAfter
			st.NotAfter, st.Issuer, st.Serial = &na, n.leaf.Issuer.CommonName, n.leaf.SerialNumber.Text(16)
		}
		if !n.nextRetry.IsZero() {
			nr := n.nextRetry
			st.NextRetry = &nr
		}
		out = append(out, st)
	}
	return out
}

var acmeExpiryDesc = prometheus.NewDesc("onebox_proxy_acme_certificate_expiry_seconds",
	"Seconds until the ACME certificate of a name expires; absent while the name has none.", []string{"name"}, nil)

// Describe implements prometheus.Collector.
func (a *acmeManager) Describe(ch chan<- *prometheus.Desc) { ch <- acmeExpiryDesc }

// Collect implements prometheus.Collector: the expiry is computed at each
// scrape, so it counts down between renewals.
func (a *acmeManager) Collect(ch chan<- prometheus.Metric) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, name := range a.order {
		if l := a.names[name].leaf; l != nil {
			ch <- prometheus.MustNewConstMetric(acmeExpiryDesc, prometheus.GaugeValue, time.Until(l.NotAfter).Seconds(), name)
		}
	}
}

// setupTLS loads the certificate files and makes the ACME manager, for
// what is configured.
func (s *Server) setupTLS(deps Deps) error {
	if s.tlsEnabled() {
		if err := s.loadCert(); err != nil {
			return err
		}
		_, s.tlsPort, _ = net.SplitHostPort(s.cfg.TLSListen)
	}
	if !s.cfg.ACME.Enabled() {
		return nil
	}
	a, err := newACME(s.cfg.ACME, s.log, deps.Metrics)
	if err != nil {
		return err
	}
	s.acme = a
	_, s.tlsPort, _ = net.SplitHostPort(s.cfg.TLSListen)
	return nil
}

// tlsListening reports whether the TLS listener is opened: certificate
// files, ACME names, or both.
func (s *Server) tlsListening() bool { return s.tlsEnabled() || s.acme != nil }

// getCertificate serves ACME names their ACME certificate and every other
// name (and a client without SNI) the file certificate; an ACME name still
// waiting for its certificate gets the file certificate if there is one.
func (s *Server) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if s.acme != nil {
		c, err := s.acme.certificate(hello)
		if c != nil || (err != nil && !errors.Is(err, errACMEPending)) {
			return c, err
		}
		if fc := s.cert.Load(); fc != nil {
			return fc, nil
		}
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("no certificate for %q: not in PROXY_ACME_DOMAINS and no PROXY_TLS_CERT_FILE", hello.ServerName)
	}
	return s.cert.Load(), nil
}

// tlsConfig is the TLS listener's configuration; acme-tls/1 is offered
// for the CA's TLS-ALPN-01 probes.
func (s *Server) tlsConfig() *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.getCertificate}
	if s.acme != nil {
		c.NextProtos = []string{"h2", "http/1.1", acme.ALPNProto}
	}
	return c
}
