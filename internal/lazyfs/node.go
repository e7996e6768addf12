package lazyfs

import (
	"context"
	"path/filepath"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// node is a loopback node whose changing operations go through the model.
type node struct {
	*gofs.LoopbackNode
	fs *FS
}

var (
	_ gofs.NodeWrapChilder    = (*node)(nil)
	_ gofs.NodeLookuper       = (*node)(nil)
	_ gofs.NodeOpener         = (*node)(nil)
	_ gofs.NodeCreater        = (*node)(nil)
	_ gofs.NodeOpendirHandler = (*node)(nil)
	_ gofs.NodeReadlinker     = (*node)(nil)
	_ gofs.NodeMkdirer        = (*node)(nil)
	_ gofs.NodeMknoder        = (*node)(nil)
	_ gofs.NodeSymlinker      = (*node)(nil)
	_ gofs.NodeLinker         = (*node)(nil)
	_ gofs.NodeUnlinker       = (*node)(nil)
	_ gofs.NodeRmdirer        = (*node)(nil)
	_ gofs.NodeRenamer        = (*node)(nil)
	_ gofs.NodeSetattrer      = (*node)(nil)
	_ gofs.NodeFsyncer        = (*node)(nil)
	_ gofs.NodeCopyFileRanger = (*node)(nil)
	_ gofs.NodeTmpfiler       = (*node)(nil)
	_ gofs.NodeSetxattrer     = (*node)(nil)
	_ gofs.NodeRemovexattrer  = (*node)(nil)
)

// WrapChild makes every node of the tree a lazyfs node.
func (n *node) WrapChild(ctx context.Context, ops gofs.InodeEmbedder) gofs.InodeEmbedder {
	return &node{LoopbackNode: ops.(*gofs.LoopbackNode), fs: n.fs}
}

// path returns the node's path in the backing directory.
func (n *node) path() string {
	return filepath.Join(n.fs.backing, n.EmbeddedInode().Path(nil))
}

func (n *node) child(name string) string { return filepath.Join(n.path(), name) }

// Reads fail once the power is cut, as on a machine that is off.

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.fs.Dead() {
		return nil, syscall.EIO
	}
	return n.LoopbackNode.Lookup(ctx, name, out)
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	if n.fs.Dead() {
		return nil, syscall.EIO
	}
	return n.LoopbackNode.Readlink(ctx)
}

func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if n.fs.Dead() {
		return nil, 0, syscall.EIO
	}
	fh, fl, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return &file{LoopbackFile: fh.(*gofs.LoopbackFile), n: n}, fl, 0
}

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if n.fs.Dead() {
		return nil, 0, syscall.EIO
	}
	fh, fl, errno := n.LoopbackNode.OpendirHandle(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return &dir{ds: fh, n: n}, fl, 0
}

// Changing operations.

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if errno := n.fs.begin(); errno != 0 {
		return nil, nil, 0, errno
	}
	defer n.fs.mu.Unlock()
	in, fh, fl, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return in, &file{LoopbackFile: fh.(*gofs.LoopbackFile), n: in.Operations().(*node)}, fl, 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := n.fs.begin(); errno != 0 {
		return nil, errno
	}
	defer n.fs.mu.Unlock()
	return n.LoopbackNode.Mkdir(ctx, name, mode, out)
}

func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := n.fs.begin(); errno != 0 {
		return nil, errno
	}
	defer n.fs.mu.Unlock()
	return n.LoopbackNode.Mknod(ctx, name, mode, rdev, out)
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := n.fs.begin(); errno != 0 {
		return nil, errno
	}
	defer n.fs.mu.Unlock()
	return n.LoopbackNode.Symlink(ctx, target, name, out)
}

func (n *node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	t, ok := target.(*node)
	if !ok {
		return nil, syscall.EXDEV
	}
	if errno := n.fs.begin(); errno != 0 {
		return nil, errno
	}
	defer n.fs.mu.Unlock()
	return n.LoopbackNode.Link(ctx, t.LoopbackNode, name, out)
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	if errno := n.fs.begin(); errno != 0 {
		return errno
	}
	defer n.fs.mu.Unlock()
	forget := n.fs.forgetIfLast(n.child(name))
	errno := n.LoopbackNode.Unlink(ctx, name)
	if errno == 0 {
		forget()
	}
	return errno
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	if errno := n.fs.begin(); errno != 0 {
		return errno
	}
	defer n.fs.mu.Unlock()
	forget := n.fs.forgetIfLast(n.child(name))
	errno := n.LoopbackNode.Rmdir(ctx, name)
	if errno == 0 {
		forget()
	}
	return errno
}

func (n *node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	if errno := n.fs.begin(); errno != 0 {
		return errno
	}
	defer n.fs.mu.Unlock()
	// A rename over another inode removes that one's name; RENAME_EXCHANGE
	// keeps both.
	forget := func() {}
	if flags&unixRenameExchange == 0 {
		var src, dst syscall.Stat_t
		if syscall.Lstat(n.child(name), &src) == nil && syscall.Lstat(np.child(newName), &dst) == nil && src.Ino != dst.Ino {
			forget = n.fs.forgetIfLast(np.child(newName))
		}
	}
	errno := n.LoopbackNode.Rename(ctx, name, np.LoopbackNode, newName, flags)
	if errno == 0 {
		forget()
	}
	return errno
}

// unixRenameExchange is RENAME_EXCHANGE from renameat2(2).
const unixRenameExchange = 1 << 1

func (n *node) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if errno := n.fs.begin(); errno != 0 {
		return errno
	}
	defer n.fs.mu.Unlock()
	if lf, ok := f.(*file); ok {
		f = lf.LoopbackFile
	}
	return n.LoopbackNode.Setattr(ctx, f, in, out)
}

func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return syscall.ENOTSUP
}

func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return syscall.ENOTSUP
}

// Fsync makes a file's content, or a directory's entries, durable. Nothing
// is synced to the backing directory: the model is the disk.
func (n *node) Fsync(ctx context.Context, f gofs.FileHandle, flags uint32) syscall.Errno {
	if errno := n.fs.begin(); errno != 0 {
		return errno
	}
	defer n.fs.mu.Unlock()
	if n.IsDir() {
		return n.fs.fsyncDir(n.path())
	}
	return n.fs.fsyncFile(n.path())
}

func (n *node) CopyFileRange(ctx context.Context, fhIn gofs.FileHandle, offIn uint64, out *gofs.Inode, fhOut gofs.FileHandle, offOut uint64, length uint64, flags uint64) (uint32, syscall.Errno) {
	// Plain writes then: the kernel falls back to read and write.
	return 0, syscall.ENOTSUP
}

func (n *node) Tmpfile(ctx context.Context, flags, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EOPNOTSUPP
}

// file is an open file: writes go through the model's lock and count as
// cut points, and the kernel never writes to the backing file directly.
type file struct {
	*gofs.LoopbackFile
	n *node
}

var (
	_ gofs.FileWriter          = (*file)(nil)
	_ gofs.FileReader          = (*file)(nil)
	_ gofs.FileAllocater       = (*file)(nil)
	_ gofs.FilePassthroughFder = (*file)(nil)
)

// PassthroughFd refuses FUSE passthrough, which would send writes to the
// backing file without this process seeing them.
func (f *file) PassthroughFd() (int, bool) { return 0, false }

func (f *file) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if f.n.fs.Dead() {
		return nil, syscall.EIO
	}
	return f.LoopbackFile.Read(ctx, buf, off)
}

func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if errno := f.n.fs.begin(); errno != 0 {
		return 0, errno
	}
	defer f.n.fs.mu.Unlock()
	return f.LoopbackFile.Write(ctx, data, off)
}

func (f *file) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	if errno := f.n.fs.begin(); errno != 0 {
		return errno
	}
	defer f.n.fs.mu.Unlock()
	return f.LoopbackFile.Allocate(ctx, off, size, mode)
}

func (f *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return f.n.Fsync(ctx, f, flags)
}

// dir is an open directory whose fsync goes to the model.
type dir struct {
	ds gofs.FileHandle
	n  *node
}

var (
	_ gofs.FileReaddirenter = (*dir)(nil)
	_ gofs.FileSeekdirer    = (*dir)(nil)
	_ gofs.FileReleasedirer = (*dir)(nil)
	_ gofs.FileFsyncdirer   = (*dir)(nil)
)

func (d *dir) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if d.n.fs.Dead() {
		return nil, syscall.EIO
	}
	return d.ds.(gofs.FileReaddirenter).Readdirent(ctx)
}

func (d *dir) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if s, ok := d.ds.(gofs.FileSeekdirer); ok {
		return s.Seekdir(ctx, off)
	}
	return syscall.ENOTSUP
}

func (d *dir) Releasedir(ctx context.Context, flags uint32) {
	if r, ok := d.ds.(gofs.FileReleasedirer); ok {
		r.Releasedir(ctx, flags)
	}
}

func (d *dir) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	return d.n.Fsync(ctx, d, flags)
}
