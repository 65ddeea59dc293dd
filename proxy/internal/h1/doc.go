// Package h1 is onebox's HTTP/1 engine (RFC 9112), apart from what the
// proxy does with requests:
//
//   - Server, the plain-HTTP listener: one goroutine per connection,
//     keep-alive and pipelining, graceful Shutdown (server.go);
//   - one head reader and one field parser for requests, upstream
//     responses and trailers (head.go);
//   - the request parser, strict where a request could be read two ways
//     (request.go), and the request body with 100 Continue;
//   - the http.ResponseWriter that frames the response as net/http would,
//     with sendfile for files and trailers (writer.go);
//   - Upstream, a pool of persistent upstream connections with per
//     operation timeouts, a bound on their number (connlimit.go) and a
//     peek that tells a departed client or an idle connection the
//     upstream closed (upstream.go); the exchange on one (exchange.go):
//     the request written as the caller chose its fields (outgoing.go),
//     the response head read straight into the client's header map
//     (response.go), its body, and the hand-over of a 101 (tunnel.go);
//   - the figures every listener shares (limits.go).
//
// Which headers are forwarded, retries, the status a failure is answered
// with, sites, files and logs are the proxy's (package proxy).
package h1
