// Package proxy is onebox's web front: an nginx-class reverse proxy and
// static file server, configured from PROXY_* variables (see Config).
//
// A request goes through, in order:
//
//   - hygiene: header timeout, header size, TRACE/CONNECT refused, a
//     connection carrying Transfer-Encoding is closed after its response
//     (RFC 9112 §6.1), NUL, backslashes, encoded slashes and ".." above the
//     root answered with 400;
//   - host selection (hosts.go) with nginx's server_name precedence;
//   - the site's aliases (PROXY_ALIASES), then try_files (PROXY_TRY_FILES)
//     over the site's root, every file read through an os.Root so nothing
//     outside it is reachable, dotfiles never served from disk
//     (/.well-known/ excepted), an open-file cache in front (cache.go);
//   - the fallback: @app (the upstream: forward.go, which header fields
//     go there in forwardheaders.go; the bytes are internal/h1's), =NNN,
//     or a URI;
//   - the access log (combined or JSON) and metrics.
//
// Deviations from nginx, on purpose: "$uri/" matches a directory only when
// it holds an index file (nginx answers 403 for a directory without one,
// which surprises "try_files $uri $uri/ @app" users whose app serves /);
// directory redirects are relative ("./docs/"); header names with
// underscores are dropped towards the upstream, as nginx does by default.
package proxy
