package appserver

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestCPULimit(t *testing.T) {
	cores := float64(runtime.NumCPU())
	tests := []struct {
		name    string
		files   map[string]string // relative to the fake root
		want    float64           // before capping at the cores
		wantSrc string
	}{
		{"v2 quota at the root", map[string]string{
			"proc/self/cgroup":      "0::/\n",
			"sys/fs/cgroup/cpu.max": "50000 100000\n",
		}, 0.5, "cgroup v2"},
		{"v2 nested, limit on the parent", map[string]string{
			"proc/self/cgroup":                 "0::/docker/abc\n",
			"sys/fs/cgroup/docker/abc/cpu.max": "max 100000\n",
			"sys/fs/cgroup/docker/cpu.max":     "75000 100000\n",
		}, 0.75, "cgroup v2"},
		{"v2 lowest level wins", map[string]string{
			"proc/self/cgroup":                 "0::/docker/abc\n",
			"sys/fs/cgroup/docker/abc/cpu.max": "25000 100000\n",
			"sys/fs/cgroup/docker/cpu.max":     "75000 100000\n",
		}, 0.25, "cgroup v2"},
		{"v2 quota with a custom period", map[string]string{
			"proc/self/cgroup":      "0::/\n",
			"sys/fs/cgroup/cpu.max": "30000 50000\n",
		}, 0.6, "cgroup v2"},
		{"v2 without a limit", map[string]string{
			"proc/self/cgroup":      "0::/\n",
			"sys/fs/cgroup/cpu.max": "max 100000\n",
		}, cores, "cores"},
		{"v1 cfs quota", map[string]string{
			"proc/self/cgroup": "12:memory:/docker/x\n4:cpu,cpuacct:/docker/x\n",
			"sys/fs/cgroup/cpu,cpuacct/docker/x/cpu.cfs_quota_us":  "50000\n",
			"sys/fs/cgroup/cpu,cpuacct/docker/x/cpu.cfs_period_us": "100000\n",
		}, 0.5, "cgroup v1"},
		{"v1 in a cgroup namespace (root path)", map[string]string{
			"proc/self/cgroup":                    "4:cpu,cpuacct:/\n",
			"sys/fs/cgroup/cpu/cpu.cfs_quota_us":  "150000\n",
			"sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
		}, 1.5, "cgroup v1"},
		{"v1 unlimited (-1)", map[string]string{
			"proc/self/cgroup":                            "4:cpu,cpuacct:/\n",
			"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us":  "-1\n",
			"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
		}, cores, "cores"},
		{"no cgroup files", map[string]string{}, cores, "cores"},
		{"a quota above the cores is the cores", map[string]string{
			"proc/self/cgroup":      "0::/\n",
			"sys/fs/cgroup/cpu.max": "100000000 100000\n",
		}, cores, "cores"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for name, content := range tt.files {
				p := filepath.Join(root, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, wantSrc := tt.want, tt.wantSrc
			if want > cores {
				want, wantSrc = cores, "cores"
			}
			got, src := cpuLimit(root)
			if got != want || !strings.Contains(src, wantSrc) {
				t.Errorf("cpuLimit = %v (%s), want %v (%s)", got, src, want, wantSrc)
			}
		})
	}
}

func TestDefaultWorkers(t *testing.T) {
	tests := []struct {
		cpus float64
		max  int
		want int
	}{
		{0.5, 12, 2},
		{1, 12, 3},
		{1.5, 12, 4},
		{2, 12, 5},
		{8, 12, 12},
		{2, 3, 3},
	}
	for _, tt := range tests {
		if got := defaultWorkers(tt.cpus, tt.max); got != tt.want {
			t.Errorf("defaultWorkers(%v, %d) = %d, want %d", tt.cpus, tt.max, got, tt.want)
		}
	}
}
