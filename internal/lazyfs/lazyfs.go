// Package lazyfs is a FUSE file system for tests that loses, on a simulated
// power cut, everything a real disk may lose: in the spirit of LazyFS, it
// shows a backing directory through a mount point and keeps apart what has
// been made durable.
//
// What it models:
//
//   - Data written to a file is visible at once through the mount (as from
//     the page cache) and becomes durable only when that file is fsynced
//     (fsync or fdatasync): the file's whole content and mode at that moment.
//   - A directory's entries become durable only when that directory is
//     fsynced: create, mkdir, symlink, link, unlink, rmdir and rename are all
//     undone by a cut until then. A rename between two directories is two
//     changes, one per directory, each durable with its own directory's
//     fsync. An entry made durable whose file was never fsynced comes back
//     empty; a symlink comes back with its target (it is written with the
//     link); a directory comes back with the entries of its last fsync.
//   - fsync of a file does not make its name durable, nor does fsync of a
//     directory make its files' data durable. sync(2) and syncfs(2) make
//     nothing durable; FS.Sync makes everything durable.
//
// This is the POSIX worst case, harsher than a journaling file system such
// as ext4, which commits metadata in order. Not modeled: torn or reordered
// writes inside one fsync (a file's fsync is all or nothing), lying disks,
// extended attributes, owners and times (a cut brings them back as the
// process creating the files has them), special files such as sockets and
// fifos (a cut drops them), and O_TMPFILE (refused).
//
// Cut stops the power: from then on every operation fails with EIO. CutAfter
// arms a cut just before a given number of changing operations (writes,
// fsyncs, creates, renames, ...) so that a test can walk every cut point of
// a sequence, one by one. Restart unmounts, lays the durable state out in the
// backing directory and mounts it again, as a machine boots after a power
// loss.
//
// Mounting needs /dev/fuse and root (the mount is made with mount(2)) or the
// fusermount3 helper of the fuse3 package.
package lazyfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// ErrDead is returned by operations on a file system whose power is cut
// that cannot go on until Restart.
var ErrDead = errors.New("lazyfs: the power is cut")

// FS is a mounted lazyfs. Its methods are safe for concurrent use.
type FS struct {
	backing string
	mnt     string

	mu     sync.Mutex // serializes the changing operations and the model
	server *fuse.Server
	dead   atomic.Bool
	ops    int // changing operations since the last mount
	cutAt  int // cut before operation cutAt+1; -1 when not armed
	cuts   int // cuts so far

	// The durable model: what the disk holds, by node id. ids maps the
	// inode numbers of the live backing directory to node ids; an inode
	// whose last name is removed loses its id, so a reused number gets a
	// new one.
	ids    map[uint64]uint64
	nodes  map[uint64]*dnode
	nextID uint64
	rootID uint64
}

// dnode is one durable inode.
type dnode struct {
	mode    fs.FileMode       // type and permissions
	data    []byte            // regular file: content at its last fsync
	target  string            // symlink
	entries map[string]uint64 // directory: entries at its last fsync
}

// Mount mounts a lazyfs of backing at mountpoint; both must be directories.
// What backing holds is taken as durable. Close unmounts it.
func Mount(backing, mountpoint string) (*FS, error) {
	var err error
	if backing, err = filepath.Abs(backing); err != nil {
		return nil, err
	}
	if mountpoint, err = filepath.Abs(mountpoint); err != nil {
		return nil, err
	}
	for _, d := range []string{backing, mountpoint} {
		fi, err := os.Stat(d)
		if err != nil {
			return nil, fmt.Errorf("lazyfs: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("lazyfs: %s is not a directory", d)
		}
	}
	f := &FS{backing: backing, mnt: mountpoint, cutAt: -1}
	if err := f.snapshot(); err != nil {
		return nil, err
	}
	if err := f.mount(); err != nil {
		return nil, err
	}
	return f, nil
}

// Dir returns the mount point.
func (f *FS) Dir() string { return f.mnt }

// Ops returns the number of changing operations since the last mount:
// writes, truncates and other attribute changes, fsyncs of files and
// directories, creates, mkdirs, symlinks, links, unlinks, rmdirs and renames.
// Each is a cut point for CutAfter.
func (f *FS) Ops() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ops
}

// Cuts returns how many cuts this FS has had.
func (f *FS) Cuts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cuts
}

// Dead reports whether the power is cut.
func (f *FS) Dead() bool { return f.dead.Load() }

// Cut cuts the power now: what is not durable is lost, and every operation
// fails with EIO until Restart.
func (f *FS) Cut() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cutLocked()
}

func (f *FS) cutLocked() {
	if !f.dead.Load() {
		f.dead.Store(true)
		f.cuts++
	}
}

// CutAfter arms a cut: n more changing operations are done, and the power
// goes off just before the next one (n = 0 cuts at the next one). A
// negative n disarms.
func (f *FS) CutAfter(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n < 0 {
		f.cutAt = -1
		return
	}
	f.cutAt = f.ops + n
}

// Sync makes everything durable, as sync(2) does.
func (f *FS) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dead.Load() {
		return ErrDead
	}
	return f.snapshot()
}

// Restart unmounts the file system, replaces what the backing directory
// holds with the durable state and mounts it again, powered. Nothing may
// hold a file or directory of the mount open. Restart of a powered file
// system cuts it first.
func (f *FS) Restart() error {
	f.Cut()
	if err := f.unmount(); err != nil {
		return err
	}
	f.mu.Lock()
	err := f.layOut()
	if err == nil {
		err = f.snapshot()
	}
	f.ops, f.cutAt = 0, -1
	f.mu.Unlock()
	if err != nil {
		return err
	}
	f.dead.Store(false)
	return f.mount()
}

// PowerCut is Cut and Restart.
func (f *FS) PowerCut() error { return f.Restart() }

// Close unmounts the file system. What the backing directory holds is what
// was written through the mount, durable or not, unless the power was cut.
func (f *FS) Close() error { return f.unmount() }

func (f *FS) mount() error {
	root, err := gofs.NewLoopbackRoot(f.backing)
	if err != nil {
		return fmt.Errorf("lazyfs: %w", err)
	}
	sec := time.Second
	opts := &gofs.Options{
		EntryTimeout: &sec,
		AttrTimeout:  &sec,
		MountOptions: fuse.MountOptions{
			FsName: "lazyfs",
			Name:   "lazyfs",
			// mount(2) as root; else, or when it fails, fusermount3.
			DirectMount: os.Geteuid() == 0,
		},
	}
	srv, err := gofs.Mount(f.mnt, &node{LoopbackNode: root.(*gofs.LoopbackNode), fs: f}, opts)
	if err != nil {
		return fmt.Errorf("lazyfs: mount %s: %w (it needs /dev/fuse, and root or fusermount3 from the fuse3 package)", f.mnt, err)
	}
	f.mu.Lock()
	f.server = srv
	f.mu.Unlock()
	return nil
}

func (f *FS) unmount() error {
	f.mu.Lock()
	srv := f.server
	f.server = nil
	f.mu.Unlock()
	if srv == nil {
		return nil
	}
	var err error
	// The kernel may still hold a file of a process that just exited:
	// retry a busy unmount for a while.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err = srv.Unmount(); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		f.mu.Lock()
		f.server = srv
		f.mu.Unlock()
		return fmt.Errorf("lazyfs: unmount %s: %w (open here: %v)", f.mnt, err, openUnder(f.mnt))
	}
	srv.Wait()
	return nil
}

// begin starts a changing operation: it takes the lock, counts the
// operation and fires an armed cut. On a zero errno the caller holds f.mu
// and must release it.
func (f *FS) begin() syscall.Errno {
	f.mu.Lock()
	if !f.dead.Load() && f.cutAt >= 0 && f.ops >= f.cutAt {
		f.cutLocked()
	}
	if f.dead.Load() {
		f.mu.Unlock()
		return syscall.EIO
	}
	f.ops++
	return 0
}

// idOf returns the node id of the live inode ino, giving it one if it has
// none. f.mu is held.
func (f *FS) idOf(ino uint64) uint64 {
	if id, ok := f.ids[ino]; ok {
		return id
	}
	f.nextID++
	f.ids[ino] = f.nextID
	return f.nextID
}

// snapshot takes the live backing directory as the durable state, with new
// ids. f.mu is held, or f is not yet shared.
func (f *FS) snapshot() error {
	f.ids = map[uint64]uint64{}
	f.nodes = map[uint64]*dnode{}
	// walk returns the id of the inode at path, 0 for a special file.
	var walk func(path string) (uint64, error)
	walk = func(path string) (uint64, error) {
		var st syscall.Stat_t
		if err := syscall.Lstat(path, &st); err != nil {
			return 0, fmt.Errorf("lazyfs: %w", &fs.PathError{Op: "lstat", Path: path, Err: err})
		}
		if fileMode(st.Mode)&fs.ModeIrregular != 0 {
			return 0, nil
		}
		id := f.idOf(st.Ino)
		if _, seen := f.nodes[id]; seen {
			return id, nil // a hard link
		}
		d, err := readNode(path, &st)
		if err != nil {
			return 0, err
		}
		f.nodes[id] = d
		if d.entries != nil {
			entries, err := os.ReadDir(path)
			if err != nil {
				return 0, fmt.Errorf("lazyfs: %w", err)
			}
			for _, e := range entries {
				cid, err := walk(filepath.Join(path, e.Name()))
				if err != nil {
					return 0, err
				}
				if cid != 0 {
					d.entries[e.Name()] = cid
				}
			}
		}
		return id, nil
	}
	id, err := walk(f.backing)
	f.rootID = id
	return err
}

// readNode reads the live inode at path (its entries aside).
func readNode(path string, st *syscall.Stat_t) (*dnode, error) {
	d := &dnode{mode: fileMode(st.Mode)}
	var err error
	switch d.mode.Type() {
	case 0:
		d.data, err = os.ReadFile(path)
	case fs.ModeSymlink:
		d.target, err = os.Readlink(path)
	case fs.ModeDir:
		d.entries = map[string]uint64{}
	default:
		err = fmt.Errorf("%s: %v files are not modeled", path, d.mode.Type())
	}
	if err != nil {
		return nil, fmt.Errorf("lazyfs: %w", err)
	}
	return d, nil
}

// fileMode converts a stat mode to fs.FileMode: type and permission bits.
func fileMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & syscall.S_IFMT {
	case syscall.S_IFDIR:
		mode |= fs.ModeDir
	case syscall.S_IFLNK:
		mode |= fs.ModeSymlink
	case syscall.S_IFREG:
	default:
		mode |= fs.ModeIrregular
	}
	return mode
}

// fsyncFile makes the content of the live file at path durable. f.mu is held.
func (f *FS) fsyncFile(path string) syscall.Errno {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		// An open file whose last name is gone: nothing on disk names it.
		return 0
	}
	if st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		return f.fsyncDir(path)
	}
	if fileMode(st.Mode)&fs.ModeIrregular != 0 {
		return 0 // special files are not modeled
	}
	d, err := readNode(path, &st)
	if err != nil {
		return syscall.EIO
	}
	f.nodes[f.idOf(st.Ino)] = d
	return 0
}

// fsyncDir makes the entries of the live directory at path durable. An entry
// new to the model is durable as an empty file, its symlink target or an
// empty directory. f.mu is held.
func (f *FS) fsyncDir(path string) syscall.Errno {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return 0
	}
	id := f.idOf(st.Ino)
	entries, err := os.ReadDir(path)
	if err != nil {
		return gofs.ToErrno(err)
	}
	d := f.nodes[id]
	if d == nil {
		d = &dnode{}
		f.nodes[id] = d
	}
	d.mode = fileMode(st.Mode)
	d.entries = make(map[string]uint64, len(entries))
	for _, e := range entries {
		var cst syscall.Stat_t
		cpath := filepath.Join(path, e.Name())
		if err := syscall.Lstat(cpath, &cst); err != nil {
			return gofs.ToErrno(err)
		}
		if fileMode(cst.Mode)&fs.ModeIrregular != 0 {
			continue // special files are not modeled
		}
		cid := f.idOf(cst.Ino)
		if f.nodes[cid] == nil {
			c := &dnode{mode: fileMode(cst.Mode)}
			switch c.mode.Type() {
			case fs.ModeSymlink:
				if c.target, err = os.Readlink(cpath); err != nil {
					return gofs.ToErrno(err)
				}
			case fs.ModeDir:
				c.entries = map[string]uint64{}
			}
			f.nodes[cid] = c
		}
		d.entries[e.Name()] = cid
	}
	return 0
}

// forget drops the id of the live inode at path if removing the name
// removes the inode. Called before the removal; f.mu is held.
func (f *FS) forgetIfLast(path string) func() {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return func() {}
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR && st.Nlink > 1 {
		return func() {}
	}
	return func() { delete(f.ids, st.Ino) }
}

// layOut replaces the content of the backing directory with the durable
// state. f.mu is held.
func (f *FS) layOut() error {
	entries, err := os.ReadDir(f.backing)
	if err != nil {
		return fmt.Errorf("lazyfs: %w", err)
	}
	for _, e := range entries {
		p := filepath.Join(f.backing, e.Name())
		// Directories laid out read-only must be writable to go.
		filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(path, 0o700)
			}
			return nil
		})
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("lazyfs: %w", err)
		}
	}
	files := map[uint64]string{} // file id -> first path laid out, for hard links
	dirs := map[uint64]bool{}    // directories laid out (a directory durable in two places appears once)
	var modes []func() error     // directory modes, deepest first
	var lay func(id uint64, path string) error
	lay = func(id uint64, path string) error {
		d := f.nodes[id]
		if d == nil {
			return fmt.Errorf("lazyfs: %s: node %d is not in the model", path, id)
		}
		switch d.mode.Type() {
		case fs.ModeDir:
			if dirs[id] {
				return nil
			}
			dirs[id] = true
			if path != f.backing {
				if err := os.Mkdir(path, 0o700); err != nil {
					return fmt.Errorf("lazyfs: %w", err)
				}
			}
			for name, cid := range d.entries {
				if err := lay(cid, filepath.Join(path, name)); err != nil {
					return err
				}
			}
			modes = append(modes, func() error { return os.Chmod(path, d.mode.Perm()) })
		case fs.ModeSymlink:
			return os.Symlink(d.target, path)
		default:
			if first, ok := files[id]; ok {
				return os.Link(first, path)
			}
			files[id] = path
			if err := os.WriteFile(path, d.data, 0o600); err != nil {
				return fmt.Errorf("lazyfs: %w", err)
			}
			return os.Chmod(path, d.mode.Perm())
		}
		return nil
	}
	if err := lay(f.rootID, f.backing); err != nil {
		return err
	}
	for _, m := range modes {
		if err := m(); err != nil {
			return fmt.Errorf("lazyfs: %w", err)
		}
	}
	return nil
}

// openUnder lists the files this process holds open under dir, to explain
// a busy unmount.
func openUnder(dir string) []string {
	fds, _ := os.ReadDir("/proc/self/fd")
	var open []string
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil {
			if rel, err := filepath.Rel(dir, target); err == nil && !strings.HasPrefix(rel, "..") {
				open = append(open, target)
			}
		}
	}
	return open
}
