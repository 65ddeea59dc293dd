//go:build integration

// Package integration is the docker-compose suite: it builds the image from
// the repository's own Dockerfile, starts compose.yaml (onebox + MariaDB) as
// a fresh compose project per test, and drives the stack from outside as an
// operator would: HTTP through the published port, signals, docker stop,
// exec, and a sidecar in onebox's PID namespace where the scratch image has
// no tools.
//
// Run it with `make integration` (which first runs `make images`, so no
// registry is needed).
package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"onebox/docker"
)

// The images `make images` builds; tests fail (never skip) when they are
// missing, with the command that makes them.
const (
	baseImage  = "onebox-test/debian:bookworm"
	mysqlImage = "onebox-test/mariadb:10.11"
	// oneboxImage is what the suite tags its build of ./Dockerfile as.
	oneboxImage = "onebox-test/onebox:integration"
)

// suite is what TestMain prepares once for every test.
var suite struct {
	dc      *docker.Client
	repo    string // the repository root
	context string // the build context: the repository's files plus vendor/
}

func TestMain(m *testing.M) {
	code, err := setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration setup:", err)
		os.Exit(1)
	}
	if code == 0 {
		code = m.Run()
	}
	suite.dc.Close()
	os.Exit(code)
}

func setup() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	dc, err := docker.New(ctx)
	if err != nil {
		return 1, err
	}
	suite.dc = dc
	for _, img := range []string{baseImage, mysqlImage, goImage()} {
		ok, err := dc.HasImage(ctx, img)
		if err != nil {
			return 1, err
		}
		if !ok {
			return 1, fmt.Errorf("image %s is missing: run `make images` first", img)
		}
	}
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return 1, fmt.Errorf("find repository root: %w", err)
	}
	suite.repo = strings.TrimSpace(string(out))
	start := time.Now()
	if suite.context, err = buildContext(ctx, suite.repo); err != nil {
		return 1, err
	}
	fmt.Fprintf(os.Stderr, "integration: build context with vendored modules ready in %s\n", time.Since(start).Round(time.Millisecond))

	// Build through compose, as `docker compose up --build` would, with the
	// real compose.yaml and Dockerfile; every test then starts the stack
	// with --no-build.
	start = time.Now()
	cp, err := docker.NewCompose("onebox-it-build", filepath.Join(suite.context, "compose.yaml"))
	if err != nil {
		return 1, err
	}
	cp.Env = stackEnv("unused", "unused")
	if _, err := cp.Run(ctx, "build", "onebox"); err != nil {
		return 1, err
	}
	size, err := dc.ImageSize(ctx, oneboxImage)
	if err != nil {
		return 1, err
	}
	fmt.Fprintf(os.Stderr, "integration: %s built with %s in %s, %.1f MB\n", oneboxImage, cp.CLI(),
		time.Since(start).Round(time.Second), float64(size)/1e6)
	return 0, nil
}

// goImage is the build stage's image named in the Dockerfile.
func goImage() string {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		return "golang (Dockerfile unreadable: " + err.Error() + ")"
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && strings.EqualFold(f[0], "FROM") && strings.HasPrefix(f[1], "golang:") {
			return f[1]
		}
	}
	return "golang (no FROM golang: line in the Dockerfile)"
}

// buildContext makes build/integration/context with images/context.sh, the
// offline build context `make up` uses too: the repository's files plus
// vendor/.
//
// Why: containers on the test machines cannot verify the module proxy's TLS
// certificate (an intercepting egress proxy), so `go mod download` inside the
// build fails. The Dockerfile builds from vendor/ when the context has one;
// users' builds, without vendor/, download as usual.
func buildContext(ctx context.Context, repo string) (string, error) {
	dir := filepath.Join(repo, "build", "integration", "context")
	cmd := exec.CommandContext(ctx, filepath.Join(repo, "images", "context.sh"), dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("images/context.sh %s: %w\n%s", dir, err, out.String())
	}
	return dir, nil
}

// copyTree copies the repository's files (tracked, and untracked but not
// ignored) to dir: a checkout as a fresh clone of this work tree would be.
func copyTree(ctx context.Context, repo, dir string) error {
	list, err := exec.CommandContext(ctx, "git", "-C", repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		return fmt.Errorf("list repository files: %w", err)
	}
	for _, name := range strings.Split(string(list), "\x00") {
		if name == "" {
			continue
		}
		if err := copyFile(filepath.Join(repo, name), filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	fi, err := os.Lstat(src)
	if os.IsNotExist(err) {
		return nil // tracked but deleted in the work tree
	}
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
