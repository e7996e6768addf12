package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/renameio/v2"
)

// CurrentName is the symlink in a service's releases directory that points
// at the version that runs.
const CurrentName = "current"

// Releases is the releases directory of one service, such as
// /var/lib/dcroll/releases/web: one directory per unpacked version, and the
// symlink current whose target is the name of one of them.
type Releases struct{ Dir string }

// Installed lists the unpacked versions, oldest first by CompareVersions.
// It skips current, hidden and temp entries and anything not a directory; a
// missing Dir means none are installed.
func (r Releases) Installed() ([]string, error) {
	entries, err := os.ReadDir(r.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list releases: %w", err)
	}
	var versions []string
	for _, e := range entries {
		if e.IsDir() && releaseNameProblem(e.Name()) == "" {
			versions = append(versions, e.Name())
		}
	}
	slices.SortFunc(versions, CompareVersions)
	return versions, nil
}

// Newest returns the highest installed version, and false when there is
// none.
func (r Releases) Newest() (string, bool, error) {
	versions, err := r.Installed()
	if err != nil || len(versions) == 0 {
		return "", false, err
	}
	return versions[len(versions)-1], true, nil
}

// Path returns the directory of version. It does not check the name: check
// it with ValidName before creating anything there.
func (r Releases) Path(version string) string {
	return filepath.Join(r.Dir, version)
}

// Current returns the version that the current symlink points at. The error
// wraps ErrNoCurrent when there is no symlink, and ErrBadCurrent when current
// is something else or points at no installed release.
func (r Releases) Current() (string, error) {
	link := filepath.Join(r.Dir, CurrentName)
	fi, err := os.Lstat(link)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w: %s does not exist", ErrNoCurrent, link)
	}
	if err != nil {
		return "", fmt.Errorf("current release: %w", err)
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		return "", fmt.Errorf("%w: %s is not a symlink (mode %v)", ErrBadCurrent, link, fi.Mode())
	}
	target, err := os.Readlink(link)
	if err != nil {
		return "", fmt.Errorf("current release: %w", err)
	}
	if p := releaseNameProblem(target); p != "" {
		return "", fmt.Errorf("%w: %s points at %s: %s", ErrBadCurrent, link, quote(target), p)
	}
	fi, err = os.Lstat(r.Path(target))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("%w: %s points at %s, which does not exist", ErrBadCurrent, link, quote(target))
	case err != nil:
		return "", fmt.Errorf("current release: %w", err)
	case !fi.IsDir():
		return "", fmt.Errorf("%w: %s points at %s, which is not a directory", ErrBadCurrent, link, quote(target))
	}
	return target, nil
}

// Activate points current at version, atomically: a crash at any moment
// leaves current pointing at the old version or the new one, never missing.
// The version must be installed.
func (r Releases) Activate(version string) error {
	link := filepath.Join(r.Dir, CurrentName)
	if p := releaseNameProblem(version); p != "" {
		return fmt.Errorf("activate in %s: %w %s: %s", r.Dir, ErrInvalidName, quote(version), p)
	}
	fi, err := os.Lstat(r.Path(version))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("activate: %w: %s does not exist", ErrNotInstalled, r.Path(version))
	case err != nil:
		return fmt.Errorf("activate: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("activate: %w: %s is not a directory", ErrNotInstalled, r.Path(version))
	}

	writeMu.Lock()
	defer writeMu.Unlock()
	// renameio.Symlink makes the new link in a temp directory named
	// ".current<digits>" and renames it over current; a writer killed in
	// between leaves that directory behind.
	removeStale(r.Dir, "."+CurrentName)
	// The target is relative so that the tree can be moved or inspected
	// from a chroot and still resolve.
	if err := renameio.Symlink(version, link); err != nil {
		return fmt.Errorf("activate %s: %w", quote(version), err)
	}
	// The rename is only durable once the directory holding current is.
	if err := syncDir(r.Dir); err != nil {
		return fmt.Errorf("activate %s: %w", quote(version), err)
	}
	return nil
}

// releaseNameProblem is nameProblem with the names a releases directory holds
// for itself: current, and hidden entries such as temp files.
func releaseNameProblem(version string) string {
	if p := nameProblem(version); p != "" {
		return p
	}
	if version == CurrentName {
		return "reserved for the current symlink"
	}
	if strings.HasPrefix(version, ".") {
		return "hidden names are not releases"
	}
	return ""
}

// Prune removes every installed version not in keep, and never the one the
// current symlink points at. It returns what it removed.
func (r Releases) Prune(keep ...string) ([]string, error) {
	versions, err := r.Installed()
	if err != nil {
		return nil, err
	}
	if cur, err := r.Current(); err == nil {
		keep = append(keep, cur)
	}
	var removed []string
	for _, v := range versions {
		if slices.Contains(keep, v) {
			continue
		}
		if err := os.RemoveAll(r.Path(v)); err != nil {
			return removed, fmt.Errorf("state: prune %s: %w", r.Path(v), err)
		}
		removed = append(removed, v)
	}
	return removed, nil
}
