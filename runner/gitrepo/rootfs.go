package gitrepo

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/go-git/go-billy/v5"
)

// The workspace is hostile input: the agent's code can write anything into it,
// .git included, while the trusted runner (which holds secrets) builds the
// patch. rootFS is the only way this package reads a workspace: a read-only
// billy.Filesystem over an os.Root, so every path is resolved a component at
// a time relative to open directories, beneath the workspace (a symlink
// anywhere in a path, absolute or climbing out, is refused rather than
// followed, and swapping a directory for a symlink mid-walk cannot redirect
// it), FIFOs cannot block an open, and files go-git reads whole are refused
// beyond a size that keeps memory bounded.

// errReadOnly is returned by every write: the trusted side never writes into
// the workspace (it is mounted read-only there anyway).
var errReadOnly = errors.New("the workspace is read-only for the runner")

// Bounds on what is read from a workspace's .git. go-git decodes the index,
// pack indexes, packed-refs and config whole; anything larger is refused with
// an error naming the file and the limit.
const (
	maxGitMetaBytes  = 1 << 20  // HEAD, config, refs, info/*, shallow, alternates
	maxIndexBytes    = 64 << 20 // .git/index; git's own for the Linux kernel is ~10 MB
	maxPackIdxBytes  = 64 << 20 // objects/pack/*.idx, ~2.3 million objects
	maxPackedRefs    = 64 << 20 // packed-refs
	maxObjectBytes   = 4 << 30  // packfiles and loose objects: read in pieces, never whole
	maxIgnoreBytes   = 1 << 20  // .gitignore, .gitmodules, .git/info/exclude in the worktree
	largeObjectBytes = 1 << 20  // objects above this are streamed by go-git, not loaded
)

// gitDirLimit is the most this package reads of a file inside .git, by its
// path relative to .git (or to a submodule's git directory under modules/).
func gitDirLimit(name string) int64 {
	dir, base := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	switch {
	case base == "index":
		return maxIndexBytes
	case base == "packed-refs":
		return maxPackedRefs
	case path.Base(dir) == "pack" && strings.HasSuffix(base, ".idx"):
		return maxPackIdxBytes
	case path.Base(dir) == "pack" && strings.HasSuffix(base, ".pack"):
		return maxObjectBytes
	case len(path.Base(dir)) == 2 && path.Base(path.Dir(dir)) == "objects" && len(base) == 38:
		return maxObjectBytes // a loose object
	default:
		return maxGitMetaBytes
	}
}

// worktreeLimit bounds what go-git reads whole from the worktree; other files
// it only hashes, streaming.
func worktreeLimit(name string) int64 {
	switch {
	case path.Base(name) == ".gitignore", path.Base(name) == ".gitmodules", path.Base(path.Dir(path.Dir(name))) == ".git":
		return maxIgnoreBytes // .gitignore, .gitmodules, .git/info/exclude (at any depth, as go-git looks for it)
	}
	return 0
}

// closers collects what one operation opened (roots, the file systems' open
// directories), so all is closed when it ends: go-git never closes the file
// systems it is given.
type closers struct {
	mu   sync.Mutex
	list []io.Closer
}

func (c *closers) add(x io.Closer) {
	c.mu.Lock()
	c.list = append(c.list, x)
	c.mu.Unlock()
}

func (c *closers) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, x := range c.list {
		_ = x.Close()
	}
	c.list = nil
}

// rootFS is a read-only billy.Filesystem confined to an os.Root.
//
// os.Root resolves a path one component at a time (an openat each), so a
// walk of the worktree through it would open every directory once per path
// below it. rootFS keeps the directories of the last path it used open (a
// stack, as deep as the path): a depth-first walk opens each directory once.
// A directory is opened relative to its parent, so a symlink in a path is only
// followed if it stays within the directory holding it.
type rootFS struct {
	root   *os.Root
	dir    string // what Root() reports; used in messages only, never opened
	prefix string // path of this root below the one limit is computed from
	limit  func(name string) int64
	c      *closers

	mu    sync.Mutex
	comps []string   // the directory path held open
	stack []*os.Root // stack[i] is comps[:i+1]
}

var _ billy.Filesystem = (*rootFS)(nil)

func newRootFS(root *os.Root, dir string, limit func(string) int64, c *closers) *rootFS {
	f := &rootFS{root: root, dir: dir, limit: limit, c: c}
	c.add(f)
	return f
}

// Close closes the directories held open (not the root).
func (f *rootFS) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.popTo(0)
	return nil
}

func (f *rootFS) popTo(k int) {
	for i := len(f.stack) - 1; i >= k; i-- {
		_ = f.stack[i].Close()
	}
	f.stack, f.comps = f.stack[:k], f.comps[:k]
}

// at calls fn with the directory holding name and name's last component
// ("." for the root itself).
func (f *rootFS) at(name string, fn func(dir *os.Root, base string) error) error {
	rel, err := clean(name)
	if err != nil {
		return err
	}
	dir, base := path.Split(rel)
	if rel == "." {
		dir, base = "", "."
	}
	return f.in(rel, dir, func(d *os.Root) error { return fn(d, base) })
}

// in calls fn with the directory dir open (rel names the operation's file in
// errors); the caller's lock is held meanwhile.
func (f *rootFS) in(rel, dir string, fn func(dir *os.Root) error) error {
	var want []string
	if dir = strings.Trim(dir, "/"); dir != "" && dir != "." {
		want = strings.Split(dir, "/")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	k := 0
	for k < len(want) && k < len(f.comps) && want[k] == f.comps[k] {
		k++
	}
	f.popTo(k)
	top := f.root
	if k > 0 {
		top = f.stack[k-1]
	}
	for _, c := range want[k:] {
		sub, err := top.OpenRoot(c)
		if err != nil {
			return &fs.PathError{Op: "open", Path: rel, Err: unwrapPath(err)}
		}
		f.stack, f.comps = append(f.stack, sub), append(f.comps, c)
		top = sub
	}
	if err := fn(top); err != nil {
		return &fs.PathError{Op: "open", Path: rel, Err: unwrapPath(err)}
	}
	return nil
}

// unwrapPath drops os.Root's path (relative to an inner directory) so the
// caller's names the file from the file system's root.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// clean maps go-git's names onto os.Root's: slash-separated and relative.
// Absolute names are refused: nothing outside the root has a name here.
func clean(name string) (string, error) {
	name = filepath.ToSlash(name)
	if name == "" || name == "/" {
		return ".", nil
	}
	if path.IsAbs(name) {
		return "", &fs.PathError{Op: "open", Path: name, Err: errors.New("absolute path outside the workspace")}
	}
	return path.Clean(name), nil
}

func (f *rootFS) Open(name string) (billy.File, error) { return f.OpenFile(name, os.O_RDONLY, 0) }

func (f *rootFS) OpenFile(name string, flag int, _ os.FileMode) (billy.File, error) {
	if flag&(os.O_WRONLY|os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_TRUNC) != 0 {
		return nil, &fs.PathError{Op: "open", Path: name, Err: errReadOnly}
	}
	var file *os.File
	err := f.at(name, func(dir *os.Root, base string) (err error) {
		// O_NONBLOCK: a FIFO planted where a file was expected must not
		// hang the open; it is refused below.
		file, err = dir.OpenFile(base, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
		return err
	})
	if err != nil {
		return nil, err
	}
	fi, err := file.Stat()
	if err != nil {
		_ = file.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() && !fi.IsDir() {
		_ = file.Close()
		return nil, &fs.PathError{Op: "open", Path: name, Err: errors.New("not a regular file")}
	}
	rel, _ := clean(name)
	var max int64
	if f.limit != nil {
		max = f.limit(path.Join(f.prefix, rel))
	}
	if max > 0 && fi.Size() > max {
		_ = file.Close()
		return nil, fmt.Errorf("%s: %d bytes, over the %d this runner reads of such a file in a workspace", path.Join(f.prefix, rel), fi.Size(), max)
	}
	return &rootFile{File: file, name: name, max: max}, nil
}

func (f *rootFS) Stat(name string) (fi os.FileInfo, err error) {
	err = f.at(name, func(dir *os.Root, base string) (err error) {
		fi, err = dir.Stat(base)
		return err
	})
	return fi, err
}

func (f *rootFS) Lstat(name string) (fi os.FileInfo, err error) {
	err = f.at(name, func(dir *os.Root, base string) (err error) {
		fi, err = dir.Lstat(base)
		return err
	})
	return fi, err
}

func (f *rootFS) Readlink(name string) (target string, err error) {
	err = f.at(name, func(dir *os.Root, base string) (err error) {
		target, err = dir.Readlink(base)
		return err
	})
	return target, err
}

// ReadDir lists a directory. Each entry is stat'ed through the open
// directory: the standard library's DirEntry.Info would lstat by path name,
// through whatever the directory's ancestors have become since it was opened.
func (f *rootFS) ReadDir(name string) (infos []os.FileInfo, err error) {
	rel, err := clean(name)
	if err != nil {
		return nil, err
	}
	err = f.in(rel, rel, func(dir *os.Root) error {
		d, err := dir.Open(".")
		if err != nil {
			return err
		}
		names, err := d.Readdirnames(-1)
		_ = d.Close()
		if err != nil {
			return err
		}
		infos = make([]os.FileInfo, 0, len(names))
		for _, n := range names {
			if fi, err := dir.Lstat(n); err == nil { // else gone since the listing
				infos = append(infos, fi)
			}
		}
		return nil
	})
	return infos, err
}

func (f *rootFS) Chroot(name string) (billy.Filesystem, error) {
	rel, err := clean(name)
	if err != nil {
		return nil, err
	}
	sub, err := f.root.OpenRoot(rel)
	if err != nil {
		return nil, err
	}
	f.c.add(sub)
	return newRootFS(sub, filepath.Join(f.dir, filepath.FromSlash(rel)), f.limit, f.c).withPrefix(path.Join(f.prefix, rel)), nil
}

func (f *rootFS) withPrefix(p string) *rootFS { f.prefix = p; return f }

func (f *rootFS) Root() string               { return f.dir }
func (f *rootFS) Join(elem ...string) string { return path.Join(elem...) }
func (f *rootFS) Create(name string) (billy.File, error) {
	return nil, &fs.PathError{Op: "create", Path: name, Err: errReadOnly}
}
func (f *rootFS) Rename(from, _ string) error {
	return &fs.PathError{Op: "rename", Path: from, Err: errReadOnly}
}
func (f *rootFS) Remove(name string) error {
	return &fs.PathError{Op: "remove", Path: name, Err: errReadOnly}
}
func (f *rootFS) TempFile(dir, _ string) (billy.File, error) {
	return nil, &fs.PathError{Op: "create", Path: dir, Err: errReadOnly}
}
func (f *rootFS) MkdirAll(name string, _ os.FileMode) error {
	return &fs.PathError{Op: "mkdir", Path: name, Err: errReadOnly}
}
func (f *rootFS) Symlink(_, link string) error {
	return &fs.PathError{Op: "symlink", Path: link, Err: errReadOnly}
}

// rootFile is a read-only file whose reads stop at max bytes (0: no limit),
// so a file that grows after it was checked still cannot be read beyond it.
// It keeps *os.File's Stat, which go-git's pack index decoder uses to check
// the index's declared object count against its real size before allocating.
type rootFile struct {
	*os.File
	name string
	max  int64
	pos  int64 // the offset of Read, tracked to spare a seek per read
}

func (f *rootFile) Name() string { return f.name }

func (f *rootFile) Read(p []byte) (int, error) {
	if f.max > 0 {
		if f.pos >= f.max {
			var probe [1]byte
			if n, err := f.File.Read(probe[:]); n == 0 && err == io.EOF {
				return 0, io.EOF
			}
			return 0, fmt.Errorf("%s: grew over the %d bytes this runner reads of it", f.name, f.max)
		}
		p = p[:min(int64(len(p)), f.max-f.pos)]
	}
	n, err := f.File.Read(p)
	f.pos += int64(n)
	return n, err
}

func (f *rootFile) Seek(offset int64, whence int) (int64, error) {
	pos, err := f.File.Seek(offset, whence)
	if err == nil {
		f.pos = pos
	}
	return pos, err
}

func (f *rootFile) ReadAt(p []byte, off int64) (int, error) {
	if f.max > 0 && off+int64(len(p)) > f.max {
		if off >= f.max {
			return 0, fmt.Errorf("%s: grew over the %d bytes this runner reads of it", f.name, f.max)
		}
		n, err := f.File.ReadAt(p[:f.max-off], off)
		if err == nil {
			err = io.EOF
		}
		return n, err
	}
	return f.File.ReadAt(p, off)
}

func (f *rootFile) Write([]byte) (int, error) {
	return 0, &fs.PathError{Op: "write", Path: f.name, Err: errReadOnly}
}
func (f *rootFile) Truncate(int64) error {
	return &fs.PathError{Op: "truncate", Path: f.name, Err: errReadOnly}
}
func (f *rootFile) Lock() error   { return nil }
func (f *rootFile) Unlock() error { return nil }

// noAlternates is given to go-git as the filesystem for
// objects/info/alternates: objects are only ever read from the workspace's
// own .git, never from another object store the file names.
type noAlternates struct{ *rootFS }

func (noAlternates) Stat(name string) (os.FileInfo, error) {
	return nil, &fs.PathError{Op: "stat", Path: name, Err: errors.New("alternate object stores are not read")}
}

func (noAlternates) Chroot(name string) (billy.Filesystem, error) {
	return nil, &fs.PathError{Op: "chroot", Path: name, Err: errors.New("alternate object stores are not read")}
}
