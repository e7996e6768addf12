package packaging_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/dcroll/dcroll/etc"
	"github.com/dcroll/dcroll/packaging"
)

// The repositories of mkrepo.sh (make repo), used as a host would use
// them: served over HTTP on loopback, with apt and dnf each installing into
// a throwaway root, verifying what they fetch against the key.

// gpgKey makes a throwaway signing key without a passphrase, as the README
// says to make the real one (a smaller RSA key, quicker to make), and
// returns the paths of its armored secret and public halves.
func gpgKey(t *testing.T, name string) (secret, public string) {
	t.Helper()
	need(t, "gpg", "gpg")
	paths := once(t, "gpg key "+name, func(dir string) string {
		home := filepath.Join(dir, "gnupg")
		if err := os.Mkdir(home, 0o700); err != nil {
			t.Fatal(err)
		}
		env := append(os.Environ(), "GNUPGHOME="+home)
		defer exec.Command("gpgconf", "--homedir", home, "--kill", "gpg-agent").Run()
		run(t, env, "gpg", "--batch", "--passphrase", "", "--quick-gen-key", name+" <packages@localhost>", "rsa3072", "sign", "never")
		secret, public := filepath.Join(dir, "secret.asc"), filepath.Join(dir, "public.asc")
		writeFile(t, secret, run(t, env, "gpg", "--batch", "--armor", "--export-secret-keys"))
		writeFile(t, public, run(t, env, "gpg", "--batch", "--armor", "--export"))
		return secret + "\n" + public
	})
	secret, public, _ = strings.Cut(paths, "\n")
	return secret, public
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// needRepoTools skips the test unless mkrepo.sh's tools are installed.
func needRepoTools(t *testing.T) {
	t.Helper()
	need(t, "gpg", "gpg")
	need(t, "reprepro", "reprepro")
	need(t, "createrepo_c", "createrepo-c")
	need(t, "rpmsign", "rpm")
}

// mkrepo runs mkrepo.sh as make repo does, adding packages to the
// repositories in out, and returns the directory to publish.
func mkrepo(t *testing.T, key, out string, packages ...string) string {
	t.Helper()
	env := append(os.Environ(), "DCROLL_REPO_KEY="+key)
	run(t, env, "./mkrepo.sh", append([]string{out}, packages...)...)
	return filepath.Join(out, "public")
}

// mkrepoFails runs mkrepo.sh and returns its standard error, failing the
// test unless it exits 1.
func mkrepoFails(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command("./mkrepo.sh", args...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("mkrepo.sh %s: %v, want exit 1\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stderr.String()
}

// serve serves dir over HTTP on loopback and returns its URL.
func serve(t *testing.T, dir string) string {
	t.Helper()
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestMkrepoNeverMakesAKey: without a usable key mkrepo.sh fails before
// writing anything, and says how to make a key.
func TestMkrepoNeverMakesAKey(t *testing.T) {
	need(t, "gpg", "gpg")
	dir := t.TempDir()
	deb, rpm := filepath.Join(dir, "dcroll_0.1.0_amd64.deb"), filepath.Join(dir, "dcroll-0.1.0-1.x86_64.rpm")
	writeFile(t, deb, "not read")
	writeFile(t, rpm, "not read")
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DCROLL_REPO_KEY=") {
			env = append(env, kv)
		}
	}
	_, public := gpgKey(t, "dcroll test packages")
	protected := filepath.Join(t.TempDir(), "protected.asc")
	{
		home := t.TempDir()
		genv := append(os.Environ(), "GNUPGHOME="+home)
		defer exec.Command("gpgconf", "--homedir", home, "--kill", "gpg-agent").Run()
		run(t, genv, "gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "secret", "--quick-gen-key", "protected <p@localhost>", "rsa3072", "sign", "never")
		writeFile(t, protected, run(t, genv, "gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "secret", "--armor", "--export-secret-keys"))
	}
	for _, tc := range []struct{ name, key, want string }{
		{"unset", "", "DCROLL_REPO_KEY is not set"},
		{"missing", "/nonexistent/dcroll-repo.key", "DCROLL_REPO_KEY=/nonexistent/dcroll-repo.key: no such readable file"},
		{"not a key", deb, "is not a key gpg can import"},
		{"public half", public, "holds no secret key"},
		{"passphrase", protected, "cannot sign without a passphrase"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "repo")
			env := env
			if tc.key != "" {
				env = append(env, "DCROLL_REPO_KEY="+tc.key)
			}
			stderr := mkrepoFails(t, env, out, deb, rpm)
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, stderr)
			}
			if tc.name == "unset" && !strings.Contains(stderr, "gpg --batch --passphrase '' --quick-gen-key") {
				t.Errorf("stderr does not say how to make a key:\n%s", stderr)
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("mkrepo.sh wrote %s (%v)", out, err)
			}
		})
	}
}

// aptRoot is apt and dpkg confined to a throwaway root: apt reads only the
// root's configuration (APT_CONFIG, and Dir makes every other path the
// root's), and dpkg installs under it with --root, running the maintainer
// scripts outside it (the root has no shell) with DPKG_ROOT set, so that
// they touch nothing of this machine.
type aptRoot struct {
	t    *testing.T
	dir  string
	env  []string
	list string // the sources.list
}

func newAptRoot(t *testing.T) *aptRoot {
	t.Helper()
	r := &aptRoot{t: t, dir: t.TempDir()}
	for _, d := range []string{"etc/apt/apt.conf.d", "etc/apt/preferences.d", "etc/apt/sources.list.d", "etc/apt/trusted.gpg.d", "etc/apt/keyrings",
		"var/lib/apt/lists/partial", "var/cache/apt/archives/partial", "var/log/apt",
		"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"} {
		if err := os.MkdirAll(r.at(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, r.at("var/lib/dpkg/status"), "")
	r.list = r.at("etc/apt/sources.list")
	conf := `Dir "` + r.dir + `/";
Dir::State::status "` + r.at("var/lib/dpkg/status") + `";
Dir::Etc::Trusted "/dev/null";
APT::Architecture "amd64";
APT::Sandbox::User "root";
Debug::NoLocking "true";
Acquire::Retries "0";
DPkg::Options { "--root=` + r.dir + `"; "--admindir=` + r.at("var/lib/dpkg") + `"; "--force-script-chrootless"; "--force-not-root"; "--force-confold"; "--log=` + r.at("var/log/dpkg.log") + `"; };
`
	writeFile(t, r.at("etc/apt/apt.conf"), conf)
	r.env = append(os.Environ(), "APT_CONFIG="+r.at("etc/apt/apt.conf"), "DEBIAN_FRONTEND=noninteractive",
		"PATH="+os.Getenv("PATH")+":/usr/sbin:/sbin:/usr/bin:/bin")
	return r
}

func (r *aptRoot) at(path string) string { return filepath.Join(r.dir, path) }

// clearLists forgets every index apt fetched, as on a fresh host.
func (r *aptRoot) clearLists() {
	r.t.Helper()
	lists, _ := filepath.Glob(r.at("var/lib/apt/lists/*"))
	for _, p := range lists {
		if filepath.Base(p) != "partial" {
			if err := os.RemoveAll(p); err != nil {
				r.t.Fatal(err)
			}
		}
	}
}

// aptGet runs apt-get in the root and returns its output and error.
func (r *aptRoot) aptGet(args ...string) (string, error) {
	cmd := exec.Command("apt-get", append([]string{"-q", "-y"}, args...)...)
	cmd.Env = r.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (r *aptRoot) mustAptGet(args ...string) string {
	r.t.Helper()
	out, err := r.aptGet(args...)
	if err != nil {
		r.t.Fatalf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// status is dcroll's dpkg status and version in the root.
func (r *aptRoot) status() string {
	cmd := exec.Command("dpkg-query", "--admindir="+r.at("var/lib/dpkg"), "-W", "-f=${Status} ${Version}", "dcroll")
	out, err := cmd.Output()
	if err != nil {
		return "absent"
	}
	return string(out)
}

// candidate is the version of dcroll apt would install from what it knows.
func (r *aptRoot) candidate() string {
	r.t.Helper()
	out := run(r.t, r.env, "apt-cache", "policy", "dcroll")
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Candidate:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestIntegration_AptRepository follows the README's apt lines against the
// repository of make repo, in a throwaway root: the key, the source line
// with signed-by, apt-get update, apt-get install dcroll. It checks that
// apt verifies the repository against that key (another key is refused),
// that a tampered Packages file is refused, and that apt-get upgrade to a
// newer build from the repository keeps the edited host config.
func TestIntegration_AptRepository(t *testing.T) {
	needRepoTools(t)
	need(t, "apt-get", "apt")
	need(t, "dpkg", "dpkg")
	if runtime.GOARCH != "amd64" {
		t.Skipf("the package is amd64, this machine %s", runtime.GOARCH)
	}
	key, _ := gpgKey(t, "dcroll test packages")
	_, otherKey := gpgKey(t, "another archive")
	deb1, rpm1 := build(t, "v0.1.0")
	deb2, rpm2 := buildNewDefault(t)
	repo := t.TempDir()
	public := mkrepo(t, key, repo, deb1, rpm1)
	for _, p := range []string{"dists/stable/InRelease", "dists/stable/Release", "dists/stable/Release.gpg",
		"dists/stable/main/binary-amd64/Packages", "pool/main/d/dcroll/dcroll_0.1.0_amd64.deb"} {
		if _, err := os.Stat(filepath.Join(public, "deb", p)); err != nil {
			t.Errorf("the apt repository lacks %s", p)
		}
	}
	url := serve(t, public)
	r := newAptRoot(t)
	keyring := r.at("etc/apt/keyrings/dcroll.asc")
	source := func(key string) {
		// The README's key and source lines, with the key fetched from the
		// repository itself.
		writeFile(t, keyring, get(t, url+"/dcroll.asc"))
		if key != "" {
			writeFile(t, keyring, string(file(t, key)))
		}
		writeFile(t, r.list, "deb [signed-by="+keyring+"] "+url+"/deb stable main\n")
	}

	// Signed by another key than the source line names: refused.
	source(otherKey)
	out, err := r.aptGet("update")
	if err == nil || !strings.Contains(out, "NO_PUBKEY") {
		t.Errorf("apt-get update with another key in signed-by: %v, want a refusal naming NO_PUBKEY:\n%s", err, out)
	}
	if got := r.candidate(); got != "" && got != "(none)" {
		t.Errorf("with the wrong key, apt offers dcroll %q", got)
	}

	// The repository's own key: install.
	source("")
	r.mustAptGet("update")
	r.mustAptGet("install", "dcroll")
	if got := r.status(); got != "install ok installed 0.1.0" {
		t.Fatalf("after apt-get install dcroll: %s", got)
	}
	if !bytes.Equal(file(t, r.at(packaging.BinaryPath)), file(t, dcroll(t, "v0.1.0"))) {
		t.Errorf("%s is not the 0.1.0 binary", packaging.BinaryPath)
	}
	if !bytes.Equal(file(t, r.at(packaging.ConfigPath)), etc.DefaultConfig) {
		t.Errorf("%s is not the default config", packaging.ConfigPath)
	}

	// A Packages file changed on the server (as a mirror or a man in the
	// middle could), fetched by a host that has no lists yet: its hash is
	// not the signed Release's, and apt refuses it.
	packages := filepath.Join(public, "deb/dists/stable/main/binary-amd64/Packages")
	orig, origGz := file(t, packages), file(t, packages+".gz")
	tampered := bytes.Replace(orig, []byte("\nVersion: 0.1.0\n"), []byte("\nVersion: 9.9.9\n"), 1)
	if bytes.Equal(tampered, orig) {
		t.Fatalf("no Version: 0.1.0 in Packages:\n%s", orig)
	}
	writeFile(t, packages, string(tampered))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(tampered)
	_ = zw.Close()
	writeFile(t, packages+".gz", gz.String())
	r.clearLists()
	out, err = r.aptGet("update")
	if err == nil || !strings.Contains(out, "Hashes of expected file") {
		t.Errorf("apt-get update of a tampered Packages: %v, want a refusal on its hash:\n%s", err, out)
	}
	if policy := run(t, r.env, "apt-cache", "policy", "dcroll"); strings.Contains(policy, "9.9.9") || strings.Contains(policy, url) {
		t.Errorf("after the tampered update apt knows the repository's dcroll:\n%s", policy)
	}
	writeFile(t, packages, string(orig))
	writeFile(t, packages+".gz", string(origGz))

	// A newer build in the repository: apt-get upgrade installs it and
	// keeps the edited config, its new default next to it.
	edited := append(file(t, r.at(packaging.ConfigPath)), "\n[host]\nrack = \"r12\" # edited\n"...)
	writeFile(t, r.at(packaging.ConfigPath), string(edited))
	mkrepo(t, key, repo, deb2, rpm2)
	r.mustAptGet("update")
	r.mustAptGet("upgrade")
	if got := r.status(); got != "install ok installed 0.2.0" {
		t.Fatalf("after apt-get upgrade: %s", got)
	}
	if !bytes.Equal(file(t, r.at(packaging.BinaryPath)), file(t, dcroll(t, "v0.2.0"))) {
		t.Errorf("%s is not the 0.2.0 binary", packaging.BinaryPath)
	}
	if !bytes.Equal(file(t, r.at(packaging.ConfigPath)), edited) {
		t.Errorf("apt-get upgrade replaced the edited %s", packaging.ConfigPath)
	}
	if !bytes.Equal(file(t, r.at(packaging.ConfigPath+".dpkg-dist")), newDefault) {
		t.Errorf("%s.dpkg-dist is not 0.2.0's default", packaging.ConfigPath)
	}
}

// TestIntegration_DnfRepository does the same with the dnf repository:
// rpm -K checks each package's signature against the published key, and
// dnf --installroot installs from the repository with gpgcheck and
// repo_gpgcheck, refuses metadata that is not what was signed, and
// upgrades keeping the edited config.
func TestIntegration_DnfRepository(t *testing.T) {
	needRepoTools(t)
	key, public1 := gpgKey(t, "dcroll test packages")
	deb1, rpm1 := build(t, "v0.1.0")
	deb2, rpm2 := buildNewDefault(t)
	repo := t.TempDir()
	public := mkrepo(t, key, repo, deb1, rpm1)
	signed := filepath.Join(public, "rpm", filepath.Base(rpm1))
	env := os.Environ()

	// rpm -K: not OK without the key, OK with the published one, not OK
	// for a changed copy.
	db := t.TempDir()
	rpmK := func(path string) (string, error) {
		out, err := exec.Command("rpm", "--dbpath", db, "-K", path).CombinedOutput()
		return string(out), err
	}
	run(t, env, "rpm", "--dbpath", db, "--initdb")
	if out, err := rpmK(signed); err == nil {
		t.Errorf("rpm -K without the key: %s, want NOT OK", out)
	}
	if !bytes.Equal(file(t, filepath.Join(public, "dcroll.asc")), file(t, public1)) {
		t.Errorf("dcroll.asc is not the signing key's public half")
	}
	run(t, env, "rpm", "--dbpath", db, "--import", filepath.Join(public, "dcroll.asc"))
	if out, err := rpmK(signed); err != nil || !strings.HasSuffix(strings.TrimSpace(out), ": digests signatures OK") {
		t.Errorf("rpm -K with the key: %v %s, want digests signatures OK", err, out)
	}
	b := file(t, signed)
	b[len(b)-100] ^= 0xff // in the payload
	changed := filepath.Join(t.TempDir(), "changed.rpm")
	writeFile(t, changed, string(b))
	if out, err := rpmK(changed); err == nil {
		t.Errorf("rpm -K of a changed package: %s, want NOT OK", out)
	}
	if _, err := os.Stat(filepath.Join(public, "rpm/repodata/repomd.xml.asc")); err != nil {
		t.Errorf("the dnf repository's metadata is not signed: %v", err)
	}

	// A version is published once: the same packages again change
	// nothing, other contents under a published name are refused.
	before := file(t, signed)
	mkrepo(t, key, repo, deb1, rpm1)
	if !bytes.Equal(file(t, signed), before) {
		t.Errorf("adding %s again changed it", filepath.Base(rpm1))
	}
	for _, pkg := range [][2]string{{deb1, deb2}, {rpm1, rpm2}} {
		impostor := filepath.Join(t.TempDir(), filepath.Base(pkg[0]))
		writeFile(t, impostor, string(file(t, pkg[1])))
		args := []string{repo, deb1, rpm1}
		if filepath.Ext(impostor) == ".deb" {
			args[1] = impostor
		} else {
			args[2] = impostor
		}
		release := file(t, filepath.Join(public, "deb/dists/stable/InRelease"))
		if stderr := mkrepoFails(t, append(os.Environ(), "DCROLL_REPO_KEY="+key), args...); !strings.Contains(stderr, filepath.Base(pkg[0])+" is published already, with other contents") {
			t.Errorf("mkrepo.sh with another %s: %s", filepath.Base(pkg[0]), stderr)
		}
		if !bytes.Equal(file(t, filepath.Join(public, "deb/dists/stable/InRelease")), release) {
			t.Errorf("the refused %s changed the apt repository", filepath.Base(pkg[0]))
		}
	}

	if _, err := exec.LookPath("dnf"); err != nil {
		t.Skip("dnf not found: apt-get install -y dnf (.ci/run installs it); the signatures were checked with rpm -K only")
	}
	if os.Geteuid() != 0 {
		t.Skip("dnf --installroot needs root (rpm chroots into the root); the signatures were checked with rpm -K only")
	}
	url := serve(t, public)
	root := t.TempDir()
	at := func(path string) string { return filepath.Join(root, path) }
	t.Cleanup(func() {
		// dnf checks repo_gpgcheck with a keyring of its cache, whose
		// gpg-agent would outlive the test.
		homes, _ := filepath.Glob(at("var/cache/dnf/*/pubring"))
		for _, home := range homes {
			_ = exec.Command("gpgconf", "--homedir", home, "--kill", "gpg-agent").Run()
		}
	})
	if err := os.MkdirAll(at("etc/yum.repos.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The README's .repo file, pointed at the test's server.
	writeFile(t, at("etc/yum.repos.d/dcroll.repo"), `[dcroll]
name=dcroll
baseurl=`+url+`/rpm
enabled=1
gpgcheck=1
repo_gpgcheck=1
gpgkey=`+url+`/dcroll.asc
`)
	// The root has no shell for the scriptlets (TestMaintainerScripts
	// covers them); dnf's cache and key database are the root's.
	dnf := func(args ...string) (string, error) {
		cmd := exec.Command("dnf", append([]string{"-y", "--installroot=" + root, "--releasever=1",
			"--setopt=reposdir=" + at("etc/yum.repos.d"), "--setopt=cachedir=" + at("var/cache/dnf"),
			"--setopt=tsflags=noscripts", "--setopt=install_weak_deps=0"}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	query := func() string {
		out, _ := exec.Command("rpm", "--root="+root, "-q", "dcroll").CombinedOutput()
		return strings.TrimSpace(string(out))
	}

	// Metadata changed after it was signed: refused.
	repomd := filepath.Join(public, "rpm/repodata/repomd.xml")
	orig := file(t, repomd)
	writeFile(t, repomd, string(orig)+"<!-- changed -->\n")
	if out, err := dnf("install", "dcroll"); err == nil || query() != "package dcroll is not installed" {
		t.Errorf("dnf install from changed metadata: %v, %s; want a refusal:\n%s", err, query(), out)
	}
	writeFile(t, repomd, string(orig))

	if out, err := dnf("--refresh", "install", "dcroll"); err != nil {
		t.Fatalf("dnf install dcroll: %v\n%s", err, out)
	}
	if got := query(); got != "dcroll-0.1.0-1.x86_64" {
		t.Fatalf("after dnf install: %s", got)
	}
	edited := append(file(t, at(packaging.ConfigPath)), "\n[host]\nrack = \"r12\" # edited\n"...)
	writeFile(t, at(packaging.ConfigPath), string(edited))
	mkrepo(t, key, repo, deb2, rpm2)
	if out, err := dnf("--refresh", "upgrade"); err != nil {
		t.Fatalf("dnf upgrade: %v\n%s", err, out)
	}
	if got := query(); got != "dcroll-0.2.0-1.x86_64" {
		t.Fatalf("after dnf upgrade: %s", got)
	}
	if !bytes.Equal(file(t, at(packaging.BinaryPath)), file(t, dcroll(t, "v0.2.0"))) {
		t.Errorf("%s is not the 0.2.0 binary", packaging.BinaryPath)
	}
	if !bytes.Equal(file(t, at(packaging.ConfigPath)), edited) {
		t.Errorf("dnf upgrade replaced the edited %s (noreplace)", packaging.ConfigPath)
	}
	if !bytes.Equal(file(t, at(packaging.ConfigPath+".rpmnew")), newDefault) {
		t.Errorf("%s.rpmnew is not 0.2.0's default", packaging.ConfigPath)
	}
}
