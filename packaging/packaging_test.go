package packaging

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestPackageVersion(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"v1.2.3", "1.2.3"},
		{"1.2.3", "1.2.3"},
		{"v0.10", "0.10"},
		{"v1.2.3-rc.1", "1.2.3-rc.1"},
		{"v1.2.3-dirty", "1.2.3+dirty"},
		{"v1.2.3-4-gabc1234", "1.2.3+4.gabc1234"},
		{"v1.2.3-4-gabc1234-dirty", "1.2.3+4.gabc1234.dirty"},
		{"v1.2.3-rc.1-4-gabc1234", "1.2.3-rc.1+4.gabc1234"},
		{"32c527d", "0.0.0+g32c527d"},
		{"32c527d-dirty", "0.0.0+g32c527d.dirty"},
		{"1234567", "0.0.0+g1234567"}, // an all-digit abbreviated commit
	} {
		got, err := PackageVersion(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("PackageVersion(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "dev", "(devel)", "v1", "1.2.3.4", "1.2.3-rc-1", "v1.2.3 ", "1.2.3-4-gXYZ", "abc1234-4-gabc1234"} {
		if got, err := PackageVersion(in); err == nil {
			t.Errorf("PackageVersion(%q) = %q, want an error", in, got)
		}
	}
}

func TestConfigRefusesBinary(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "dcroll")
	if err := os.WriteFile(text, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{
		"missing":  filepath.Join(dir, "nope"),
		"not ELF":  text,
		"dynamic":  "/bin/sh", // Debian's dash links libc
		"no build": dir,
	}
	for name, path := range bad {
		if name == "dynamic" {
			if _, err := os.Stat(path); err != nil {
				t.Logf("skip %s: %v", name, err)
				continue
			}
		}
		if _, err := Config("v1.0.0", path, t.TempDir()); err == nil {
			t.Errorf("%s: Config(binary %s) accepted it", name, path)
		} else if !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %q does not name %s", name, err, path)
		}
	}
}

// TestUnit pins what the agent needs from its unit: the packaged binary,
// stopping its supervised processes itself, and root powers for the
// operator's start commands.
func TestUnit(t *testing.T) {
	b, err := embedded.ReadFile("dcroll.service")
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && !strings.HasPrefix(k, "#") {
			set[k] = v
		}
	}
	want := map[string]string{
		"ExecStart":       BinaryPath + " agent",
		"KillMode":        "mixed",
		"Restart":         "on-failure",
		"EnvironmentFile": "-/etc/default/dcroll",
		"LimitMEMLOCK":    "infinity",
		"StateDirectory":  filepath.Base(StateDir),
		"WantedBy":        "multi-user.target",
	}
	for k, v := range want {
		if set[k] != v {
			t.Errorf("%s=%q, want %q", k, set[k], v)
		}
	}
	// Each would stop start commands that use sudo, or write outside
	// /var/lib/dcroll, from working.
	for _, k := range []string{"NoNewPrivileges", "ProtectSystem", "ProtectHome", "User", "DynamicUser", "CapabilityBoundingSet", "SystemCallFilter"} {
		if v, ok := set[k]; ok {
			t.Errorf("%s=%s is set; the agent runs the operator's commands as root", k, v)
		}
	}
}

// TestMaintainerScripts runs the scripts as dpkg and rpm call them, with a
// systemctl that only records its arguments, and with "systemd is running"
// (/run/systemd/system) pointed at a directory that exists or does not.
func TestMaintainerScripts(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("sh not found: apt-get install -y dash")
	}
	const (
		reload  = "daemon-reload"
		enable  = "enable dcroll.service"
		restart = "try-restart dcroll.service"
		stop    = "stop dcroll.service"
		disable = "disable dcroll.service"
	)
	type tc struct {
		script  string
		args    []string
		live    bool   // systemd runs this machine
		root    string // DPKG_ROOT
		noCtl   bool   // no systemctl in PATH
		failCtl string // systemctl fails for this command
		want    []string
		fails   bool
	}
	cases := []tc{
		// First install: enable, do not start.
		{script: "postinstall.sh", args: []string{"configure", ""}, live: true, want: []string{reload, enable}},
		{script: "postinstall.sh", args: []string{"configure"}, live: true, want: []string{reload, enable}},
		{script: "postinstall.sh", args: []string{"1"}, live: true, want: []string{reload, enable}},
		{script: "postinstall.sh", args: []string{"1"}, want: []string{enable}},
		{script: "postinstall.sh", args: []string{"configure", ""}, live: true, root: "/img", want: []string{"--root=/img " + enable}},
		// Upgrade: restart a running agent, never enable.
		{script: "postinstall.sh", args: []string{"configure", "0.1.0"}, live: true, want: []string{reload, restart}},
		{script: "postinstall.sh", args: []string{"2"}, live: true, want: []string{reload, restart}},
		{script: "postinstall.sh", args: []string{"12"}, live: true, want: []string{reload, restart}},
		{script: "postinstall.sh", args: []string{"2"}},
		{script: "postinstall.sh", args: []string{"configure", "0.1.0"}, live: true, root: "/img"},
		{script: "postinstall.sh", args: []string{"abort-upgrade", "0.2.0"}, live: true},
		{script: "postinstall.sh", args: []string{"configure", ""}, live: true, noCtl: true},
		{script: "postinstall.sh", args: []string{"2"}, live: true, failCtl: "try-restart", want: []string{reload, restart}, fails: true},
		// Removal: stop (even if that fails) and disable; an upgrade leaves it running.
		{script: "preremove.sh", args: []string{"remove"}, live: true, want: []string{stop, disable}},
		{script: "preremove.sh", args: []string{"0"}, live: true, want: []string{stop, disable}},
		{script: "preremove.sh", args: []string{"0"}, live: true, failCtl: "stop", want: []string{stop, disable}},
		{script: "preremove.sh", args: []string{"remove"}, want: []string{disable}},
		{script: "preremove.sh", args: []string{"remove"}, live: true, root: "/img", want: []string{"--root=/img " + disable}},
		{script: "preremove.sh", args: []string{"upgrade", "0.2.0"}, live: true},
		{script: "preremove.sh", args: []string{"1"}, live: true},
		{script: "preremove.sh", args: []string{"remove"}, live: true, noCtl: true},
		// After removal or upgrade: reload a running systemd only.
		{script: "postremove.sh", args: []string{"remove"}, live: true, want: []string{reload}},
		{script: "postremove.sh", args: []string{"purge"}, live: true, want: []string{reload}},
		{script: "postremove.sh", args: []string{"0"}, live: true, want: []string{reload}},
		{script: "postremove.sh", args: []string{"1"}, live: true, want: []string{reload}},
		{script: "postremove.sh", args: []string{"purge"}},
		{script: "postremove.sh", args: []string{"remove"}, live: true, root: "/img"},
	}
	for _, c := range cases {
		name := c.script + " " + strings.Join(c.args, " ")
		dir := t.TempDir()
		bin := filepath.Join(dir, "bin")
		runDir := filepath.Join(dir, "run-systemd-system")
		log := filepath.Join(dir, "systemctl.log")
		if err := os.Mkdir(bin, 0o755); err != nil {
			t.Fatal(err)
		}
		if c.live {
			if err := os.Mkdir(runDir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if !c.noCtl {
			fake := "#!" + sh + "\necho \"$*\" >>'" + log + "'\n" +
				"case \"$1\" in '" + c.failCtl + "') exit 1 ;; esac\n"
			if err := os.WriteFile(filepath.Join(bin, "systemctl"), []byte(fake), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		body, err := embedded.ReadFile(c.script)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(body), "/run/systemd/system") && (len(c.want) > 0 || c.live) {
			t.Fatalf("%s no longer checks /run/systemd/system; update this test", c.script)
		}
		script := filepath.Join(dir, c.script)
		body = []byte(strings.ReplaceAll(string(body), "/run/systemd/system", runDir))
		if err := os.WriteFile(script, body, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(sh, append([]string{script}, c.args...)...)
		// Only the fake systemctl is reachable: the real one must never run.
		cmd.Env = []string{"PATH=" + bin}
		if c.root != "" {
			cmd.Env = append(cmd.Env, "DPKG_ROOT="+c.root)
		}
		out, err := cmd.CombinedOutput()
		if c.fails != (err != nil) {
			t.Errorf("%s (live=%v root=%q fail=%q): err = %v, want failure %v; output:\n%s", name, c.live, c.root, c.failCtl, err, c.fails, out)
		}
		var got []string
		if b, err := os.ReadFile(log); err == nil {
			got = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s (live=%v root=%q fail=%q): systemctl calls %q, want %q", name, c.live, c.root, c.failCtl, got, c.want)
		}
	}
}
