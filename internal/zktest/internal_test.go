package zktest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/dcroll/dcroll/internal/freeport"
	"github.com/dcroll/dcroll/internal/zkjar"
)

func TestParseMode(t *testing.T) {
	tests := []struct {
		answer  string
		want    string
		wantErr bool
	}{
		{answer: "Zookeeper version: 3.8.0\nLatency min/avg/max: 0/0.0/0\nMode: standalone\nNode count: 5\n", want: ModeStandalone},
		{answer: "Zxid: 0x100000002\nMode: leader\n", want: ModeLeader},
		{answer: "Mode: follower", want: ModeFollower},
		{answer: "This ZooKeeper instance is not currently serving requests\n", wantErr: true},
		{answer: "", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseMode(tt.answer)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseMode(%q) = %q, %v; want %q, error %t", tt.answer, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestReadTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	var log strings.Builder
	for i := 1; i <= 100; i++ {
		fmt.Fprintf(&log, "line %03d\n", i)
	}
	if err := os.WriteFile(path, []byte(log.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		maxBytes int64
		maxLines int
		want     string
	}{
		{name: "line limit", maxBytes: 1 << 20, maxLines: 2, want: "line 099\nline 100\n"},
		// 20 bytes hold "00\n" of line 098 and then lines 099 and 100;
		// the partial line is dropped.
		{name: "byte limit", maxBytes: 21, maxLines: 10, want: "line 099\nline 100\n"},
		{name: "whole file", maxBytes: 1 << 20, maxLines: 1000, want: log.String()},
	}
	for _, tt := range tests {
		got, err := readTail(path, tt.maxBytes, tt.maxLines)
		if err != nil || got != tt.want {
			t.Errorf("%s: readTail = %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}

	if _, err := readTail(filepath.Join(t.TempDir(), "missing"), 100, 10); err == nil {
		t.Error("readTail of a missing file succeeded")
	}
}

func TestFreePortsAreDistinct(t *testing.T) {
	ports, err := freeport.Ports(9)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[int]bool)
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("freeport.Ports(9) = %v: want distinct positive ports", ports)
		}
		seen[p] = true
	}
}

func TestSkipsWithoutJava(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	var skipped, returned bool
	t.Run("standalone", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		Standalone(t)
		returned = true
	})
	if !skipped || returned {
		t.Errorf("without java on PATH, Standalone skipped: %t, returned: %t; want a skip", skipped, returned)
	}
}

// fatalRecorder records the message of Fatalf and ends the calling goroutine
// without failing the real test, to check how failures are reported.
type fatalRecorder struct {
	testing.TB
	fatal string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestIntegration_StartFailureReportsLogTail(t *testing.T) {
	if _, err := exec.LookPath("java"); err != nil {
		t.Skip(skipMessage)
	}
	// An empty jar has no ZooKeeper classes, so every JVM exits at once.
	jar := filepath.Join(t.TempDir(), "empty.jar")
	if err := os.WriteFile(jar, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(zkjar.Env, jar)

	rec := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Standalone(rec)
	}()
	<-done

	for _, want := range []string{
		fmt.Sprintf("attempt %d of %d", startAttempts, startAttempts),
		"exited: exit status 1",
		"Could not find or load main class " + mainClass,
	} {
		if !strings.Contains(rec.fatal, want) {
			t.Errorf("failure message does not contain %q:\n%s", want, rec.fatal)
		}
	}
}
