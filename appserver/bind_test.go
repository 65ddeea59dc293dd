package appserver

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func TestResolveBind(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, bind, dir, want string
	}{
		{"set: kept", "127.0.0.1:8000", dir, "127.0.0.1:8000"},
		{"writable directory", "", dir, "unix:" + filepath.Join(dir, "app.sock")},
		{"directory to be made under a writable one", "", filepath.Join(dir, "run", "onebox"), "unix:" + filepath.Join(dir, "run", "onebox", "app.sock")},
		// A directory that cannot exist: its parent is a file (ENOTDIR),
		// as it cannot be made on a read-only root (EROFS).
		{"no writable directory: abstract", "", filepath.Join(file, "onebox"), "unix:@onebox/app.sock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := resolveBind(tc.bind, tc.dir); got != tc.want {
				t.Errorf("resolveBind(%q, %q) = %q, want %q", tc.bind, tc.dir, got, tc.want)
			}
		})
	}
}

// TestAbstractSocketPool: the pool binds an abstract unix socket, which
// needs no file system, and its workers serve on it.
func TestAbstractSocketPool(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, goCommand("go"))
	// The abstract namespace is shared by the whole network namespace:
	// a name of its own per test run.
	cfg.Bind = fmt.Sprintf("unix:@onebox-test-%d/app.sock", os.Getpid())
	cfg.Workers = 1
	p := startPool(t, cfg, nil)
	p.waitReady()
	if got := p.Addr(); got != cfg.Bind {
		t.Errorf("Addr() = %q, want %q", got, cfg.Bind)
	}
	body, err := get(unixClient(p.sock, 1), "/")
	if err != nil || body == "" {
		t.Fatalf("GET through the abstract socket: %q, %v", body, err)
	}
	if err := p.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
}
