package testmariadb

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/rs/zerolog"

	"onebox/supervisor"
)

func open(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestStopStart checks the user and database exist, that a stopped server
// refuses connections and that a restarted one has kept its data, on the
// same port.
func TestStopStart(t *testing.T) {
	s := Start(t, WithDatabase("guestbook"), WithUser("gb", "it's a \\ secret"))
	if s.User != "gb" || s.Database != "guestbook" || s.Port == 0 {
		t.Fatalf("server fields = %+v", s)
	}
	db := open(t, s.DSN())
	db.SetMaxIdleConns(0) // every query dials, so the restart is seen
	s.RootExec("CREATE TABLE guestbook.notes (id INT PRIMARY KEY, body TEXT)")
	if _, err := db.Exec("INSERT INTO notes VALUES (1, 'kept')"); err != nil {
		t.Fatalf("insert as the user: %v", err)
	}
	port := s.Port

	s.Stop()
	if s.Running() {
		t.Fatal("Running() = true after Stop")
	}
	err := db.Ping()
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("ping a stopped server: got %v, want connection refused", err)
	}
	s.Stop() // a second Stop is harmless

	s.Start()
	if s.Port != port {
		t.Fatalf("port after restart = %d, want %d", s.Port, port)
	}
	var body string
	if err := db.QueryRow("SELECT body FROM notes WHERE id = 1").Scan(&body); err != nil || body != "kept" {
		t.Fatalf("after restart: body = %q, err = %v; want \"kept\"", body, err)
	}
}

// TestTLS connects with the generated CA, verifying the server's name.
func TestTLS(t *testing.T) {
	s := Start(t, WithTLS())
	pem, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("CA file holds no certificate")
	}
	if err := mysql.RegisterTLSConfig("testmariadb-ca", &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := mysql.ParseDSN(s.DSN())
	if err != nil {
		t.Fatal(err)
	}
	cfg.TLSConfig = "testmariadb-ca"
	db := open(t, cfg.FormatDSN())
	var cipher string
	var name string
	if err := db.QueryRow("SHOW STATUS LIKE 'Ssl_cipher'").Scan(&name, &cipher); err != nil {
		t.Fatal(err)
	}
	if cipher == "" {
		t.Fatal("connection is not encrypted: Ssl_cipher is empty")
	}
}

// TestAlongsideReaper runs the supervisor's reaper in this process, as the
// appserver's tests do, and checks Stop still returns and Start still works
// when the reaper reaps mariadbd before os/exec can.
func TestAlongsideReaper(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := supervisor.NewReaper(zerolog.Nop())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	s := Start(t)
	before := r.Orphans()
	stopped := make(chan struct{})
	go func() { s.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(stopTimeout + 10*time.Second):
		t.Fatal("Stop did not return with a reaper running")
	}
	s.Start()
	if err := open(t, s.DSN()).Ping(); err != nil {
		t.Fatalf("ping after restart: %v", err)
	}
	// Not a requirement, but shows which waiter won the race this time.
	t.Logf("reaper reaped %d orphan(s) during the stop", r.Orphans()-before)
}
