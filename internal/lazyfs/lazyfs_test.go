package lazyfs_test

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/dcroll/dcroll/internal/lazyfs"
)

// mount mounts a lazyfs over a fresh backing directory holding what setup
// writes there (durable from the start) and unmounts it at the end.
func mount(t *testing.T, setup func(backing string)) *lazyfs.FS {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no FUSE on this machine (%v): lazyfs needs /dev/fuse", err)
	}
	backing, mnt := t.TempDir(), t.TempDir()
	if setup != nil {
		setup(backing)
	}
	f, err := lazyfs.Mount(backing, mnt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	})
	return f
}

func write(t *testing.T, path, body string, sync bool) {
	t.Helper()
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteString(body); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := fh.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
}

func syncDir(t *testing.T, dir string) {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "<missing>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func cut(t *testing.T, f *lazyfs.FS) {
	t.Helper()
	if err := f.PowerCut(); err != nil {
		t.Fatal(err)
	}
}

func TestReadsSeePendingWritesAndACutDropsThem(t *testing.T) {
	f := mount(t, func(b string) { os.WriteFile(filepath.Join(b, "old"), []byte("durable"), 0o644) })
	p := filepath.Join(f.Dir(), "old")
	write(t, p, "pending", false)
	if got := read(t, p); got != "pending" {
		t.Fatalf("before the cut, read %q, want the pending write", got)
	}
	cut(t, f)
	if got := read(t, p); got != "durable" {
		t.Fatalf("after the cut, read %q, want %q", got, "durable")
	}
}

func TestFsyncedDataSurvives(t *testing.T) {
	f := mount(t, func(b string) { os.WriteFile(filepath.Join(b, "a"), []byte("v1"), 0o644) })
	p := filepath.Join(f.Dir(), "a")
	write(t, p, "v2", true)
	cut(t, f)
	if got := read(t, p); got != "v2" {
		t.Fatalf("after the cut, read %q, want the fsynced %q", got, "v2")
	}
}

func TestDataWrittenAfterFsyncIsLost(t *testing.T) {
	f := mount(t, func(b string) { os.WriteFile(filepath.Join(b, "a"), []byte("v1"), 0o644) })
	p := filepath.Join(f.Dir(), "a")
	fh, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.WriteString("+synced")
	if err := fh.Sync(); err != nil {
		t.Fatal(err)
	}
	fh.WriteString("+lost")
	fh.Close()
	if got := read(t, p); got != "v1+synced+lost" {
		t.Fatalf("before the cut, read %q", got)
	}
	cut(t, f)
	if got := read(t, p); got != "v1+synced" {
		t.Fatalf("after the cut, read %q, want %q", got, "v1+synced")
	}
}

func TestCreateWithoutDirFsyncIsUndone(t *testing.T) {
	f := mount(t, nil)
	write(t, filepath.Join(f.Dir(), "new"), "data", true) // the file, not its name
	if err := os.Mkdir(filepath.Join(f.Dir(), "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	cut(t, f)
	if got := names(t, f.Dir()); len(got) != 0 {
		t.Fatalf("after the cut the root holds %q, want nothing: no directory fsync", got)
	}
}

func TestCreateWithDirFsyncSurvives(t *testing.T) {
	f := mount(t, nil)
	write(t, filepath.Join(f.Dir(), "synced"), "data", true)
	write(t, filepath.Join(f.Dir(), "unsynced"), "data", false)
	syncDir(t, f.Dir())
	cut(t, f)
	if got := read(t, filepath.Join(f.Dir(), "synced")); got != "data" {
		t.Fatalf("synced file and directory: read %q, want %q", got, "data")
	}
	// The name is durable, the data never was: an empty file, the worst a
	// disk may do.
	if got := read(t, filepath.Join(f.Dir(), "unsynced")); got != "" {
		t.Fatalf("unsynced file in a synced directory: read %q, want it empty", got)
	}
}

func TestRenameWithoutDirFsyncIsUndone(t *testing.T) {
	f := mount(t, func(b string) { os.WriteFile(filepath.Join(b, "state"), []byte("old"), 0o644) })
	tmp, dst := filepath.Join(f.Dir(), ".tmp"), filepath.Join(f.Dir(), "state")
	write(t, tmp, "new", true)
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
	if got := read(t, dst); got != "new" {
		t.Fatalf("before the cut, read %q", got)
	}
	cut(t, f)
	if got := read(t, dst); got != "old" {
		t.Fatalf("after a rename without a directory fsync and a cut, read %q, want %q", got, "old")
	}
	if got := names(t, f.Dir()); !slices.Equal(got, []string{"state"}) {
		t.Fatalf("after the cut the directory holds %q, want only state", got)
	}
}

func TestRenameWithDirFsyncSurvives(t *testing.T) {
	f := mount(t, func(b string) { os.WriteFile(filepath.Join(b, "state"), []byte("old"), 0o644) })
	tmp, dst := filepath.Join(f.Dir(), ".tmp"), filepath.Join(f.Dir(), "state")
	write(t, tmp, "new", true)
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
	syncDir(t, f.Dir())
	cut(t, f)
	if got := read(t, dst); got != "new" {
		t.Fatalf("after rename, directory fsync and a cut, read %q, want %q", got, "new")
	}
	if got := names(t, f.Dir()); !slices.Equal(got, []string{"state"}) {
		t.Fatalf("after the cut the directory holds %q, want only state", got)
	}
}

func TestRenameOfUnsyncedFileLeavesItEmpty(t *testing.T) {
	// The classic bug: write, rename, fsync the directory, but never the
	// file. The new name survives, its content does not.
	f := mount(t, func(b string) { os.WriteFile(filepath.Join(b, "state"), []byte("old"), 0o644) })
	tmp, dst := filepath.Join(f.Dir(), ".tmp"), filepath.Join(f.Dir(), "state")
	write(t, tmp, "new", false)
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
	syncDir(t, f.Dir())
	cut(t, f)
	if got := read(t, dst); got != "" {
		t.Fatalf("after rename of an unsynced file, read %q, want an empty file", got)
	}
}

func TestUnlinkAndRmdirWithoutDirFsyncAreUndone(t *testing.T) {
	f := mount(t, func(b string) {
		os.WriteFile(filepath.Join(b, "f"), []byte("kept"), 0o644)
		os.Mkdir(filepath.Join(b, "d"), 0o755)
		os.WriteFile(filepath.Join(b, "d", "g"), []byte("also"), 0o644)
	})
	if err := os.Remove(filepath.Join(f.Dir(), "f")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(f.Dir(), "d")); err != nil {
		t.Fatal(err)
	}
	// Reuse of the freed inode numbers must not change the durable files.
	for _, n := range []string{"x", "y", "z"} {
		write(t, filepath.Join(f.Dir(), n), "other", true)
	}
	cut(t, f)
	if got := read(t, filepath.Join(f.Dir(), "f")); got != "kept" {
		t.Fatalf("unlinked without a directory fsync: read %q, want %q", got, "kept")
	}
	if got := read(t, filepath.Join(f.Dir(), "d", "g")); got != "also" {
		t.Fatalf("removed without a directory fsync: read %q, want %q", got, "also")
	}
	if err := os.Remove(filepath.Join(f.Dir(), "f")); err != nil {
		t.Fatal(err)
	}
	syncDir(t, f.Dir())
	cut(t, f)
	if got := read(t, filepath.Join(f.Dir(), "f")); got != "<missing>" {
		t.Fatalf("unlinked and directory fsynced: read %q, want it gone", got)
	}
}

func TestSymlinkSwap(t *testing.T) {
	// What renameio.Symlink does to replace a link: a new link in a temp
	// directory, renamed over the old one.
	f := mount(t, func(b string) {
		os.Mkdir(filepath.Join(b, "v1"), 0o755)
		os.Mkdir(filepath.Join(b, "v2"), 0o755)
		os.Symlink("v1", filepath.Join(b, "current"))
	})
	swap := func() {
		tmp := filepath.Join(f.Dir(), ".current1")
		if err := os.Mkdir(tmp, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("v2", filepath.Join(tmp, "l")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(tmp, "l"), filepath.Join(f.Dir(), "current")); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(tmp); err != nil {
			t.Fatal(err)
		}
	}
	link := func() string {
		got, err := os.Readlink(filepath.Join(f.Dir(), "current"))
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	swap()
	cut(t, f)
	if got := link(); got != "v1" {
		t.Fatalf("swap without a directory fsync: current -> %q after a cut, want v1", got)
	}
	swap()
	syncDir(t, f.Dir())
	cut(t, f)
	if got := link(); got != "v2" {
		t.Fatalf("swap with a directory fsync: current -> %q after a cut, want v2", got)
	}
	if got := names(t, f.Dir()); !slices.Equal(got, []string{"current", "v1", "v2"}) {
		t.Fatalf("after the cut the directory holds %q", got)
	}
}

func TestDirectoryRenameNeedsTheNewDirSynced(t *testing.T) {
	// Unpacking into a temp directory and renaming it into place: the files
	// need their own fsync, the temp directory its fsync, and the parent
	// its fsync after the rename.
	for _, tc := range []struct {
		name          string
		syncFile      bool
		syncTmp       bool
		want, wantDir string
	}{
		{"all synced", true, true, "body", "present"},
		{"temp dir not synced", true, false, "<missing>", "present"},
		{"file not synced", false, true, "", "present"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := mount(t, nil)
			tmp := filepath.Join(f.Dir(), ".rel.tmp")
			if err := os.Mkdir(tmp, 0o755); err != nil {
				t.Fatal(err)
			}
			write(t, filepath.Join(tmp, "bin"), "body", tc.syncFile)
			if tc.syncTmp {
				syncDir(t, tmp)
			}
			rel := filepath.Join(f.Dir(), "rel")
			if err := os.Rename(tmp, rel); err != nil {
				t.Fatal(err)
			}
			syncDir(t, f.Dir())
			cut(t, f)
			if _, err := os.Stat(rel); err != nil {
				t.Fatalf("the renamed directory is gone after the cut: %v", err)
			}
			if got := read(t, filepath.Join(rel, "bin")); got != tc.want {
				t.Fatalf("rel/bin after the cut: %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCutAfterStopsAtTheGivenOperation(t *testing.T) {
	f := mount(t, nil)
	// Operations: create, write, fsync, close (not counted), then the
	// directory fsync, which the cut stops.
	f.CutAfter(3)
	write(t, filepath.Join(f.Dir(), "a"), "data", true)
	if f.Dead() {
		t.Fatalf("power cut after %d operations, before the armed cut", f.Ops())
	}
	d, err := os.Open(f.Dir())
	if err != nil {
		t.Fatal(err)
	}
	err = d.Sync()
	d.Close()
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("fsync after the armed cut: %v, want EIO", err)
	}
	if !f.Dead() || f.Ops() != 3 || f.Cuts() != 1 {
		t.Fatalf("dead %v, %d operations, %d cuts; want dead after 3 operations, 1 cut", f.Dead(), f.Ops(), f.Cuts())
	}
	if err := f.Restart(); err != nil {
		t.Fatal(err)
	}
	if got := names(t, f.Dir()); len(got) != 0 {
		t.Fatalf("after the cut the root holds %q: the directory fsync never ran", got)
	}
	if f.Dead() || f.Ops() != 0 {
		t.Fatalf("after Restart: dead %v, %d operations (the readdir is none)", f.Dead(), f.Ops())
	}
}

func TestHardLinksAndModesSurvive(t *testing.T) {
	f := mount(t, nil)
	a, b := filepath.Join(f.Dir(), "a"), filepath.Join(f.Dir(), "b")
	write(t, a, "shared", true)
	if err := os.Chmod(a, 0o751); err != nil {
		t.Fatal(err)
	}
	fh, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	fh.Sync()
	fh.Close()
	if err := os.Link(a, b); err != nil {
		t.Fatal(err)
	}
	syncDir(t, f.Dir())
	cut(t, f)
	fa, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := os.Stat(b)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(fa, fb) || fa.Mode().Perm() != 0o751 || read(t, b) != "shared" {
		t.Fatalf("after the cut: same file %v, mode %v, b = %q", os.SameFile(fa, fb), fa.Mode(), read(t, b))
	}
}

func TestRenameBetweenDirectoriesIsAChangeInEach(t *testing.T) {
	f := mount(t, func(b string) {
		os.Mkdir(filepath.Join(b, "from"), 0o755)
		os.Mkdir(filepath.Join(b, "to"), 0o755)
		os.WriteFile(filepath.Join(b, "from", "x"), []byte("x"), 0o644)
	})
	from, to := filepath.Join(f.Dir(), "from"), filepath.Join(f.Dir(), "to")
	move := func() {
		if err := os.Rename(filepath.Join(from, "x"), filepath.Join(to, "x")); err != nil {
			t.Fatal(err)
		}
	}
	where := func() []string {
		var at []string
		for _, d := range []string{"from", "to"} {
			if read(t, filepath.Join(f.Dir(), d, "x")) == "x" {
				at = append(at, d)
			}
		}
		return at
	}
	// Only the target synced: the file is in both directories after a cut.
	move()
	syncDir(t, to)
	cut(t, f)
	if got := where(); !slices.Equal(got, []string{"from", "to"}) {
		t.Fatalf("target directory synced: x is in %q after the cut, want both", got)
	}
	// Only the source synced (x is removed from "to" durably first): the
	// file is lost.
	if err := os.Remove(filepath.Join(to, "x")); err != nil {
		t.Fatal(err)
	}
	syncDir(t, to)
	move()
	syncDir(t, from)
	cut(t, f)
	if got := where(); len(got) != 0 {
		t.Fatalf("source directory synced: x is in %q after the cut, want nowhere", got)
	}
}

func TestCutStopsAnotherProcess(t *testing.T) {
	f := mount(t, nil)
	f.CutAfter(50)
	// A shell appending to a file for ever: the cut must stop it.
	cmd := exec.Command("sh", "-c", `while :; do echo line >> "$1" || exit 3; done`, "sh", filepath.Join(f.Dir(), "log"))
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("the writer ended with %v, want exit 3 on its first failed write", err)
	}
	if !f.Dead() || f.Ops() != 50 {
		t.Fatalf("dead %v after %d operations, want dead after 50", f.Dead(), f.Ops())
	}
	if err := f.Restart(); err != nil {
		t.Fatal(err)
	}
	if got := names(t, f.Dir()); len(got) != 0 {
		t.Fatalf("after the cut the root holds %q: its entries were never fsynced", got)
	}
}

func TestSpecialFilesAreDroppedByACut(t *testing.T) {
	f := mount(t, nil)
	fifo := filepath.Join(f.Dir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(f.Dir(), "a"), "data", true)
	syncDir(t, f.Dir())
	if err := f.Sync(); err != nil {
		t.Fatalf("Sync with a fifo in the tree: %v", err)
	}
	cut(t, f)
	if got := names(t, f.Dir()); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("after the cut the root holds %q, want only a: special files are not kept", got)
	}
}
