// Package testmariadb starts real, throw-away MariaDB servers for tests.
//
// Start runs Debian's mariadbd on a free loopback port with a data directory
// made by mariadb-install-db under t.TempDir(), creates a database and a user
// (and a root login over TCP), waits until the server accepts a login, and
// stops it when the test ends. Stop and Start restart the same server on the
// same port and data directory, for tests of a database that goes away and
// comes back. WithTLS gives the server a certificate signed by a CA generated
// for the test.
//
// When mariadbd is missing, Start installs mariadb-server with apt-get (as
// root; test processes of several packages take turns through a file lock)
// and fails the test with a clear message when it cannot: it never skips.
//
// Typical use:
//
//	s := testmariadb.Start(t, testmariadb.WithDatabase("guestbook"))
//	db, err := sql.Open("mysql", s.DSN())   // the app's user and database
//	s.RootExec("ALTER USER 'app'@'%' REQUIRE SSL") // as root
//	s.Stop()  // the database goes away …
//	s.Start() // … and comes back on the same port with the same data
//
// # Processes and the reaper
//
// mariadbd is a child of the test process, started with exec.Cmd and waited
// for by os/exec in a goroutine of this package. That is safe in a test
// process that also runs a supervisor.Reaper: the reaper's wait4(-1) may reap
// mariadbd before os/exec does, in which case the Wait here returns ECHILD,
// which this package takes, like any return of Wait, to mean the server has
// exited (its exit status is never needed). The Wait here waits for one pid
// only, so it never takes a status the reaper is owed. mariadbd gets
// PR_SET_PDEATHSIG=SIGKILL, so a test binary killed by go test's timeout
// does not leave servers behind.
package testmariadb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// readyTimeout bounds how long Start waits for a server to accept a login.
// A first start on a slow, busy machine takes a few seconds; this leaves a
// wide margin without letting a broken server hang a test run.
const readyTimeout = 90 * time.Second

// stopTimeout bounds a graceful stop before the server is killed.
const stopTimeout = 30 * time.Second

// Option changes what Start sets up.
type Option func(*options)

type options struct {
	database, user, password string
	tls                      bool
}

// WithDatabase names the database Start creates (default "app").
func WithDatabase(name string) Option { return func(o *options) { o.database = name } }

// WithUser sets the user Start creates, with all privileges on the database
// (default user "app" with a random password).
func WithUser(user, password string) Option {
	return func(o *options) { o.user, o.password = user, password }
}

// WithTLS enables TLS on the server with a certificate for 127.0.0.1 and
// localhost, signed by a CA generated for the test (Server.CAFile). Clients
// may still connect without TLS.
func WithTLS() Option { return func(o *options) { o.tls = true } }

// Server is one running (or stopped) MariaDB server. Its fields are fixed
// for its life, across Stop and Start.
type Server struct {
	Host     string // always "127.0.0.1"
	Port     int    // the loopback TCP port, kept across Stop and Start
	User     string // the user Start created
	Password string // that user's password
	Database string // the database Start created
	// RootUser and RootPassword log in over TCP with every privilege.
	RootUser, RootPassword string
	// RootDSN is a go-sql-driver/mysql DSN for the root login, no database.
	RootDSN string
	// CAFile is the PEM file of the CA that signed the server's certificate,
	// set only WithTLS.
	CAFile string
	// LogFile receives mariadbd's output; failures quote its end.
	LogFile string

	t    testing.TB
	bins binaries
	args []string // mariadbd's arguments without the port

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when the running mariadbd has exited
}

// Start installs mariadb-server if needed, starts a fresh server, waits
// until it accepts a login and registers its removal with t.Cleanup. Any
// failure fails the test.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	o := options{database: "app", user: "app", password: "pw-" + rand.Text()}
	for _, opt := range opts {
		opt(&o)
	}
	bins, err := ensureInstalled()
	if err != nil {
		t.Fatalf("testmariadb: %v", err)
	}

	base := t.TempDir()
	data := filepath.Join(base, "data")
	// A unix socket path must fit in 108 bytes; t.TempDir() paths carry the
	// test's name and may not, so the socket lives in a short directory.
	sockDir, err := os.MkdirTemp("", "tmdb")
	if err != nil {
		t.Fatalf("testmariadb: create socket directory: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })

	s := &Server{
		Host:         "127.0.0.1",
		User:         o.user,
		Password:     o.password,
		Database:     o.database,
		RootUser:     "root",
		RootPassword: "root-" + rand.Text(),
		LogFile:      filepath.Join(base, "mariadbd.log"),
		t:            t,
		bins:         bins,
	}
	// Small buffers and logs: a test server holds a few rows, and the
	// defaults (128M pool, 96M redo log) would cost disk and start time.
	tmp := filepath.Join(base, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatalf("testmariadb: create tmpdir: %v", err)
	}
	common := []string{
		"--no-defaults",
		"--datadir=" + data,
		// A private tmpdir: mariadbd deletes every #sql* file in its
		// tmpdir when it starts, so with the shared /tmp one test's server
		// starting removes another's bootstrap temp tables under it.
		"--tmpdir=" + tmp,
		"--innodb-buffer-pool-size=16M",
		"--innodb-log-file-size=8M",
	}
	if os.Geteuid() == 0 {
		// mariadbd refuses to run as root unless told to.
		common = append(common, "--user=root")
	}
	install := exec.Command(bins.installDB, append(common[:len(common):len(common)],
		"--skip-test-db", "--auth-root-authentication-method=socket")...)
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("testmariadb: mariadb-install-db: %v\n%s", err, tail(out, 3000))
	}

	initFile := filepath.Join(base, "init.sql")
	if err := os.WriteFile(initFile, []byte(s.initSQL()), 0o600); err != nil {
		t.Fatalf("testmariadb: write init file: %v", err)
	}
	s.args = append(common,
		"--bind-address=127.0.0.1",
		"--socket="+filepath.Join(sockDir, "mariadbd.sock"),
		"--pid-file="+filepath.Join(base, "mariadbd.pid"),
		"--skip-name-resolve",
		"--performance-schema=OFF",
		// Runs before the server accepts connections, on every start; its
		// statements are idempotent, so a restart changes nothing.
		"--init-file="+initFile,
	)
	if o.tls {
		f, err := writeTLSFiles(base)
		if err != nil {
			t.Fatalf("testmariadb: %v", err)
		}
		s.CAFile = f.CA
		s.args = append(s.args, "--ssl-ca="+f.CA, "--ssl-cert="+f.Cert, "--ssl-key="+f.Key)
	}
	t.Cleanup(s.kill)

	// A free port is only free until someone else takes it: if mariadbd
	// exits before it is ready (port taken), try again with another.
	var lastErr error
	for range 3 {
		if s.Port, err = freePort(); err != nil {
			t.Fatalf("testmariadb: %v", err)
		}
		s.RootDSN = s.dsn(s.RootUser, s.RootPassword, "")
		if lastErr = s.start(); lastErr == nil {
			return s
		}
	}
	t.Fatalf("testmariadb: %v", lastErr)
	return nil
}

// initSQL creates the root login over TCP, the database and the user.
func (s *Server) initSQL() string {
	q := func(v string) string {
		return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
	}
	db := "`" + strings.ReplaceAll(s.Database, "`", "``") + "`"
	return strings.Join([]string{
		// --skip-name-resolve: TCP clients match 127.0.0.1 and %, never localhost.
		"CREATE USER IF NOT EXISTS " + q(s.RootUser) + "@'127.0.0.1' IDENTIFIED BY " + q(s.RootPassword),
		"GRANT ALL PRIVILEGES ON *.* TO " + q(s.RootUser) + "@'127.0.0.1' WITH GRANT OPTION",
		"CREATE DATABASE IF NOT EXISTS " + db,
		"CREATE USER IF NOT EXISTS " + q(s.User) + "@'%' IDENTIFIED BY " + q(s.Password),
		"GRANT ALL PRIVILEGES ON " + db + ".* TO " + q(s.User) + "@'%'",
	}, ";\n") + ";\n"
}

// DSN returns a go-sql-driver/mysql DSN for the user and database, with
// short timeouts. It carries no TLS setting.
func (s *Server) DSN() string { return s.dsn(s.User, s.Password, s.Database) }

// Addr returns host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

func (s *Server) dsn(user, password, db string) string {
	c := mysql.NewConfig()
	c.User, c.Passwd, c.DBName = user, password, db
	c.Net, c.Addr = "tcp", s.Addr()
	c.Timeout = 2 * time.Second
	return c.FormatDSN()
}

// Stop stops the server gracefully (SIGTERM; SIGKILL after 30s) and returns
// once it has exited and its port is closed. Stopping a stopped server does
// nothing.
func (s *Server) Stop() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd, s.exited = nil, nil
}

// Start starts a stopped server again, on the same port with the same data,
// and waits until it accepts a login. Starting a running server does
// nothing.
func (s *Server) Start() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("testmariadb: %v", err)
	}
}

// RootExec runs one statement as root, failing the test on error; for
// schema, grants and other set-up the app's user may not do.
func (s *Server) RootExec(query string, args ...any) {
	s.t.Helper()
	db, err := sql.Open("mysql", s.RootDSN)
	if err != nil {
		s.t.Fatalf("testmariadb: %v", err)
	}
	defer db.Close()
	if _, err := db.Exec(query, args...); err != nil {
		s.t.Fatalf("testmariadb: %s: %v", query, err)
	}
}

// Running reports whether mariadbd is running (it may not be ready yet).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// kill ends the server at once; it is the t.Cleanup, and the data
// directory goes with the test's TempDir.
func (s *Server) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd, s.exited = nil, nil
}

// start runs mariadbd and waits until the root login works; on failure the
// server is not running and the error quotes its log.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open log file: %w", err)
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(s.bins.server, append(s.args, "--port="+strconv.Itoa(s.Port))...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,            // a terminal's Ctrl-C goes to go test, which cleans up
		Pdeathsig: syscall.SIGKILL, // a test binary killed by a timeout takes mariadbd with it
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start mariadbd: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		// Any return means the process is gone: its status, or ECHILD when
		// a reaper in this process reaped it first (see the package doc).
		_ = cmd.Wait()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited

	if err := waitReady(s.RootDSN, exited); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		s.cmd, s.exited = nil, nil
		log, _ := os.ReadFile(s.LogFile)
		return fmt.Errorf("mariadbd on port %d: %w\n--- end of %s:\n%s", s.Port, err, s.LogFile, tail(log, 3000))
	}
	return nil
}

// waitReady polls a root login until it succeeds, the process exits or
// readyTimeout passes. Polling the login is the readiness signal: mariadbd
// has no other that reaches a process that is not its service manager.
func waitReady(dsn string, exited <-chan struct{}) error {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer db.Close()
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		last = db.PingContext(ctx)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before it was ready (last login error: %v)", last)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %w", readyTimeout, last)
		}
	}
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
