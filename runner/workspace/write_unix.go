//go:build unix

package workspace

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// fileID identifies a directory independently of its name.
type fileID struct{ dev, ino uint64 }

func identity(fi fs.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	// The field types differ between platforms, hence the conversions.
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, true //nolint:unconvert // Dev and Ino are narrower on some Unixes
}

// writeAt writes data to target, a path resolve returned, following no
// symlink at all: each directory is created if missing and opened relative
// to its parent's descriptor with O_NOFOLLOW, starting from the workspace's
// own descriptor. A component swapped for a symlink since the checks makes
// the open fail rather than lead anywhere, and a directory that is one of
// the git directories (compared by identity, so a rename cannot disguise it)
// is refused on the way.
func (r *Root) writeAt(rel, target string, guard gitGuard, data []byte) error {
	rootDir, err := r.root.Open(".")
	if err != nil {
		return r.explain(rel, err)
	}
	defer rootDir.Close()
	rootFD := int(rootDir.Fd())
	fd := rootFD
	defer func() {
		if fd != rootFD {
			_ = unix.Close(fd)
		}
	}()

	dir, base := path.Split(target)
	for c := range strings.SplitSeq(strings.TrimSuffix(dir, "/"), "/") {
		if c == "" {
			continue
		}
		if IsGitName(c) {
			return gitRefusal(rel, target, c)
		}
		if err := unix.Mkdirat(fd, c, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			return r.explain(rel, err)
		}
		next, err := openNoFollow(fd, c, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return r.explainAt(rel, fd, c, err)
		}
		if fd != rootFD {
			_ = unix.Close(fd)
		}
		fd = next
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return r.explain(rel, err)
		}
		if slices.Contains(guard.ids, fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}) { //nolint:unconvert // Dev and Ino are narrower on some Unixes
			return gitRefusal(rel, target, c)
		}
	}

	perm := uint32(0o644)
	var st unix.Stat_t
	switch err := unix.Fstatat(fd, base, &st, unix.AT_SYMLINK_NOFOLLOW); {
	case errors.Is(err, unix.ENOENT):
	case err != nil:
		return r.explain(rel, err)
	case st.Mode&unix.S_IFMT == unix.S_IFDIR:
		return fmt.Errorf("%s: is a directory", display(rel))
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return raced(rel, target)
	default:
		perm = uint32(st.Mode) & 0o777 //nolint:unconvert // Mode is uint16 on some Unixes
	}

	tmp := "." + base + ".agentry-tmp"
	_ = unix.Unlinkat(fd, tmp, 0) // a leftover of an interrupted write
	tfd, err := openNoFollow(fd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, perm)
	if err != nil {
		return r.explain(rel, err)
	}
	f := os.NewFile(uintptr(tfd), tmp)
	_, werr := f.Write(data)
	merr := f.Chmod(fs.FileMode(perm)) // the umask must not narrow an existing file's bits
	cerr := f.Close()
	if err := errors.Join(werr, merr, cerr); err != nil {
		_ = unix.Unlinkat(fd, tmp, 0)
		return r.explain(rel, err)
	}
	if err := unix.Renameat(fd, tmp, fd, base); err != nil {
		_ = unix.Unlinkat(fd, tmp, 0)
		return r.explain(rel, err)
	}
	return nil
}

// explainAt describes a failed directory open: a symlink where resolve saw a
// directory means the path changed under the write.
func (r *Root) explainAt(rel string, dirfd int, name string, err error) error {
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		var st unix.Stat_t
		if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return raced(rel, name)
		}
	}
	return r.explain(rel, err)
}

func raced(rel, name string) error {
	return fmt.Errorf("%s: %s became a symlink while the file was being written; nothing was written, check the path and try again",
		display(rel), display(name))
}

func openNoFollow(dirfd int, name string, flags int, perm uint32) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}
