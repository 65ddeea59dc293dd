// Package testpebble runs Pebble, Let's Encrypt's ACME test CA, for tests:
// real orders and real challenge validation against onebox's listeners.
// pebble-challtestsrv answers every DNS query with 127.0.0.1, so the CA
// resolves any test name to this machine and validates HTTP-01 on
// Options.HTTPPort and TLS-ALPN-01 on Options.TLSPort.
//
// Both programs are built once from the Go module proxy (module
// github.com/letsencrypt/pebble/v2, Version) into the user's cache
// directory; a machine that can fetch Go modules needs nothing else.
package testpebble

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Version is the Pebble release the tests run.
const Version = "v2.10.3"

const module = "github.com/letsencrypt/pebble/v2"

// Options choose where the CA validates challenges and what it issues.
type Options struct {
	// HTTPPort and TLSPort are where Pebble connects (on 127.0.0.1) to
	// validate HTTP-01 and TLS-ALPN-01: onebox's plain and TLS listeners,
	// or a closed port to make that challenge fail.
	HTTPPort, TLSPort int
	// Validity is the lifetime of issued certificates (the default
	// profile's); 0 means 90 days.
	Validity time.Duration
	// Blocklist lists names the CA refuses to issue for.
	Blocklist []string
}

// CA is a running Pebble.
type CA struct {
	// Directory is the ACME directory URL (PROXY_ACME_CA).
	Directory string
	// RootsFile is the PEM root of the CA's own HTTPS interface
	// (PROXY_ACME_CA_ROOTS): not the root it issues under.
	RootsFile string

	mgmt string
	out  *syncBuffer
	cmd  *exec.Cmd
	stop sync.Once
}

// Start runs a Pebble (and its DNS server) until the test ends.
func Start(t testing.TB, o Options) *CA {
	t.Helper()
	bin, src := binaries(t)
	dnsAddr := "127.0.0.1:" + freePort(t)
	dns := exec.Command(filepath.Join(bin, "pebble-challtestsrv"),
		"-dnsserver", dnsAddr, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-management", "127.0.0.1:"+freePort(t), "-doh", "", "-http01", "", "-https01", "", "-tlsalpn01", "")
	dnsOut := &syncBuffer{}
	dns.Stdout, dns.Stderr = dnsOut, dnsOut
	if err := dns.Start(); err != nil {
		t.Fatalf("start pebble-challtestsrv: %v", err)
	}
	t.Cleanup(func() { _ = dns.Process.Kill(); _ = dns.Wait() })
	waitTCP(t, dnsAddr, dnsOut)

	validity := o.Validity
	if validity == 0 {
		validity = 90 * 24 * time.Hour
	}
	listen, mgmt := "127.0.0.1:"+freePort(t), "127.0.0.1:"+freePort(t)
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":           listen,
		"managementListenAddress": mgmt,
		"certificate":             filepath.Join(src, "test/certs/localhost/cert.pem"),
		"privateKey":              filepath.Join(src, "test/certs/localhost/key.pem"),
		"httpPort":                o.HTTPPort,
		"tlsPort":                 o.TLSPort,
		"domainBlocklist":         append([]string{}, o.Blocklist...),
		"keyAlgorithm":            "ecdsa",
		"retryAfter":              map[string]int{"authz": 1, "order": 1},
		"profiles": map[string]any{"default": map[string]any{
			"description": "onebox tests", "validityPeriod": int(validity.Seconds()),
		}},
	}}
	b, _ := json.Marshal(conf)
	confFile := filepath.Join(t.TempDir(), "pebble.json")
	if err := os.WriteFile(confFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	ca := &CA{
		Directory: "https://" + listen + "/dir",
		RootsFile: filepath.Join(src, "test/certs/pebble.minica.pem"),
		mgmt:      mgmt,
		out:       &syncBuffer{},
	}
	ca.cmd = exec.Command(filepath.Join(bin, "pebble"), "-config", confFile, "-dnsserver", dnsAddr, "-strict")
	// No random sleeps before validating, no reuse of earlier
	// authorizations (every order is validated for real), no nonce
	// rejections for sport.
	ca.cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_AUTHZREUSE=0", "PEBBLE_WFE_NONCEREJECT=0")
	ca.cmd.Stdout, ca.cmd.Stderr = ca.out, ca.out
	if err := ca.cmd.Start(); err != nil {
		t.Fatalf("start pebble: %v", err)
	}
	t.Cleanup(func() {
		ca.Stop()
		if t.Failed() {
			t.Logf("pebble output:\n%s", ca.out.String())
		}
	})
	waitTCP(t, listen, ca.out)
	waitTCP(t, mgmt, ca.out)
	return ca
}

// Stop kills the CA (a CA that goes down); Start's cleanup calls it too.
func (c *CA) Stop() {
	c.stop.Do(func() {
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
	})
}

// Output is what Pebble has logged so far.
func (c *CA) Output() string { return c.out.String() }

// IssuerRoot returns the root Pebble issues certificates under (made anew
// at each start).
func (c *CA) IssuerRoot(t testing.TB) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(c.RootsFile)
	if err != nil {
		t.Fatal(err)
	}
	tlsRoots := x509.NewCertPool()
	tlsRoots.AppendCertsFromPEM(pem)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: tlsRoots}}}
	resp, err := hc.Get("https://" + c.mgmt + "/roots/0")
	if err != nil {
		t.Fatalf("get pebble's issuing root: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("get pebble's issuing root: %d %v", resp.StatusCode, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(body) {
		t.Fatalf("pebble's issuing root is not PEM: %q", body)
	}
	return pool
}

// binaries builds pebble and pebble-challtestsrv once per machine and
// returns their directory and the module's source directory (which holds
// the certificate of the CA's HTTPS interface).
func binaries(t testing.TB) (bin, src string) {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	bin = filepath.Join(cache, "onebox-test", "pebble-"+Version)
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	// Test binaries of several packages may get here at once.
	lock, err := os.OpenFile(filepath.Join(bin, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	goCmd := func(args ...string) []byte {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = bin // outside any module: these are not onebox's dependencies
		cmd.Env = append(os.Environ(), "GOBIN="+bin, "GOFLAGS=-mod=mod", "GO111MODULE=on", "CGO_ENABLED=0")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return out
	}
	var dl struct{ Dir string }
	if err := json.Unmarshal(goCmd("mod", "download", "-json", module+"@"+Version), &dl); err != nil || dl.Dir == "" {
		t.Fatalf("go mod download %s@%s: no directory (%v)", module, Version, err)
	}
	for _, name := range []string{"pebble", "pebble-challtestsrv"} {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			goCmd("install", module+"/cmd/"+name+"@"+Version)
		}
	}
	return bin, dl.Dir
}

// freePort returns a port that was free a moment ago.
func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// waitTCP waits until addr accepts connections: the program has bound it.
// The programs log before they bind, so the log is no readiness signal.
func waitTCP(t testing.TB, addr string, out *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never accepted connections: %v\n%s", addr, err, out.String())
		}
		<-tick.C
	}
}

// syncBuffer collects a process's output for the test to read.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
