package proxy

import (
	"time"

	"onebox/config"
)

// Config is the proxy's part of the environment, prefix PROXY_. The default
// site's settings sit unprefixed beside the listener settings (PROXY_ROOT);
// named sites (PROXY_SITES=docs,shop) read the same Site settings under
// PROXY_SITE_<NAME>_ and are filled in by the composer.
type Config struct {
	Listen            string          `env:"LISTEN" envDefault:":8080" help:"HTTP listener; PORT, when set, replaces its port"`
	TLSListen         string          `env:"TLS_LISTEN" envDefault:":8443" help:"HTTPS listener, used when PROXY_TLS_CERT_FILE and PROXY_TLS_KEY_FILE or PROXY_ACME_DOMAINS are set"`
	TLSCertFile       string          `env:"TLS_CERT_FILE" help:"PEM certificate chain; re-read on reload (HUP)"`
	TLSKeyFile        string          `env:"TLS_KEY_FILE" help:"PEM private key; re-read on reload (HUP)"`
	ACME              ACMEConfig      `envPrefix:"ACME_"`
	TLSRedirect       bool            `env:"TLS_REDIRECT" envDefault:"false" help:"answer plain HTTP with a 308 redirect to HTTPS"`
	ClientMaxBodySize config.ByteSize `env:"CLIENT_MAX_BODY_SIZE" envDefault:"1m" help:"largest request body (k, m, g suffixes); 413 above it; 0 = unlimited"`
	// Buffering (nginx's client_body_buffer_size, proxy_buffer_size,
	// proxy_max_temp_file_size, client_body_temp_path); whether it is on
	// is per site (Site.RequestBuffering, Site.Buffering).
	ClientBodyBufferSize config.ByteSize `env:"CLIENT_BODY_BUFFER_SIZE" envDefault:"16k" help:"request body bytes kept in memory while it is read whole (request buffering); the rest goes to a temp file"`
	BufferSize           config.ByteSize `env:"BUFFER_SIZE" envDefault:"64k" help:"response body bytes kept in memory while it is read from the upstream (response buffering); the rest goes to a temp file"`
	MaxTempFileSize      config.ByteSize `env:"MAX_TEMP_FILE_SIZE" envDefault:"1g" help:"most bytes of one response kept in a temp file; the rest is streamed from the upstream (0: no temp file, memory only)"`
	TempDir              string          `env:"TEMP_DIR" envDefault:"/tmp" help:"where bodies past their memory buffer go, as files without a name (O_TMPFILE, mode 0600); when not writable (a read-only root), anonymous memory (memfd) instead, as onebox check and the start-up log say"`
	// Client timeouts (nginx's client_header_timeout, client_body_timeout,
	// send_timeout, keepalive_timeout).
	ClientHeaderTimeout time.Duration `env:"CLIENT_HEADER_TIMEOUT" envDefault:"10s" help:"time to receive a request head (408 past it)"`
	ClientBodyTimeout   time.Duration `env:"CLIENT_BODY_TIMEOUT" envDefault:"60s" help:"time between two reads of a request body (nginx's client_body_timeout; 408 and close past it)"`
	ClientSendTimeout   time.Duration `env:"CLIENT_SEND_TIMEOUT" envDefault:"60s" help:"time between two writes of a response the client does not read (nginx's send_timeout; the connection is closed past it)"`
	KeepaliveTimeout    time.Duration `env:"KEEPALIVE_TIMEOUT" envDefault:"75s" help:"how long an idle keep-alive connection stays open; keep it above a load balancer's idle timeout (AWS ALB: 60s), or the balancer reuses a connection just closed and answers 502"`
	ConnectTimeout      time.Duration `env:"CONNECT_TIMEOUT" envDefault:"5s" help:"time to connect to the upstream"`
	ReadTimeout         time.Duration `env:"READ_TIMEOUT" envDefault:"60s" help:"time the upstream may take between two reads of its response (504 past it)"`
	SendTimeout         time.Duration `env:"SEND_TIMEOUT" envDefault:"60s" help:"time allowed to send the request to the upstream"`
	TrustedProxies      []string      `env:"TRUSTED_PROXIES" envSeparator:"," help:"CIDRs whose X-Forwarded-For is believed (nginx real_ip), e.g. 10.0.0.0/8"`
	AccessLog           string        `env:"ACCESS_LOG" envDefault:"combined" help:"combined (nginx's format), json or off"`
	AccessLogSkip       []string      `env:"ACCESS_LOG_SKIP" envSeparator:"," help:"paths not logged, e.g. /healthz,/favicon.ico"`
	Gzip                bool          `env:"GZIP" envDefault:"true" help:"gzip compressible responses for clients that accept it"`
	SiteNames           []string      `env:"SITES" envSeparator:"," help:"further sites by name: docs,shop reads PROXY_SITE_DOCS_*, PROXY_SITE_SHOP_*"`

	// Site is the default site, read from the unprefixed settings.
	Site Site

	// Sites are the named sites, in PROXY_SITES order. Filled by the composer.
	Sites []Site `env:"-"`
}

// Site is one virtual host (an nginx server block).
type Site struct {
	Name        string   `env:"-"`
	ServerNames []string `env:"SERVER_NAMES" envSeparator:" " help:"names this site answers: exact, *.example.com, www.example.*, .example.com or ~regex; space-separated"`
	Root        string   `env:"ROOT" envDefault:"/var/www/html" help:"static root"`
	Index       []string `env:"INDEX" envDefault:"index.html index.htm" envSeparator:" " help:"index files, space-separated"`
	TryFiles    []string `env:"TRY_FILES" envDefault:"$uri $uri/ @app" envSeparator:" " help:"nginx try_files: $uri, $uri/, literal paths, then @app (the upstream), =404 or a URI"`
	Upstream    string   `env:"UPSTREAM" help:"where @app goes: empty = the worker pool (APP_BIND), or http://host:port, or unix:/path"`
	Aliases     []string `env:"ALIASES" envSeparator:"," help:"URL prefix to directory mappings, /static/=/app/static/,/media/=/data/media/ (nginx alias)"`
	// RequestBuffering and Buffering are nginx's proxy_request_buffering
	// and proxy_buffering, both on by default.
	RequestBuffering bool `env:"REQUEST_BUFFERING" envDefault:"true" help:"read the whole request body (memory, then a temp file) before an upstream connection is taken, so slow uploads never hold a worker; false streams it"`
	Buffering        bool `env:"BUFFERING" envDefault:"true" help:"read the upstream's response as fast as it comes (memory, then a temp file) and free the worker at once; false streams it. Upgrades, text/event-stream and X-Accel-Buffering: no always stream"`
	Default          bool `env:"DEFAULT" envDefault:"false" help:"named sites only: this site answers requests no other site's names match"`
}
