package appserver

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The recipes README.md and docs/appserver.md show for APP_COMMAND, each run
// for real under the master, from Debian's packages (python3-flask,
// gunicorn, python3-uvicorn, nodejs; .ci/run installs them).
var recipeFiles = map[string]string{
	"flaskapp.py": `
import os
from flask import Flask
app = Flask(__name__)

@app.route("/")
def index():
    return "flask %d" % os.getpid()
`,
	"asgiapp.py": `
import os

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"asgi %d" % os.getpid()})
`,
	"server.js": `
const http = require("http");
http.createServer((req, res) => res.end("node " + process.pid)).listen({ fd: 3 });
`,
}

// debianPython is the interpreter that has Debian's python3-flask and
// python3-uvicorn: /usr/bin/python3 when another python3 comes first on PATH.
func debianPython(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(py, "-c", "import flask, uvicorn").Run() == nil {
			return py
		}
	}
	t.Fatal("no python3 with flask and uvicorn: apt-get install python3-flask python3-uvicorn gunicorn")
	return ""
}

func TestRecipes(t *testing.T) {
	dir := t.TempDir()
	for name, src := range recipeFiles {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	py := debianPython(t)
	worker, err := filepath.Abs(filepath.Join(pythonDir, "onebox_worker.py"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, command, want string
	}{
		{"gunicorn sync", "gunicorn --workers 1 flaskapp:app", "flask "},
		{"gunicorn gthread", "gunicorn --workers 1 --threads 2 --worker-class gthread flaskapp:app", "flask "},
		{"uvicorn fd 3", py + " -m uvicorn --fd 3 asgiapp:app", "asgi "},
		{"node listen fd 3", "node server.js", "node "},
		{"onebox_worker flask", py + " " + worker + " flaskapp:app", "flask "},
		{"go worker", goCommand("go"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t, tc.command)
			cfg.Dir = dir
			p := startPool(t, cfg, nil)
			p.waitReady()
			c := unixClient(p.sock, 1)
			for range 3 {
				body, err := get(c, "/")
				if err != nil || !strings.HasPrefix(body, tc.want) {
					t.Fatalf("GET / = %q, %v; want an answer from the app (%q...)", body, err, tc.want)
				}
			}
			if err := p.stop(); err != nil {
				t.Errorf("stop: %v", err)
			}
			for _, reason := range []string{"crash", "boot_failure", "timeout"} {
				if got := p.metric("onebox_app_worker_exits_total", "reason", reason); got != 0 {
					t.Errorf("%v worker exits for %s", got, reason)
				}
			}
		})
	}
}
