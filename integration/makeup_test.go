//go:build integration

package integration

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"onebox/docker"
)

// readmeFirstCommand is the first line of the README's first sh block, its
// comment removed: the command a new user runs first.
func readmeFirstCommand(t *testing.T) string {
	t.Helper()
	f, err := os.Open(filepath.Join(suite.repo, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "```sh" && sc.Scan() {
			cmd, _, _ := strings.Cut(sc.Text(), "#")
			return strings.TrimSpace(cmd)
		}
	}
	t.Fatal("README.md has no ```sh block")
	return ""
}

// TestMakeUp runs the README's first command for real, in a fresh copy of
// the checkout, as a new user would: the guestbook must answer on
// http://localhost:8080, take a message and list it; then `make down`.
func TestMakeUp(t *testing.T) {
	command := readmeFirstCommand(t)
	if command != "make up" {
		t.Fatalf("the README's first command is %q; this test runs `make up`, update one or the other", command)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	clone := filepath.Join(t.TempDir(), "onebox")
	if err := copyTree(ctx, suite.repo, clone); err != nil {
		t.Fatal(err)
	}
	git := exec.CommandContext(ctx, "sh", "-c", "git init -q && git add -A && git -c user.name=test -c user.email=test@invalid commit -qm clone")
	git.Dir = clone
	if out, err := git.CombinedOutput(); err != nil {
		t.Fatalf("git init the copy: %v\n%s", err, out)
	}
	project := docker.ProjectName("onebox-makeup")
	env := append(os.Environ(), "COMPOSE_PROJECT_NAME="+project, "ONEBOX_IMAGE=onebox-test/onebox:makeup")
	run := func(ctx context.Context, cmd string) string {
		c := exec.CommandContext(ctx, "sh", "-c", cmd)
		c.Dir, c.Env = clone, env
		start := time.Now()
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
		t.Logf("%s took %s", cmd, time.Since(start).Round(time.Second))
		return string(out)
	}
	t.Cleanup(func() {
		// Its own deadline: the test's ctx has ended by now.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		run(ctx, "make down")
		if out, err := exec.Command("docker", "volume", "rm", project+"_db-data").CombinedOutput(); err != nil {
			t.Errorf("remove the database volume: %v\n%s", err, out)
		}
	})
	out := run(ctx, command)
	way := firstLineWith(out, "[make up] registry: ") + firstLineWith(out, "[make up] offline (")
	if way == "" {
		t.Errorf("make up did not say which way it went:\n%s", out)
	}
	if !strings.Contains(out, "[make up] the guestbook is up on http://localhost:8080 ") {
		t.Errorf("make up did not say the guestbook is up on http://localhost:8080:\n%s", out)
	}
	t.Logf("make up: %s", way)

	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get("http://localhost:8080/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET http://localhost:8080/ = %d, want 200", resp.StatusCode)
	}
	text := "signed after make up " + randomHex(4)
	resp, err = client.Post("http://localhost:8080/api/messages", "application/json", strings.NewReader(string(messageJSON("new user", text))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /api/messages = %d, want 201", resp.StatusCode)
	}
	resp, err = client.Get("http://localhost:8080/api/messages")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body strings.Builder
	if _, err := bufio.NewReader(resp.Body).WriteTo(&body); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(body.String(), text) {
		t.Fatalf("GET /api/messages does not list %q: %s", text, body.String())
	}
}
