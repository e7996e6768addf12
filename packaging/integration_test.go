package packaging_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/dcroll/dcroll/etc"
	"github.com/dcroll/dcroll/packaging"
)

// The tests below use the real tools. Each skips, saying what to install,
// when its tool is missing; CI installs them all (.ci/run).
//
// Packages are built by the mkpkg command, built without the race
// detector: under it, compressing the binary takes half a minute. Binaries
// and packages are built once per test run and shared.

var built struct {
	sync.Mutex
	dir string
	m   map[string]*result
}

type result struct {
	once sync.Once
	v    string
	ok   bool
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dcroll-packaging-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	built.dir, built.m = dir, map[string]*result{}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// once returns what mk, given a fresh directory, returned the first time
// key was asked for.
func once(t *testing.T, key string, mk func(dir string) string) string {
	t.Helper()
	built.Lock()
	r := built.m[key]
	if r == nil {
		r = &result{}
		built.m[key] = r
	}
	built.Unlock()
	r.once.Do(func() {
		dir, err := os.MkdirTemp(built.dir, "")
		if err != nil {
			t.Fatal(err)
		}
		r.v = mk(dir)
		r.ok = true
	})
	if !r.ok {
		t.Fatalf("%s: failed in an earlier test", key)
	}
	return r.v
}

func goBuild(t *testing.T, out, pkg string, ldflags string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "-ldflags", ldflags, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
}

// dcroll builds a static linux/amd64 dcroll stamped with version, as make
// build does.
func dcroll(t *testing.T, version string) string {
	t.Helper()
	return once(t, "dcroll "+version, func(dir string) string {
		p := filepath.Join(dir, "dcroll")
		goBuild(t, p, "github.com/dcroll/dcroll", "-s -w -X github.com/dcroll/dcroll/modes.Version="+version)
		return p
	})
}

// build builds the packages of version with mkpkg, as make package does.
func build(t *testing.T, version string) (deb, rpm string) {
	t.Helper()
	paths := once(t, "packages "+version, func(dir string) string {
		mkpkg := once(t, "mkpkg", func(dir string) string {
			p := filepath.Join(dir, "mkpkg")
			goBuild(t, p, "github.com/dcroll/dcroll/packaging/cmd/mkpkg", "")
			return p
		})
		return run(t, os.Environ(), mkpkg, "--version", version, "--binary", dcroll(t, version), "--out", filepath.Join(dir, "dist"))
	})
	return pick(t, strings.Fields(paths))
}

// newDefault is the default config of buildNewDefault's packages.
var newDefault = append(slices.Clip(etc.DefaultConfig), "# new in 0.2.0\n"...)

// buildNewDefault builds the packages of version 0.2.0 as if it shipped a
// changed default config (newDefault), so that an upgrade meets a config
// edited on the host and changed by the package: the hard case. It is
// the one package built in this process, through packaging.Package.
func buildNewDefault(t *testing.T) (deb, rpm string) {
	t.Helper()
	paths := once(t, "packages v0.2.0 with a new default config", func(dir string) string {
		cfg, err := packaging.Config("v0.2.0", dcroll(t, "v0.2.0"), dir)
		if err != nil {
			t.Fatal(err)
		}
		changed := false
		for _, c := range cfg.Contents {
			if c.Destination == packaging.ConfigPath {
				if err := os.WriteFile(c.Source, newDefault, 0o644); err != nil {
					t.Fatal(err)
				}
				changed = true
			}
		}
		if !changed {
			t.Fatalf("no %s in the package config", packaging.ConfigPath)
		}
		// Compressing costs most of the time under the race detector, and
		// nothing the tests look at depends on it.
		cfg.Deb.Compression, cfg.RPM.Compression = "none", "gzip:1"
		out := filepath.Join(dir, "dist")
		if err := os.Mkdir(out, 0o755); err != nil {
			t.Fatal(err)
		}
		paths, err := packaging.Package(cfg, out)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(paths, "\n")
	})
	return pick(t, strings.Fields(paths))
}

func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func pick(t *testing.T, paths []string) (deb, rpm string) {
	t.Helper()
	if len(paths) != 2 || filepath.Ext(paths[0]) != ".deb" || filepath.Ext(paths[1]) != ".rpm" {
		t.Fatalf("packages %q, want a .deb and an .rpm", paths)
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			t.Fatal(err)
		}
	}
	return paths[0], paths[1]
}

// need skips the test unless tool is in PATH.
func need(t *testing.T, tool, debianPackage string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Skipf("%s not found: apt-get install -y %s (.ci/run installs it)", tool, debianPackage)
	}
}

func file(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestIntegration_Names(t *testing.T) {
	deb, rpm := build(t, "v0.1.0")
	if got := filepath.Base(deb); got != "dcroll_0.1.0_amd64.deb" {
		t.Errorf(".deb named %s", got)
	}
	if got := filepath.Base(rpm); got != "dcroll-0.1.0-1.x86_64.rpm" {
		t.Errorf(".rpm named %s", got)
	}
}

func TestIntegration_Deb(t *testing.T) {
	need(t, "dpkg-deb", "dpkg")
	deb, _ := build(t, "v0.1.0")
	env := os.Environ()

	fields := map[string]string{}
	for _, line := range strings.Split(run(t, env, "dpkg-deb", "--field", deb), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && !strings.HasPrefix(k, " ") {
			fields[k] = v
		}
	}
	for k, v := range map[string]string{
		"Package":      "dcroll",
		"Version":      "0.1.0",
		"Architecture": "amd64",
		"Maintainer":   "dcroll maintainers <dcroll@localhost>",
		"Section":      "admin",
		"Priority":     "optional",
		"Homepage":     "https://github.com/dcroll/dcroll",
	} {
		if fields[k] != v {
			t.Errorf("control %s: %q, want %q", k, fields[k], v)
		}
	}
	if !strings.Contains(fields["Description"], "ZooKeeper") {
		t.Errorf("control Description: %q", fields["Description"])
	}
	for _, k := range []string{"Depends", "Pre-Depends", "Recommends"} {
		if v, ok := fields[k]; ok {
			t.Errorf("control %s: %q; the static binary needs nothing", k, v)
		}
	}

	// Every file and directory, with its mode and owner.
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(run(t, env, "dpkg-deb", "--contents", deb)), "\n") {
		f := strings.Fields(line)
		if len(f) != 6 {
			t.Fatalf("dpkg-deb --contents line %q", line)
		}
		got[strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")] = f[0] + " " + f[1]
	}
	files := map[string]string{
		packaging.BinaryPath:              "-rwxr-xr-x root/root",
		packaging.ConfigPath:              "-rw-r--r-- root/root",
		packaging.DebUnitPath:             "-rw-r--r-- root/root",
		"/usr/share/doc/dcroll/copyright": "-rw-r--r-- root/root",
		packaging.ManPath:                 "-rw-r--r-- root/root",
		packaging.BashCompletionPath:      "-rw-r--r-- root/root",
		packaging.DebZshCompletionPath:    "-rw-r--r-- root/root",
		packaging.StateDir:                "drwxr-xr-x root/root",
	}
	for path, want := range got {
		if strings.HasPrefix(want, "d") && files[path] == "" {
			files[path] = "drwxr-xr-x root/root" // a parent: /usr, /usr/bin, ...
		}
	}
	for path, want := range files {
		if got[path] != want {
			t.Errorf("%s: %q, want %q", path, got[path], want)
		}
	}
	for path := range got {
		if _, ok := files[path]; !ok {
			t.Errorf("unexpected %s in the .deb", path)
		}
	}

	if got := run(t, env, "dpkg-deb", "--info", deb, "conffiles"); got != packaging.ConfigPath+"\n" {
		t.Errorf("conffiles: %q, want %s only", got, packaging.ConfigPath)
	}
	for member, script := range map[string]string{"postinst": "postinstall.sh", "prerm": "preremove.sh", "postrm": "postremove.sh"} {
		if got := run(t, env, "dpkg-deb", "--info", deb, member); got != string(file(t, script)) {
			t.Errorf("%s is not %s:\n%s", member, script, got)
		}
	}
	if out := run(t, env, "dpkg-deb", "--info", deb); strings.Contains(out, " preinst ") {
		t.Errorf("unexpected preinst:\n%s", out)
	}

	// The shipped bytes are the built binary, the default config, the unit,
	// and the manual page and completion scripts the binary prints.
	x := t.TempDir()
	run(t, env, "dpkg-deb", "--extract", deb, x)
	bin := dcroll(t, "v0.1.0")
	for path, want := range map[string][]byte{
		packaging.BinaryPath:           file(t, bin),
		packaging.ConfigPath:           etc.DefaultConfig,
		packaging.DebUnitPath:          file(t, "dcroll.service"),
		packaging.BashCompletionPath:   []byte(run(t, env, bin, "completion", "bash")),
		packaging.DebZshCompletionPath: []byte(run(t, env, bin, "completion", "zsh")),
	} {
		if !bytes.Equal(file(t, filepath.Join(x, path)), want) {
			t.Errorf("%s in the .deb differs from its source", path)
		}
	}
	checkManPage(t, filepath.Join(x, packaging.ManPath), bin)
}

// dpkgExcludes reports whether this machine's dpkg is told not to install
// path (path-exclude in /etc/dpkg/dpkg.cfg.d, as slim container images do
// for manual pages), and says so.
func dpkgExcludes(t *testing.T, path string) bool {
	t.Helper()
	cfgs, _ := filepath.Glob("/etc/dpkg/dpkg.cfg.d/*")
	for _, cfg := range cfgs {
		b, err := os.ReadFile(cfg)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if pattern, ok := strings.CutPrefix(strings.TrimSpace(line), "path-exclude"); ok {
				// dpkg matches with fnmatch(3) without FNM_PATHNAME: * spans slashes.
				glob := regexp.QuoteMeta(strings.TrimSpace(strings.TrimPrefix(pattern, "=")))
				glob = strings.NewReplacer(`\*`, ".*", `\?`, ".").Replace(glob)
				if m, _ := regexp.MatchString("^"+glob+"$", path); m {
					t.Logf("%s: dpkg does not install %s here (%s)", cfg, path, strings.TrimSpace(line))
					return true
				}
			}
		}
	}
	return false
}

// checkManPage checks that the gzipped manual page at path is what bin
// prints with dcroll man, compressed as Debian wants it (gzip -9n: no name,
// no time stamp, so that rebuilding gives the same bytes).
func checkManPage(t *testing.T, path, bin string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	page, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("%s: gzip header names %q, time %v; want neither (gzip -n)", path, zr.Name, zr.ModTime)
	}
	if want := run(t, os.Environ(), bin, "man"); string(page) != want {
		t.Errorf("%s is not the page dcroll man prints", path)
	}
	if !strings.Contains(string(page), `.TH "DCROLL" "1" "" "dcroll v0.1.0"`) {
		t.Errorf("%s is not dcroll(1) of v0.1.0:\n%.300s", path, page)
	}
}

func TestIntegration_RPM(t *testing.T) {
	need(t, "rpm", "rpm")
	_, rpm := build(t, "v0.1.0")
	env := os.Environ()

	q := func(format string) string {
		return run(t, env, "rpm", "-qp", "--qf", format, rpm)
	}
	if got, want := q("%{NAME} %{VERSION} %{RELEASE} %{ARCH} %{LICENSE} %{URL}|%{PACKAGER}|%{SUMMARY}"),
		"dcroll 0.1.0 1 x86_64 Apache-2.0 https://github.com/dcroll/dcroll|dcroll maintainers <dcroll@localhost>|rolling upgrades across a data center's hosts through ZooKeeper"; got != want {
		t.Errorf("rpm header:\n got %s\nwant %s", got, want)
	}
	if got := strings.TrimSpace(run(t, env, "rpm", "-qpR", rpm)); strings.Contains(got, "lib") {
		t.Errorf("rpm requires libraries:\n%s", got)
	}
	if info := run(t, env, "rpm", "-qp", "--info", rpm); !strings.Contains(info, "Apache-2.0") {
		t.Errorf("rpm --info lacks the license:\n%s", info)
	}

	// Mode, owner and flags (c: config, n: noreplace) of every path.
	got := strings.Split(strings.TrimSpace(q(`[%{FILEMODES:perms} %{FILEUSERNAME}/%{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILENAMES}\n]`)), "\n")
	want := []string{
		"-rw-r--r-- root/root cn " + packaging.ConfigPath,
		"-rwxr-xr-x root/root  " + packaging.BinaryPath,
		"-rw-r--r-- root/root  " + packaging.RPMUnitPath,
		"-rw-r--r-- root/root  " + packaging.BashCompletionPath,
		"-rw-r--r-- root/root  /usr/share/doc/dcroll/copyright",
		"-rw-r--r-- root/root d " + packaging.ManPath, // documentation: rpm --excludedocs leaves it out
		"-rw-r--r-- root/root  " + packaging.RPMZshCompletionPath,
		"drwxr-xr-x root/root  " + packaging.StateDir,
	}
	if !slices.Equal(got, want) {
		t.Errorf("rpm files:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := run(t, env, "rpm", "-qp", "--configfiles", rpm); got != packaging.ConfigPath+"\n" {
		t.Errorf("rpm --configfiles: %q", got)
	}
	if got := strings.Split(strings.TrimSpace(run(t, env, "rpm", "-qpl", rpm)), "\n"); len(got) != len(want) {
		t.Errorf("rpm -qpl: %q", got)
	}

	scripts := run(t, env, "rpm", "-qp", "--scripts", rpm)
	for tag, script := range map[string]string{"POSTIN": "postinstall.sh", "PREUN": "preremove.sh", "POSTUN": "postremove.sh"} {
		body := string(file(t, script))
		if got := q("%{" + tag + "}"); got != body {
			t.Errorf("%%{%s} is not %s:\n%s", tag, script, got)
		}
		if !strings.Contains(scripts, body) {
			t.Errorf("rpm --scripts lacks %s", script)
		}
	}
	for _, tag := range []string{"PREIN", "PRETRANS", "POSTTRANS"} {
		if got := q("%{" + tag + "}"); got != "(none)" {
			t.Errorf("unexpected %%{%s}:\n%s", tag, got)
		}
	}
}

// TestIntegration_DebInstallUpgradeRemove installs, upgrades and removes
// the .deb in a throwaway root with the real dpkg. The maintainer scripts
// run outside that root (dpkg --root runs them chrootless), with a
// systemctl that logs and forwards to the real one.
func TestIntegration_DebInstallUpgradeRemove(t *testing.T) {
	need(t, "dpkg", "dpkg")
	if runtime.GOARCH != "amd64" {
		t.Skipf("the package is amd64, this machine %s", runtime.GOARCH)
	}
	deb1, _ := build(t, "v0.1.0")

	deb2, _ := buildNewDefault(t)

	root := t.TempDir()
	admin := filepath.Join(root, "var/lib/dpkg")
	for _, d := range []string{"info", "updates", "triggers"} {
		if err := os.MkdirAll(filepath.Join(admin, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(admin, "status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	log := filepath.Join(bin, "systemctl.log")
	forward := "exit 0"
	realCtl, ctlErr := exec.LookPath("systemctl")
	if ctlErr == nil {
		forward = "exec '" + realCtl + `' "$@"`
	}
	fake := "#!/bin/sh\necho \"$*\" >>'" + log + "'\n" + forward + "\n"
	if err := os.WriteFile(filepath.Join(bin, "systemctl"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH")+":/usr/sbin:/sbin:/usr/bin:/bin")
	dpkg := func(args ...string) string {
		return run(t, env, "dpkg", append([]string{"--root=" + root, "--log=" + filepath.Join(root, "dpkg.log"),
			"--force-not-root", "--force-script-chrootless", "--force-confold"}, args...)...)
	}
	status := func() string {
		cmd := exec.Command("dpkg-query", "--admindir="+admin, "-W", "-f=${Status} ${Version}", "dcroll")
		out, err := cmd.Output()
		if err != nil {
			return "absent"
		}
		return string(out)
	}
	systemctl := func() []string {
		b, _ := os.ReadFile(log)
		return strings.Fields(strings.ReplaceAll(string(b), "\n", " ; "))
	}
	at := func(path string) string { return filepath.Join(root, path) }
	exists := func(path string) bool { _, err := os.Lstat(at(path)); return err == nil }
	wants := "/etc/systemd/system/multi-user.target.wants/dcroll.service"
	version := func() string { return run(t, env, at(packaging.BinaryPath), "version") }

	// Install.
	dpkg("--install", deb1)
	if got := status(); got != "install ok installed 0.1.0" {
		t.Fatalf("after install: %s", got)
	}
	if !bytes.Equal(file(t, at(packaging.BinaryPath)), file(t, dcroll(t, "v0.1.0"))) {
		t.Errorf("%s is not the 0.1.0 binary", packaging.BinaryPath)
	}
	if fi, err := os.Stat(at(packaging.BinaryPath)); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("%s: %v %v", packaging.BinaryPath, fi.Mode(), err)
	}
	if !strings.Contains(version(), "dcroll v0.1.0 ") {
		t.Errorf("installed dcroll version: %s", version())
	}
	if !bytes.Equal(file(t, at(packaging.ConfigPath)), etc.DefaultConfig) {
		t.Errorf("%s is not etc/dcroll.toml", packaging.ConfigPath)
	}
	for _, p := range []string{packaging.DebUnitPath, packaging.ManPath, packaging.BashCompletionPath, packaging.DebZshCompletionPath} {
		if !exists(p) && !dpkgExcludes(t, p) {
			t.Errorf("no %s", p)
		}
	}
	if fi, err := os.Stat(at(packaging.StateDir)); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
		t.Errorf("%s: %v %v", packaging.StateDir, fi, err)
	}
	// The first install enables the unit inside the root only, and nothing
	// talks to a running systemd: DPKG_ROOT is set.
	wantCtl := []string{"--root=" + root, "enable", "dcroll.service", ";"}
	if got := systemctl(); !slices.Equal(got, wantCtl) {
		t.Errorf("systemctl calls on install: %q, want %q", got, wantCtl)
	}
	if ctlErr == nil && !exists(wants) {
		t.Errorf("unit not enabled: no %s in the root", wants)
	}

	// Upgrade over an edited config and some agent state.
	edited := append(file(t, at(packaging.ConfigPath)), "\n[host]\nrack = \"r12\" # edited\n"...)
	if err := os.WriteFile(at(packaging.ConfigPath), edited, 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(packaging.StateDir, "state.json")
	if err := os.WriteFile(at(state), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	dpkg("--install", deb2)
	if got := status(); got != "install ok installed 0.2.0" {
		t.Fatalf("after upgrade: %s", got)
	}
	if !bytes.Equal(file(t, at(packaging.BinaryPath)), file(t, dcroll(t, "v0.2.0"))) || !strings.Contains(version(), "dcroll v0.2.0 ") {
		t.Errorf("%s not replaced by the 0.2.0 binary: %s", packaging.BinaryPath, version())
	}
	if !bytes.Equal(file(t, at(packaging.ConfigPath)), edited) {
		t.Errorf("upgrade replaced the edited %s", packaging.ConfigPath)
	}
	if !bytes.Equal(file(t, at(packaging.ConfigPath+".dpkg-dist")), newDefault) {
		t.Errorf("%s.dpkg-dist is not 0.2.0's default", packaging.ConfigPath)
	}
	if got := systemctl(); !slices.Equal(got, wantCtl) {
		t.Errorf("systemctl calls after upgrade: %q, want no more than %q", got, wantCtl)
	}
	if ctlErr == nil && !exists(wants) {
		t.Errorf("upgrade disabled the unit")
	}

	// Remove: the program goes, the config and the agent's state stay.
	dpkg("--remove", "dcroll")
	if got := status(); got != "deinstall ok config-files 0.2.0" {
		t.Errorf("after remove: %s", got)
	}
	for _, p := range []string{packaging.BinaryPath, packaging.DebUnitPath, wants, packaging.ManPath, packaging.BashCompletionPath, packaging.DebZshCompletionPath} {
		if exists(p) {
			t.Errorf("%s left after remove", p)
		}
	}
	if !exists(packaging.ConfigPath) || !exists(state) {
		t.Errorf("remove deleted the config or the agent's state")
	}
	wantCtl = append(wantCtl, "--root="+root, "disable", "dcroll.service", ";")
	if got := systemctl(); !slices.Equal(got, wantCtl) {
		t.Errorf("systemctl calls after remove: %q, want %q", got, wantCtl)
	}

	// Purge: the config goes too; the agent's state (releases) stays.
	dpkg("--purge", "dcroll")
	if got := status(); got != "absent" {
		t.Errorf("after purge: %s", got)
	}
	if exists(packaging.ConfigPath) || exists(packaging.ConfigPath+".dpkg-dist") {
		t.Errorf("purge left %s", packaging.ConfigPath)
	}
	if !exists(state) {
		t.Errorf("purge deleted %s", state)
	}
}

// TestIntegration_RPMInstallUpgradeErase does the same with rpm --root.
// rpm runs scriptlets chrooted into the root, where there is no shell, so
// they are left out (--noscripts); TestMaintainerScripts covers them.
func TestIntegration_RPMInstallUpgradeErase(t *testing.T) {
	need(t, "rpm", "rpm")
	if os.Geteuid() != 0 {
		t.Skip("rpm --root needs root (chroot)")
	}
	_, rpm1 := build(t, "v0.1.0")
	_, rpm2 := buildNewDefault(t)

	root := t.TempDir()
	env := os.Environ()
	rpmRun := func(args ...string) string {
		return run(t, env, "rpm", append([]string{"--root=" + root, "--nodeps", "--noscripts"}, args...)...)
	}
	at := func(path string) string { return filepath.Join(root, path) }
	exists := func(path string) bool { _, err := os.Lstat(at(path)); return err == nil }
	run(t, env, "rpm", "--root="+root, "--initdb")

	rpmRun("-i", rpm1)
	if got := run(t, env, "rpm", "--root="+root, "-q", "dcroll"); got != "dcroll-0.1.0-1.x86_64\n" {
		t.Fatalf("after install: %s", got)
	}
	for _, p := range []string{packaging.RPMUnitPath, packaging.StateDir, packaging.ManPath, packaging.BashCompletionPath, packaging.RPMZshCompletionPath} {
		if !exists(p) {
			t.Errorf("install is missing %s", p)
		}
	}
	if !bytes.Equal(file(t, at(packaging.ConfigPath)), etc.DefaultConfig) {
		t.Errorf("install did not write the default %s", packaging.ConfigPath)
	}
	checkManPage(t, at(packaging.ManPath), dcroll(t, "v0.1.0"))

	edited := append(file(t, at(packaging.ConfigPath)), "\n[host]\nrack = \"r12\" # edited\n"...)
	if err := os.WriteFile(at(packaging.ConfigPath), edited, 0o644); err != nil {
		t.Fatal(err)
	}
	rpmRun("-U", rpm2)
	if got := run(t, env, "rpm", "--root="+root, "-q", "dcroll"); got != "dcroll-0.2.0-1.x86_64\n" {
		t.Fatalf("after upgrade: %s", got)
	}
	if !bytes.Equal(file(t, at(packaging.BinaryPath)), file(t, dcroll(t, "v0.2.0"))) {
		t.Errorf("%s not replaced by the 0.2.0 binary", packaging.BinaryPath)
	}
	if !bytes.Equal(file(t, at(packaging.ConfigPath)), edited) {
		t.Errorf("upgrade replaced the edited %s (noreplace)", packaging.ConfigPath)
	}
	if !bytes.Equal(file(t, at(packaging.ConfigPath+".rpmnew")), newDefault) {
		t.Errorf("%s.rpmnew is not 0.2.0's default", packaging.ConfigPath)
	}

	state := filepath.Join(packaging.StateDir, "state.json")
	if err := os.WriteFile(at(state), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	rpmRun("-e", "dcroll")
	for _, p := range []string{packaging.BinaryPath, packaging.RPMUnitPath, packaging.ConfigPath, packaging.ManPath, packaging.BashCompletionPath, packaging.RPMZshCompletionPath} {
		if exists(p) {
			t.Errorf("%s left after erase", p)
		}
	}
	if !bytes.Equal(file(t, at(packaging.ConfigPath+".rpmsave")), edited) {
		t.Errorf("erase did not save the edited config as .rpmsave")
	}
	if !exists(state) {
		t.Errorf("erase deleted %s", state)
	}
}

// TestIntegration_SystemdVerify checks the unit with systemd's own
// verifier, pointed at a built binary since /usr/bin/dcroll need not exist.
func TestIntegration_SystemdVerify(t *testing.T) {
	need(t, "systemd-analyze", "systemd")
	bin := dcroll(t, "v0.1.0")
	verify := func(name, unit string) (string, error) {
		dir := t.TempDir()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("systemd-analyze", "verify", "--man=no", path)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stderr, &stderr
		err := cmd.Run()
		var complaints []string
		for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
			if line != "" && !strings.Contains(line, "booted with systemd") {
				complaints = append(complaints, line)
			}
		}
		return strings.Join(complaints, "\n"), err
	}

	unit := string(file(t, "dcroll.service"))
	if !strings.Contains(unit, "ExecStart="+packaging.BinaryPath+" ") {
		t.Fatalf("the unit does not start %s", packaging.BinaryPath)
	}
	unit = strings.ReplaceAll(unit, "ExecStart="+packaging.BinaryPath, "ExecStart="+bin)
	if out, err := verify("dcroll.service", unit); err != nil || out != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	// The verifier does catch mistakes here: a misspelt key.
	bad := strings.Replace(unit, "KillMode=", "KilMode=", 1)
	if out, _ := verify("dcroll.service", bad); !strings.Contains(out, "KilMode") {
		t.Errorf("systemd-analyze verify accepted a misspelt key; output: %q", out)
	}
}
