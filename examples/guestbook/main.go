// Command guestbook is onebox's demo app and the image's default
// APP_COMMAND: a JSON API for a guestbook stored in MySQL, served as a pool
// worker through appserver/worker (or alone on :$PORT for development).
//
//	guestbook           serve: GET/POST /api/messages, GET /api/health
//	guestbook migrate   create the table (the image's APP_PRESTART)
//
// POST /api/messages takes one JSON object {"name", "message"} (at most 64
// and 1000 characters, no control or text-direction characters but newline
// and tab) sent as Content-Type: application/json. Every error is JSON
// {"error": "...", "field": "..."} (field when one is to blame): 400
// invalid, 405 wrong method (with Allow), 413 body over 16 KiB, 415 not
// JSON, 503 with Retry-After while the database is unreachable, 500 for
// any other database error.
//
// It reads the database settings the official mysql image names:
// MYSQL_HOST, MYSQL_PORT (3306), MYSQL_USER, MYSQL_PASSWORD or
// MYSQL_PASSWORD_FILE, MYSQL_DATABASE, MYSQL_TLS (false, true, skip-verify,
// preferred). The static page in static/ is served by the proxy from
// PROXY_ROOT; run alone, the app serves it too.
package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"time"

	"github.com/go-sql-driver/mysql"

	"onebox/appserver/worker"
)

func main() {
	// First thing: from here the pool counts this worker booted only once
	// Serve says ready (a no-op when run alone or as APP_PRESTART).
	worker.Hello()
	if err := run(os.Args[1:], os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "guestbook:", err)
		os.Exit(1)
	}
}

func run(args []string, getenv func(string) string) error {
	cfg, err := mysqlConfig(getenv)
	if err != nil {
		return err
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return fmt.Errorf("configure database: %w", err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	// A worker serves few requests at a time; a small pool per worker keeps
	// workers x connections under the server's max_connections.
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(4)
	db.SetConnMaxLifetime(5 * time.Minute)

	cmd := "serve"
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "serve":
		return worker.Serve(newApp(db, true))
	case "migrate":
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		created, err := migrate(ctx, db)
		if err != nil {
			return err
		}
		if created {
			fmt.Println("guestbook: table messages created")
		} else {
			fmt.Println("guestbook: table messages already there")
		}
		return nil
	default:
		return fmt.Errorf("unknown command %q: want serve or migrate", cmd)
	}
}
