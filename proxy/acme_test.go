package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"onebox/internal/testpebble"
)

// logWatch is a log sink a test can wait on for a line.
type logWatch struct {
	mu      sync.Mutex
	b       strings.Builder
	changed chan struct{} // closed at the next write
}

func newLogWatch() *logWatch { return &logWatch{changed: make(chan struct{})} }

func (l *logWatch) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

// wait returns the first log line holding every one of subs, waiting up to
// d for it to be written.
func (l *logWatch) wait(t *testing.T, d time.Duration, subs ...string) string {
	t.Helper()
	timeout := time.After(d)
	for {
		l.mu.Lock()
		text, changed := l.b.String(), l.changed
		l.mu.Unlock()
	lines:
		for _, line := range strings.Split(text, "\n") {
			for _, s := range subs {
				if !strings.Contains(line, s) {
					continue lines
				}
			}
			return line
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("no log line with %q within %s; log:\n%s", subs, d, text)
		}
	}
}

func (l *logWatch) count(subs ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
lines:
	for _, line := range strings.Split(l.b.String(), "\n") {
		for _, s := range subs {
			if !strings.Contains(line, s) {
				continue lines
			}
		}
		n++
	}
	return n
}

// acmeBox is a proxy with ACME on loopback listeners.
type acmeBox struct {
	s             *Server
	plain, secure string
	log           *logWatch
	reg           *prometheus.Registry
	stop          func()
}

// listeners opens a plain and a TLS listener on loopback; the CA is told
// their ports before the proxy starts.
func listeners(t *testing.T) (net.Listener, net.Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln, tln
}

func port(t *testing.T, ln net.Listener) int {
	t.Helper()
	return ln.Addr().(*net.TCPAddr).Port
}

// closedPort is a port where nothing listens: a challenge sent there fails.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := port(t, ln)
	ln.Close()
	return p
}

func startACMEBox(t *testing.T, ln, tln net.Listener, vars map[string]string) *acmeBox {
	t.Helper()
	root := filepath.Join(t.TempDir(), "www")
	writeFiles(t, root, map[string]string{"index.html": "hello over acme"})
	all := map[string]string{"ROOT": root, "TRY_FILES": "$uri $uri/ =404"}
	for k, v := range vars {
		all[k] = v
	}
	b := &acmeBox{log: newLogWatch(), reg: prometheus.NewRegistry(), plain: ln.Addr().String(), secure: tln.Addr().String()}
	s, err := New(envConfig(t, all), Deps{Log: zerolog.New(b.log), Metrics: b.reg})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	b.s = s
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, tln) }()
	var once sync.Once
	b.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(b.stop)
	return b
}

// acmeVars are the settings for a proxy using ca, keeping its state in dir.
func acmeVars(ca *testpebble.CA, dir string, names ...string) map[string]string {
	return map[string]string{
		"ACME_DOMAINS":  strings.Join(names, " "),
		"ACME_EMAIL":    "ops@example.com",
		"ACME_CA":       ca.Directory,
		"ACME_CA_ROOTS": ca.RootsFile,
		"ACME_DIR":      dir,
	}
}

// handshake opens a TLS connection for name, verifying the chain against
// roots, and returns it with the leaf.
func handshake(t *testing.T, addr, name string, roots *x509.CertPool) (*tls.Conn, *x509.Certificate) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: name, RootCAs: roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatalf("tls handshake for %s: %v", name, err)
	}
	return c, c.ConnectionState().PeerCertificates[0]
}

// roundTrip sends one GET on an open connection and returns status and body.
func roundTrip(t *testing.T, c net.Conn, br *bufio.Reader, host, path string) (int, string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: "+host+"\r\n\r\n"); err != nil {
		t.Fatalf("write request: %v", err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// expirySeconds reads onebox_proxy_acme_certificate_expiry_seconds for name.
func expirySeconds(t *testing.T, reg *prometheus.Registry, name string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "onebox_proxy_acme_certificate_expiry_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == name {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

func acmeStatusOf(t *testing.T, s *Server, name string) acmeStatus {
	t.Helper()
	b, err := json.Marshal(s.Status())
	if err != nil {
		t.Fatal(err)
	}
	var st struct{ ACME []acmeStatus }
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	for _, a := range st.ACME {
		if a.Name == name {
			return a
		}
	}
	t.Fatalf("no %s in /status: %s", name, b)
	return acmeStatus{}
}

const issueWait = 2 * time.Minute

func TestACMEIssuesOverTLSALPN01(t *testing.T) {
	ln, tln := listeners(t)
	// HTTP-01 would fail: the CA can only have proved the name over TLS.
	ca := testpebble.Start(t, testpebble.Options{HTTPPort: closedPort(t), TLSPort: port(t, tln)})
	b := startACMEBox(t, ln, tln, acmeVars(ca, t.TempDir(), "alpn.test"))
	b.log.wait(t, issueWait, `"name":"alpn.test"`, "acme certificate issued")
	b.log.wait(t, time.Second, `"name":"alpn.test"`, "tls-alpn-01 challenge answered")
	if n := b.log.count("http-01 challenge answered"); n != 0 {
		t.Errorf("%d http-01 challenges answered, want none", n)
	}

	// The served chain verifies against Pebble's issuing root.
	c, leaf := handshake(t, b.secure, "alpn.test", ca.IssuerRoot(t))
	defer c.Close()
	if code, body := roundTrip(t, c, bufio.NewReader(c), "alpn.test", "/"); code != 200 || body != "hello over acme" {
		t.Errorf("GET over https: %d %q", code, body)
	}

	// Plain HTTP for the name now redirects to HTTPS, challenges excepted;
	// other names are served as before.
	resp := rawRequest(t, b.plain, "GET /a/b?c=d HTTP/1.1\r\nHost: alpn.test:8080\r\nConnection: close\r\n\r\n")
	if resp.status != http.StatusPermanentRedirect || resp.header.Get("Location") != "https://alpn.test/a/b?c=d" {
		t.Errorf("plain GET: %d Location %q, want 308 to https://alpn.test/a/b?c=d", resp.status, resp.header.Get("Location"))
	}
	resp = rawRequest(t, b.plain, "GET /.well-known/acme-challenge/unknown HTTP/1.1\r\nHost: alpn.test\r\nConnection: close\r\n\r\n")
	if resp.status != http.StatusNotFound {
		t.Errorf("unknown challenge token: %d, want 404 (not a redirect)", resp.status)
	}
	resp = rawRequest(t, b.plain, "GET / HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n")
	if resp.status != 200 {
		t.Errorf("plain GET of another name: %d, want 200", resp.status)
	}

	st := acmeStatusOf(t, b.s, "alpn.test")
	if st.State != acmeValid || st.NotAfter == nil || !st.NotAfter.Equal(leaf.NotAfter) || st.Serial != leaf.SerialNumber.Text(16) {
		t.Errorf("status %+v, want valid with the served certificate's expiry %s", st, leaf.NotAfter)
	}
	if secs, ok := expirySeconds(t, b.reg, "alpn.test"); !ok || secs < 80*24*3600 || secs > 90*24*3600 {
		t.Errorf("expiry metric %v (present %v), want about 90 days", secs, ok)
	}
}

func TestACMEIssuesOverHTTP01(t *testing.T) {
	ln, tln := listeners(t)
	// TLS-ALPN-01, autocert's first choice, fails: it falls back to HTTP-01.
	ca := testpebble.Start(t, testpebble.Options{HTTPPort: port(t, ln), TLSPort: closedPort(t)})
	b := startACMEBox(t, ln, tln, acmeVars(ca, t.TempDir(), "web.test"))
	b.log.wait(t, issueWait, `"name":"web.test"`, "acme certificate issued")
	b.log.wait(t, time.Second, `"name":"web.test"`, "http-01 challenge answered")
	c, leaf := handshake(t, b.secure, "web.test", ca.IssuerRoot(t))
	c.Close()
	if err := leaf.VerifyHostname("web.test"); err != nil {
		t.Error(err)
	}
}

func TestACMERestartReusesStoredCertificate(t *testing.T) {
	ln, tln := listeners(t)
	plainAddr, tlsAddr := ln.Addr().String(), tln.Addr().String()
	ca := testpebble.Start(t, testpebble.Options{HTTPPort: port(t, ln), TLSPort: port(t, tln)})
	dir := t.TempDir()
	b := startACMEBox(t, ln, tln, acmeVars(ca, dir, "keep.test"))
	b.log.wait(t, issueWait, "acme certificate issued")
	c, first := handshake(t, b.secure, "keep.test", ca.IssuerRoot(t))
	c.Close()
	b.stop()
	issued := strings.Count(ca.Output(), "Issued certificate serial")

	ln2, err := net.Listen("tcp", plainAddr)
	if err != nil {
		t.Fatal(err)
	}
	tln2, err := net.Listen("tcp", tlsAddr)
	if err != nil {
		t.Fatal(err)
	}
	b2 := startACMEBox(t, ln2, tln2, acmeVars(ca, dir, "keep.test"))
	b2.log.wait(t, issueWait, `"name":"keep.test"`, "acme certificate loaded from PROXY_ACME_DIR")
	c, again := handshake(t, b2.secure, "keep.test", ca.IssuerRoot(t))
	c.Close()
	if again.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Errorf("after a restart serial %x, want the stored %x", again.SerialNumber, first.SerialNumber)
	}
	if n := strings.Count(ca.Output(), "Issued certificate serial"); n != issued {
		t.Errorf("the CA issued %d certificates after the restart, want none", n-issued)
	}
}

func TestACMERenewalKeepsOpenConnections(t *testing.T) {
	ln, tln := listeners(t)
	// autocert renews when a third of the lifetime is left: 10s after
	// issuance here.
	ca := testpebble.Start(t, testpebble.Options{HTTPPort: port(t, ln), TLSPort: port(t, tln), Validity: 15 * time.Second})
	b := startACMEBox(t, ln, tln, acmeVars(ca, t.TempDir(), "short.test"))
	b.log.wait(t, issueWait, "acme certificate issued")
	roots := ca.IssuerRoot(t)
	old, first := handshake(t, b.secure, "short.test", roots)
	defer old.Close()
	br := bufio.NewReader(old)
	if code, _ := roundTrip(t, old, br, "short.test", "/"); code != 200 {
		t.Fatalf("GET: %d", code)
	}

	line := b.log.wait(t, issueWait, `"name":"short.test"`, "acme certificate renewed")
	c, renewed := handshake(t, b.secure, "short.test", roots)
	c.Close()
	if renewed.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Errorf("a new handshake after %q got the first certificate (serial %x)", line, first.SerialNumber)
	}
	// The connection opened before the renewal still answers.
	if code, body := roundTrip(t, old, br, "short.test", "/"); code != 200 || body != "hello over acme" {
		t.Errorf("the connection opened before the renewal: %d %q", code, body)
	}
}

func TestACMECADownServesHTTPAndRetries(t *testing.T) {
	ln, tln := listeners(t)
	// Nothing listens at the CA's address.
	dir := "https://127.0.0.1:" + strconv.Itoa(closedPort(t)) + "/dir"
	b := startACMEBox(t, ln, tln, map[string]string{"ACME_DOMAINS": "down.test", "ACME_CA": dir, "ACME_DIR": t.TempDir()})
	line := b.log.wait(t, issueWait, `"name":"down.test"`, "not obtained; will retry")
	if !strings.Contains(line, `"attempt":1`) || !strings.Contains(line, `"retry_in":`) || !strings.Contains(line, "connection refused") {
		t.Errorf("failure line %s, want the attempt, the wait and the reason", line)
	}
	// Plain HTTP is served meanwhile, not redirected.
	resp := rawRequest(t, b.plain, "GET / HTTP/1.1\r\nHost: down.test\r\nConnection: close\r\n\r\n")
	if resp.status != 200 || resp.body != "hello over acme" {
		t.Errorf("plain GET while the CA is down: %d %q", resp.status, resp.body)
	}
	// A handshake for the name fails cleanly.
	_, err := tls.Dial("tcp", b.secure, &tls.Config{ServerName: "down.test", InsecureSkipVerify: true})
	if err == nil {
		t.Errorf("a handshake without a certificate succeeded")
	}
	st := acmeStatusOf(t, b.s, "down.test")
	if st.State != acmeFailed || st.LastError == "" || st.NextRetry == nil || st.Attempts != 1 {
		t.Errorf("status %+v, want failed with the error and the next retry", st)
	}
	// The refused handshake is no error in the log (net/http's handshake
	// errors go to debug level).
	if n := b.log.count(`"level":"error"`); n != 0 {
		t.Errorf("%d error lines logged", n)
	}
	if _, ok := expirySeconds(t, b.reg, "down.test"); ok {
		t.Errorf("an expiry metric for a name without a certificate")
	}
}

func TestACMERefusedNameLogsTheCAReason(t *testing.T) {
	ln, tln := listeners(t)
	ca := testpebble.Start(t, testpebble.Options{HTTPPort: port(t, ln), TLSPort: port(t, tln), Blocklist: []string{"blocked.test"}})
	b := startACMEBox(t, ln, tln, acmeVars(ca, t.TempDir(), "blocked.test"))
	line := b.log.wait(t, issueWait, `"name":"blocked.test"`, "not obtained; will retry")
	if !strings.Contains(line, `"ca_problem":"urn:ietf:params:acme:error:rejectedIdentifier"`) || !strings.Contains(line, "forbidden by policy") {
		t.Errorf("failure line %s, want the CA's problem type and detail", line)
	}
}
