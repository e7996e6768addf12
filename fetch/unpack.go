package fetch

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

const (
	// MaxUnpacked caps the total size of the regular files in one archive.
	MaxUnpacked int64 = 64 << 30
	// MaxEntries caps the number of entries in one archive.
	MaxEntries = 1_000_000
)

// ErrBadArchive means an archive is malformed or holds an entry Unpack refuses.
var ErrBadArchive = errors.New("fetch: bad archive")

// ErrTooLarge means an archive unpacks to more than it may: more than
// MaxUnpacked, or than the size its manifest declares.
var ErrTooLarge = errors.New("fetch: archive unpacks to more than allowed")

// noWrite are the mode bits an unpacked entry never keeps: a release holds
// code the agent may run as root, so only its owner may change it.
const noWrite fs.FileMode = 0o022

// Unpack is UnpackAtMost with the limit MaxUnpacked.
func Unpack(archive, dir string) error { return UnpackAtMost(archive, dir, MaxUnpacked) }

// UnpackAtMost extracts the tar archive at path archive, gzip-compressed or not, into
// dir, which must not exist. It extracts into a temporary sibling and renames
// it to dir only when everything is written and synced, so dir either appears
// complete or not at all. Entries that could reach outside dir (absolute or
// ".." paths, escaping or absolute symlinks, paths through symlinks), hard
// links and special files are rejected with ErrBadArchive. Regular files
// adding up to more than limit bytes (as a gzip bomb or a sparse file would)
// are an ErrTooLarge, refused before they are written. No entry keeps group
// or world write permission.
func UnpackAtMost(archive, dir string, limit int64) (err error) {
	if limit <= 0 || limit > MaxUnpacked {
		limit = MaxUnpacked
	}
	dir = filepath.Clean(dir) // "out/" must still get its temp dir beside out
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("unpack %s: %s: %w", archive, dir, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("unpack %s: %w", archive, err)
	}
	f, err := os.Open(archive)
	if err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	defer f.Close()

	parent := filepath.Dir(dir)
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".unpack-*")
	if err != nil {
		return fmt.Errorf("unpack %s: %w", archive, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()

	root, err := os.OpenRoot(tmp)
	if err != nil {
		return fmt.Errorf("unpack %s: %w", archive, err)
	}
	defer root.Close()
	if _, _, err := extract(f, diskTree{root}, archive, limit); err != nil {
		return err
	}
	syncDir(tmp)

	// Checked once more to narrow the window: rename(2) silently replaces an
	// empty directory that appeared meanwhile.
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("unpack %s: %s: %w", archive, dir, fs.ErrExist)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("unpack %s: install: %w", archive, err)
	}
	syncDir(parent)
	return nil
}

// CheckArchive reads the tar archive at path archive, gzip-compressed or
// not, to its end without writing anything, and applies every rule Unpack
// does: an archive it accepts unpacks, unless the disk fails. A truncated or
// corrupt stream, a refused entry or an archive without entries is an
// ErrBadArchive naming the file and the problem.
func CheckArchive(archive string) error {
	_, err := UnpackedSize(archive)
	return err
}

// UnpackedSize checks the archive as CheckArchive does and returns the total
// size of its regular files, which a manifest declares so that hosts can
// refuse an archive that unpacks to more.
func UnpackedSize(archive string) (int64, error) {
	f, err := os.Open(archive)
	if err != nil {
		return 0, fmt.Errorf("check archive: %w", err)
	}
	defer f.Close()
	n, total, err := extract(f, checkTree{".": fs.ModeDir}, archive, MaxUnpacked)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, fmt.Errorf("%w: %s: no entries (not a tar archive?)", ErrBadArchive, archive)
	}
	return total, nil
}

// extract reads the archive in f, gzip-compressed or not, to its end and
// puts its entries into t, returning how many there were and the total size
// of the regular files, at most limit. Every file
// operation goes through t, which for the disk is an os.Root, and no entry
// may pass through a symlink, so neither a crafted path nor a crafted link
// can write outside it.
func extract(f io.Reader, t tree, archive string, limit int64) (int, int64, error) {
	br := bufio.NewReader(f)
	var r io.Reader = br
	var gz *gzip.Reader
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		var err error
		if gz, err = gzip.NewReader(br); err != nil {
			return 0, 0, fmt.Errorf("%w: %s: gzip: %v", ErrBadArchive, archive, err)
		}
		r = gz
	}
	n, total, err := extractTar(tar.NewReader(r), t, archive, gz != nil, limit)
	if err != nil {
		return n, total, err
	}
	if gz != nil {
		// The tar end marker comes before the gzip trailer; read on so the
		// CRC and length are checked. Only padding should remain.
		if _, err := io.Copy(io.Discard, io.LimitReader(gz, 1<<20)); err != nil {
			return n, total, fmt.Errorf("%w: %s: gzip: %v", ErrBadArchive, archive, streamErr(err))
		}
	}
	return n, total, nil
}

// streamErr says what an unexpected EOF means in an archive.
func streamErr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("truncated: %w", err)
	}
	return err
}

func extractTar(tr *tar.Reader, root tree, archive string, compressed bool, limit int64) (int, int64, error) {
	bad := func(name, format string, args ...any) error {
		return fmt.Errorf("%w: %s: entry %q: %s", ErrBadArchive, archive, name, fmt.Sprintf(format, args...))
	}
	failed := func(name string, err error) error {
		return fmt.Errorf("unpack %s: entry %q: %w", archive, name, err)
	}

	dirModes := map[string]fs.FileMode{".": 0o755}
	var total int64
	n := 0
	for ; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if hdr != nil {
				return n, total, bad(hdr.Name, "%v", streamErr(err))
			}
			if n == 0 && !compressed {
				return n, total, fmt.Errorf("%w: %s: neither a tar nor a tar.gz archive (%v)", ErrBadArchive, archive, err)
			}
			return n, total, fmt.Errorf("%w: %s: after %d entries: %v", ErrBadArchive, archive, n, streamErr(err))
		}
		if n >= MaxEntries {
			return n, total, fmt.Errorf("%w: %s: more than %d entries", ErrBadArchive, archive, MaxEntries)
		}
		name, err := entryName(hdr.Name)
		if err != nil {
			return n, total, bad(hdr.Name, "%v", err)
		}
		if name != "." {
			if why, err := makeParents(root, name); err != nil {
				return n, total, failed(hdr.Name, err)
			} else if why != "" {
				return n, total, bad(hdr.Name, "%s", why)
			}
		}
		mode := fs.FileMode(hdr.Mode) & 0o777 &^ noWrite

		switch hdr.Typeflag {
		case tar.TypeDir:
			if name != "." {
				err := root.Mkdir(name, 0o700)
				if errors.Is(err, fs.ErrExist) {
					kind, kerr := root.Kind(name)
					if kerr != nil || !kind.IsDir() {
						return n, total, bad(hdr.Name, "directory over an existing non-directory")
					}
				} else if err != nil {
					return n, total, failed(hdr.Name, err)
				}
			}
			// Applied at the end: a read-only directory must still take
			// its children.
			dirModes[name] = mode

		case tar.TypeReg:
			if name == "." {
				return n, total, bad(hdr.Name, "file at the archive root")
			}
			if hdr.Size > limit-total {
				return n, total, fmt.Errorf("%w: %s: entry %q: %d bytes would make the unpacked size %d, over %d",
					ErrTooLarge, archive, hdr.Name, hdr.Size, total+hdr.Size, limit)
			}
			total += hdr.Size
			src := &readErr{r: tr}
			if err := root.WriteFile(name, src, hdr.Size, mode); err != nil {
				switch {
				case src.err != nil:
					return n, total, bad(hdr.Name, "%v", streamErr(src.err))
				case errors.Is(err, fs.ErrExist):
					return n, total, bad(hdr.Name, "duplicate entry")
				}
				return n, total, failed(hdr.Name, err)
			}

		case tar.TypeSymlink:
			if name == "." {
				return n, total, bad(hdr.Name, "symlink at the archive root")
			}
			if err := checkLinkTarget(name, hdr.Linkname); err != nil {
				return n, total, bad(hdr.Name, "%v", err)
			}
			if err := root.Symlink(hdr.Linkname, name); err != nil {
				if errors.Is(err, fs.ErrExist) {
					return n, total, bad(hdr.Name, "duplicate entry")
				}
				return n, total, failed(hdr.Name, err)
			}

		case tar.TypeLink:
			return n, total, bad(hdr.Name, "hard link to %q not allowed", hdr.Linkname)
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			return n, total, bad(hdr.Name, "device or fifo not allowed")
		default:
			return n, total, bad(hdr.Name, "unsupported entry type %q", hdr.Typeflag)
		}
	}

	if err := root.SetDirModes(dirModes); err != nil {
		return n, total, fmt.Errorf("unpack %s: %w", archive, err)
	}
	return n, total, nil
}

// tree is where extract puts an archive's entries: diskTree writes them,
// checkTree only records what would be there. Names are slash-separated and
// local; a name already taken is an fs.ErrExist.
type tree interface {
	// Kind is the type bits of what is at name, fs.ErrNotExist if nothing.
	Kind(name string) (fs.FileMode, error)
	Mkdir(name string, perm fs.FileMode) error
	WriteFile(name string, r io.Reader, size int64, mode fs.FileMode) error
	Symlink(target, name string) error
	// SetDirModes gives the directories their modes once every entry is in.
	SetDirModes(modes map[string]fs.FileMode) error
}

// diskTree writes entries beneath an os.Root.
type diskTree struct{ root *os.Root }

func (d diskTree) Kind(name string) (fs.FileMode, error) {
	fi, err := d.root.Lstat(name)
	if err != nil {
		return 0, err
	}
	return fi.Mode().Type(), nil
}

func (d diskTree) Mkdir(name string, perm fs.FileMode) error { return d.root.Mkdir(name, perm) }

func (d diskTree) Symlink(target, name string) error { return d.root.Symlink(target, name) }

func (d diskTree) WriteFile(name string, r io.Reader, size int64, mode fs.FileMode) (err error) {
	f, err := d.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	if _, err := io.CopyN(f, r, size); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return d.root.Chmod(name, mode)
}

func (d diskTree) SetDirModes(dirModes map[string]fs.FileMode) error {
	root := d.root
	// Deepest first, so a directory losing its x bit does not hide its
	// children from chmod.
	names := make([]string, 0, len(dirModes))
	for name := range dirModes {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool {
		di, dj := strings.Count(names[i], "/"), strings.Count(names[j], "/")
		if di != dj {
			return di > dj
		}
		if (names[i] == ".") != (names[j] == ".") {
			return names[j] == "."
		}
		return names[i] < names[j]
	})
	for _, name := range names {
		if name != "." {
			// Sync before any mode change could make it unreadable.
			syncRootDir(root, name)
		}
		if err := root.Chmod(name, dirModes[name]); err != nil {
			return fmt.Errorf("entry %q: %w", name, err)
		}
	}
	return nil
}

// checkTree records the type of each entry and reads file bodies to their
// end, writing nothing.
type checkTree map[string]fs.FileMode

func (c checkTree) Kind(name string) (fs.FileMode, error) {
	if k, ok := c[name]; ok {
		return k, nil
	}
	return 0, fs.ErrNotExist
}

func (c checkTree) add(name string, kind fs.FileMode) error {
	if _, ok := c[name]; ok {
		return fs.ErrExist
	}
	c[name] = kind
	return nil
}

func (c checkTree) Mkdir(name string, _ fs.FileMode) error { return c.add(name, fs.ModeDir) }

func (c checkTree) Symlink(_, name string) error { return c.add(name, fs.ModeSymlink) }

func (c checkTree) WriteFile(name string, r io.Reader, size int64, _ fs.FileMode) error {
	if err := c.add(name, 0); err != nil {
		return err
	}
	_, err := io.CopyN(io.Discard, r, size)
	return err
}

func (checkTree) SetDirModes(map[string]fs.FileMode) error { return nil }

// entryName turns a tar entry name into a clean, slash-separated path local to
// the archive root ("." for the root itself).
func entryName(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("empty name")
	}
	if strings.HasPrefix(raw, "/") || filepath.IsAbs(raw) {
		return "", errors.New("absolute path")
	}
	if strings.ContainsRune(raw, 0) {
		return "", errors.New("NUL in name")
	}
	for _, elem := range strings.Split(raw, "/") {
		if elem == ".." {
			return "", errors.New(`".." in path`)
		}
	}
	name := path.Clean(raw)
	if !filepath.IsLocal(filepath.FromSlash(name)) {
		return "", errors.New("path outside the archive")
	}
	return name, nil
}

// checkLinkTarget allows only relative symlink targets that, resolved from
// the link's own directory, stay inside the archive.
func checkLinkTarget(name, target string) error {
	if target == "" {
		return errors.New("empty symlink target")
	}
	if strings.HasPrefix(target, "/") || filepath.IsAbs(target) {
		return fmt.Errorf("absolute symlink target %q", target)
	}
	resolved := path.Join(path.Dir(name), target)
	if !filepath.IsLocal(filepath.FromSlash(resolved)) {
		return fmt.Errorf("symlink target %q escapes the archive", target)
	}
	return nil
}

// makeParents creates the missing parent directories of name. It refuses, by
// returning why, a parent that is a symlink or not a directory: writing
// through an in-tree symlink would defeat the lexical check on link targets.
func makeParents(root tree, name string) (why string, err error) {
	elems := strings.Split(name, "/")
	for i := 1; i < len(elems); i++ {
		p := strings.Join(elems[:i], "/")
		kind, err := root.Kind(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := root.Mkdir(p, 0o755); err != nil {
				return "", err
			}
		case err != nil:
			return "", err
		case kind&fs.ModeSymlink != 0:
			return fmt.Sprintf("path goes through symlink %q", p), nil
		case !kind.IsDir():
			return fmt.Sprintf("parent %q is not a directory", p), nil
		}
	}
	return "", nil
}

// readErr remembers a read error, to tell a broken archive from a failing disk.
type readErr struct {
	r   io.Reader
	err error
}

func (e *readErr) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

func syncRootDir(root *os.Root, name string) {
	if d, err := root.Open(name); err == nil {
		d.Sync()
		d.Close()
	}
}

// syncDir makes renames and creations in dir durable. It is best effort: the
// content itself has already been synced.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// Pack writes a gzip-compressed tar of the tree at srcDir to w: regular files,
// directories and relative symlinks that stay inside the tree, with paths
// relative to srcDir in lexical order and no times or owners, so the same tree
// packs to the same bytes.
func Pack(srcDir string, w io.Writer) error {
	src, err := filepath.EvalSymlinks(srcDir)
	if err != nil {
		return fmt.Errorf("pack: %w", err)
	}
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	epoch := time.Unix(0, 0)

	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if rel == "." {
			if !d.IsDir() {
				return fmt.Errorf("%s is not a directory", srcDir)
			}
			return nil
		}
		name := filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{
			Name:    name,
			Mode:    int64(info.Mode().Perm()),
			ModTime: epoch,
			Format:  tar.FormatPAX,
		}
		switch {
		case info.Mode().IsRegular():
			hdr.Typeflag = tar.TypeReg
			hdr.Size = info.Size()
		case info.IsDir():
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := checkLinkTarget(name, filepath.ToSlash(target)); err != nil {
				return fmt.Errorf("%s: %v", name, err)
			}
			hdr.Typeflag = tar.TypeSymlink
			hdr.Linkname = filepath.ToSlash(target)
			hdr.Mode = 0o777
		default:
			return fmt.Errorf("%s: unsupported file type %s", name, info.Mode().Type())
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
			return fmt.Errorf("%s: %w", name, err) // shrank while packing
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pack %s: %w", srcDir, err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("pack %s: %w", srcDir, err)
	}
	if err := gz.Close(); err != nil {
		return fmt.Errorf("pack %s: %w", srcDir, err)
	}
	return nil
}

// PackFile packs the tree at srcDir into a new archive file at dst, as Pack
// does.
func PackFile(srcDir, dst string) (err error) {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	return Pack(srcDir, f)
}
