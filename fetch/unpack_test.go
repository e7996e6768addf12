package fetch

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// unpackEnv gives a test an archive path outside the work directory, and a
// work directory whose only content after a failed Unpack must be nothing.
func unpackEnv(t *testing.T) (archive, work, dir string) {
	t.Helper()
	base := t.TempDir()
	work = filepath.Join(base, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(base, "release.tar"), work, filepath.Join(work, "out")
}

type tarEntry struct {
	hdr  tar.Header
	body string
}

func writeTar(t *testing.T, path string, gz bool, entries ...tarEntry) {
	t.Helper()
	var buf bytes.Buffer
	var tw *tar.Writer
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		tw = tar.NewWriter(zw)
	} else {
		tw = tar.NewWriter(&buf)
	}
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func file(name, body string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name}, body: body}
}

func symlink(name, target string) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target}}
}

// assertNothingLeft checks that work holds nothing: no dir, no temp dir, no
// file that escaped from one.
func assertNothingLeft(t *testing.T, work string) {
	t.Helper()
	ents, err := os.ReadDir(work)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("left behind in %s: %s", work, e.Name())
	}
}

func mustWrite(t *testing.T, path, body string, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // beat the umask
		t.Fatal(err)
	}
}

func TestPackUnpackRoundTrip(t *testing.T) {
	src := t.TempDir()
	mustWrite(t, filepath.Join(src, "README"), "hello\n", 0o644)
	mustWrite(t, filepath.Join(src, "bin", "run"), "#!/bin/sh\necho run\n", 0o755)
	mustWrite(t, filepath.Join(src, "etc", "conf", "app.toml"), "x = 1\n", 0o600)
	if err := os.Symlink("bin/run", filepath.Join(src, "start")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../README", filepath.Join(src, "etc", "conf", "readme")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(src, "empty"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "empty"), 0o750); err != nil {
		t.Fatal(err)
	}

	var packed bytes.Buffer
	if err := Pack(src, &packed); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if err := Pack(src, &again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(packed.Bytes(), again.Bytes()) {
		t.Error("packing the same tree twice gave different bytes")
	}

	archive, work, dir := unpackEnv(t)
	if err := os.WriteFile(archive, packed.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Unpack(archive, dir); err != nil {
		t.Fatal(err)
	}

	for name, want := range map[string]struct {
		body string
		mode fs.FileMode
	}{
		"README":            {"hello\n", 0o644},
		"bin/run":           {"#!/bin/sh\necho run\n", 0o755},
		"etc/conf/app.toml": {"x = 1\n", 0o600},
		"start":             {"#!/bin/sh\necho run\n", 0o755}, // through the link
		"etc/conf/readme":   {"hello\n", 0o644},               // through the link
	} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		got, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if string(got) != want.body {
			t.Errorf("%s = %q, want %q", name, got, want.body)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want.mode {
			t.Errorf("%s mode %v, want %v", name, fi.Mode().Perm(), want.mode)
		}
	}
	for link, want := range map[string]string{"start": "bin/run", "etc/conf/readme": "../../README"} {
		got, err := os.Readlink(filepath.Join(dir, filepath.FromSlash(link)))
		if err != nil || got != want {
			t.Errorf("readlink %s = %q, %v; want %q", link, got, err, want)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "empty")); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o750 {
		t.Errorf("empty dir: %v, %v; want a 0750 directory", fi, err)
	}
	ents, err := os.ReadDir(work)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != "out" {
		t.Errorf("work dir holds %v, want only out", ents)
	}
}

func TestUnpackPlainTar(t *testing.T) {
	archive, _, dir := unpackEnv(t)
	writeTar(t, archive, false,
		tarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755}},
		file("./a/b.txt", "plain"), // parent not listed: made implicitly
		tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "suid", Mode: 0o4755}, body: "s"},
	)
	if err := Unpack(archive, dir); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "a", "b.txt")); err != nil || string(got) != "plain" {
		t.Errorf("a/b.txt = %q, %v", got, err)
	}
	fi, err := os.Stat(filepath.Join(dir, "suid"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 || fi.Mode().Perm() != 0o755 {
		t.Errorf("suid entry has mode %v, want 0755 and no special bits", fi.Mode())
	}
}

func TestUnpackRejects(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []tarEntry
	}{
		{"dotdot escape", []tarEntry{file("../escape", "x")}},
		{"dotdot inside", []tarEntry{file("a/../../escape", "x")}},
		{"dotdot that cleans inside", []tarEntry{file("a/../b", "x")}},
		{"absolute", []tarEntry{file("/tmp/abs", "x")}},
		{"symlink absolute", []tarEntry{symlink("etc", "/etc")}},
		{"symlink escapes", []tarEntry{symlink("a/x", "../../x")}},
		{"symlink to parent", []tarEntry{symlink("up", "..")}},
		{"write through symlink", []tarEntry{
			tarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "d/"}},
			symlink("l", "d"),
			file("l/f", "x"),
		}},
		{"symlink placed through symlink", []tarEntry{
			symlink("s", "."),
			symlink("s/up", ".."), // lexically inside, really ../
		}},
		{"hard link", []tarEntry{
			file("a", "x"),
			{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "b", Linkname: "a"}},
		}},
		{"fifo", []tarEntry{{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "p"}}}},
		{"char device", []tarEntry{{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3}}}},
		{"duplicate file", []tarEntry{file("a", "x"), file("a", "y")}},
		{"file under file", []tarEntry{file("a", "x"), file("a/b", "y")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, gz := range []bool{false, true} {
				archive, work, dir := unpackEnv(t)
				writeTar(t, archive, gz, append([]tarEntry{file("ok", "fine")}, tc.entries...)...)
				if err := CheckArchive(archive); !errors.Is(err, ErrBadArchive) {
					t.Errorf("gzip=%v: CheckArchive = %v, want ErrBadArchive", gz, err)
				}
				err := Unpack(archive, dir)
				if !errors.Is(err, ErrBadArchive) {
					t.Fatalf("gzip=%v: Unpack = %v, want ErrBadArchive", gz, err)
				}
				t.Logf("gzip=%v: %v", gz, err)
				if !bytes.Contains([]byte(err.Error()), []byte(archive)) {
					t.Errorf("error %q does not name the archive", err)
				}
				assertNothingLeft(t, work)
				if _, err := os.Lstat(filepath.Join(filepath.Dir(work), "escape")); err == nil {
					t.Error("an entry escaped the work directory")
				}
			}
		})
	}
}

func TestUnpackErrorNamesEntry(t *testing.T) {
	archive, _, dir := unpackEnv(t)
	writeTar(t, archive, true, file("../evil", "x"))
	err := Unpack(archive, dir)
	if !errors.Is(err, ErrBadArchive) || !bytes.Contains([]byte(err.Error()), []byte(`"../evil"`)) {
		t.Fatalf("Unpack = %v, want ErrBadArchive naming ../evil", err)
	}
}

func TestUnpackDirExists(t *testing.T) {
	archive, work, dir := unpackEnv(t)
	writeTar(t, archive, true, file("a", "x"))
	mustWrite(t, filepath.Join(dir, "keep"), "old", 0o644)
	err := Unpack(archive, dir)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Unpack = %v, want fs.ErrExist", err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "keep")); err != nil || string(got) != "old" {
		t.Errorf("existing dir was touched: %q, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); err == nil {
		t.Error("unpacked into the existing dir")
	}
	ents, _ := os.ReadDir(work)
	if len(ents) != 1 {
		t.Errorf("work dir holds %d entries, want only the existing dir", len(ents))
	}
}

func TestUnpackTruncated(t *testing.T) {
	src := t.TempDir()
	// Incompressible, so cutting the gzip stream cuts into the tar data.
	data := make([]byte, 256<<10)
	rand.New(rand.NewSource(1)).Read(data)
	mustWrite(t, filepath.Join(src, "blob"), string(data), 0o644)
	mustWrite(t, filepath.Join(src, "z", "later"), "after the blob", 0o644)
	var packed bytes.Buffer
	if err := Pack(src, &packed); err != nil {
		t.Fatal(err)
	}
	full := packed.Bytes()

	for _, cut := range []int{len(full) / 2, len(full) - 4, 10} {
		archive, work, dir := unpackEnv(t)
		if err := os.WriteFile(archive, full[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		if err := CheckArchive(archive); !errors.Is(err, ErrBadArchive) || !strings.Contains(err.Error(), archive) {
			t.Errorf("cut at %d of %d: CheckArchive = %v, want ErrBadArchive naming the file", cut, len(full), err)
		}
		err := Unpack(archive, dir)
		if err == nil {
			t.Fatalf("cut at %d of %d: Unpack succeeded", cut, len(full))
		}
		if !errors.Is(err, ErrBadArchive) {
			t.Errorf("cut at %d: %v, want ErrBadArchive", cut, err)
		}
		t.Logf("cut at %d of %d: %v", cut, len(full), err)
		assertNothingLeft(t, work)
	}
}

// TestCheckArchiveAgreesWithUnpack cuts an archive, plain and gzipped, at
// many places: CheckArchive accepts exactly what Unpack unpacks, and never a
// truncated gzip stream. (An empty file, which Unpack turns into an empty
// directory, CheckArchive refuses: it holds no entries.)
func TestCheckArchiveAgreesWithUnpack(t *testing.T) {
	for _, gz := range []bool{false, true} {
		archive, _, _ := unpackEnv(t)
		writeTar(t, archive, gz,
			tarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "bin/", Mode: 0o755}},
			file("bin/app", strings.Repeat("x", 3000)),
			symlink("app", "bin/app"),
			file("etc/conf", "k = 1\n"),
		)
		full, err := os.ReadFile(archive)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckArchive(archive); err != nil {
			t.Fatalf("gzip=%v: whole archive: %v", gz, err)
		}
		for cut := 1; cut < len(full); cut += 1 + cut%97 {
			if err := os.WriteFile(archive, full[:cut], 0o644); err != nil {
				t.Fatal(err)
			}
			checkErr := CheckArchive(archive)
			if checkErr != nil && !errors.Is(checkErr, ErrBadArchive) {
				t.Fatalf("gzip=%v cut %d: CheckArchive = %v, want ErrBadArchive", gz, cut, checkErr)
			}
			if gz && checkErr == nil {
				t.Errorf("gzip cut at %d of %d: CheckArchive accepted it", cut, len(full))
			}
			dir := filepath.Join(t.TempDir(), "out")
			if unpackErr := Unpack(archive, dir); (checkErr == nil) != (unpackErr == nil) {
				t.Errorf("gzip=%v cut %d of %d: CheckArchive = %v, Unpack = %v", gz, cut, len(full), checkErr, unpackErr)
			}
		}
	}
}

func TestCheckArchiveRejectsNonArchives(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"empty":  "",
		"zeros":  strings.Repeat("\x00", 1024),
		"text":   "this is not a tar archive, it is a note\n",
		"gzjunk": "\x1f\x8b junk after the magic",
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		err := CheckArchive(path)
		if !errors.Is(err, ErrBadArchive) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: CheckArchive = %v, want ErrBadArchive naming the file", name, err)
		}
	}
}

func TestUnpackMissingArchive(t *testing.T) {
	archive, work, dir := unpackEnv(t)
	if err := Unpack(archive, dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Unpack = %v, want fs.ErrNotExist", err)
	}
	assertNothingLeft(t, work)
}

func TestPackRejectsEscapingSymlink(t *testing.T) {
	src := t.TempDir()
	if err := os.Symlink("/etc/passwd", filepath.Join(src, "pw")); err != nil {
		t.Fatal(err)
	}
	if err := Pack(src, new(bytes.Buffer)); err == nil {
		t.Fatal("Pack accepted an absolute symlink")
	}
}
