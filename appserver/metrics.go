package appserver

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the pool's Prometheus series. With a nil Registerer they are
// still counted (Status uses nothing from here) but registered nowhere.
type metrics struct {
	workers     *prometheus.GaugeVec   // by state: booting, ready, retiring, draining, aborted
	busy        prometheus.Gauge       // workers with a request in flight (Go workers report it)
	idle        prometheus.Gauge       // workers that report no request in flight
	target      prometheus.Gauge       // the wanted worker count
	spawns      prometheus.Counter     // workers started
	exits       *prometheus.CounterVec // by reason: stop, reload, recycle, scale, crash, timeout, boot_failure
	timeouts    prometheus.Counter     // heartbeat timeouts
	recycles    prometheus.Counter     // max-requests retirements
	bootFails   prometheus.Counter     // workers that died before booting
	reloads     *prometheus.CounterVec // by result: ok, failed
	droppedLogs prometheus.Counter     // worker output lines dropped because logging fell behind
	memory      *prometheus.GaugeVec   // resident bytes by worker id
	memRecycles prometheus.Counter     // recycles for APP_MAX_WORKER_MEMORY
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "onebox", "app"
	m := &metrics{
		workers: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "workers",
			Help: "Worker processes by state (booting, ready, retiring, draining, aborted)."}, []string{"state"}),
		busy: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "workers_busy",
			Help: "Workers reporting at least one request in flight (workers that heartbeat with the Go protocol)."}),
		idle: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "workers_idle",
			Help: "Workers reporting no request in flight (workers that heartbeat with the Go protocol)."}),
		target: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "workers_target",
			Help: "Wanted worker count (APP_WORKERS, changed by scale)."}),
		spawns: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "worker_spawns_total",
			Help: "Worker processes started."}),
		exits: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "worker_exits_total",
			Help: "Worker exits by reason (stop, reload, recycle, scale, crash, timeout, boot_failure)."}, []string{"reason"}),
		timeouts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "worker_timeouts_total",
			Help: "Workers killed for a heartbeat older than APP_TIMEOUT."}),
		recycles: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "worker_recycles_total",
			Help: "Workers retired at APP_MAX_REQUESTS."}),
		bootFails: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "worker_boot_failures_total",
			Help: "Workers that exited before they booted."}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "reloads_total",
			Help: "Graceful reloads by result (ok, failed)."}, []string{"result"}),
		droppedLogs: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "worker_log_lines_dropped_total",
			Help: "Worker output lines dropped because logging could not keep up."}),
		memory: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "worker_memory_bytes",
			Help: "Resident memory of each worker process with its children, read every second."}, []string{"worker"}),
		memRecycles: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "worker_memory_recycles_total",
			Help: "Workers recycled for resident memory above APP_MAX_WORKER_MEMORY."}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.workers, m.busy, m.idle, m.target, m.spawns, m.exits,
		m.timeouts, m.recycles, m.bootFails, m.reloads, m.droppedLogs, m.memory, m.memRecycles} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
