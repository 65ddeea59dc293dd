package testmariadb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// binaries are the programs of Debian's mariadb-server that the helper runs.
type binaries struct {
	server    string // mariadbd
	installDB string // mariadb-install-db
}

var (
	installOnce sync.Once
	installBins binaries
	installErr  error
)

// ensureInstalled finds mariadbd and mariadb-install-db, installing
// mariadb-server with apt when they are missing. The result is computed once
// per test process.
func ensureInstalled() (binaries, error) {
	installOnce.Do(func() { installBins, installErr = findOrInstall() })
	return installBins, installErr
}

func findOrInstall() (binaries, error) {
	if b, ok := find(); ok {
		return b, nil
	}
	// go test runs the test binaries of several packages at once, each of
	// which may want a server: an exclusive file lock lets one of them
	// install while the others wait, then find the programs installed.
	unlock, err := lockFile(filepath.Join(os.TempDir(), "onebox-testmariadb-install.lock"))
	if err != nil {
		return binaries{}, err
	}
	defer unlock()
	if b, ok := find(); ok {
		return b, nil
	}
	if os.Geteuid() != 0 {
		return binaries{}, errors.New("mariadbd is not installed and installing it needs root: " +
			"run apt-get update && apt-get install -y --no-install-recommends mariadb-server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	// DPkg::Lock::Timeout makes apt wait for a dpkg lock held by someone
	// else on the machine instead of failing at once.
	for _, args := range [][]string{
		{"-o", "DPkg::Lock::Timeout=600", "update"},
		{"-o", "DPkg::Lock::Timeout=600", "install", "-y", "--no-install-recommends", "mariadb-server"},
	} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return binaries{}, fmt.Errorf("install mariadb-server: apt-get %v: %w\n%s", args, err, tail(out, 2000))
		}
	}
	if b, ok := find(); ok {
		return b, nil
	}
	return binaries{}, errors.New("install mariadb-server: apt-get succeeded but mariadbd or mariadb-install-db is still not found")
}

// find looks in PATH, then in Debian's sbin and bin directories, which a
// test's PATH may lack.
func find() (binaries, bool) {
	server, ok1 := lookPath("mariadbd")
	installDB, ok2 := lookPath("mariadb-install-db")
	return binaries{server: server, installDB: installDB}, ok1 && ok2
}

func lookPath(name string) (string, bool) {
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

// lockFile takes an exclusive flock on path, blocking until it is free.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("open install lock: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// tail returns the last n bytes of b, from a line start where possible.
func tail(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	b = b[len(b)-n:]
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	return b
}
