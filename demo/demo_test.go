package demo

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// demoHosts keeps the integration tests quick: the fewest hosts the demo
// accepts.
const demoHosts = "4"

var (
	buildOnce sync.Once
	binDir    string
	dcrollBin string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binary builds dcroll once, race detector on, for the tests that run the
// demo as a real process; it skips the test when ZooKeeper is not
// installed.
func binary(t *testing.T) string {
	t.Helper()
	if _, _, err := LookupZooKeeper(os.Getenv("ZOOKEEPER_JAR")); err != nil {
		t.Skipf("zookeeper is not installed: run `apt-get install -y zookeeper` (Debian) to run the demo's tests (%v)", err)
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "dcroll-demo-test")
		if buildErr != nil {
			return
		}
		dcrollBin = filepath.Join(binDir, "dcroll")
		out, err := exec.Command("go", "build", "-race", "-o", dcrollBin, "github.com/dcroll/dcroll").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("build dcroll: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return dcrollBin
}

// demoProc is `dcroll demo` running as a process, its output collected
// line by line.
type demoProc struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	out   bytes.Buffer
	lines chan string
	done  chan struct{}
	err   error
}

// startDemo runs `dcroll demo --non-interactive` with its temporary files
// under the test's own directory.
func startDemo(t *testing.T, args ...string) *demoProc {
	t.Helper()
	bin := binary(t)
	cmd := exec.Command(bin, append([]string{"demo", "--non-interactive"}, args...)...)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DCROLL_") && !strings.HasPrefix(kv, "TMPDIR=") && !strings.HasPrefix(kv, "DEMO_ZOOKEEPER=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "TMPDIR="+t.TempDir())
	// Its own process group, so the test can take everything down if the
	// demo fails to.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	p := &demoProc{cmd: cmd, lines: make(chan string, 1000), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	})
	return p
}

func (p *demoProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// wait waits for the demo to exit and returns its exit code.
func (p *demoProc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("dcroll demo still runs after %s; output:\n%s", timeout, p.output())
	}
	var exit *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &exit):
		return exit.ExitCode()
	default:
		t.Fatalf("dcroll demo: %v", p.err)
		return -1
	}
}

var (
	workDirRE = regexp.MustCompile(`(?m)^work dir (\S+)`)
	pidRE     = regexp.MustCompile(`\(pids? ([0-9 ]+)[,)]`)
)

// checkCleanedUp fails the test if the demo left its work directory or any
// process it started: one carrying its marker, one mentioning its work
// directory on its command line, or one of the pids it reported.
func checkCleanedUp(t *testing.T, out string) {
	t.Helper()
	m := workDirRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no work dir in the output:\n%s", out)
	}
	dir := m[1]
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the work dir %s is still there (%v)", dir, err)
	}
	var reported []int
	for _, m := range pidRE.FindAllStringSubmatch(out, -1) {
		for _, f := range strings.Fields(m[1]) {
			pid, _ := strconv.Atoi(f)
			reported = append(reported, pid)
		}
	}
	if len(reported) < 2 {
		t.Errorf("the demo reported %d pids, want ZooKeeper's and the agents':\n%s", len(reported), out)
	}
	for _, pid := range marked(dir) {
		t.Errorf("process %d carries the demo's marker: %s", pid, cmdline(pid))
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if c := cmdline(pid); strings.Contains(c, dir) {
			t.Errorf("process %d mentions %s: %s", pid, dir, c)
		}
	}
	for _, pid := range reported {
		if c := cmdline(pid); strings.Contains(c, dir) {
			t.Errorf("reported process %d still runs: %s", pid, c)
		}
	}
}

// cmdline is the command line of pid, "" if it does not run.
func cmdline(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return ""
	}
	return strings.ReplaceAll(string(b), "\x00", " ")
}

// The demo's two acts: the rollout with a host killed midway, and a bad
// release on a canary that dcroll rolls back by itself.
func TestIntegration_DemoRollsOutAndSurvivesAKilledHost(t *testing.T) {
	p := startDemo(t, "--hosts", demoHosts)
	start := time.Now()
	code := p.wait(t, 4*time.Minute)
	out := p.output()
	t.Logf("dcroll demo took %s:\n%s", time.Since(start).Round(100*time.Millisecond), out)
	if code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
	for _, want := range []string{
		"every host runs version 2 of every service and the deploy queue is empty",
		"KILLED host",
		"with SIGKILL while api rolls; its services db, api and web died with it",
		"restarted host",
		"is back online",
		"ordered the deploy: db -> api -> web",
		"signed by key",
		"second act: a bad release on a canary",
		"ordered web 3 as a canary of 1 host with auto-rollback",
		"canary: host",
		"rolled back: every host runs web 2 again, staged as the rollback of 3",
		"second act done in",
		" halt host",
		" rollback automatic, after the halt",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the output lacks %q", want)
		}
	}
	checkCleanedUp(t, out)
}

// Staged detached, nobody seeds: the hosts take the release from the HTTP
// origin as a web seed and from each other.
func TestIntegration_DemoDetached(t *testing.T) {
	p := startDemo(t, "--hosts", demoHosts, "--detached")
	code := p.wait(t, 4*time.Minute)
	out := p.output()
	if code != 0 {
		t.Fatalf("exit %d, want 0:\n%s", code, out)
	}
	for _, want := range []string{
		"every host runs version 2 of every service and the deploy queue is empty",
		"detached",
		"as a web seed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the output lacks %q:\n%s", want, out)
		}
	}
	checkCleanedUp(t, out)
}

func TestIntegration_DemoInterruptedCleansUp(t *testing.T) {
	p := startDemo(t, "--hosts", demoHosts)
	// Interrupt mid-rollout: once a host is upgrading.
	timeout := time.After(2 * time.Minute)
wait:
	for {
		select {
		case line := <-p.lines:
			if strings.Contains(line, "upgrading host") {
				break wait
			}
		case <-p.done:
			t.Fatalf("the demo exited before the rollout started:\n%s", p.output())
		case <-timeout:
			t.Fatalf("no host upgrading after 2m:\n%s", p.output())
		}
	}
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code := p.wait(t, 30*time.Second)
	out := p.output()
	t.Logf("dcroll demo stopped %s after SIGINT:\n%s", time.Since(start).Round(100*time.Millisecond), out)
	if code != 1 {
		t.Errorf("exit %d after SIGINT, want 1", code)
	}
	for _, want := range []string{"interrupted; stopping everything", "dcroll demo: interrupted", "and ZooKeeper; removed"} {
		if !strings.Contains(out, want) {
			t.Errorf("the output lacks %q", want)
		}
	}
	checkCleanedUp(t, out)
}

func TestChildEnvDropsDCROLLVariables(t *testing.T) {
	env := childEnv([]string{"PATH=/bin", "DCROLL_ZOOKEEPER_SERVERS=x:1", markerVar + "=/old", "HOME=/root"}, "/tmp/d")
	want := []string{"PATH=/bin", "HOME=/root", markerVar + "=/tmp/d"}
	if fmt.Sprint(env) != fmt.Sprint(want) {
		t.Fatalf("childEnv = %q, want %q", env, want)
	}
}

func TestRunRefusesABadHostCount(t *testing.T) {
	for _, n := range []int{0, MinHosts - 1, MaxHosts + 1} {
		err := Run(context.Background(), Options{Hosts: n, Exe: "/bin/true"})
		if err == nil || !strings.Contains(err.Error(), "hosts") {
			t.Errorf("Run with %d hosts: %v, want an error about hosts", n, err)
		}
	}
}
