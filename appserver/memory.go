package appserver

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// memEvery is how often the loop reads each worker's resident memory.
const memEvery = time.Second

// sampleMemory reads every worker's resident memory (RSS, with its child
// processes: a gunicorn worker is a master and its child) for /status and
// /metrics, and recycles a worker above APP_MAX_WORKER_MEMORY the way
// max-requests does: its replacement starts first, and it is stopped once
// the full count is up without it, so no request fails. gunicorn has no such
// limit (benoitc/gunicorn#3581); Python apps that leak need one.
func (m *Master) sampleMemory(now time.Time) {
	if now.Sub(m.memAt) < m.memEvery {
		return
	}
	m.memAt = now
	limit := int64(m.cfg.MaxWorkerMemory)
	for _, w := range m.workers {
		rss, err := treeRSS(w.pid)
		if err != nil {
			continue // it exited meanwhile; its exit is on the way
		}
		w.rss.Store(rss)
		m.met.memory.WithLabelValues(strconv.Itoa(w.id)).Set(float64(rss))
		if limit > 0 && rss > limit && w.booted && w.state == WorkerReady {
			w.state = WorkerRetiring
			m.met.memRecycles.Inc()
			m.log.Warn().Int("worker", w.id).Int("pid", w.pid).Int64("memory_bytes", rss).
				Str("memory", fmt.Sprintf("%.1f MiB", float64(rss)/(1<<20))).Str("limit", m.cfg.MaxWorkerMemory.String()).
				Msg("worker above APP_MAX_WORKER_MEMORY; starting its replacement first")
		}
	}
}

// treeRSS is the resident memory in bytes of pid and its descendants, from
// /proc (statm, and the children list of each of their threads).
func treeRSS(pid int) (int64, error) {
	page := int64(os.Getpagesize())
	var total int64
	seen := map[int]bool{}
	queue := []int{pid}
	for len(queue) > 0 && len(seen) < 256 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		statm, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/statm")
		if err != nil {
			if p == pid {
				return 0, fmt.Errorf("read memory of pid %d: %w", pid, err)
			}
			continue // a child gone meanwhile
		}
		f := bytes.Fields(statm)
		if len(f) < 2 {
			continue
		}
		pages, _ := strconv.ParseInt(string(f[1]), 10, 64)
		total += pages * page
		queue = append(queue, childrenOf(p)...)
	}
	return total, nil
}

// childrenOf lists the child processes of pid: each of its threads has its
// own children file (Linux 3.5+, CONFIG_PROC_CHILDREN).
func childrenOf(pid int) []int {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/children")
		if err != nil {
			continue
		}
		for _, f := range bytes.Fields(b) {
			if c, err := strconv.Atoi(string(f)); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}
