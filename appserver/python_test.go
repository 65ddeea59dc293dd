package appserver

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// pythonDir holds onebox_worker.py, the Python side of the worker protocol.
const pythonDir = "python"

// TestPythonWorkerUnittest runs onebox_worker's own tests (stdlib unittest),
// so `make unit` covers the Python side too.
func TestPythonWorkerUnittest(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 is required for onebox_worker's tests:", err)
	}
	cmd := exec.Command(py, "-m", "unittest", "-v", "test_onebox_worker")
	cmd.Dir = pythonDir
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3 -m unittest test_onebox_worker: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "\nOK") {
		t.Fatalf("unittest did not report OK:\n%s", out)
	}
	t.Logf("%s", tailOf(string(out), 5))
}
