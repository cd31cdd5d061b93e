package workspace

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync/atomic"
)

// Entry is a file, directory or symlink met during a walk.
type Entry struct {
	// Path is slash-separated and relative to the workspace root.
	Path string
	// Type holds the type bits only; symlinks are reported, never followed.
	Type fs.FileMode

	node *dirNode
	name string
}

// Info stats the entry without following a symlink. Valid only inside the
// callback that received the entry.
func (e Entry) Info() (fs.FileInfo, error) { return e.node.root.Lstat(e.name) }

// WalkOptions tunes a walk.
type WalkOptions struct {
	// IncludeIgnored also visits what .gitignore excludes. .git is never visited.
	IncludeIgnored bool
}

// dirNode is one open directory of a walk. Directories are opened relative to
// their parent's handle with os.Root, so a directory swapped for a symlink
// mid-walk cannot lead outside, and each file open is a single openat.
// refs counts the walker plus in-flight file jobs; the last one closes it.
type dirNode struct {
	root     *os.Root
	path     string
	comps    []string
	patterns []ignoreRule
	refs     atomic.Int32
}

func (n *dirNode) release() {
	if n.refs.Add(-1) == 0 {
		_ = n.root.Close()
	}
}

// Walk visits every entry under start depth-first in lexical order, calling fn
// sequentially. fn returning fs.SkipDir for a directory skips its contents;
// fs.SkipAll stops the walk without error.
func (r *Root) Walk(ctx context.Context, start string, opts WalkOptions, fn func(Entry) error) error {
	n, rel, fi, err := r.startNode(start, opts)
	if err != nil {
		return err
	}
	if n == nil {
		return ignoreSkipAll(fn(Entry{Path: rel, Type: fi.Mode().Type(), node: &dirNode{root: r.root}, name: rel}))
	}
	defer n.release()
	err = r.walkDir(ctx, n, opts, func(e Entry) (bool, error) {
		err := fn(e)
		if errors.Is(err, fs.SkipDir) {
			return false, nil
		}
		return true, err
	})
	return ignoreSkipAll(err)
}

func ignoreSkipAll(err error) error {
	if errors.Is(err, fs.SkipAll) {
		return nil
	}
	return err
}

// startNode opens start. For a directory it returns a node carrying the ignore
// patterns of its ancestors; for anything else, node is nil and fi describes it.
// A start path given explicitly is walked even if .gitignore excludes it, as
// ripgrep does.
func (r *Root) startNode(start string, opts WalkOptions) (*dirNode, string, fs.FileInfo, error) {
	rel, err := r.Rel(start)
	if err != nil {
		return nil, "", nil, err
	}
	fi, err := r.root.Stat(rel)
	if err != nil {
		return nil, rel, nil, r.explain(rel, err)
	}
	if !fi.IsDir() {
		return nil, rel, fi, nil
	}
	sub, err := r.root.OpenRoot(rel)
	if err != nil {
		return nil, rel, nil, r.explain(rel, err)
	}
	n := &dirNode{root: sub, path: rel}
	if rel != "." {
		n.comps = strings.Split(rel, "/")
	} else {
		n.path = ""
	}
	if !opts.IncludeIgnored {
		if data, err := readIgnoreFile(r.root, ".git/info/exclude"); err == nil {
			n.patterns = append(n.patterns, parseIgnore(data, nil)...)
		}
		for i := range n.comps {
			dir := strings.Join(n.comps[:i], "/")
			if dir == "" {
				dir = "."
			}
			if data, err := readIgnoreFile(r.root, path.Join(dir, ".gitignore")); err == nil {
				n.patterns = append(n.patterns, parseIgnore(data, n.comps[:i])...)
			}
		}
		// An ignored directory named explicitly is searched: its ancestors'
		// rules would otherwise exclude everything inside it.
		if len(n.comps) > 0 && ignored(n.patterns, n.comps, true) {
			n.patterns = nil
		}
	}
	n.refs.Store(1)
	return n, rel, fi, nil
}

func (r *Root) walkDir(ctx context.Context, n *dirNode, opts WalkOptions, visit func(Entry) (bool, error)) error {
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	d, err := n.root.Open(".")
	if err != nil {
		return nil //nolint:nilerr // unreadable directories are skipped, as ripgrep does
	}
	ents, err := d.ReadDir(-1)
	_ = d.Close()
	if err != nil && len(ents) == 0 {
		return nil
	}
	sortEntries(ents)
	patterns := n.patterns
	if !opts.IncludeIgnored {
		for _, e := range ents {
			if e.Name() == ".gitignore" && e.Type().IsRegular() {
				if data, err := readIgnoreFile(n.root, ".gitignore"); err == nil {
					patterns = append(slices.Clip(patterns), parseIgnore(data, n.comps)...)
				}
				break
			}
		}
	}
	for _, e := range ents {
		name := e.Name()
		if name == ".git" {
			continue
		}
		t := e.Type()
		var comps []string
		if len(patterns) > 0 || len(r.hidden) > 0 || t.IsDir() {
			comps = make([]string, len(n.comps)+1)
			copy(comps, n.comps)
			comps[len(n.comps)] = name
			if len(patterns) > 0 && ignored(patterns, comps, t.IsDir()) || ignored(r.hidden, comps, t.IsDir()) {
				continue
			}
		}
		p := name
		if n.path != "" {
			p = n.path + "/" + name
		}
		descend, err := visit(Entry{Path: p, Type: t, node: n, name: name})
		if err != nil {
			return err
		}
		if !t.IsDir() || !descend {
			continue
		}
		sub, err := n.root.OpenRoot(name)
		if err != nil {
			continue
		}
		child := &dirNode{root: sub, path: p, comps: comps, patterns: patterns}
		child.refs.Store(1)
		err = r.walkDir(ctx, child, opts, visit)
		child.release()
		if err != nil {
			return err
		}
	}
	return nil
}

// maxIgnoreFileBytes bounds what one ignore file may cost: the agent writes them, and every
// walk reads them.
const maxIgnoreFileBytes = 1 << 20

// readIgnoreFile reads an ignore file up to maxIgnoreFileBytes; the rest of a larger one
// is not read (its first megabyte of rules still applies).
func readIgnoreFile(root *os.Root, name string) ([]byte, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fs.ErrInvalid // a FIFO or device must not block or stream forever
	}
	return io.ReadAll(io.LimitReader(f, maxIgnoreFileBytes))
}
