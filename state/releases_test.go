package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// install makes an unpacked release directory with one file in it.
func install(t *testing.T, r Releases, versions ...string) {
	t.Helper()
	for _, v := range versions {
		if err := os.MkdirAll(r.Path(v), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(r.Path(v), "VERSION"), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestInstalled(t *testing.T) {
	r := Releases{Dir: filepath.Join(t.TempDir(), "web")}

	got, err := r.Installed()
	if err != nil || got != nil {
		t.Fatalf("Installed() of a missing dir = %q, %v; want nothing and no error", got, err)
	}
	if _, ok, err := r.Newest(); ok || err != nil {
		t.Fatalf("Newest() of a missing dir = %v, %v; want false, nil", ok, err)
	}

	install(t, r, "1.10", "1.9", "2.0", "1.2", ".current123", ".partial")
	if err := os.WriteFile(filepath.Join(r.Dir, "3.0.tar.gz"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("2.0", filepath.Join(r.Dir, "9.9")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("1.10", filepath.Join(r.Dir, CurrentName)); err != nil {
		t.Fatal(err)
	}

	got, err = r.Installed()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"1.2", "1.9", "1.10", "2.0"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Installed() = %q, want %q", got, want)
	}
	newest, ok, err := r.Newest()
	if err != nil || !ok || newest != "2.0" {
		t.Errorf("Newest() = %q, %v, %v; want 2.0, true, nil", newest, ok, err)
	}
}

func TestInstalledUnreadable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "web")
	if err := os.WriteFile(dir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := (Releases{Dir: dir}).Installed(); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("Installed() of a file: error %v, want one naming it", err)
	}
}

func TestActivateAndCurrent(t *testing.T) {
	r := Releases{Dir: filepath.Join(t.TempDir(), "web")}
	install(t, r, "1.0", "2.0")

	if _, err := r.Current(); !errors.Is(err, ErrNoCurrent) || !strings.Contains(err.Error(), r.Dir) {
		t.Fatalf("Current() before any Activate: %v, want ErrNoCurrent naming the dir", err)
	}
	for _, v := range []string{"1.0", "2.0", "2.0", "1.0"} {
		if err := r.Activate(v); err != nil {
			t.Fatalf("Activate(%q): %v", v, err)
		}
		got, err := r.Current()
		if err != nil || got != v {
			t.Fatalf("Current() after Activate(%q) = %q, %v", v, got, err)
		}
		// The target is the bare version, so the tree can move.
		target, err := os.Readlink(filepath.Join(r.Dir, CurrentName))
		if err != nil || target != v {
			t.Fatalf("current -> %q, %v; want %q", target, err, v)
		}
		data, err := os.ReadFile(filepath.Join(r.Dir, CurrentName, "VERSION"))
		if err != nil || string(data) != v {
			t.Fatalf("current/VERSION = %q, %v; want %q", data, err, v)
		}
	}
	entries, err := os.ReadDir(r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Errorf("releases dir holds %d entries, want 1.0, 2.0 and current: %v", len(entries), entries)
	}
}

func TestActivateRefuses(t *testing.T) {
	r := Releases{Dir: filepath.Join(t.TempDir(), "web")}
	install(t, r, "1.0", ".hidden")
	if err := r.Activate("1.0"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.Path("file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("1.0", r.Path("alias")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		version string
		want    error
	}{
		{"", ErrInvalidName},
		{".", ErrInvalidName},
		{"..", ErrInvalidName},
		{"../web/1.0", ErrInvalidName},
		{"/etc", ErrInvalidName},
		{CurrentName, ErrInvalidName},
		{".hidden", ErrInvalidName},
		{strings.Repeat("1", MaxNameLen+1), ErrInvalidName},
		{"2.0", ErrNotInstalled},
		{"file", ErrNotInstalled},
		{"alias", ErrNotInstalled},
	}
	for _, tt := range tests {
		err := r.Activate(tt.version)
		if !errors.Is(err, tt.want) {
			t.Errorf("Activate(%.20q) = %v, want %v", tt.version, err, tt.want)
		}
		if err != nil && !strings.Contains(err.Error(), r.Dir) {
			t.Errorf("Activate(%.20q) error %q does not name the directory", tt.version, err)
		}
		if got, err := r.Current(); got != "1.0" || err != nil {
			t.Fatalf("after a refused Activate(%.20q), Current() = %q, %v", tt.version, got, err)
		}
	}
}

func TestCurrentBroken(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(link string) error
		mention string
	}{
		{"regular file", func(link string) error { return os.WriteFile(link, []byte("1.0"), 0o644) }, "not a symlink"},
		{"directory", func(link string) error { return os.Mkdir(link, 0o755) }, "not a symlink"},
		{"dangling", func(link string) error { return os.Symlink("3.0", link) }, "does not exist"},
		{"to a file", func(link string) error { return os.Symlink("notes", link) }, "not a directory"},
		{"absolute", func(link string) error { return os.Symlink(filepath.Join(filepath.Dir(link), "1.0"), link) }, "'/'"},
		{"outside", func(link string) error { return os.Symlink("../db/1.0", link) }, "'/'"},
		{"to itself", func(link string) error { return os.Symlink(CurrentName, link) }, "reserved"},
		{"to a symlink", func(link string) error {
			if err := os.Symlink("1.0", filepath.Join(filepath.Dir(link), "alias")); err != nil {
				return err
			}
			return os.Symlink("alias", link)
		}, "not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Releases{Dir: filepath.Join(t.TempDir(), "web")}
			install(t, r, "1.0")
			if err := os.WriteFile(r.Path("notes"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			link := filepath.Join(r.Dir, CurrentName)
			if err := tt.setup(link); err != nil {
				t.Fatal(err)
			}
			got, err := r.Current()
			if got != "" || !errors.Is(err, ErrBadCurrent) {
				t.Fatalf("Current() = %q, %v; want ErrBadCurrent", got, err)
			}
			if !strings.Contains(err.Error(), link) || !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not name %s and say %q", err, link, tt.mention)
			}
		})
	}
}

func TestActivateRepairs(t *testing.T) {
	r := Releases{Dir: filepath.Join(t.TempDir(), "web")}
	install(t, r, "1.0", "2.0")
	// A dangling link and the temp dir of a writer killed mid-switch.
	if err := os.Symlink("3.0", filepath.Join(r.Dir, CurrentName)); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(r.Dir, ".current4242")
	if err := os.Mkdir(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("1.0", filepath.Join(stale, "tmp.symlink")); err != nil {
		t.Fatal(err)
	}
	if err := r.Activate("2.0"); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Current(); got != "2.0" || err != nil {
		t.Errorf("Current() = %q, %v; want 2.0", got, err)
	}
	if _, err := os.Lstat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp dir still there: %v", err)
	}
}

func TestActivateOverADirectory(t *testing.T) {
	r := Releases{Dir: filepath.Join(t.TempDir(), "web")}
	install(t, r, "1.0", CurrentName)
	err := r.Activate("1.0")
	if err == nil {
		t.Fatal("Activate replaced a real directory named current")
	}
	if !strings.Contains(err.Error(), r.Dir) {
		t.Errorf("error %q does not name the directory", err)
	}
	if _, err := os.Stat(filepath.Join(r.Dir, CurrentName, "VERSION")); err != nil {
		t.Errorf("the directory named current was touched: %v", err)
	}
}

func TestPruneKeepsCurrentAndKept(t *testing.T) {
	r := Releases{Dir: t.TempDir()}
	for _, v := range []string{"1", "2", "3", "4", "5"} {
		if err := os.MkdirAll(r.Path(v), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Activate("4"); err != nil {
		t.Fatal(err)
	}
	removed, err := r.Prune("3", "5")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(removed) != "[1 2]" {
		t.Fatalf("removed %v", removed)
	}
	left, err := r.Installed()
	if err != nil || fmt.Sprint(left) != "[3 4 5]" {
		t.Fatalf("left %v %v", left, err)
	}
}
