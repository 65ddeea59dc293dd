package dbcheck

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the gate's Prometheus series. They exist (and are updated)
// whether or not a registerer was given; without one nobody reads them.
type metrics struct {
	up       prometheus.Gauge
	latency  prometheus.Histogram
	failures *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "onebox_mysql_up",
			Help: "1 while the last database check logged in and ran SELECT 1, else 0.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "onebox_mysql_check_duration_seconds",
			Help:    "Time of one database check: connect, log in, SELECT 1.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onebox_mysql_check_failures_total",
			Help: "Failed database checks by reason.",
		}, []string{"reason"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.up, m.latency, m.failures} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register dbcheck metrics: %w", err)
		}
	}
	return m, nil
}
