package dbcheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/go-sql-driver/mysql"
)

// Reason is why a check failed, as a short identifier (the metrics label).
// Words gives it in plain words for logs, status and errors.
type Reason string

// The reasons a check fails. Access denied, host not allowed, unknown
// database and an unreadable password file are configuration mistakes; the
// gate still retries them, because a database that is initialising (the
// official image's first start) answers exactly so until its init is done.
const (
	ReasonRefused       Reason = "connection_refused"
	ReasonHostNotFound  Reason = "host_not_found"
	ReasonUnreachable   Reason = "host_unreachable"
	ReasonAccessDenied  Reason = "access_denied"
	ReasonDBDenied      Reason = "database_access_denied"
	ReasonHostNotAllow  Reason = "host_not_allowed"
	ReasonUnknownDB     Reason = "unknown_database"
	ReasonTLS           Reason = "tls_failure"
	ReasonTimeout       Reason = "timeout"
	ReasonConnLost      Reason = "connection_lost"
	ReasonTooMany       Reason = "too_many_connections"
	ReasonPasswordFile  Reason = "password_file_unreadable"
	ReasonOther         Reason = "error"
	reasonNotYetChecked Reason = "not_checked_yet"
)

var reasonWords = map[Reason]string{
	ReasonRefused:       "connection refused",
	ReasonHostNotFound:  "host not found",
	ReasonUnreachable:   "host unreachable",
	ReasonAccessDenied:  "access denied",
	ReasonDBDenied:      "access denied to the database",
	ReasonHostNotAllow:  "host not allowed",
	ReasonUnknownDB:     "unknown database",
	ReasonTLS:           "TLS failure",
	ReasonTimeout:       "timeout",
	ReasonConnLost:      "connection lost",
	ReasonTooMany:       "too many connections",
	ReasonPasswordFile:  "password file unreadable",
	ReasonOther:         "error",
	reasonNotYetChecked: "not checked yet",
}

// Words returns the reason in plain words: "access denied".
func (r Reason) Words() string {
	if w, ok := reasonWords[r]; ok {
		return w
	}
	return string(r)
}

// ConfigMistake reports whether the reason points at the settings rather
// than at a database that is not up yet.
func (r Reason) ConfigMistake() bool {
	switch r {
	case ReasonAccessDenied, ReasonDBDenied, ReasonHostNotAllow, ReasonUnknownDB, ReasonPasswordFile:
		return true
	}
	return false
}

// hint says what to look at for a configuration mistake, "" otherwise.
func (r Reason) hint() string {
	switch r {
	case ReasonAccessDenied:
		return "check MYSQL_USER and MYSQL_PASSWORD; still retrying, the database may be initialising"
	case ReasonDBDenied:
		// MySQL and MariaDB answer 1044, not 1049, to a user without rights on
		// a database that does not exist, so as not to reveal which it is.
		return "the user logged in but may not use MYSQL_DATABASE, or it does not exist: check its name and the user's grants; still retrying, the database may be initialising"
	case ReasonHostNotAllow:
		return "the user may not log in from this host: create it for '%' or this host; still retrying"
	case ReasonUnknownDB:
		return "check MYSQL_DATABASE; still retrying, the database may be initialising"
	case ReasonPasswordFile:
		return "check MYSQL_PASSWORD_FILE; still retrying, the secret may not be mounted yet"
	case ReasonTLS:
		return "check MYSQL_TLS and MYSQL_TLS_CA_FILE against the server's TLS setup"
	}
	return ""
}

// CheckError is a failed check: its reason and the driver's message. It
// never holds the password: the driver's messages do not carry it, and the
// message is scrubbed of it all the same.
type CheckError struct {
	Reason Reason
	Detail string // the underlying error's text, password removed
	err    error
}

// Error gives the reason in plain words, then the detail.
func (e *CheckError) Error() string {
	if e.Detail == "" {
		return e.Reason.Words()
	}
	return e.Reason.Words() + ": " + e.Detail
}

// Unwrap returns the underlying error, for errors.Is (syscall.ECONNREFUSED,
// context.DeadlineExceeded, …).
func (e *CheckError) Unwrap() error { return e.err }

// newCheckError classifies err and removes password from its text.
func newCheckError(err error, password string) *CheckError {
	return &CheckError{Reason: classify(err), Detail: scrub(err.Error(), password), err: err}
}

// scrub replaces the password in s. Passwords shorter than four characters
// are left alone: replacing them would mangle the message (and the driver
// never quotes the password anyway; this is a second line of defence).
func scrub(s, password string) string {
	if len(password) < 4 {
		return s
	}
	return strings.ReplaceAll(s, password, "******")
}

// MySQL server error numbers the gate tells apart.
const (
	erDBAccessDenied  = 1044 // no rights on the database, or it does not exist
	erAccessDenied    = 1045 // wrong user or password
	erBadDB           = 1049 // unknown database
	erTooManyConns    = 1040
	erHostNotPriviled = 1130 // user@host does not exist for this host
	erServerShutdown  = 1053
	erConnCount       = 1203 // max_user_connections
)

// classify maps a driver or network error to a Reason.
func classify(err error) Reason {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case erAccessDenied:
			return ReasonAccessDenied
		case erDBAccessDenied:
			return ReasonDBDenied
		case erBadDB:
			return ReasonUnknownDB
		case erHostNotPriviled:
			return ReasonHostNotAllow
		case erTooManyConns, erConnCount:
			return ReasonTooMany
		case erServerShutdown:
			return ReasonConnLost
		}
		return ReasonOther
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		if dnsErr.IsNotFound {
			return ReasonHostNotFound
		}
		if dnsErr.IsTimeout {
			return ReasonTimeout
		}
		return ReasonHostNotFound
	}
	var (
		unknownCA *x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invalid   x509.CertificateInvalidError
		verifyErr *tls.CertificateVerificationError
		recordErr tls.RecordHeaderError
		alertErr  tls.AlertError
	)
	switch {
	case errors.Is(err, mysql.ErrNoTLS),
		errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &invalid),
		errors.As(err, &verifyErr), errors.As(err, &recordErr), errors.As(err, &alertErr):
		return ReasonTLS
	case errors.Is(err, syscall.ECONNREFUSED):
		return ReasonRefused
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return ReasonUnreachable
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		return ReasonTimeout
	case errors.Is(err, mysql.ErrInvalidConn), errors.Is(err, driver.ErrBadConn), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return ReasonConnLost
	}
	// The TLS handshake's own errors are mostly unexported strings.
	if msg := err.Error(); strings.Contains(msg, "tls: ") || strings.Contains(msg, "x509: ") {
		return ReasonTLS
	}
	return ReasonOther
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
