package dbcheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus"

	"onebox/config"
)

// TestClassify covers the error shapes the real-server tests cannot all
// produce on a loopback-only machine (DNS, unreachable networks).
func TestClassify(t *testing.T) {
	dial := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: err}}
	}
	tests := []struct {
		name string
		err  error
		want Reason
	}{
		{"1045", &mysql.MySQLError{Number: 1045, Message: "Access denied for user 'app'@'10.0.0.2' (using password: YES)"}, ReasonAccessDenied},
		{"1044", &mysql.MySQLError{Number: 1044}, ReasonDBDenied},
		{"1049", &mysql.MySQLError{Number: 1049}, ReasonUnknownDB},
		{"1130", &mysql.MySQLError{Number: 1130}, ReasonHostNotAllow},
		{"1040", &mysql.MySQLError{Number: 1040}, ReasonTooMany},
		{"1053 shutdown", &mysql.MySQLError{Number: 1053}, ReasonConnLost},
		{"other server error", &mysql.MySQLError{Number: 1064}, ReasonOther},
		{"refused", dial(syscall.ECONNREFUSED), ReasonRefused},
		{"no such host", &net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "db", IsNotFound: true}}, ReasonHostNotFound},
		{"dns timeout", &net.DNSError{Err: "i/o timeout", Name: "db", IsTimeout: true}, ReasonTimeout},
		{"unreachable", dial(syscall.EHOSTUNREACH), ReasonUnreachable},
		{"network unreachable", dial(syscall.ENETUNREACH), ReasonUnreachable},
		{"context deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), ReasonTimeout},
		{"dial timeout", &net.OpError{Op: "dial", Err: timeoutErr{}}, ReasonTimeout},
		{"no TLS on server", mysql.ErrNoTLS, ReasonTLS},
		{"unknown CA", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, ReasonTLS},
		{"wrong name", x509.HostnameError{Host: "db"}, ReasonTLS},
		{"not TLS at all", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, ReasonTLS},
		{"handshake text", errors.New("remote error: tls: handshake failure"), ReasonTLS},
		{"invalid connection", mysql.ErrInvalidConn, ReasonConnLost},
		{"eof", fmt.Errorf("read: %w", io.EOF), ReasonConnLost},
		{"reset", dial(syscall.ECONNRESET), ReasonConnLost},
		{"anything else", errors.New("something odd"), ReasonOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.err); got != tt.want {
				t.Errorf("classify(%v) = %s, want %s", tt.err, got, tt.want)
			}
		})
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// TestScrub: a password in an error text is masked; a very short one is
// left alone rather than mangling the text.
func TestScrub(t *testing.T) {
	err := errors.New("login as app with s3cr3t-pw failed")
	if ce := newCheckError(err, "s3cr3t-pw"); strings.Contains(ce.Error(), "s3cr3t-pw") {
		t.Errorf("password in %q", ce.Error())
	}
	if got := scrub("a cat", "a"); got != "a cat" {
		t.Errorf("scrub with a one-letter password = %q, want it untouched", got)
	}
	if !errors.Is(newCheckError(fmt.Errorf("dial: %w", syscall.ECONNREFUSED), ""), syscall.ECONNREFUSED) {
		t.Error("CheckError does not unwrap to the cause")
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	valid := Config{
		Host: "db", Port: 3306, User: "app", Password: "pw", Database: "app", TLS: "false",
		WaitTimeout: time.Minute, CheckInterval: 5 * time.Second, CheckTimeout: 5 * time.Second, AffectsReadiness: true,
	}
	tests := []struct {
		name   string
		change func(*Config)
		want   []string // the Var of every problem, in order
	}{
		{"valid", func(*Config) {}, nil},
		{"disabled is always valid", func(c *Config) { *c = Config{} }, nil},
		{"everything wrong at once", func(c *Config) {
			c.Port, c.User, c.TLS, c.WaitTimeout, c.CheckInterval, c.CheckTimeout = 0, "", "yes", -1, 0, 0
		}, []string{"PORT", "USER", "TLS", "WAIT_TIMEOUT", "CHECK_INTERVAL", "CHECK_TIMEOUT"}},
		{"CA without verification", func(c *Config) { c.TLS, c.TLSCAFile = "skip-verify", notPEM }, []string{"TLS_CA_FILE"}},
		{"CA file missing", func(c *Config) { c.TLS, c.TLSCAFile = "true", filepath.Join(dir, "nope.pem") }, []string{"TLS_CA_FILE"}},
		{"CA file not PEM", func(c *Config) { c.TLS, c.TLSCAFile = "true", notPEM }, []string{"TLS_CA_FILE"}},
		{"wait forever", func(c *Config) { c.WaitTimeout = 0 }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			tt.change(&c)
			var got []string
			for _, p := range c.Validate() {
				got = append(got, p.Var)
				if !errors.Is(p, config.ErrInvalid) {
					t.Errorf("problem %v is not ErrInvalid", p)
				}
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("problems %v, want %v", got, tt.want)
			}
		})
	}
}

// TestNewRejects: New refuses a disabled or invalid config, and a
// registerer that already holds the gate's metrics.
func TestNewRejects(t *testing.T) {
	if _, err := New(Config{}, Deps{}); err == nil {
		t.Error("New with MYSQL_HOST unset succeeded")
	}
	bad := Config{Host: "db", Port: 3306, TLS: "false", CheckInterval: time.Second, CheckTimeout: time.Second}
	if _, err := New(bad, Deps{}); !errors.Is(err, config.ErrInvalid) {
		t.Errorf("New without a user = %v, want ErrInvalid", err)
	}
	ok := bad
	ok.User = "app"
	if _, err := New(ok, Deps{}); err != nil {
		t.Errorf("New with nil Metrics = %v, want nil", err)
	}
	reg := prometheus.NewRegistry()
	if _, err := New(ok, Deps{Metrics: reg}); err != nil {
		t.Fatalf("New = %v", err)
	}
	if _, err := New(ok, Deps{Metrics: reg}); err == nil {
		t.Error("a second gate on the same registerer succeeded; want a duplicate-registration error")
	}
}
