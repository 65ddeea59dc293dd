package h1

import "time"

// Request hygiene (nginx's client_header_timeout, keepalive_timeout,
// large_client_header_buffers, send_timeout). The proxy gives its TLS
// listener (net/http) the same figures.
const (
	// ReadHeaderTimeout bounds the reading of a request head: from accept
	// for the first request, from its first byte for later ones.
	ReadHeaderTimeout = 10 * time.Second
	// IdleTimeout is how long a connection waits for its next request.
	IdleTimeout = 75 * time.Second
	// MaxHeaderBytes bounds a request head (and twice it, a response head).
	MaxHeaderBytes = 32 << 10
	// MaxRequestLine bounds the request line (414 past it), as nginx's
	// large_client_header_buffers (4 8k) does.
	MaxRequestLine = 8 << 10
	// MaxHeaderFields bounds the header fields of a request (431 past
	// it), gunicorn's limit_request_fields.
	MaxHeaderFields = 100
	// SendTimeout fails a write to the client without progress for this
	// long (between two successful writes, not for the whole response).
	SendTimeout = 60 * time.Second
)

// maxDiscard is how much of a request body the handler left unread is
// read and dropped to keep the connection (net/http's figure); a larger
// rest closes it.
const maxDiscard = 256 << 10

// lingerTimeout bounds the reading of what a client still sends after the
// last response, before the connection is closed.
const lingerTimeout = time.Second

// newConnGrace is how long Shutdown lets a connection accepted just before
// it send its first request (net/http's figure).
const newConnGrace = 5 * time.Second

// Timeouts are a server's client timeouts (PROXY_CLIENT_HEADER_TIMEOUT,
// PROXY_KEEPALIVE_TIMEOUT, PROXY_CLIENT_SEND_TIMEOUT), all positive.
type Timeouts struct {
	Header time.Duration // see ReadHeaderTimeout
	Idle   time.Duration // see IdleTimeout
	Send   time.Duration // see SendTimeout
}

// DefaultTimeouts are nginx's figures, as the constants above.
var DefaultTimeouts = Timeouts{Header: ReadHeaderTimeout, Idle: IdleTimeout, Send: SendTimeout}
