package proxy

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the proxy's collectors on the supervisor's /metrics. Children
// are resolved once per site so the request path does no label lookups.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	bytes    *prometheus.CounterVec
	upErrors *prometheus.CounterVec
	tmpFiles *prometheus.CounterVec
	tmpBytes *prometheus.CounterVec
}

type siteMetrics struct {
	byClass  [6]prometheus.Counter // index status/100; 0 = other
	duration prometheus.Observer
	bytes    prometheus.Counter
	upErrors map[string]prometheus.Counter
}

// Upstream error kinds, the "kind" label of onebox_proxy_upstream_errors_total.
const (
	upErrConnect = "connect"
	upErrTimeout = "timeout"
	upErrReset   = "failure"
)

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onebox_proxy_requests_total",
			Help: "Requests answered by the proxy, by site and status class.",
		}, []string{"site", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "onebox_proxy_request_duration_seconds",
			Help:    "Time from request to the end of the response, by site.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"site"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onebox_proxy_response_bytes_total",
			Help: "Response body bytes sent, by site.",
		}, []string{"site"}),
		upErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onebox_proxy_upstream_errors_total",
			Help: "Failed upstream exchanges, by site and kind (connect, timeout, failure).",
		}, []string{"site", "kind"}),
	}
	m.tmpFiles = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onebox_proxy_temp_file_bodies_total",
		Help: "Bodies that went past their memory buffer into a temp file, by direction (request, response).",
	}, []string{"direction"})
	m.tmpBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "onebox_proxy_temp_file_bytes_total",
		Help: "Bytes written to temp files, by direction (request, response).",
	}, []string{"direction"})
	reg.MustRegister(m.requests, m.duration, m.bytes, m.upErrors, m.tmpFiles, m.tmpBytes)
	return m
}

func (m *metrics) site(name string) *siteMetrics {
	if m == nil {
		return nil
	}
	sm := &siteMetrics{
		duration: m.duration.WithLabelValues(name),
		bytes:    m.bytes.WithLabelValues(name),
		upErrors: map[string]prometheus.Counter{},
	}
	for i, c := range []string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"} {
		sm.byClass[i] = m.requests.WithLabelValues(name, c)
	}
	for _, k := range []string{upErrConnect, upErrTimeout, upErrReset} {
		sm.upErrors[k] = m.upErrors.WithLabelValues(name, k)
	}
	return sm
}

func (sm *siteMetrics) observe(status int, bytes int64, d time.Duration) {
	if sm == nil {
		return
	}
	c := status / 100
	if c < 1 || c > 5 {
		c = 0
	}
	sm.byClass[c].Inc()
	sm.duration.Observe(d.Seconds())
	if bytes > 0 {
		sm.bytes.Add(float64(bytes))
	}
}

func (sm *siteMetrics) upstreamError(kind string) {
	if sm == nil {
		return
	}
	sm.upErrors[kind].Inc()
}

// tempFiles returns the temp-file counters of one direction; nil without
// a registry.
func (m *metrics) tempFiles(direction string) (files, bytes prometheus.Counter) {
	if m == nil {
		return nil, nil
	}
	return m.tmpFiles.WithLabelValues(direction), m.tmpBytes.WithLabelValues(direction)
}
