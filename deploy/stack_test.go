package deploy

import (
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// stack is the part of a compose file the Swarm checks read.
type stack struct {
	Services map[string]struct {
		Image           string            `json:"image"`
		Environment     map[string]string `json:"environment"`
		Secrets         []string          `json:"secrets"`
		ReadOnly        bool              `json:"read_only"`
		Tmpfs           any               `json:"tmpfs"`
		StopGracePeriod string            `json:"stop_grace_period"`
		Healthcheck     struct {
			Test []string `json:"test"`
		} `json:"healthcheck"`
		Deploy struct {
			Replicas     int `json:"replicas"`
			UpdateConfig struct {
				Order         string `json:"order"`
				FailureAction string `json:"failure_action"`
			} `json:"update_config"`
			Resources struct {
				Limits struct {
					CPUs   string `json:"cpus"`
					Memory string `json:"memory"`
				} `json:"limits"`
			} `json:"resources"`
		} `json:"deploy"`
	} `json:"services"`
	Secrets map[string]map[string]any `json:"secrets"`
}

func TestSwarmStack(t *testing.T) {
	var s stack
	if err := yaml.Unmarshal(readFile(t, "swarm/stack.yaml"), &s); err != nil {
		t.Fatalf("swarm/stack.yaml: %v", err)
	}
	svc, ok := s.Services["onebox"]
	if !ok {
		t.Fatalf("swarm/stack.yaml: no onebox service in %v", s.Services)
	}
	d := svc.Deploy
	if d.Replicas < 2 {
		t.Errorf("deploy.replicas = %d, want several", d.Replicas)
	}
	if d.UpdateConfig.Order != "start-first" || d.UpdateConfig.FailureAction != "rollback" {
		t.Errorf("update_config = %+v, want order start-first and failure_action rollback", d.UpdateConfig)
	}
	if d.Resources.Limits.CPUs == "" || d.Resources.Limits.Memory == "" {
		t.Errorf("resources.limits = %+v, want cpus and memory", d.Resources.Limits)
	}
	if got := strings.Join(svc.Healthcheck.Test, " "); got != "CMD onebox health" {
		t.Errorf("healthcheck.test = %q, want CMD onebox health", got)
	}
	if !svc.ReadOnly || svc.Tmpfs != nil {
		t.Errorf("read_only = %v, tmpfs = %v: want a read-only root and no tmpfs", svc.ReadOnly, svc.Tmpfs)
	}
	grace, err := time.ParseDuration(svc.StopGracePeriod)
	if err != nil {
		t.Fatalf("stop_grace_period %q: %v", svc.StopGracePeriod, err)
	}
	if need := stopNeeds(t, svc.Environment); grace < need {
		t.Errorf("stop_grace_period %v < ONEBOX_SHUTDOWN_DELAY + ONEBOX_SHUTDOWN_TIMEOUT = %v", grace, need)
	}
	checkSwarmSecret(t, s, svc.Environment, svc.Secrets)
}

// checkSwarmSecret: the password comes from a declared docker secret the
// service mounts, at the path MYSQL_PASSWORD_FILE names, never inline.
func checkSwarmSecret(t *testing.T, s stack, env map[string]string, secrets []string) {
	t.Helper()
	if v, ok := env["MYSQL_PASSWORD"]; ok {
		t.Errorf("MYSQL_PASSWORD = %q inline; want MYSQL_PASSWORD_FILE from a secret", v)
	}
	file := env["MYSQL_PASSWORD_FILE"]
	name, ok := strings.CutPrefix(file, "/run/secrets/")
	if !ok {
		t.Fatalf("MYSQL_PASSWORD_FILE = %q, want /run/secrets/<secret>", file)
	}
	mounted := false
	for _, s := range secrets {
		mounted = mounted || s == name
	}
	if _, declared := s.Secrets[name]; !mounted || !declared {
		t.Errorf("secret %q: mounted by onebox %v, declared at top level %v; want both", name, mounted, declared)
	}
}
