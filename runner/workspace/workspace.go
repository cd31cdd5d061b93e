// Package workspace confines every file operation the model can trigger to one
// directory. Paths are checked lexically first (absolute paths outside the
// workspace, "..") and then resolved through os.Root, which refuses to follow a
// symlink that leads outside, including symlinks created after the check (by the
// bash tool, for example).
package workspace

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// ErrOutside is wrapped by every error caused by a path that leaves the workspace.
var ErrOutside = errors.New("path is outside the workspace")

// ErrGitDir is returned for writes into .git: the patch is the session's output,
// and hooks or config written there would run outside the model's sandbox later.
var ErrGitDir = errors.New("writing inside .git is not allowed")

// Root is an open workspace directory.
type Root struct {
	dir  string
	root *os.Root
}

// Open opens dir as a workspace. The directory must exist.
func Open(dir string) (*Root, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolving workspace %s: %w", dir, err)
	}
	// Resolve the workspace's own symlinks (e.g. /tmp -> /private/tmp) once so
	// absolute paths the model copies from tool output compare equal.
	if resolved, err := filepath.EvalSymlinks(abs); err == nil {
		abs = resolved
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("opening workspace: %w", err)
	}
	return &Root{dir: abs, root: root}, nil
}

// Dir is the absolute path of the workspace.
func (r *Root) Dir() string { return r.dir }

// Close releases the directory handle.
func (r *Root) Close() error { return r.root.Close() }

// Rel turns a path from the model into a clean, slash-separated path relative
// to the workspace root. "" and "/" style absolute paths inside the workspace
// are accepted because models copy them from earlier output; everything that
// lexically leaves the workspace is refused here, before touching the disk.
func (r *Root) Rel(p string) (string, error) {
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("%q: %w: path contains a NUL byte", p, ErrOutside)
	}
	if p == "" || p == "." {
		return ".", nil
	}
	orig := p
	if filepath.IsAbs(p) {
		rel, err := filepath.Rel(r.dir, filepath.Clean(p))
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			return "", fmt.Errorf("%s: %w (%s); use a path relative to the workspace root", orig, ErrOutside, r.dir)
		}
		p = rel
	}
	p = filepath.ToSlash(filepath.Clean(p))
	if p == "." {
		return ".", nil
	}
	if !filepath.IsLocal(p) {
		return "", fmt.Errorf("%s: %w; use a path relative to the workspace root without \"..\"", orig, ErrOutside)
	}
	return p, nil
}

// explain rewrites os.Root's errors into text a model can act on, keeping the
// original error wrapped.
func (r *Root) explain(rel string, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case isEscape(err):
		return fmt.Errorf("%s: %w: it goes through a symlink that points outside the workspace", rel, ErrOutside)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: no such file or directory: %w", rel, fs.ErrNotExist)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s: permission denied: %w", rel, fs.ErrPermission)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", rel, pe.Err)
	}
	return fmt.Errorf("%s: %w", rel, err)
}

// isEscape recognises os.Root's refusal. The sentinel is unexported in the
// standard library, so the message is the only stable signal; ELOOP is what
// the kernel returns for O_NOFOLLOW on a symlink, which os.Root surfaces for
// some symlink chains.
func isEscape(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "path escapes from parent") ||
		strings.Contains(err.Error(), "too many levels of symbolic links"))
}

// Open opens a file for reading.
func (r *Root) Open(p string) (*os.File, string, error) {
	rel, err := r.Rel(p)
	if err != nil {
		return nil, "", err
	}
	f, err := r.root.Open(rel)
	if err != nil {
		return nil, rel, r.explain(rel, err)
	}
	return f, rel, nil
}

// Stat follows symlinks inside the workspace.
func (r *Root) Stat(p string) (fs.FileInfo, string, error) {
	rel, err := r.Rel(p)
	if err != nil {
		return nil, "", err
	}
	fi, err := r.root.Stat(rel)
	return fi, rel, r.explain(rel, err)
}

// ReadFile reads a whole file.
func (r *Root) ReadFile(p string) ([]byte, error) {
	rel, err := r.Rel(p)
	if err != nil {
		return nil, err
	}
	b, err := r.root.ReadFile(rel)
	return b, r.explain(rel, err)
}

// ReadDir lists a directory, sorted by name.
func (r *Root) ReadDir(p string) ([]fs.DirEntry, string, error) {
	rel, err := r.Rel(p)
	if err != nil {
		return nil, "", err
	}
	f, err := r.root.Open(rel)
	if err != nil {
		return nil, rel, r.explain(rel, err)
	}
	defer f.Close()
	ents, err := f.ReadDir(-1)
	if err != nil {
		return nil, rel, r.explain(rel, err)
	}
	sortEntries(ents)
	return ents, rel, nil
}

// WriteFile replaces a file's content atomically (write to a temporary file in
// the same directory, then rename), creating parent directories. An existing
// file keeps its permission bits.
func (r *Root) WriteFile(p string, data []byte) (string, error) {
	rel, err := r.Rel(p)
	if err != nil {
		return "", err
	}
	if rel == "." {
		return rel, fmt.Errorf("%s: is the workspace root, not a file", p)
	}
	if first, _, _ := strings.Cut(rel, "/"); first == ".git" {
		return rel, fmt.Errorf("%s: %w", rel, ErrGitDir)
	}
	perm := fs.FileMode(0o644)
	if fi, err := r.root.Stat(rel); err == nil {
		if fi.IsDir() {
			return rel, fmt.Errorf("%s: is a directory", rel)
		}
		perm = fi.Mode().Perm()
	} else if isEscape(err) {
		return rel, r.explain(rel, err)
	}
	if dir := path.Dir(rel); dir != "." {
		if err := r.root.MkdirAll(dir, 0o755); err != nil {
			return rel, r.explain(dir, err)
		}
	}
	// If rel is a symlink inside the workspace, write through to its target so
	// the link survives, as editors do.
	target := rel
	if fi, err := r.root.Lstat(rel); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		if t, err := r.resolveLink(rel); err == nil {
			target = t
		} else {
			return rel, err
		}
	}
	tmp := path.Join(path.Dir(target), "."+path.Base(target)+".agentry-tmp")
	f, err := r.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return rel, r.explain(rel, err)
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = r.root.Remove(tmp)
		return rel, r.explain(rel, err)
	}
	if err := r.root.Chmod(tmp, perm); err != nil {
		_ = r.root.Remove(tmp)
		return rel, r.explain(rel, err)
	}
	if err := r.root.Rename(tmp, target); err != nil {
		_ = r.root.Remove(tmp)
		return rel, r.explain(rel, err)
	}
	return rel, nil
}

// resolveLink follows a chain of symlinks lexically, refusing any step that
// leaves the workspace. It is only used to pick the rename target for writes;
// the write itself still goes through os.Root.
func (r *Root) resolveLink(rel string) (string, error) {
	cur := rel
	for range 40 {
		fi, err := r.root.Lstat(cur)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			return cur, nil
		}
		t, err := r.root.Readlink(cur)
		if err != nil {
			return "", r.explain(rel, err)
		}
		if path.IsAbs(t) {
			return "", fmt.Errorf("%s: %w: it is a symlink to %s", rel, ErrOutside, t)
		}
		next := path.Join(path.Dir(cur), t)
		if !filepath.IsLocal(next) {
			return "", fmt.Errorf("%s: %w: it is a symlink to %s", rel, ErrOutside, t)
		}
		cur = next
	}
	return "", fmt.Errorf("%s: too many levels of symbolic links", rel)
}

// Readlink returns a symlink's target as stored (it may point anywhere; only
// following it is confined).
func (r *Root) Readlink(p string) (string, error) {
	rel, err := r.Rel(p)
	if err != nil {
		return "", err
	}
	t, err := r.root.Readlink(rel)
	return t, r.explain(rel, err)
}

// Abs returns the host path for a workspace-relative path, for tools (bash,
// git) that run outside os.Root and accept the workspace as their directory.
func (r *Root) Abs(rel string) string { return filepath.Join(r.dir, filepath.FromSlash(rel)) }

// sortEntries orders a listing by name: File.ReadDir, unlike os.ReadDir,
// returns directory order, and tool output must be stable across runs.
func sortEntries(ents []fs.DirEntry) {
	slices.SortFunc(ents, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
}
