package service

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dcroll/dcroll/config"
	"github.com/dcroll/dcroll/internal/testutil"
)

func unit(t *testing.T, sc config.Service) *Unit {
	t.Helper()
	if sc.StopTimeout == 0 {
		sc.StopTimeout = 5 * time.Second
	}
	if sc.Health.Timeout == 0 {
		sc.Health.Timeout = time.Second
	}
	return New("web", sc, hclog.NewNullLogger())
}

func TestSupervisedStartStop(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	u := unit(t, config.Service{
		Run:    `echo "$$ $DCROLL_SERVICE $DCROLL_VERSION $PWD" > ` + pidFile + `; exec sleep 60`,
		Health: config.Health{Command: "test -s " + pidFile},
	})
	if err := u.Start(context.Background(), "v1", dir); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error { return u.Check(context.Background()) })
	b, _ := os.ReadFile(pidFile)
	var pid int
	var svc, version, cwd string
	if _, err := fmt.Sscan(string(b), &pid, &svc, &version, &cwd); err != nil || svc != "web" || version != "v1" || cwd != dir {
		t.Fatalf("the process saw %q", b)
	}
	if err := u.Start(context.Background(), "v1", dir); err == nil {
		t.Fatal("a second start of a running supervised unit should fail")
	}
	if err := u.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if u.Running() {
		t.Fatal("still running after stop")
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("process %d outlived stop", pid)
	}
}

func TestSupervisedStopKillsAfterTimeout(t *testing.T) {
	u := unit(t, config.Service{
		Run:         `trap '' TERM; while true; do sleep 0.05; done`,
		StopTimeout: 200 * time.Millisecond,
		Health:      config.Health{Command: "true"},
	})
	if err := u.Start(context.Background(), "v1", t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if err := u.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if u.Running() {
		t.Fatal("a process ignoring SIGTERM survived stop")
	}
}

func TestCommandUnit(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	u := unit(t, config.Service{
		Start:  `echo "start $DCROLL_VERSION $DCROLL_RELEASE_DIR" >> ` + log,
		Stop:   `echo stop >> ` + log,
		Health: config.Health{Command: "true"},
	})
	if err := u.Start(context.Background(), "v2", dir); err != nil {
		t.Fatal(err)
	}
	if err := u.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(log)
	if string(b) != "start v2 "+dir+"\nstop\n" {
		t.Fatalf("commands ran as %q", b)
	}
	bad := unit(t, config.Service{Start: "echo boom >&2; exit 3", Stop: "true", Health: config.Health{Command: "true"}})
	err := bad.Start(context.Background(), "v1", dir)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("a failing start command: %v", err)
	}
}

func TestHealthChecks(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer ok.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer failing.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	closed := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))

	for _, tc := range []struct {
		name    string
		h       config.Health
		healthy bool
	}{
		{"http 200", config.Health{HTTP: ok.URL}, true},
		{"http 503", config.Health{HTTP: failing.URL}, false},
		{"http refused", config.Health{HTTP: "http://" + closed}, false},
		{"tcp open", config.Health{TCP: ln.Addr().String()}, true},
		{"tcp refused", config.Health{TCP: closed}, false},
		{"command ok", config.Health{Command: "exit 0"}, true},
		{"command fails", config.Health{Command: "exit 1"}, false},
		{"command hangs", config.Health{Command: "sleep 10", Timeout: 100 * time.Millisecond}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := unit(t, config.Service{Run: "true", Health: tc.h}).Check(context.Background())
			if (err == nil) != tc.healthy {
				t.Fatalf("healthy=%v, err=%v", tc.healthy, err)
			}
		})
	}
}

// A service configured with a user runs as that user, and so does its
// health command; the agent (root) keeps its own.
func TestSupervisedRunsAsItsUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to change user")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	// A release directory the user can enter, as the agent unpacks them
	// (t.TempDir's parent is the owner's alone).
	dir, err := os.MkdirTemp("", "dcroll-user-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	u := unit(t, config.Service{
		Run:        "exec sleep 60",
		Health:     config.Health{Command: fmt.Sprintf("test $(id -u) = %d && test $(id -g) = %d", uid, gid)},
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true},
	})
	if err := u.Start(context.Background(), "v1", dir); err != nil {
		t.Fatal(err)
	}
	defer u.Stop(context.Background())
	u.mu.Lock()
	pid := u.proc.Process.Pid
	u.mu.Unlock()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && (f[0] == "Uid:" && f[1] != nobody.Uid || f[0] == "Gid:" && f[1] != nobody.Gid) {
			t.Errorf("the service runs with %q, want nobody (%s:%s)", line, nobody.Uid, nobody.Gid)
		}
	}
	if err := u.Check(context.Background()); err != nil {
		t.Errorf("the health command does not run as nobody: %v", err)
	}
}
