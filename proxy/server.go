package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"onebox/proxy/internal/h1"
)

// Deps are the proxy's collaborators, given by the composer.
type Deps struct {
	// Log carries component=proxy.
	Log zerolog.Logger
	// Metrics registers the proxy's collectors; nil registers nothing.
	Metrics prometheus.Registerer
	// AppBind is the worker pool's address (APP_BIND: "unix:/path" or
	// "host:port"), or "" when no pool runs: then @app of a site without
	// its own PROXY_UPSTREAM answers 404.
	AppBind string
	// AppMaxConns, when set, bounds the connections open to the pool
	// (AppBind) to what it returns now; <= 0 means no bound
	// (APP_WORKER_CONNECTIONS, appserver.Master.MaxConns). Leave it nil
	// without a bound: when set, every request to the pool takes the
	// bound's lock.
	AppMaxConns func() int
	// DrainTimeout bounds the wait for in-flight requests once Run's
	// context is cancelled (ONEBOX_SHUTDOWN_TIMEOUT); 0 means 10s.
	DrainTimeout time.Duration
	// AccessLog receives access-log lines; nil means os.Stdout.
	AccessLog io.Writer
}

// Server is the proxy component: listeners, virtual hosts, static files and
// the reverse proxy.
type Server struct {
	cfg   Config
	log   zerolog.Logger
	drain time.Duration

	sites     []*site
	hosts     *hostTable
	trusted   []netip.Prefix
	maxBody   int64
	access    *accessLog
	metrics   *metrics
	upstreams []*h1.Upstream
	reqSpool  *spooler // request bodies (PROXY_CLIENT_BODY_BUFFER_SIZE)
	respSpool *spooler // response bodies (PROXY_BUFFER_SIZE)

	cert      atomic.Pointer[tls.Certificate]
	acme      *acmeManager // nil unless PROXY_ACME_DOMAINS is set
	tlsPort   string
	startedAt atomic.Int64  // unix nanoseconds when Run opened the listeners
	ready     chan struct{} // closed once the listeners are bound
	readyOnce sync.Once

	mu      sync.Mutex
	servers []httpServer

	lameDuck atomic.Bool // set by LameDuck: every response closes its connection
}

// httpServer is what Serve drains at the end: net/http's server for TLS
// and h1.Server for plain HTTP.
type httpServer interface {
	Shutdown(context.Context) error
	Close() error
}

// site is one virtual host, compiled from a Site.
type site struct {
	name    string // "default" for the unnamed site
	names   []serverName
	root    *fileRoot // nil when try_files reads no files
	index   []string
	try     tryFiles
	aliases []siteAlias
	up      *h1.Upstream // nil: @app answers 404
	// reqBuffering and buffering: PROXY_REQUEST_BUFFERING, PROXY_BUFFERING.
	reqBuffering, buffering bool
	m                       *siteMetrics
}

type siteAlias struct {
	alias
	fr *fileRoot
}

// New compiles the configuration; it opens no socket (Run does).
func New(cfg Config, deps Deps) (*Server, error) {
	if ps := cfg.Validate(); len(ps) > 0 {
		return nil, fmt.Errorf("invalid proxy configuration: %w", ps.Err())
	}
	s := &Server{cfg: cfg, log: deps.Log, drain: deps.DrainTimeout, maxBody: int64(cfg.ClientMaxBodySize), ready: make(chan struct{})}
	if s.drain <= 0 {
		s.drain = 10 * time.Second
	}
	for _, p := range cfg.TrustedProxies {
		pf, _ := parsePrefix(p)
		s.trusted = append(s.trusted, pf)
	}
	s.metrics = newMetrics(deps.Metrics)
	s.newSpoolers()
	appTarget := poolTarget(deps.AppBind)
	ups := map[string]*h1.Upstream{}
	getUp := func(target string) (*h1.Upstream, error) {
		if u, ok := ups[target]; ok {
			return u, nil
		}
		network, addr, err := parseUpstream(target)
		if err != nil {
			return nil, fmt.Errorf("parse upstream %q: %w", target, err)
		}
		opts := h1.UpstreamOptions{
			Connect: cfg.ConnectTimeout, Read: cfg.ReadTimeout, Send: cfg.SendTimeout, Started: s.started,
		}
		if target == appTarget {
			opts.MaxConns = deps.AppMaxConns
		}
		u := h1.NewUpstream(network, addr, opts)
		ups[target] = u
		s.upstreams = append(s.upstreams, u)
		return u, nil
	}
	var def *site
	all := append([]Site{cfg.Site}, cfg.Sites...)
	noPool := []string{}
	for i, sc := range all {
		st := &site{name: siteLabel(sc.Name), index: sc.Index, reqBuffering: sc.RequestBuffering, buffering: sc.Buffering}
		if i == 0 {
			st.name = "default"
		}
		for _, n := range sc.ServerNames {
			sn, _ := parseServerName(n)
			st.names = append(st.names, sn)
		}
		st.try, _ = parseTryFiles(sc.TryFiles)
		if sc.needsRoot() {
			fr, err := openFileRoot(sc.Root, cfg.Gzip)
			if err != nil {
				return nil, fmt.Errorf("open root of site %s: %w", st.name, err)
			}
			st.root = fr
		}
		for _, a := range sc.Aliases {
			al, _ := parseAlias(a)
			fr, err := openFileRoot(al.dir, cfg.Gzip)
			if err != nil {
				return nil, fmt.Errorf("open alias %q of site %s: %w", a, st.name, err)
			}
			st.aliases = append(st.aliases, siteAlias{al, fr})
		}
		target := sc.Upstream
		if target == "" {
			target = appTarget
		}
		if target != "" {
			u, err := getUp(target)
			if err != nil {
				return nil, err
			}
			st.up = u
		} else if st.try.app {
			noPool = append(noPool, st.name)
		}
		st.m = s.metrics.site(st.name)
		s.sites = append(s.sites, st)
		if (i == 0 && def == nil) || sc.Default {
			def = st
		}
	}
	if len(noPool) > 0 {
		s.log.Warn().Strs("sites", noPool).Msg("no worker pool runs (APP_BIND empty) and no PROXY_UPSTREAM is set: @app answers 404 on these sites")
	}
	s.hosts = newHostTable(s.sites, def)
	if cfg.AccessLog != "off" {
		w := deps.AccessLog
		if w == nil {
			w = os.Stdout
		}
		s.access = newAccessLog(w, cfg.AccessLog == "json", cfg.AccessLogSkip)
	}
	if err := s.setupTLS(deps); err != nil {
		return nil, err
	}
	return s, nil
}

// poolTarget is the upstream target of the pool's address (APP_BIND):
// unix:/path as it is, host:port as http://host:port.
func poolTarget(bind string) string {
	if bind != "" && !strings.HasPrefix(bind, "unix:") && !strings.Contains(bind, "://") {
		return "http://" + bind
	}
	return bind
}

func (s *Server) tlsEnabled() bool { return s.cfg.TLSCertFile != "" && s.cfg.TLSKeyFile != "" }

func (s *Server) loadCert() error {
	c, err := tls.LoadX509KeyPair(s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
	if err != nil {
		return fmt.Errorf("load tls certificate %q: %w", s.cfg.TLSCertFile, err)
	}
	s.cert.Store(&c)
	return nil
}

// Reload re-reads the TLS certificate and key; on error the old pair stays
// in use. Open connections are not touched.
func (s *Server) Reload(ctx context.Context) error {
	if !s.tlsEnabled() {
		return nil
	}
	if err := s.loadCert(); err != nil {
		return err
	}
	s.log.Info().Str("cert", s.cfg.TLSCertFile).Msg("tls certificate reloaded")
	return nil
}

// Status reports the sites and upstream pools for /status.
func (s *Server) Status() any {
	type upStatus struct {
		Address string `json:"address"`
		Idle    int    `json:"idle"`
		// Bound is APP_WORKER_CONNECTIONS at work on the pool.
		Bound *h1.ConnLimit `json:"bound,omitempty"`
	}
	type status struct {
		Listen    string     `json:"listen"`
		TLSListen string     `json:"tls_listen,omitempty"`
		Sites     []string   `json:"sites"`
		Upstreams []upStatus `json:"upstreams"`
		ACME      any        `json:"acme,omitempty"`
	}
	st := status{Listen: s.cfg.Listen}
	if s.tlsListening() {
		st.TLSListen = s.cfg.TLSListen
	}
	if s.acme != nil {
		st.ACME = s.acme.status()
	}
	for _, x := range s.sites {
		st.Sites = append(st.Sites, x.name)
	}
	for _, u := range s.upstreams {
		st.Upstreams = append(st.Upstreams, upStatus{Address: u.String(), Idle: u.Idle(), Bound: u.Limit()})
	}
	return st
}

// Run opens the listeners and serves until ctx is cancelled, then stops
// accepting, drains in-flight requests within the drain budget and returns
// nil. Returning early (a listener failure) is an error.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Listen, err)
	}
	var tln net.Listener
	if s.tlsListening() {
		tln, err = net.Listen("tcp", s.cfg.TLSListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen on %s: %w", s.cfg.TLSListen, err)
		}
	}
	return s.Serve(ctx, ln, tln)
}

// LameDuck makes every response from now on close its connection (HTTP/1
// Connection: close, HTTP/2 GOAWAY) while the proxy keeps accepting and
// serving: the supervisor calls it when a stop begins with a lame-duck delay
// (ONEBOX_SHUTDOWN_DELAY), so kept-alive clients move to other replicas.
func (s *Server) LameDuck() {
	if !s.lameDuck.Swap(true) {
		s.log.Info().Msg("lame duck: answering with Connection: close")
	}
}

// started is when Serve began (zero before), for the upstreams' start-up
// retries.
func (s *Server) started() time.Time {
	if ns := s.startedAt.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// Ready is closed once the listeners are bound: the supervisor reports the box
// ready only then, never while a connection would still be refused.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Serve is Run on listeners opened by the caller (tests, socket hand-over);
// tlsLn may be nil. Both are closed on return.
func (s *Server) Serve(ctx context.Context, ln, tlsLn net.Listener) error {
	s.startedAt.CompareAndSwap(0, time.Now().UnixNano())
	errc := make(chan error, 2)
	if tlsLn != nil {
		// The redirect names the port actually bound (PROXY_TLS_LISTEN may say :0).
		if _, port, err := net.SplitHostPort(tlsLn.Addr().String()); err == nil {
			s.tlsPort = port
		}
	}
	var handler http.Handler = s
	if s.cfg.TLSRedirect && tlsLn != nil {
		handler = http.HandlerFunc(s.redirectTLS)
	}
	if s.acme != nil && tlsLn != nil {
		handler = s.acme.httpHandler(handler)
		s.acme.start(ctx)
	}
	plain := h1.NewServer(handler, s.log)
	plain.Refused = s.logRefused
	plain.Pages = statusPages
	plain.Timeouts = h1.Timeouts{Header: s.cfg.ClientHeaderTimeout, Idle: s.cfg.KeepaliveTimeout, Send: s.cfg.ClientSendTimeout}
	s.mu.Lock()
	s.servers = append(s.servers, plain)
	s.mu.Unlock()
	go func() { errc <- plain.Serve(ln) }()
	n := 1
	if tlsLn != nil {
		ts := s.newHTTPServer(s)
		ts.TLSConfig = s.tlsConfig()
		s.mu.Lock()
		s.servers = append(s.servers, ts)
		s.mu.Unlock()
		n++
		go func() { errc <- ts.ServeTLS(tlsLn, "", "") }()
	}
	s.log.Info().Str("listen", ln.Addr().String()).Bool("tls", tlsLn != nil).Int("sites", len(s.sites)).Msg("proxy listening")
	s.readyOnce.Do(func() { close(s.ready) })

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-errc:
		n--
		runErr = fmt.Errorf("serve: %w", err)
	}
	dctx, cancel := context.WithTimeout(context.Background(), s.drain)
	defer cancel()
	s.mu.Lock()
	servers := s.servers
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, hs := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := hs.Shutdown(dctx); err != nil {
				s.log.Warn().Err(err).Msg("drain incomplete, closing remaining connections")
				_ = hs.Close()
			}
		}()
	}
	wg.Wait()
	for ; n > 0; n-- {
		if err := <-errc; runErr == nil && err != nil && !errors.Is(err, http.ErrServerClosed) {
			runErr = fmt.Errorf("serve: %w", err)
		}
	}
	for _, u := range s.upstreams {
		u.CloseIdle()
	}
	if ctx.Err() != nil && runErr == nil {
		s.log.Info().Msg("proxy stopped")
		return nil
	}
	if runErr == nil {
		runErr = errors.New("proxy listener closed")
	}
	return runErr
}

func (s *Server) newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.cfg.ClientHeaderTimeout,
		IdleTimeout:       s.cfg.KeepaliveTimeout,
		MaxHeaderBytes:    h1.MaxHeaderBytes,
		ErrorLog:          log.New(zerologWriter{s.log}, "", 0),
	}
}

// zerologWriter routes net/http's own complaints (TLS handshake errors…)
// to the component log at debug level.
type zerologWriter struct{ l zerolog.Logger }

func (z zerologWriter) Write(p []byte) (int, error) {
	z.l.Debug().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}

var hdrServer = []string{"onebox"}

// ServeHTTP is the request path: hygiene, host selection, the site.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := getRecorder(w)
	defer putRecorder(rec)
	rec.Header()["Server"] = hdrServer
	if s.lameDuck.Load() {
		// HTTP/1 closes after this response; on HTTP/2, net/http turns
		// the header into a GOAWAY. Either way the client's next request
		// opens a new connection, which its load balancer sends elsewhere.
		rec.Header()["Connection"] = hdrClose
	}
	st := s.hosts.lookup(r.Host)
	s.handle(rec, r, st)
	s.finish(rec, r, st, start)
	if rec.abort {
		// Logged and counted; now cut the connection (HTTP/1) or reset
		// the stream (HTTP/2), as httputil.ReverseProxy does.
		panic(http.ErrAbortHandler)
	}
}

func (s *Server) handle(w *recorder, r *http.Request, st *site) {
	if r.TransferEncoding != nil {
		// RFC 9112 §6.1: net/http drops Content-Length when both it and
		// Transfer-Encoding arrive, but keeps the connection, which is
		// what request smuggling needs. The headers are gone by now, so
		// every request with a Transfer-Encoding gets its connection
		// closed after the response.
		closeAfter(w, r)
	}
	switch r.Method {
	case http.MethodTrace, http.MethodConnect:
		writeStatusPage(w, r, http.StatusMethodNotAllowed)
		return
	}
	if s.maxBody > 0 && r.ContentLength > s.maxBody {
		closeAfter(w, r)
		writeStatusPage(w, r, http.StatusRequestEntityTooLarge)
		return
	}
	if emptyHostLabel(r.Host) {
		closeAfter(w, r)
		writeStatusPage(w, r, http.StatusBadRequest)
		return
	}
	clean, dot, ok := cleanURLPath(r.URL.Path)
	if !ok || hasEncodedSeparator(r.URL.RawPath) {
		// Malformed: answer and close, as net/http does for its own 400s.
		closeAfter(w, r)
		writeStatusPage(w, r, http.StatusBadRequest)
		return
	}
	for i := range st.aliases {
		a := &st.aliases[i]
		if strings.HasPrefix(clean, a.prefix) {
			rest := clean[len(a.prefix)-1:]
			if !dot && (s.tryCandidate(w, r, st, a.fr, rest, strings.HasSuffix(rest, "/"), clean) == tryDone || s.tryCandidate(w, r, st, a.fr, rest, true, clean) == tryDone) {
				return
			}
			writeStatusPage(w, r, http.StatusNotFound)
			return
		}
		if clean+"/" == a.prefix {
			redirectSlash(w, r, clean)
			return
		}
	}
	if !dot {
		for _, arg := range st.try.files {
			p, dir := expand(arg, clean)
			if s.tryCandidate(w, r, st, st.root, p, dir, clean) == tryDone {
				return
			}
		}
	}
	switch {
	case st.try.app:
		if st.up == nil {
			writeStatusPage(w, r, http.StatusNotFound)
			return
		}
		s.forward(w, r, st)
	case st.try.code != 0:
		writeStatusPage(w, r, st.try.code)
	default:
		u, dir := expand(st.try.fallbackURI, clean)
		if dot || s.tryCandidate(w, r, st, st.root, u, dir, u) != tryDone {
			writeStatusPage(w, r, http.StatusNotFound)
		}
	}
}

// closeAfter makes net/http close an HTTP/1 connection after this
// response (HTTP/2 has no such header; its streams are independent).
func closeAfter(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 {
		w.Header()["Connection"] = hdrClose
	}
}

// acmeChallenge is the prefix of ACME HTTP-01 validation paths: certbot
// and friends write their tokens under the root and the CA fetches them
// over plain HTTP, so they are served, not redirected.
const acmeChallenge = "/.well-known/acme-challenge/"

// redirectTLS answers plain HTTP with 308 to the HTTPS listener, except
// for ACME challenges.
func (s *Server) redirectTLS(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, acmeChallenge) {
		s.ServeHTTP(w, r)
		return
	}
	host := normalizeHost(r.Host)
	if host == "" || strings.ContainsAny(host, "/\\@") {
		writeStatusPage(w, r, http.StatusBadRequest)
		return
	}
	if s.tlsPort != "" && s.tlsPort != "443" {
		host = net.JoinHostPort(strings.Trim(host, "[]"), s.tlsPort)
	}
	w.Header()["Server"] = hdrServer
	w.Header()["Location"] = []string{"https://" + host + r.URL.RequestURI()}
	writeStatusPage(w, r, http.StatusPermanentRedirect)
}
