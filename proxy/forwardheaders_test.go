package proxy

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"onebox/proxy/internal/h1"
)

// TestUpstreamFields is the header-forwarding policy as a table, without
// sockets: which client fields reach the upstream and which are ours.
// The client's fields come out in map order, so both sides are sorted.
func TestUpstreamFields(t *testing.T) {
	plain := forwarding{peer: "192.0.2.7", client: "192.0.2.7", host: "example.com"}
	trusted := forwarding{peer: "10.0.0.1", client: "198.51.100.9", trusted: true, host: "example.com", https: true}
	ours := func(xff, realIP, proto, host string) []string {
		return []string{"X-Forwarded-For: " + xff, "X-Real-IP: " + realIP, "X-Forwarded-Proto: " + proto, "X-Forwarded-Host: " + host}
	}
	for _, tc := range []struct {
		name string
		h    http.Header
		f    forwarding
		want []string
	}{
		{"plain request", http.Header{"Accept": {"*/*"}, "Cookie": {"a=1", "b=2"}}, plain,
			append([]string{"Accept: */*", "Cookie: a=1", "Cookie: b=2"}, ours("192.0.2.7", "192.0.2.7", "http", "example.com")...)},
		{"hop-by-hop and framing dropped", http.Header{
			"Connection": {"keep-alive, X-Private"}, "Keep-Alive": {"5"}, "Proxy-Connection": {"x"}, "Te": {"trailers"},
			"Trailer": {"X"}, "Transfer-Encoding": {"chunked"}, "Upgrade": {"h2c"}, "Proxy-Authorization": {"x"},
			"Proxy-Authenticate": {"x"}, "Content-Length": {"3"}, "Host": {"evil"}, "Expect": {"100-continue"},
			"X-Private": {"listed in Connection"}, "X-Kept": {"1"},
		}, plain, append([]string{"X-Kept: 1"}, ours("192.0.2.7", "192.0.2.7", "http", "example.com")...)},
		{"underscores dropped", http.Header{"X_Forwarded_For": {"1.2.3.4"}, "X-Ok": {"1"}}, plain,
			append([]string{"X-Ok: 1"}, ours("192.0.2.7", "192.0.2.7", "http", "example.com")...)},
		{"forwarding fields from an untrusted peer replaced", http.Header{
			"X-Forwarded-For": {"1.2.3.4"}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"evil"},
			"X-Real-Ip": {"1.2.3.4"}, "Forwarded": {"for=1.2.3.4"},
		}, plain, ours("192.0.2.7", "192.0.2.7", "http", "example.com")},
		{"a trusted peer's kept and extended", http.Header{
			"X-Forwarded-For": {"198.51.100.9", "10.0.0.2"}, "X-Forwarded-Proto": {"http"}, "X-Forwarded-Host": {"public.example"},
			"X-Real-Ip": {"1.2.3.4"}, "Forwarded": {"for=198.51.100.9"},
		}, trusted, []string{"X-Forwarded-Proto: http", "X-Forwarded-Host: public.example", "Forwarded: for=198.51.100.9",
			"X-Forwarded-For: 198.51.100.9, 10.0.0.2, 10.0.0.1", "X-Real-IP: 198.51.100.9"}},
		{"a trusted peer without its own", http.Header{}, trusted, ours("10.0.0.1", "198.51.100.9", "https", "example.com")},
		{"no Host (HTTP/1.0)", http.Header{}, forwarding{peer: "192.0.2.7", client: "192.0.2.7"},
			ours("192.0.2.7", "192.0.2.7", "http", "")},
		{"websocket", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Key": {"k"}},
			forwarding{peer: "192.0.2.7", client: "192.0.2.7", host: "example.com", upgrade: "websocket"},
			append([]string{"Sec-Websocket-Key: k", "Connection: Upgrade", "Upgrade: websocket"}, ours("192.0.2.7", "192.0.2.7", "http", "example.com")...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, f := range upstreamFields(nil, tc.h, tc.f) {
				got = append(got, f.Name+": "+f.Value)
			}
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("fields:\n  got  %s\n  want %s", strings.Join(got, " | "), strings.Join(want, " | "))
			}
		})
	}
	// Ours come after the client's, in a fixed order.
	fs := upstreamFields(nil, http.Header{"Accept": {"*/*"}}, plain)
	var names []string
	for _, f := range fs[1:] {
		names = append(names, f.Name)
	}
	if want := []string{"X-Forwarded-For", "X-Real-IP", "X-Forwarded-Proto", "X-Forwarded-Host"}; fs[0] != (h1.Field{Name: "Accept", Value: "*/*"}) || !slices.Equal(names, want) {
		t.Errorf("order: %v, want Accept then %v", fs, want)
	}
}
