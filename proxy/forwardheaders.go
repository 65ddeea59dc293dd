package proxy

import (
	"net/http"
	"net/netip"
	"strings"

	"onebox/proxy/internal/h1"
)

// The header-forwarding policy, nginx's proxy_set_header defaults and
// real_ip: which client header fields reach the upstream, which are
// ours, and the client address behind trusted proxies.

// hopHeaders are dropped in both directions (RFC 9110 §7.6.1), with those
// named in Connection. Content-Length is rewritten by us.
var hopHeaders = map[string]bool{
	"Connection":          true,
	"Proxy-Connection":    true,
	"Keep-Alive":          true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
	"Proxy-Authorization": true,
	"Proxy-Authenticate":  true,
}

// forwardedHeaders are set by us; client-sent copies are dropped unless the
// peer is a trusted proxy.
var forwardedHeaders = map[string]bool{
	"X-Forwarded-For":   true,
	"X-Forwarded-Proto": true,
	"X-Forwarded-Host":  true,
	"X-Real-Ip":         true,
	"Forwarded":         true,
}

// peerAddr is the host part of RemoteAddr, without allocating.
func peerAddr(remote string) string {
	if i := strings.LastIndexByte(remote, ':'); i > 0 {
		remote = remote[:i]
	}
	return strings.TrimSuffix(strings.TrimPrefix(remote, "["), "]")
}

func (s *Server) isTrusted(a string) bool {
	if len(s.trusted) == 0 {
		return false
	}
	ip, err := netip.ParseAddr(a)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, p := range s.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// clientIP is nginx's real_ip with real_ip_recursive on: when the peer is
// trusted, the right-most X-Forwarded-For address that is not trusted.
func (s *Server) clientIP(r *http.Request) string {
	peer := peerAddr(r.RemoteAddr)
	if len(s.trusted) == 0 || !s.isTrusted(peer) {
		return peer
	}
	client := peer
	xff := strings.Join(r.Header["X-Forwarded-For"], ",")
	for xff != "" {
		var part string
		if i := strings.LastIndexByte(xff, ','); i >= 0 {
			part, xff = strings.TrimSpace(xff[i+1:]), xff[:i]
		} else {
			part, xff = strings.TrimSpace(xff), ""
		}
		if _, err := netip.ParseAddr(part); err != nil {
			break
		}
		client = part
		if !s.isTrusted(part) {
			break
		}
	}
	return client
}

// upgradeOf returns the Upgrade protocol when the request asks for one.
func upgradeOf(h http.Header) string {
	up := h["Upgrade"]
	if len(up) == 0 {
		return ""
	}
	for _, v := range h["Connection"] {
		for t := range strings.SplitSeq(v, ",") {
			if h1.TokenEqual(t, "upgrade") {
				return up[0]
			}
		}
	}
	return ""
}

// forwarding is what the header policy reads besides the client's header
// map.
type forwarding struct {
	peer    string // the peer's address (RemoteAddr without its port)
	client  string // the client's address after real_ip (clientIP)
	trusted bool   // the peer is a trusted proxy (PROXY_TRUSTED_PROXIES)
	https   bool   // the client came over TLS
	host    string // the request's Host, "" when it sent none
	upgrade string // the Upgrade protocol passed on, "" for none
}

// upstreamFields appends to dst the header fields a request sends its
// upstream, Host and the body's framing aside: the client's fields less
// hop-by-hop ones, those its Connection header names, names with an
// underscore (nginx's underscores_in_headers off: WSGI would read
// X_Forwarded_For as X-Forwarded-For) and the forwarding fields, which
// are ours unless the peer is trusted; then X-Forwarded-For (the trusted
// peer's list, then the peer), X-Real-IP, X-Forwarded-Proto and
// X-Forwarded-Host (a trusted peer's own are kept), and Connection:
// Upgrade for a websocket. It is a pure function of its arguments.
func upstreamFields(dst []h1.Field, h http.Header, f forwarding) []h1.Field {
	conn := h["Connection"]
	for k, vv := range h {
		if !forwardField(k, conn, f.trusted) {
			continue
		}
		for _, v := range vv {
			dst = append(dst, h1.Field{Name: k, Value: v})
		}
	}
	xff := f.peer
	if prior := h["X-Forwarded-For"]; f.trusted && len(prior) > 0 {
		xff = strings.Join(prior, ", ") + ", " + f.peer
	}
	dst = append(dst, h1.Field{Name: "X-Forwarded-For", Value: xff}, h1.Field{Name: "X-Real-IP", Value: f.client})
	if !f.trusted || h["X-Forwarded-Proto"] == nil {
		proto := "http"
		if f.https {
			proto = "https"
		}
		dst = append(dst, h1.Field{Name: "X-Forwarded-Proto", Value: proto})
	}
	if !f.trusted || h["X-Forwarded-Host"] == nil {
		dst = append(dst, h1.Field{Name: "X-Forwarded-Host", Value: f.host})
	}
	if f.upgrade != "" {
		dst = append(dst, h1.Field{Name: "Connection", Value: "Upgrade"}, h1.Field{Name: "Upgrade", Value: f.upgrade})
	}
	return dst
}

// forwardField reports whether the client's header field k goes to the
// upstream as it is (see upstreamFields); conn is the client's
// Connection header.
func forwardField(k string, conn []string, trusted bool) bool {
	switch {
	case hopHeaders[k] || k == "Content-Length" || k == "Host" || k == "Expect" || strings.IndexByte(k, '_') >= 0:
		return false
	case forwardedHeaders[k] && (!trusted || k != "X-Forwarded-Proto" && k != "X-Forwarded-Host" && k != "Forwarded"):
		return false
	}
	return conn == nil || !h1.ConnectionListed(conn, k)
}
