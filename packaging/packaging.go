// Package packaging defines dcroll's .deb and .rpm: what they install, their
// metadata, the systemd unit and the maintainer scripts. It is the one
// source of truth for both formats; cmd/mkpkg and the tests build packages
// through Build. It builds no binary: it packages one built elsewhere
// (make build).
package packaging

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the "deb" packager
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the "rpm" packager

	"github.com/dcroll/dcroll/etc"
)

// Formats are the package formats Build writes, in order.
var Formats = []string{"deb", "rpm"}

//go:embed dcroll.service postinstall.sh preremove.sh postremove.sh copyright
var embedded embed.FS

// Paths on the installed host.
const (
	BinaryPath = "/usr/bin/dcroll"
	ConfigPath = "/etc/dcroll/dcroll.toml"
	StateDir   = "/var/lib/dcroll"
	// Debian's unit directory, and the one rpm distributions use
	// (%{_unitdir}); a merged /usr makes them the same directory.
	DebUnitPath = "/lib/systemd/system/dcroll.service"
	RPMUnitPath = "/usr/lib/systemd/system/dcroll.service"
	// The manual page and the completion scripts, which the binary writes
	// itself (dcroll man, dcroll completion). bash-completion looks in the
	// same place everywhere; zsh's directory for packaged completions is
	// vendor-completions on Debian and site-functions on rpm distributions.
	ManPath              = "/usr/share/man/man1/dcroll.1.gz"
	BashCompletionPath   = "/usr/share/bash-completion/completions/dcroll"
	DebZshCompletionPath = "/usr/share/zsh/vendor-completions/_dcroll"
	RPMZshCompletionPath = "/usr/share/zsh/site-functions/_dcroll"
)

const description = `rolling upgrades across a data center's hosts through ZooKeeper
dcroll rolls upgrades across bare-metal hosts service after service, in
dependency order, never taking more hosts of a service down than its quorum
allows. ZooKeeper is the only shared state; every host serves from its
local cache when ZooKeeper is unreachable.

This package installs the dcroll binary, the agent's systemd unit (enabled
on a first install, not started), the host configuration
/etc/dcroll/dcroll.toml, which upgrades keep, the manual page dcroll(1)
and completion for bash and zsh.`

// Config returns the package definition of dcroll version (see
// PackageVersion) shipping binary, a static linux/amd64 dcroll. nfpm reads
// every packaged file from disk, so Config writes the unit, the scripts,
// the default host config, and the manual page and completion scripts it
// runs binary to get, into dir, which must outlive the packaging.
func Config(version, binary, dir string) (*nfpm.Config, error) {
	pkgVersion, err := PackageVersion(version)
	if err != nil {
		return nil, err
	}
	if err := checkBinary(binary); err != nil {
		return nil, err
	}
	staged := map[string][]byte{"dcroll.toml": etc.DefaultConfig}
	for _, name := range []string{"dcroll.service", "postinstall.sh", "preremove.sh", "postremove.sh", "copyright"} {
		b, err := embedded.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("packaging: %w", err)
		}
		staged[name] = b
	}
	for name, args := range map[string][]string{
		"dcroll.1":    {"man"},
		"dcroll.bash": {"completion", "bash"},
		"_dcroll":     {"completion", "zsh"},
	} {
		b, err := fromBinary(binary, args...)
		if err != nil {
			return nil, err
		}
		staged[name] = b
	}
	if staged["dcroll.1.gz"], err = gzipped(staged["dcroll.1"]); err != nil {
		return nil, err
	}
	delete(staged, "dcroll.1")
	for name, b := range staged {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return nil, fmt.Errorf("packaging: stage %s: %w", name, err)
		}
	}
	src := func(name string) string { return filepath.Join(dir, name) }
	mode := func(m os.FileMode) *files.ContentFileInfo { return &files.ContentFileInfo{Mode: m} }

	return &nfpm.Config{Info: nfpm.Info{
		Name:          "dcroll",
		Arch:          "amd64",
		Platform:      "linux",
		Version:       pkgVersion,
		VersionSchema: "semver",
		Section:       "admin",
		Priority:      "optional",
		Maintainer:    "dcroll maintainers <dcroll@localhost>",
		Description:   description,
		Homepage:      "https://github.com/dcroll/dcroll",
		License:       "Apache-2.0",
		// Paths are taken literally: a binary path with [ or * in it is
		// still one file.
		DisableGlobbing: true,
		Overridables: nfpm.Overridables{
			Contents: files.Contents{
				{Source: binary, Destination: BinaryPath, FileInfo: mode(0o755)},
				{Source: src("dcroll.toml"), Destination: ConfigPath, Type: files.TypeConfigNoReplace, FileInfo: mode(0o644)},
				{Source: src("dcroll.service"), Destination: DebUnitPath, Packager: "deb", FileInfo: mode(0o644)},
				{Source: src("dcroll.service"), Destination: RPMUnitPath, Packager: "rpm", FileInfo: mode(0o644)},
				{Destination: StateDir, Type: files.TypeDir, FileInfo: mode(0o755)},
				{Source: src("copyright"), Destination: "/usr/share/doc/dcroll/copyright", FileInfo: mode(0o644)},
				{Source: src("dcroll.1.gz"), Destination: ManPath, Packager: "deb", FileInfo: mode(0o644)},
				{Source: src("dcroll.1.gz"), Destination: ManPath, Packager: "rpm", Type: files.TypeRPMDoc, FileInfo: mode(0o644)},
				{Source: src("dcroll.bash"), Destination: BashCompletionPath, FileInfo: mode(0o644)},
				{Source: src("_dcroll"), Destination: DebZshCompletionPath, Packager: "deb", FileInfo: mode(0o644)},
				{Source: src("_dcroll"), Destination: RPMZshCompletionPath, Packager: "rpm", FileInfo: mode(0o644)},
			},
			Scripts: nfpm.Scripts{
				PostInstall: src("postinstall.sh"),
				PreRemove:   src("preremove.sh"),
				PostRemove:  src("postremove.sh"),
			},
		},
	}}, nil
}

// Build writes dcroll's packages (one per Formats) for version, shipping
// binary, into the directory out and returns their paths. The file names
// are nfpm's conventional ones: dcroll_<V>_amd64.deb, dcroll-<V>-1.x86_64.rpm.
func Build(version, binary, out string) ([]string, error) {
	dir, err := os.MkdirTemp("", "dcroll-packaging-")
	if err != nil {
		return nil, fmt.Errorf("packaging: %w", err)
	}
	defer os.RemoveAll(dir)
	cfg, err := Config(version, binary, dir)
	if err != nil {
		return nil, err
	}
	return Package(cfg, out)
}

// Package writes one package per Formats from cfg into the directory out
// and returns their paths.
func Package(cfg *nfpm.Config, out string) ([]string, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("packaging: %w", err)
	}
	var paths []string
	for _, format := range Formats {
		path, err := write(cfg, format, out)
		if err != nil {
			return nil, fmt.Errorf("packaging: %s: %w", format, err)
		}
		paths = append(paths, path)
	}
	return paths, nil
}

func write(cfg *nfpm.Config, format, out string) (path string, err error) {
	packager, err := nfpm.Get(format)
	if err != nil {
		return "", err
	}
	info, err := cfg.Get(format)
	if err != nil {
		return "", err
	}
	info = nfpm.WithDefaults(info)
	path = filepath.Join(out, packager.ConventionalFileName(info))
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path) // never leave a truncated package behind
		}
	}()
	if err := packager.Package(info, f); err != nil {
		return "", err
	}
	return path, nil
}

var (
	// A release: X.Y or X.Y.Z, maybe -PRERELEASE (dot-separated, no hyphen).
	releaseRE = regexp.MustCompile(`^[0-9]+\.[0-9]+(\.[0-9]+)?(-[0-9A-Za-z]+(\.[0-9A-Za-z]+)*)?$`)
	// What git describe appends to a tag: commits since it and the commit.
	describeRE = regexp.MustCompile(`-([0-9]+)-g([0-9a-f]{4,40})$`)
	commitRE   = regexp.MustCompile(`^[0-9a-f]{4,40}$`)
)

// PackageVersion turns a dcroll version (a tag, or what `git describe
// --tags --always --dirty` prints) into a package version that dpkg and rpm
// order correctly. Build metadata (after "+") sorts after the release:
//
//	v1.2.3                  1.2.3
//	v1.2.3-rc.1             1.2.3-rc.1             before 1.2.3 (nfpm writes 1.2.3~rc.1)
//	v1.2.3-4-gabc1234-dirty 1.2.3+4.gabc1234.dirty after 1.2.3
//	abc1234                 0.0.0+gabc1234         untagged: before any release
func PackageVersion(version string) (string, error) {
	v, dirty := strings.CutSuffix(strings.TrimPrefix(version, "v"), "-dirty")
	var meta []string
	if m := describeRE.FindStringSubmatch(v); m != nil && releaseRE.MatchString(v[:len(v)-len(m[0])]) {
		v, meta = v[:len(v)-len(m[0])], []string{m[1], "g" + m[2]}
	}
	switch {
	case releaseRE.MatchString(v):
	case commitRE.MatchString(v) && meta == nil:
		v, meta = "0.0.0", []string{"g" + v}
	default:
		return "", fmt.Errorf("packaging: version %q is not a release (v1.2.3, v1.2.3-rc.1), git describe output or a commit: tag a release (git tag v0.1.0)", version)
	}
	if dirty {
		meta = append(meta, "dirty")
	}
	if len(meta) > 0 {
		v += "+" + strings.Join(meta, ".")
	}
	return v, nil
}

// fromBinary is what binary prints when run with args: the manual page
// and the completion scripts come from the packaged binary itself, so they
// always match it.
func fromBinary(binary string, args ...string) ([]byte, error) {
	cmd := exec.Command(binary, args...)
	// No DCROLL_* variable or config of this machine matters to these
	// modes; none may change what they print either.
	cmd.Env = []string{}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("packaging: %s %s (the packages take the manual page and completion from the binary, so they are built on linux/amd64): %w: %s",
			binary, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("packaging: %s %s printed nothing", binary, strings.Join(args, " "))
	}
	return out, nil
}

// gzipped is b compressed as Debian wants a manual page, gzip -9n: no name
// and no time in the header, so the same page gives the same bytes.
func gzipped(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// checkBinary refuses what the package must not ship as /usr/bin/dcroll:
// a file that is not a linux/amd64 executable, or one that needs a dynamic
// loader (the package declares no dependencies).
func checkBinary(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("packaging: binary %s: %w (build it with make build)", path, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("packaging: binary %s is a %s %s, not an amd64 executable: build it with GOOS=linux GOARCH=amd64", path, f.Machine, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("packaging: binary %s is dynamically linked: build it with CGO_ENABLED=0 (make build)", path)
		}
	}
	return nil
}
