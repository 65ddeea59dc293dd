// Package dbcheck is onebox's MySQL gate: before the app starts it waits
// until the database really accepts the app's login, and while the box runs
// it keeps checking, so /readyz says not ready while the database is down.
//
// A check opens a new connection with go-sql-driver/mysql, logs in as
// MYSQL_USER to MYSQL_DATABASE and runs SELECT 1. A port that accepts
// connections is not enough: the official mysql image's temporary init-time
// server listens too, and `mysqladmin ping` calls a server "alive" that
// denies the login or lacks the database. Those two are reported as
// configuration mistakes, but retried all the same, because a database that
// is still initialising answers exactly so.
//
// Variables (prefix MYSQL_, the names the official mysql image uses, so one
// env file serves both containers):
//
//   - MYSQL_HOST: the database host; setting it enables the gate.
//   - MYSQL_PORT (3306): the database port.
//   - MYSQL_USER: the user the gate logs in as, the app's user.
//   - MYSQL_PASSWORD or MYSQL_PASSWORD_FILE: its password; the file's
//     content is trimmed and re-read at every check.
//   - MYSQL_DATABASE: the database that must exist and accept the user.
//   - MYSQL_TLS (false): false, true (verify the certificate, against
//     MYSQL_TLS_CA_FILE or the system's CAs), skip-verify (encrypt, do not
//     verify) or preferred (encrypt if the server offers it, do not verify).
//   - MYSQL_TLS_CA_FILE: PEM file of the CA that signed the server's
//     certificate; only with MYSQL_TLS=true.
//   - MYSQL_WAIT_TIMEOUT (60s): how long the gate waits before the box exits
//     non-zero with the last reason; 0 waits forever.
//   - MYSQL_CHECK_INTERVAL (5s): period of the ongoing check, and the cap of
//     the gate's retry backoff (which starts at 250ms and doubles).
//   - MYSQL_CHECK_TIMEOUT (5s): time one check may take.
//   - MYSQL_AFFECTS_READINESS (true): while the database is down, /readyz
//     answers not ready. Nothing is ever restarted because of it.
//
// Reasons, in logs, /status and errors: connection refused, host not found,
// host unreachable, access denied, host not allowed, unknown database, TLS
// failure, timeout, connection lost, too many connections, password file
// unreadable. The password appears in none of them.
//
// Metrics: onebox_mysql_up, onebox_mysql_check_duration_seconds,
// onebox_mysql_check_failures_total{reason}.
package dbcheck
