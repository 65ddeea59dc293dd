// Package deploy holds no code: its tests check the deploy files (Swarm stack,
// Kubernetes manifests) by decoding them, since no cluster runs here. It is
// its own module so the Kubernetes API types stay out of onebox's binary.
package deploy

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// onebox's defaults, when a deploy file leaves a variable unset.
const (
	defaultShutdownTimeout = 9 * time.Second
	defaultShutdownDelay   = 0
)

// stopNeeds is how long onebox may take to stop: ONEBOX_SHUTDOWN_DELAY plus
// ONEBOX_SHUTDOWN_TIMEOUT, from env (a missing one takes its default).
func stopNeeds(t *testing.T, env map[string]string) time.Duration {
	t.Helper()
	total := time.Duration(0)
	for name, def := range map[string]time.Duration{
		"ONEBOX_SHUTDOWN_TIMEOUT": defaultShutdownTimeout,
		"ONEBOX_SHUTDOWN_DELAY":   defaultShutdownDelay,
	} {
		v, ok := env[name]
		if !ok {
			total += def
			continue
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("%s=%q: %v", name, v, err)
		}
		total += d
	}
	return total
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(fmt.Errorf("deploy: %w", err))
	}
	return b
}
