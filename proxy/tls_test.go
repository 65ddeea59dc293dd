package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeCert writes a self-signed certificate for 127.0.0.1 with the given
// serial and returns its pool.
func writeCert(t *testing.T, certFile, keyFile string, serial int64) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: "onebox test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"site.test"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return pool
}

// startTLS runs a Server with a plain and a TLS listener.
func startTLS(t *testing.T, cfg Config) (s *Server, plain, secure string) {
	t.Helper()
	s, err := New(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, tln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, ln.Addr().String(), tln.Addr().String()
}

func TestTLSReloadAndHTTP2(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "www")
	writeFiles(t, root, map[string]string{"index.html": "secure hello"})
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pool1 := writeCert(t, certFile, keyFile, 1)
	cfg := envConfig(t, map[string]string{"ROOT": root, "TLS_CERT_FILE": certFile, "TLS_KEY_FILE": keyFile})
	s, _, secure := startTLS(t, cfg)

	serial := func(pool *x509.CertPool) (int64, int, string) {
		t.Helper()
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
		defer c.CloseIdleConnections()
		resp, err := c.Get("https://" + secure + "/")
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64(), resp.ProtoMajor, string(b)
	}
	if sn, proto, body := serial(pool1); sn != 1 || proto != 2 || body != "secure hello" {
		t.Fatalf("serial %d proto %d body %q, want 1, HTTP/2", sn, proto, body)
	}
	// A connection opened before the reload keeps working after it.
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool1}, ForceAttemptHTTP2: true}}
	if resp, err := old.Get("https://" + secure + "/"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}

	pool2 := writeCert(t, certFile, keyFile, 2)
	if err := s.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if sn, _, _ := serial(pool2); sn != 2 {
		t.Fatalf("after reload serial %d, want 2", sn)
	}
	resp, err := old.Get("https://" + secure + "/")
	if err != nil {
		t.Fatalf("old connection after reload: %v", err)
	}
	resp.Body.Close()
	if resp.TLS.PeerCertificates[0].SerialNumber.Int64() != 1 {
		t.Errorf("the old connection was re-handshaken")
	}

	// A broken new certificate keeps the old one.
	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(context.Background()); err == nil {
		t.Fatal("reload of a broken certificate succeeded")
	}
	if sn, _, _ := serial(pool2); sn != 2 {
		t.Fatalf("after a failed reload serial %d, want 2", sn)
	}
}

func TestTLSRedirect(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCert(t, certFile, keyFile, 1)
	writeFiles(t, dir, map[string]string{".well-known/acme-challenge/tok123": "tok123.key"})
	cfg := envConfig(t, map[string]string{"ROOT": dir, "TLS_CERT_FILE": certFile, "TLS_KEY_FILE": keyFile, "TLS_REDIRECT": "true"})
	_, plain, secure := startTLS(t, cfg)
	// An ACME HTTP-01 challenge is served over plain HTTP, not redirected.
	if resp := rawRequest(t, plain, "GET /.well-known/acme-challenge/tok123 HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n"); resp.status != http.StatusOK || resp.body != "tok123.key" {
		t.Errorf("acme challenge: %d %q, want 200 with the token", resp.status, resp.body)
	}
	_, port, _ := net.SplitHostPort(secure)
	for path, want := range map[string]string{
		"/a/b?c=d":      "https://site.test:" + port + "/a/b?c=d",
		"//evil.com/x":  "https://site.test:" + port + "//evil.com/x",
		"/%2e%2e/x?y=1": "https://site.test:" + port + "/%2e%2e/x?y=1",
	} {
		resp := rawRequest(t, plain, "GET "+path+" HTTP/1.1\r\nHost: Site.Test:8080\r\nConnection: close\r\n\r\n")
		if resp.status != http.StatusPermanentRedirect || resp.header.Get("Location") != want {
			t.Errorf("%s: %d %q, want 308 %q", path, resp.status, resp.header.Get("Location"), want)
		}
	}
	if resp := rawRequest(t, plain, "GET / HTTP/1.1\r\nHost: evil.com/x\r\nConnection: close\r\n\r\n"); resp.status != http.StatusBadRequest {
		t.Errorf("bad host: %d, want 400", resp.status)
	}
}

// On the TLS listener (net/http, HTTP/1.1 and HTTP/2) a client that leaves
// while the upstream works also ends the upstream request at once.
func TestTLSClientAbortEndsUpstreamRequest(t *testing.T) {
	up := startUpstream(t, true)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pool := writeCert(t, certFile, keyFile, 1)
	cfg := envConfig(t, map[string]string{"TRY_FILES": "@app", "UPSTREAM": up.target, "TLS_CERT_FILE": certFile, "TLS_KEY_FILE": keyFile})
	_, plain, secure := startTLS(t, cfg)
	plainGet := func(path string) string {
		resp, err := http.Get("http://" + plain + path)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: h2}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // HTTP/1.1 only
		}
		client := &http.Client{Transport: tr}
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+secure+"/hold", nil)
		done := make(chan error, 1)
		go func() {
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		if g := plainGet("/held"); g != "held" {
			t.Fatalf("h2=%v: %q, want the request at the upstream", h2, g)
		}
		cancel()
		if g := plainGet("/aborted"); g != "aborted" {
			t.Errorf("h2=%v: upstream request %q, want it ended when the client left", h2, g)
		}
		<-done
		tr.CloseIdleConnections()
	}
}
