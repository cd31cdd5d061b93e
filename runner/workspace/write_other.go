//go:build !unix

package workspace

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
)

// fileID is unused off Unix: the write goes through os.Root, which has no
// way to compare a directory it opens with the git directory.
type fileID struct{}

func identity(fs.FileInfo) (fileID, bool) { return fileID{}, false }

// writeAt writes data to target, a path resolve returned, through os.Root.
// Without openat-style calls there is no open-time check: a component
// swapped for a symlink inside the workspace after the checks is followed.
func (r *Root) writeAt(rel, target string, _ gitGuard, data []byte) error {
	perm := fs.FileMode(0o644)
	if fi, err := r.root.Stat(target); err == nil {
		if fi.IsDir() {
			return fmt.Errorf("%s: is a directory", display(rel))
		}
		perm = fi.Mode().Perm()
	} else if !errors.Is(err, fs.ErrNotExist) {
		return r.explain(rel, err)
	}
	if dir := path.Dir(target); dir != "." {
		if err := r.root.MkdirAll(dir, 0o755); err != nil {
			return r.explain(dir, err)
		}
	}
	tmp := path.Join(path.Dir(target), "."+path.Base(target)+".agentry-tmp")
	f, err := r.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return r.explain(rel, err)
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = r.root.Remove(tmp)
		return r.explain(rel, err)
	}
	if err := r.root.Chmod(tmp, perm); err != nil {
		_ = r.root.Remove(tmp)
		return r.explain(rel, err)
	}
	if err := r.root.Rename(tmp, target); err != nil {
		_ = r.root.Remove(tmp)
		return r.explain(rel, err)
	}
	return nil
}
