package dbcheck

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// PrestartLockName is the MySQL named lock APP_PRESTART runs under.
const PrestartLockName = "onebox_prestart"

// lockStep is how long one GET_LOCK waits before the wait is logged again.
const lockStep = 30 * time.Second

// Lock takes the MySQL named lock name (GET_LOCK) on a connection of its
// own and holds it until release is called, so replicas sharing a database
// take turns. It waits as long as ctx allows, logging the wait at once and
// again every lockStep. The lock also ends when the connection does, so a
// replica that dies holding it does not block the others.
func (g *Gate) Lock(ctx context.Context, name string) (release func(), err error) {
	return g.lock(ctx, name, lockStep)
}

func (g *Gate) lock(ctx context.Context, name string, step time.Duration) (func(), error) {
	password, err := g.password()
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	connector, err := mysql.NewConnector(g.driverConfig(password))
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	db := sql.OpenDB(connector)
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("lock %s: connect to %s: %w", name, g.addr(), err)
	}
	fail := func(err error) (func(), error) {
		conn.Close()
		db.Close()
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	start := time.Now()
	waited := false
	for wait := time.Duration(0); ; wait, waited = step, true {
		var got sql.NullInt64
		q := "SELECT GET_LOCK(?, ?)"
		if err := conn.QueryRowContext(ctx, q, name, wait.Seconds()).Scan(&got); err != nil {
			return fail(err)
		}
		if got.Valid && got.Int64 == 1 {
			break
		}
		g.log.Info().Str("lock", name).Dur("waited", time.Since(start).Round(time.Millisecond)).
			Msg("waiting for the lock: another replica holds it")
	}
	if waited {
		g.log.Info().Str("lock", name).Dur("waited", time.Since(start).Round(time.Millisecond)).
			Msg("lock taken")
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), g.cfg.CheckTimeout)
		defer cancel()
		if _, err := conn.ExecContext(ctx, "DO RELEASE_LOCK(?)", name); err != nil {
			g.log.Warn().Str("lock", name).Err(err).Msg("release lock; closing its connection ends it")
		}
		conn.Close()
		db.Close()
	}, nil
}

// password is MYSQL_PASSWORD, or MYSQL_PASSWORD_FILE's content read now.
func (g *Gate) password() (string, error) {
	if g.cfg.PasswordFile == "" {
		return g.cfg.Password.Reveal(), nil
	}
	b, err := os.ReadFile(g.cfg.PasswordFile)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}
