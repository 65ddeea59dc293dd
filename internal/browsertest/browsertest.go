// Package browsertest drives the guestbook page in a real headless Chromium
// (Debian's chromium package) through the DevTools protocol. It is a test
// helper: only tests import it, so chromedp never reaches the onebox binary.
package browsertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// stepTimeout bounds every step of the check, checkTimeout the whole check
// with the browser's start.
const (
	stepTimeout  = 30 * time.Second
	checkTimeout = 3 * time.Minute
)

// GuestbookCheck loads the guestbook page at baseURL in headless Chromium,
// signs it with a name and a message and waits for the message in the list,
// reloads and sees it still, then sends a message of only spaces (which the
// textarea's required attribute lets through) and waits for the server's
// "message is required" on the page. It fails the test when chromium is
// missing; on failure it writes a screenshot to
// build/integration/screenshots/<test>.png and logs its path.
func GuestbookCheck(t *testing.T, baseURL string) {
	t.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("browsertest: chromium is missing (apt-get install chromium): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // tests run as root in CI
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1024, 768),
	)
	// The browser lives as long as the context of its first run, so that
	// one has the whole check's deadline and each step its own below.
	whole, cancelWhole := context.WithTimeout(context.Background(), checkTimeout)
	defer cancelWhole()
	actx, cancelAlloc := chromedp.NewExecAllocator(whole, opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("browsertest: start %s: %v", chromium, err)
	}

	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name, text := "Chromium", "signed in a real browser "+hex.EncodeToString(b)
	steps := []struct {
		what    string
		actions []chromedp.Action[chromedp.Void]
	}{
		{"load the page", []chromedp.Action[chromedp.Void]{
			chromedp.Navigate(baseURL + "/"), chromedp.WaitVisible(chromedp.ID("send"))}},
		{"sign the guestbook", []chromedp.Action[chromedp.Void]{
			chromedp.SendKeys(chromedp.ID("name"), name),
			chromedp.SendKeys(chromedp.ID("message"), text),
			chromedp.Click(chromedp.ID("send")),
			listed(text)}},
		// WaitVisible before the poll: a poll right after Reload once ran in
		// the discarded page's execution context ("Cannot find context with
		// specified id", 1 run in 6); a query retries until it finds #send in
		// the new page, so the poll after it runs there.
		{"reload and still see the message", []chromedp.Action[chromedp.Void]{
			chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("send")), listed(text)}},
		{"send a message of only spaces", []chromedp.Action[chromedp.Void]{
			chromedp.SendKeys(chromedp.ID("name"), name),
			chromedp.SendKeys(chromedp.ID("message"), "   "),
			chromedp.Click(chromedp.ID("send")),
			chromedp.Poll[chromedp.Void](`document.getElementById("status").textContent === "message is required"`,
				chromedp.WithPollingMutation())}},
	}
	for _, s := range steps {
		sctx, scancel := context.WithTimeout(ctx, stepTimeout)
		err := chromedp.Do(sctx, s.actions...)
		scancel()
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("not done within %s: %w", stepTimeout, err)
			}
			t.Errorf("browsertest: %s at %s: %v", s.what, baseURL, err)
			screenshot(t, ctx)
			return
		}
	}
}

// listed waits, on every DOM change, until a message in the list reads text.
func listed(text string) chromedp.Action[chromedp.Void] {
	q, _ := json.Marshal(text)
	return chromedp.Poll[chromedp.Void](fmt.Sprintf(
		`[...document.querySelectorAll("#messages li p")].some(p => p.textContent === %s)`, q),
		chromedp.WithPollingMutation())
}

// screenshot writes the tab's picture to build/integration/screenshots under
// the module's root and logs where.
func screenshot(t *testing.T, ctx context.Context) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Logf("browsertest: no screenshot: %v", err)
		return
	}
	root, err := moduleRoot()
	if err != nil {
		t.Logf("browsertest: no screenshot: %v", err)
		return
	}
	dir := filepath.Join(root, "build", "integration", "screenshots")
	path := filepath.Join(dir, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())+".png")
	if err = os.MkdirAll(dir, 0o755); err == nil {
		err = os.WriteFile(path, png, 0o644)
	}
	if err != nil {
		t.Logf("browsertest: no screenshot: %v", err)
		return
	}
	t.Logf("browsertest: screenshot of the failure: %s", path)
}

// moduleRoot is the nearest directory upwards with a go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("module root: no go.mod above the working directory")
		}
		dir = parent
	}
}
