package docker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Compose runs the compose CLI for one project: `docker compose` (v2) when the
// docker CLI has it, else `docker-compose` (v1.29), always with the project's
// own -p name and compose files, so parallel or leftover projects never mix.
type Compose struct {
	Project string   // the -p name; see ProjectName
	Files   []string // the -f files; the first one's directory is the project directory
	// Env is added to this process's environment for every command: the
	// ${VAR} values the compose file interpolates.
	Env []string

	cli []string // "docker", "compose" or "docker-compose"
}

// NewCompose prepares a runner for project over the given compose files.
func NewCompose(project string, files ...string) (*Compose, error) {
	cli, err := composeCLI()
	if err != nil {
		return nil, err
	}
	return &Compose{Project: project, Files: files, cli: cli}, nil
}

var detectCLI = sync.OnceValues(func() ([]string, error) {
	if err := exec.Command("docker", "compose", "version").Run(); err == nil {
		return []string{"docker", "compose"}, nil
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		return []string{"docker-compose"}, nil
	}
	return nil, fmt.Errorf("find compose: neither `docker compose` nor `docker-compose` is installed")
})

func composeCLI() ([]string, error) { return detectCLI() }

// CLI names the compose command in use, for logs.
func (c *Compose) CLI() string { return strings.Join(c.cli, " ") }

// ProjectName returns a fresh project name with the given prefix; compose
// accepts lower-case letters, digits, dashes and underscores.
func ProjectName(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%s", strings.ToLower(prefix), hex.EncodeToString(b[:]))
}

// Command returns the exec.Cmd for `compose -p <project> -f … args…`.
func (c *Compose) Command(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{}, c.cli[1:]...)
	full = append(full, "-p", c.Project)
	for _, f := range c.Files {
		full = append(full, "-f", f)
	}
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, c.cli[0], full...)
	cmd.Env = append(os.Environ(), c.Env...)
	// Give compose a chance to clean up after itself when ctx ends.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// Run runs a compose command and returns its combined output; a failure's
// error includes that output.
func (c *Compose) Run(ctx context.Context, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := c.Command(ctx, args...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", c.CLI(), strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// Up starts the project detached: `up -d` plus args (e.g. "--no-build").
func (c *Compose) Up(ctx context.Context, args ...string) error {
	_, err := c.Run(ctx, append([]string{"up", "-d"}, args...)...)
	return err
}

// Down removes the project's containers, networks and volumes. It is meant
// for clean-up, so it runs even when ctx has ended.
func (c *Compose) Down(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	_, err := c.Run(ctx, "down", "--volumes", "--remove-orphans", "--timeout", "5")
	return err
}
