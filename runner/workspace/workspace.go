// Package workspace confines every file operation the model can trigger to one
// directory. Paths are checked lexically first (absolute paths outside the
// workspace, "..") and then resolved through os.Root, which refuses to follow a
// symlink that leads outside, including symlinks created after the check (by the
// bash tool, for example).
//
// Writes are also kept out of the repository's git metadata, judged by the
// path they resolve to (see WriteFile). Reads of .git are allowed: read_file
// on .git/config or .git/HEAD is harmless and sometimes useful; walks (grep,
// glob) skip .git as noise.
//
// Every path shown in an error goes through display, so a name holding
// control characters (a NUL, an escape sequence, a newline forging a line of
// output) is shown escaped, never raw.
package workspace

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrOutside is wrapped by every error caused by a path that leaves the workspace.
var ErrOutside = errors.New("path is outside the workspace")

// ErrGitDir is wrapped by every error refusing a write into git's metadata:
// hooks or config written there would run code the next time any git
// command runs (core.fsmonitor, core.hooksPath, a pre-commit hook), outside
// whatever approval the model's own commands need.
var ErrGitDir = errors.New("writing inside .git is not allowed")

// ErrHidden is wrapped by every error refusing a path .agentryignore hides.
var ErrHidden = errors.New("path is hidden from the file tools by .agentryignore")

// AgentryIgnoreFile is the workspace-root file (gitignore syntax) whose patterns hide paths
// from the file tools in addition to .gitignore: never listed, searched, read or written,
// even when the model asks for ignored files. It narrows what the agent looks at (vendored
// trees, generated data, fixtures with fake secrets); it is not a security boundary, since
// commands the agent runs can still read every file.
const AgentryIgnoreFile = ".agentryignore"

// Root is an open workspace directory.
type Root struct {
	dir  string
	root *os.Root
	// hidden are the .agentryignore rules, read once by Hide.
	hidden []ignoreRule
}

// HideAgentryIgnored reads .agentryignore at the workspace root, once: later changes to the
// file (by the agent) do not change what is hidden. It returns the patterns in effect.
func (r *Root) HideAgentryIgnored() ([]string, error) {
	data, err := readIgnoreFile(r.root, AgentryIgnoreFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", AgentryIgnoreFile, err)
	}
	r.hidden = parseIgnore(data, nil)
	var patterns []string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
		}
	}
	return patterns, nil
}

// isHidden reports whether .agentryignore hides rel or one of its parent directories.
func (r *Root) isHidden(rel string) bool {
	if len(r.hidden) == 0 || rel == "." {
		return false
	}
	comps := strings.Split(rel, "/")
	for i := 1; i < len(comps); i++ {
		if ignored(r.hidden, comps[:i], true) {
			return true
		}
	}
	// Whether the last component is a directory is not known without a stat; a
	// directory-only pattern hides a file of that name too.
	return ignored(r.hidden, comps, false) || ignored(r.hidden, comps, true)
}

// Open opens dir as a workspace. The directory must exist.
func Open(dir string) (*Root, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolving workspace %s: %w", display(dir), err)
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
		return "", fmt.Errorf("%s: %w: path contains a NUL byte", display(p), ErrOutside)
	}
	if p == "" || p == "." {
		return ".", nil
	}
	orig := p
	if filepath.IsAbs(p) {
		rel, err := filepath.Rel(r.dir, filepath.Clean(p))
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			return "", fmt.Errorf("%s: %w (%s); use a path relative to the workspace root", display(orig), ErrOutside, display(r.dir))
		}
		p = rel
	}
	p = filepath.ToSlash(filepath.Clean(p))
	if p == "." {
		return ".", nil
	}
	if !filepath.IsLocal(p) {
		return "", fmt.Errorf("%s: %w; use a path relative to the workspace root without \"..\"", display(orig), ErrOutside)
	}
	if r.isHidden(p) {
		return "", fmt.Errorf("%s: %w", display(orig), ErrHidden)
	}
	return p, nil
}

// explain rewrites os.Root's errors into text a model can act on, keeping the
// original error wrapped.
func (r *Root) explain(rel string, err error) error {
	if err == nil {
		return nil
	}
	shown := display(rel)
	switch {
	case isEscape(err):
		return fmt.Errorf("%s: %w: it goes through a symlink that points outside the workspace", shown, ErrOutside)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: no such file or directory: %w", shown, fs.ErrNotExist)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s: permission denied: %w", shown, fs.ErrPermission)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", shown, pe.Err)
	}
	return fmt.Errorf("%s: %w", shown, err)
}

// display returns a path as an error may show it: unchanged when it is
// printable UTF-8, otherwise quoted with Go escapes (a NUL byte as \x00), so
// a hostile name can neither hide part of itself nor forge text in what the
// model, a log or a person reads.
func display(p string) string {
	if utf8.ValidString(p) && !strings.ContainsFunc(p, func(c rune) bool { return !strconv.IsPrint(c) }) {
		return p
	}
	return strconv.Quote(p)
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
