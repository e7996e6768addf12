package agent_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dcroll/dcroll/internal/testutil"
	"github.com/dcroll/dcroll/roll"
)

// background runs dcroll with args against the fleet's data center, a
// process of its own until the test ends, and returns its stdout; its
// stderr shows if the test fails.
func (f *fleet) background(args ...string) *testutil.Buffer {
	f.t.Helper()
	cmd := exec.Command(dcrollBin, append([]string{"--zk", f.zkc.ConnString(), "--root", "/dc"}, args...)...)
	out, errOut := &testutil.Buffer{}, &testutil.Buffer{}
	cmd.Stdout, cmd.Stderr = out, errOut
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if f.t.Failed() {
			f.t.Logf("dcroll %s:\n%s\nstderr:\n%s", strings.Join(args, " "), out, errOut)
		}
	})
	return out
}

// watchEvents runs `dcroll status --watch --json` and returns what decodes
// the events it printed so far.
func (f *fleet) watchEvents() func() []roll.Event {
	f.t.Helper()
	out := f.background("status", "--watch", "--json", "--interval", "100ms")
	return func() []roll.Event {
		var evs []roll.Event
		for _, line := range strings.Split(out.String(), "\n") {
			var e roll.Event
			if json.Unmarshal([]byte(line), &e) == nil && e.Event != "" {
				evs = append(evs, e)
			}
		}
		return evs
	}
}

// hasEvent finds an event of kind about svc (and host, if not empty).
func hasEvent(evs []roll.Event, kind, svc, host string) *roll.Event {
	for i, e := range evs {
		if e.Event == kind && e.Service == svc && (host == "" || e.Host == host) {
			return &evs[i]
		}
	}
	return nil
}

// orderWait runs `dcroll order --wait` as an operator would, a process of
// its own, and returns its exit code and output.
func (f *fleet) orderWait(svc string) (int, string) {
	f.t.Helper()
	cmd := exec.Command(dcrollBin, "--zk", f.zkc.ConnString(), "--root", "/dc", "order", "--wait", "--timeout", "3m", svc)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), out.String()
	default:
		f.t.Fatalf("order --wait: %v", err)
		return -1, ""
	}
}

// `order --wait` gates a pipeline on the deploy, like `kubectl rollout
// status`: it exits 0 only once every online host runs the release, and 1
// with the reason when the release fails and the service halts.
func TestIntegration_OrderWaitGatesOnTheDeploy(t *testing.T) {
	f := newFleet(t, fmt.Sprintf(oneServiceCatalog, 1, 1, "1s", "10s"), []string{"web"}, 3)
	f.startAll()
	events := f.watchEvents()
	testutil.Eventually(t, 30*time.Second, func() error {
		if evs := events(); len(evs) == 0 || evs[0].Event != "summary" {
			return fmt.Errorf("no summary first: %+v", evs)
		}
		return nil
	})

	f.stage("web", "v2", false)
	code, out := f.orderWait("web")
	if code != 0 {
		t.Fatalf("order --wait on a good release exited %d:\n%s", code, out)
	}
	// When it said so, every host was on v2 already: no waiting here.
	cur, err := f.admin.CurrentOf("web")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range f.hosts {
		if c, ok := cur[h.name]; !ok || c.Version != "v2" {
			t.Fatalf("order --wait exited 0 with %s on %+v (online %v):\n%s", h.name, c, ok, out)
		}
	}
	if !strings.Contains(out, "rolled out: web") {
		t.Fatalf("order --wait output:\n%s", out)
	}
	// The events told it as it went: each host's turn and its healthy
	// end, the rollout and the step's end.
	testutil.Eventually(t, 30*time.Second, func() error {
		evs := events()
		var missing []string
		for _, h := range f.hosts {
			for _, kind := range []string{roll.EventTurnTaken, roll.EventHostHealthy} {
				if e := hasEvent(evs, kind, "web", h.name); e == nil || e.Version != "v2" {
					missing = append(missing, kind+" "+h.name)
				}
			}
		}
		for _, kind := range []string{roll.EventStaged, roll.EventRolledOut} {
			if hasEvent(evs, kind, "web", "") == nil {
				missing = append(missing, kind)
			}
		}
		for _, kind := range []string{roll.EventStepQueued, roll.EventStepDone} {
			if hasEvent(evs, kind, "", "") == nil {
				missing = append(missing, kind)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("no event: %s", strings.Join(missing, ", "))
		}
		return nil
	})

	f.stage("web", "v3", true)
	began := time.Now()
	code, out = f.orderWait("web")
	if code != 1 {
		t.Fatalf("order --wait on a failing release exited %d, want 1:\n%s", code, out)
	}
	ctl, err := f.admin.Control("web")
	if err != nil {
		t.Fatal(err)
	}
	if ctl.Halted == nil || ctl.Halted.Version != "v3" {
		t.Fatalf("order --wait exited 1 after %s, but web is not halted on v3: %+v\n%s", time.Since(began), ctl, out)
	}
	if !strings.Contains(out, "web halted: "+ctl.Halted.Host+" on v3") {
		t.Fatalf("order --wait does not say why:\n%s", out)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		evs := events()
		for _, kind := range []string{roll.EventRollback, roll.EventHalt} {
			e := hasEvent(evs, kind, "web", ctl.Halted.Host)
			if e == nil || e.Version != "v3" || e.Reason != ctl.Halted.Reason {
				return fmt.Errorf("no %s event of %s on v3 with the reason: %+v", kind, ctl.Halted.Host, e)
			}
		}
		return nil
	})
}

// `stage --wait` stages a release as an operator does, serves it, and
// exits 0 once it has rolled out, which here takes an order.
func TestIntegration_StageWaitGatesOnTheRollout(t *testing.T) {
	f := newFleet(t, fmt.Sprintf(oneServiceCatalog, 1, 1, "300ms", "10s"), []string{"web"}, 2)
	f.startAll()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "VERSION"), []byte("v2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	bt := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cmd := exec.Command(dcrollBin, "--zk", f.zkc.ConnString(), "--root", "/dc", "stage", "--wait", "--timeout", "3m",
		"--listen", httpAddr, "--advertise", httpAddr, "--torrent-listen", bt, "--torrent-advertise", bt, "web", "v2", src)
	out := &testutil.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	// Every host holds it: stage waits for the rollout, not for the hosts.
	testutil.Eventually(t, 2*time.Minute, func() error {
		if !strings.Contains(out.String(), "waiting for web v2 to roll out") {
			return fmt.Errorf("stage is not waiting for the rollout yet:\n%s", out)
		}
		return nil
	})
	select {
	case err := <-exited:
		t.Fatalf("stage --wait exited (%v) before the release was ordered:\n%s", err, out)
	default:
	}
	f.order([]string{"web"})
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("stage --wait: %v\n%s", err, out)
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("stage --wait did not exit after the rollout:\n%s", out)
	}
	cur, err := f.admin.CurrentOf("web")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range f.hosts {
		if c, ok := cur[h.name]; !ok || c.Version != "v2" {
			t.Fatalf("stage --wait exited 0 with %s on %+v (online %v):\n%s", h.name, c, ok, out)
		}
	}
}
