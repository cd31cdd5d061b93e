package workspace

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"strings"
)

// WriteFile replaces a file's content atomically (write to a temporary file in
// the same directory, then rename), creating parent directories. An existing
// file keeps its permission bits. If p is a symlink inside the workspace, its
// target is written and the link survives, as editors do.
//
// Nothing is written into git's metadata. The check is made on the path p
// resolves to, so it holds whatever spelling or symlinks lead there:
//   - no component of p, nor of the resolved path, may be a name some file
//     system takes for ".git" (".git", ".GIT", ".git.", "git~1", ...; see
//     IsGitName), which also covers a nested repository's sub/.git and a
//     .git that is a file;
//   - the resolved path may not lie in the directory the workspace's .git
//     links to or names in a "gitdir:" line (nor in its "commondir");
//   - on Unix the write itself follows no symlink (each directory is opened
//     with O_NOFOLLOW below the workspace's descriptor) and refuses a
//     directory that is the git directory by device and inode, so swapping
//     a component after the check (from a concurrent command) cannot redirect
//     it.
func (r *Root) WriteFile(p string, data []byte) (string, error) {
	rel, err := r.Rel(p)
	if err != nil {
		return "", err
	}
	if rel == "." {
		return rel, fmt.Errorf("%s: is the workspace root, not a file", display(p))
	}
	target, guard, err := r.writeTarget(rel)
	if err != nil {
		return rel, err
	}
	if testHookBeforeWrite != nil {
		testHookBeforeWrite()
	}
	return rel, r.writeAt(rel, target, guard, data)
}

// testHookBeforeWrite runs between WriteFile's checks and its write; tests
// swap path components there to play the race a concurrent command could.
var testHookBeforeWrite func()

// gitGuard describes the repository's git directories for one write.
type gitGuard struct {
	// dirs are resolved workspace paths of git directories not named .git.
	dirs []string
	// ids identify the git directories themselves (Unix: device and inode),
	// taken before the write so a directory renamed into place is recognised.
	ids []fileID
}

// writeTarget checks rel for a write and returns the path it resolves to.
func (r *Root) writeTarget(rel string) (string, gitGuard, error) {
	if c := gitComponent(rel); c != "" {
		return "", gitGuard{}, gitRefusal(rel, "", c)
	}
	guard := r.gitGuard()
	target, err := r.resolve(rel)
	if err != nil {
		return "", guard, err
	}
	if target == "." {
		return "", guard, fmt.Errorf("%s: is a directory (it is a symlink to the workspace root)", display(rel))
	}
	if c := gitComponent(target); c != "" {
		return "", guard, gitRefusal(rel, target, c)
	}
	for _, d := range guard.dirs {
		if d == "." || hasDirPrefix(target, d) {
			return "", guard, gitRefusal(rel, target, d)
		}
	}
	return target, guard, nil
}

// hasDirPrefix reports whether p is dir or lies below it, ignoring case, as
// a case-insensitive checkout would.
func hasDirPrefix(p, dir string) bool {
	return strings.EqualFold(p, dir) ||
		(len(p) > len(dir) && p[len(dir)] == '/' && strings.EqualFold(p[:len(dir)], dir))
}

// gitRefusal explains a refused write to the model. rel is the path it
// asked for, target what that resolves to ("" when rel itself is refused),
// and what the offending component or git directory.
func gitRefusal(rel, target, what string) error {
	var via, alias string
	if target != "" && target != rel {
		via = fmt.Sprintf(": it resolves to %s through a symlink", display(target))
	}
	if what == "." {
		alias = " (the workspace itself is this repository's git directory)"
	} else if what != ".git" && IsGitName(what) {
		alias = fmt.Sprintf(" (%s counts as .git: some file systems treat it as the same name)", display(what))
	} else if what != ".git" {
		alias = fmt.Sprintf(" (%s is this repository's git directory)", display(what))
	}
	return fmt.Errorf("%s: %w%s%s. Git's metadata (hooks, config) is not part of the project; change files of the working tree instead",
		display(rel), ErrGitDir, alias, via)
}

// gitComponent returns the first component of the slash-separated path p
// that IsGitName accepts, or "".
func gitComponent(p string) string {
	for c := range strings.SplitSeq(p, "/") {
		if IsGitName(c) {
			return c
		}
	}
	return ""
}

// IsGitName reports whether a path component is ".git" or a name some file
// system or checkout may take for it, following git's own verify_path rules
// (core.protectNTFS, core.protectHFS): any case (".GIT"), trailing dots or
// spaces (".git." on Windows), an NTFS stream suffix (".git::$INDEX_ALLOCATION"),
// the 8.3 short name "git~1", and characters HFS+ ignores (".g\u200cit").
// On the Linux file systems the runner uses these are different names, but a
// project never needs them and they are only ever an attempt at .git.
func IsGitName(c string) bool {
	if len(c) < 4 {
		return false
	}
	c = strings.Map(func(r rune) rune {
		if hfsIgnorable(r) {
			return -1
		}
		return r
	}, c)
	if i := strings.IndexByte(c, ':'); i >= 0 {
		c = c[:i]
	}
	c = strings.TrimRight(c, ". ")
	return strings.EqualFold(c, ".git") || strings.EqualFold(c, "git~1")
}

// hfsIgnorable lists the code points HFS+ drops when comparing names (git's
// is_hfs_dotgit uses the same list).
func hfsIgnorable(r rune) bool {
	switch {
	case r >= 0x200c && r <= 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x206a && r <= 0x206f, r == 0xfeff:
		return true
	}
	return false
}

// maxLinks is Linux's limit on symlinks followed while resolving one path.
const maxLinks = 40

// resolve returns the path rel names inside the workspace with every
// symlink on the way replaced by its target, the last component included, as
// the kernel or os.Root would follow them. Targets that are absolute or climb
// out of the workspace are refused, as os.Root refuses them. Components that
// do not exist are kept as they are: a write creates them.
func (r *Root) resolve(rel string) (string, error) {
	pending := strings.Split(rel, "/")
	var done []string
	links, missing := 0, false
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if missing {
				// The kernel cannot go up from a directory that does not exist.
				return "", fmt.Errorf("%s: no such file or directory: %w", display(rel), fs.ErrNotExist)
			}
			if len(done) == 0 {
				return "", fmt.Errorf("%s: %w: it goes through a symlink that points outside the workspace", display(rel), ErrOutside)
			}
			done = done[:len(done)-1]
			continue
		}
		done = append(done, c)
		if missing {
			continue
		}
		cur := strings.Join(done, "/")
		fi, err := r.root.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			missing = true
			continue
		}
		if err != nil {
			return "", r.explain(cur, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("%s: too many levels of symbolic links", display(rel))
		}
		t, err := r.root.Readlink(cur)
		if err != nil {
			return "", r.explain(cur, err)
		}
		if t == "" || path.IsAbs(t) || filepath.IsAbs(t) {
			return "", fmt.Errorf("%s: %w: %s is a symlink to %s", display(rel), ErrOutside, display(cur), display(t))
		}
		done = done[:len(done)-1]
		pending = append(strings.Split(filepath.ToSlash(t), "/"), pending...)
	}
	if len(done) == 0 {
		return ".", nil
	}
	return strings.Join(done, "/"), nil
}

// gitGuard finds the workspace repository's git directories that a name
// check alone would miss: the target of a .git symlink, the directory a .git
// file names ("gitdir: ..." in a worktree or submodule checkout) and its
// "commondir". Those outside the workspace are os.Root's business.
func (r *Root) gitGuard() gitGuard {
	var g gitGuard
	gitDir := ".git"
	if fi, err := r.root.Lstat(".git"); err == nil && fi.Mode().IsRegular() {
		gitDir = r.pointer(".git", ".", "gitdir:")
	}
	var dirs []string
	if gitDir != "" {
		if d, err := r.resolve(gitDir); err == nil {
			dirs = append(dirs, d)
			if common := r.pointer(path.Join(d, "commondir"), d, ""); common != "" {
				if c, err := r.resolve(common); err == nil {
					dirs = append(dirs, c)
				}
			}
		}
	}
	for _, d := range append(dirs, ".git") {
		if d != ".git" { // "." when the workspace is itself the git directory
			g.dirs = append(g.dirs, d)
		}
		if fi, err := r.root.Stat(d); err == nil && fi.IsDir() {
			if id, ok := identity(fi); ok {
				g.ids = append(g.ids, id)
			}
		}
	}
	return g
}

// pointer reads the first line of a small file such as .git ("gitdir: X")
// or commondir ("X") and returns the workspace path it names, relative paths
// being taken from base; "" when it names nothing inside the workspace.
func (r *Root) pointer(file, base, prefix string) string {
	f, err := r.root.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, 4<<10))
	line, _, _ := strings.Cut(string(b), "\n")
	v, ok := strings.CutPrefix(strings.TrimSpace(line), prefix)
	v = strings.TrimSpace(v)
	if !ok || v == "" {
		return ""
	}
	if filepath.IsAbs(v) {
		rel, err := filepath.Rel(r.dir, filepath.Clean(v))
		if err != nil {
			return ""
		}
		v = rel
	} else {
		v = filepath.Join(filepath.FromSlash(base), v)
	}
	if v != "." && !filepath.IsLocal(v) {
		return ""
	}
	return filepath.ToSlash(v)
}
