package packaging_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dcroll/dcroll/internal/rolltest"
	"github.com/dcroll/dcroll/internal/testutil"
	"github.com/dcroll/dcroll/internal/zktest"
	"github.com/dcroll/dcroll/packaging"
)

// TestIntegration_NewDataCenterFromThePackage follows the README's "A new
// data center" on this machine, from the built .deb: apt-get installs it,
// the host config is written, the catalog seeded, the agent started the
// way the unit's ExecStart starts it (systemd does not run this machine),
// and the first release staged. The host must start that release without
// a turn, and ordering it afterwards must find nothing to order. It also
// checks that man, bash-completion and zsh find what the package
// installed. The package is purged at the end.
//
// It installs into the real system, so it runs only as root (as CI does),
// and never on a machine where dcroll is installed or has left state.
func TestIntegration_NewDataCenterFromThePackage(t *testing.T) {
	need(t, "dpkg", "dpkg")
	if os.Geteuid() != 0 {
		t.Skip("installs the .deb on this machine: needs root (CI runs as root)")
	}
	if runtime.GOARCH != "amd64" {
		t.Skipf("the package is amd64, this machine %s", runtime.GOARCH)
	}
	// One such test on this machine at a time, whichever test binary or
	// checkout runs it; the lock goes when this process exits.
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "dcroll-system-package-test.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Close() })
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "dcroll").Output(); err == nil && len(out) > 0 && !strings.HasPrefix(string(out), "unknown") {
		t.Skipf("dcroll is installed on this machine (%s): the test would replace it", out)
	}
	for _, p := range []string{packaging.BinaryPath, filepath.Dir(packaging.ConfigPath), packaging.StateDir} {
		if _, err := os.Lstat(p); err == nil {
			t.Skipf("%s exists on this machine: the test would replace it", p)
		}
	}
	zkc := zktest.Standalone(t)
	deb, _ := build(t, "v0.1.0")
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")

	// Remove what the test installs, whatever happens: the package, the
	// config it leaves, the agent's state (which purging keeps by design).
	t.Cleanup(func() {
		if out, err := exec.Command("dpkg", "--purge", "dcroll").CombinedOutput(); err != nil {
			t.Errorf("dpkg --purge dcroll: %v\n%s", err, out)
		}
		for _, p := range []string{filepath.Dir(packaging.ConfigPath), packaging.StateDir} {
			if err := os.RemoveAll(p); err != nil {
				t.Error(err)
			}
		}
		for _, p := range []string{packaging.BinaryPath, packaging.ManPath, packaging.BashCompletionPath, packaging.DebZshCompletionPath} {
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("%s left after dpkg --purge", p)
			}
		}
	})

	// 1. Install the package. apt-get installs a local .deb without the
	// network when its dependencies are met (it has none).
	if _, err := exec.LookPath("apt-get"); err == nil {
		run(t, env, "apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=300", deb)
	} else {
		t.Logf("apt-get not found; installing with dpkg -i")
		run(t, env, "dpkg", "-i", deb)
	}
	if got := run(t, env, "dpkg-query", "-W", "-f=${Status} ${Version}", "dcroll"); got != "install ok installed 0.1.0" {
		t.Fatalf("after apt-get install: %s", got)
	}
	if got := run(t, env, packaging.BinaryPath, "version"); !strings.HasPrefix(got, "dcroll v0.1.0 ") {
		t.Fatalf("%s version: %s", packaging.BinaryPath, got)
	}

	t.Run("man page and completion where the tools look", func(t *testing.T) {
		checkInstalledDocs(t)
	})

	// 2. The host config: the ensemble, the host, one service. The agent
	// keeps its state in the packaged /var/lib/dcroll.
	ports := make([]int, 3)
	for i := range ports {
		ports[i] = testutil.FreePort(t)
	}
	const root = "/newdc"
	hostConfig := fmt.Sprintf(`[zookeeper]
servers = [%q]
root = %q

[host]
name = "h1"

[transfer]
listen = "127.0.0.1:%[3]d"
advertise = "127.0.0.1:%[3]d"
torrent_listen = "127.0.0.1:%[4]d"
torrent_advertise = "127.0.0.1:%[4]d"

[services.web]
run = "exec /usr/bin/dcroll _serve --addr 127.0.0.1:%[5]d"
[services.web.health]
http = "http://127.0.0.1:%[5]d/healthz"
interval = "200ms"
`, zkc.ConnString(), root, ports[0], ports[1], ports[2])
	if err := os.WriteFile(packaging.ConfigPath, []byte(hostConfig), 0o644); err != nil {
		t.Fatal(err)
	}

	// The operator's commands run the installed binary with the installed
	// config and nothing of this process's environment.
	work := t.TempDir()
	cmdEnv := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + work}
	dcroll := func(args ...string) (string, string, error) {
		cmd := exec.Command(packaging.BinaryPath, args...)
		cmd.Dir, cmd.Env = work, cmdEnv
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}

	// 3. The catalog. With one host, quorum 1 could never grant a turn:
	// the first release has to start without one.
	if err := os.WriteFile(filepath.Join(work, "seed.toml"), []byte("[services.web]\nquorum = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, errOut, err := dcroll("seed", "seed.toml"); err != nil {
		t.Fatalf("dcroll seed: %v\n%s%s", err, out, errOut)
	}

	// 4. The agent, as the unit's ExecStart runs it.
	agentLog, err := os.Create(filepath.Join(work, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer agentLog.Close()
	unit := string(file(t, "dcroll.service"))
	if !strings.Contains(unit, "\nExecStart="+packaging.BinaryPath+" agent\n") {
		t.Fatalf("the unit's ExecStart is no longer %s agent; update this test", packaging.BinaryPath)
	}
	agent := exec.Command(packaging.BinaryPath, "agent")
	agent.Dir, agent.Env = "/", cmdEnv
	agent.Stdout, agent.Stderr = agentLog, agentLog
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- agent.Wait() }()
	t.Cleanup(func() {
		// systemctl stop: SIGTERM, and the agent stops what it supervises.
		_ = agent.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("the agent exited with %v on SIGTERM", err)
			}
		case <-time.After(60 * time.Second):
			_ = agent.Process.Kill()
			t.Errorf("the agent did not stop within 60s of SIGTERM")
		}
		if t.Failed() {
			b, _ := os.ReadFile(agentLog.Name())
			t.Logf("agent log:\n%s", b)
		}
	})

	// 5. The first release. stage serves it until every online host of web
	// has it: here, until h1 has fetched it and runs it.
	release := filepath.Join(work, "web-1.0")
	if err := os.MkdirAll(release, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(release, "VERSION"), []byte("1.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := dcroll("stage", "--listen", "127.0.0.1:0", "--torrent-listen", "127.0.0.1:0", "--timeout", "2m", "web", "1.0", release+"/")
	if err != nil || !strings.Contains(out, "web 1.0: every online host (1) has the release; done serving") {
		t.Fatalf("dcroll stage: %v\n%s%s", err, out, errOut)
	}

	store := rolltest.Open(t, zkc, root)
	cur, err := store.CurrentOf("web")
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := cur["h1"]; !ok || c.Version != "1.0" {
		t.Fatalf("h1 in /current/web: %+v, want 1.0", cur)
	}
	if got := get(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", ports[2])); got != "1.0\n" {
		t.Errorf("the service answers %q, want version 1.0", got)
	}
	if target, err := os.Readlink(filepath.Join(packaging.StateDir, "releases/web/current")); err != nil || filepath.Base(target) != "1.0" {
		t.Errorf("%s/releases/web/current: %q, %v; want 1.0", packaging.StateDir, target, err)
	}
	// No turn was ever taken: creating or deleting a child of
	// /roll/web/turns would have raised its child version.
	raw := rolltest.RawOf(t, store)
	if _, st, err := raw.Get(root + "/roll/web/turns"); err != nil || st.Cversion != 0 {
		t.Errorf("/roll/web/turns: %v, child version %d; want no turn ever taken", err, st.Cversion)
	}

	// 6. Nothing to order: the release runs on every host. The order is
	// refused and changes nothing; the host keeps running as it was.
	for _, args := range [][]string{{"order", "web"}, {"order", "--auto"}} {
		out, errOut, err := dcroll(args...)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(errOut, "nothing to order") {
			t.Errorf("dcroll %s: %v, want exit 1 and \"nothing to order\":\n%s%s", strings.Join(args, " "), err, out, errOut)
		}
	}
	if steps, err := store.Steps(); err != nil || len(steps) != 0 {
		t.Errorf("deploy steps after the refused orders: %v, %v; want none", steps, err)
	}
	// status names only the hosts that need attention; --hosts every host.
	out, errOut, err = dcroll("status", "--hosts")
	hostRow := ""
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "h1 ") {
			hostRow = strings.Join(strings.Fields(line), " ")
		}
	}
	if err != nil || hostRow != "h1 up v0.1.0 web=1.0" {
		t.Errorf("dcroll status --hosts: %v; h1's row %q, want \"h1 up v0.1.0 web=1.0\":\n%s%s", err, hostRow, out, errOut)
	}
	after, err := store.CurrentOf("web")
	if err != nil || !after["h1"].Since.Equal(cur["h1"].Since) {
		t.Errorf("h1 went offline or restarted: online since %v, then %v (%v)", cur["h1"].Since, after["h1"].Since, err)
	}
	if _, st, err := raw.Get(root + "/roll/web/turns"); err != nil || st.Cversion != 0 {
		t.Errorf("/roll/web/turns: %v, child version %d; want no turn ever taken", err, st.Cversion)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkInstalledDocs checks, with the package installed on this machine,
// that man finds dcroll(1), that bash-completion loads the installed
// script on the first Tab and completes modes and flags with the installed
// dcroll, and that zsh's compinit finds _dcroll where the package put it.
func checkInstalledDocs(t *testing.T) {
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + t.TempDir()}
	if _, err := exec.LookPath("man"); err != nil {
		t.Log("man not found (apt-get install -y man-db): not checked")
	} else if dpkgExcludes(t, packaging.ManPath) {
		t.Log("the manual page is not installed here: not checked")
	} else if got := strings.TrimSpace(run(t, env, "man", "-w", "dcroll")); got != packaging.ManPath {
		t.Errorf("man -w dcroll: %q, want %s", got, packaging.ManPath)
	}

	const bashCompletion = "/usr/share/bash-completion/bash_completion"
	if _, err := os.Stat(bashCompletion); err != nil {
		t.Log("bash-completion not installed (apt-get install -y bash-completion): not checked")
	} else {
		// bash-completion loads a command's script from its directory the
		// first time the command is completed.
		got := run(t, env, "bash", "--norc", "--noprofile", "-c", `source `+bashCompletion+`
__load_completion dcroll || exit 1
complete -p dcroll
tab() {
	COMP_LINE=$1 COMP_POINT=${#1} COMP_TYPE=9
	read -ra COMP_WORDS <<<"$1"
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMPREPLY=()
	__start_dcroll dcroll "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}" 2>/dev/null
	echo "${COMPREPLY[*]}"
}
tab "dcroll sta"
tab "dcroll status --js"
`)
		if want := "complete -o default -F __start_dcroll dcroll\nstage status\n--json\n"; got != want {
			t.Errorf("bash completion of the installed dcroll:\n%s\nwant:\n%s", got, want)
		}
	}

	if _, err := exec.LookPath("zsh"); err != nil {
		t.Log("zsh not found (apt-get install -y zsh): not checked")
	} else if got := strings.TrimSpace(run(t, env, "zsh", "-f", "-c", `autoload -Uz compinit && compinit -u -D && print -r -- "$_comps[dcroll]"`)); got != "_dcroll" {
		t.Errorf("zsh's compinit completes dcroll with %q, want _dcroll from %s", got, packaging.DebZshCompletionPath)
	}
}
