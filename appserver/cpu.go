package appserver

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// cpuLimit returns the CPU limit of the cgroup this process runs in, read
// from the file system under root ("/" in production, a sample tree in
// tests), and a description of its source for the log. The lowest quota on
// the way from the process's cgroup up to the root wins, as the kernel
// enforces every level: cgroup v2 cpu.max first, then v1 cpu.cfs_quota_us /
// cpu.cfs_period_us. Without a quota it is the usable cores.
func cpuLimit(root string) (float64, string) {
	v1, v2 := ownCgroups(filepath.Join(root, "proc/self/cgroup"))
	best, src := math.Inf(1), ""
	consider := func(q float64, where string) {
		if q > 0 && q < best {
			best, src = q, where
		}
	}
	for _, dir := range ancestors(v2) {
		f := filepath.Join(root, "sys/fs/cgroup", dir, "cpu.max")
		if q, ok := readCPUMax(f); ok {
			consider(q, "cgroup v2 cpu.max")
		}
	}
	if math.IsInf(best, 1) {
		for _, mount := range []string{"cpu,cpuacct", "cpu", "cpuacct,cpu"} {
			for _, dir := range ancestors(v1) {
				d := filepath.Join(root, "sys/fs/cgroup", mount, dir)
				if q, ok := readCFS(d); ok {
					consider(q, "cgroup v1 cpu.cfs_quota_us")
				}
			}
		}
	}
	cores := float64(runtime.NumCPU())
	if math.IsInf(best, 1) || best > cores {
		return cores, fmt.Sprintf("%d cores (no lower cgroup CPU quota)", runtime.NumCPU())
	}
	return best, src
}

// ownCgroups reads /proc/self/cgroup: the v1 cpu controller's path and the
// v2 unified path ("/" when unknown).
func ownCgroups(file string) (v1, v2 string) {
	v1, v2 = "/", "/"
	f, err := os.Open(file)
	if err != nil {
		return v1, v2
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2 = parts[2]
		case hasController(parts[1], "cpu"):
			v1 = parts[2]
		}
	}
	return v1, v2
}

func hasController(list, name string) bool {
	for c := range strings.SplitSeq(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// ancestors lists p and its parents up to "/", deepest first.
func ancestors(p string) []string {
	p = path.Clean("/" + p)
	out := []string{p}
	for p != "/" {
		p = path.Dir(p)
		out = append(out, p)
	}
	return out
}

// readCPUMax parses cgroup v2 cpu.max: "max 100000" (no limit) or
// "QUOTA PERIOD" in microseconds.
func readCPUMax(file string) (float64, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) == 0 || f[0] == "max" {
		return 0, false
	}
	quota, err := strconv.ParseFloat(f[0], 64)
	if err != nil || quota <= 0 {
		return 0, false
	}
	period := 100000.0 // the kernel's default when the file has one field
	if len(f) > 1 {
		if p, err := strconv.ParseFloat(f[1], 64); err == nil && p > 0 {
			period = p
		}
	}
	return quota / period, true
}

// readCFS parses cgroup v1 cpu.cfs_quota_us (-1 = no limit) and
// cpu.cfs_period_us in dir.
func readCFS(dir string) (float64, bool) {
	qb, err := os.ReadFile(filepath.Join(dir, "cpu.cfs_quota_us"))
	if err != nil {
		return 0, false
	}
	pb, err := os.ReadFile(filepath.Join(dir, "cpu.cfs_period_us"))
	if err != nil {
		return 0, false
	}
	q, err1 := strconv.ParseFloat(strings.TrimSpace(string(qb)), 64)
	p, err2 := strconv.ParseFloat(strings.TrimSpace(string(pb)), 64)
	if err1 != nil || err2 != nil || q <= 0 || p <= 0 {
		return 0, false
	}
	return q / p, true
}

// defaultWorkers is gunicorn's advice, 2 x CPUs + 1, from the CPU limit
// (rounded up, so half a CPU still gives 2 workers), capped by maxWorkers.
func defaultWorkers(cpus float64, maxWorkers int) int {
	n := int(math.Ceil(2*cpus)) + 1
	return max(1, min(n, maxWorkers))
}
