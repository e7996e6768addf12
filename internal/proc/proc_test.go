package proc

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestKillTakesTheWholeGroup(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	// The shell's child sleeps in the same process group.
	p, err := Start([]string{"sh", "-c", "sleep 30 & echo started; wait"}, dir, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, log, "started")
	if p.Exited() {
		t.Fatal("exited before it was killed")
	}
	pgid := p.Pid()
	p.Kill()
	if !p.Exited() || p.Err() == nil {
		t.Errorf("after Kill: exited %t, err %v; want exited with an error", p.Exited(), p.Err())
	}
	// The orphaned sleep is reaped by init, a moment after it dies.
	eventually(t, func() bool { return errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH) },
		"process group %d survives Kill", pgid)
}

// waitFor waits until the file at path holds want.
func waitFor(t *testing.T, path, want string) {
	t.Helper()
	eventually(t, func() bool {
		b, _ := os.ReadFile(path)
		return strings.Contains(string(b), want)
	}, "no %q in %s", want, path)
}

func eventually(t *testing.T, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf(format, args...)
		}
		time.Sleep(10 * time.Millisecond) // polling cond
	}
}

func TestTerminateEndsAProcessThatIgnoresSIGTERM(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	p, err := Start([]string{"sh", "-c", "trap '' TERM; echo trapped; while :; do sleep 1; done"}, dir, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, log, "trapped")
	p.Terminate(200 * time.Millisecond)
	if !p.Exited() {
		t.Fatal("still running after Terminate")
	}
	p.Kill() // on a reaped process: must not signal anything
}

func TestStartReportsAMissingProgram(t *testing.T) {
	dir := t.TempDir()
	if _, err := Start([]string{filepath.Join(dir, "nothing")}, dir, filepath.Join(dir, "log"), nil); err == nil {
		t.Error("Start of a missing program succeeded")
	}
}
