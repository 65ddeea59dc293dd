package proctest

import (
	"os"
	"os/exec"
	"slices"
	"testing"
)

func TestChildrenSeesARealChild(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	self := os.Getpid()
	if got := Children(self, "", "sleep"); !slices.Contains(got, cmd.Process.Pid) {
		t.Fatalf("Children(self, any, sleep) = %v, want it to hold %d", got, cmd.Process.Pid)
	}
	if got := Children(self, "Z", "sleep"); slices.Contains(got, cmd.Process.Pid) {
		t.Fatalf("a sleeping child listed as a zombie: %v", got)
	}
	if got := Children(self, "", "nosuchcommand"); len(got) != 0 {
		t.Fatalf("Children with another name = %v, want none", got)
	}
}
