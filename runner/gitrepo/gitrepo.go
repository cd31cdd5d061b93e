// Package gitrepo clones the session's repository and computes what the session
// changed, in pure Go (go-git) so neither the runner image nor a laptop needs a
// git binary for the runner's own bookkeeping.
package gitrepo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	"github.com/go-git/go-git/v5/plumbing/transport/server"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// ErrNotRepository is returned when the workspace has no .git.
var ErrNotRepository = errors.New("workspace is not a git repository")

var installLocal sync.Once

// localLoader serves local repositories (bare or with a worktree) to go-git's
// in-process server, so cloning a directory does not shell out to
// git-upload-pack as go-git's default file transport does.
type localLoader struct{}

func (localLoader) Load(ep *transport.Endpoint) (storer.Storer, error) {
	dir := ep.Path
	if fi, err := os.Stat(filepath.Join(dir, ".git")); err == nil && fi.IsDir() {
		dir = filepath.Join(dir, ".git")
	} else if _, err := os.Stat(filepath.Join(dir, "HEAD")); err != nil {
		return nil, transport.ErrRepositoryNotFound
	}
	return filesystem.NewStorage(osfs.New(dir), cache.NewObjectLRUDefault()), nil
}

// Clone clones url (a remote URL or a local directory) into dir, which must be
// empty or absent, and checks out ref: a branch, a tag or a commit; "" means
// the remote's default branch. It returns the checked-out commit.
func Clone(ctx context.Context, url, ref, dir string, progress io.Writer) (string, error) {
	return CloneWithAuth(ctx, url, ref, dir, nil, progress)
}

// CloneWithAuth is Clone with credentials for the remote (nil for none).
func CloneWithAuth(ctx context.Context, url, ref, dir string, auth transport.AuthMethod, progress io.Writer) (string, error) {
	installLocal.Do(func() { client.InstallProtocol("file", server.NewClient(localLoader{})) })
	if fi, err := os.Stat(url); err == nil && fi.IsDir() {
		abs, err := filepath.Abs(url)
		if err != nil {
			return "", fmt.Errorf("resolving %s: %w", url, err)
		}
		url = abs
	}
	repo, err := git.PlainCloneContext(ctx, dir, false, &git.CloneOptions{URL: url, Auth: auth, Progress: progress, Tags: git.AllTags})
	if err != nil {
		return "", fmt.Errorf("cloning %s: %w", url, err)
	}
	if ref == "" {
		head, err := repo.Head()
		if err != nil {
			return "", fmt.Errorf("reading HEAD of %s: %w", url, err)
		}
		return head.Hash().String(), nil
	}
	hash, err := resolve(repo, ref)
	if err != nil {
		return "", fmt.Errorf("ref %q in %s: %w", ref, url, err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return "", fmt.Errorf("opening worktree: %w", err)
	}
	opts := &git.CheckoutOptions{Hash: hash, Force: true}
	// A branch name becomes a local branch, so the model's git commands see
	// a normal checkout rather than a detached HEAD.
	if _, err := repo.Reference(plumbing.NewRemoteReferenceName("origin", ref), true); err == nil {
		opts = &git.CheckoutOptions{Hash: hash, Branch: plumbing.NewBranchReferenceName(ref), Create: true, Force: true}
		if _, err := repo.Reference(plumbing.NewBranchReferenceName(ref), true); err == nil {
			opts.Create = false
			opts.Hash = plumbing.ZeroHash
			if err := repo.Storer.SetReference(plumbing.NewHashReference(plumbing.NewBranchReferenceName(ref), hash)); err != nil {
				return "", fmt.Errorf("updating branch %s: %w", ref, err)
			}
		}
	}
	if err := wt.Checkout(opts); err != nil {
		return "", fmt.Errorf("checking out %s: %w", ref, err)
	}
	return hash.String(), nil
}

func resolve(repo *git.Repository, ref string) (plumbing.Hash, error) {
	for _, rev := range []string{"refs/remotes/origin/" + ref, "refs/tags/" + ref, ref} {
		if h, err := repo.ResolveRevision(plumbing.Revision(rev)); err == nil {
			return *h, nil
		}
	}
	return plumbing.ZeroHash, errors.New("not a branch, tag or commit of the repository")
}

// Repo is an open checkout with the commit the session started from.
type Repo struct {
	dir  string
	repo *git.Repository
	base plumbing.Hash
}

// Open opens the checkout at dir and records its HEAD as the session's base:
// everything is diffed against it, even if the model commits.
func Open(dir string) (*Repo, error) {
	repo, err := git.PlainOpen(dir)
	if err != nil {
		if errors.Is(err, git.ErrRepositoryNotExists) {
			return nil, fmt.Errorf("%s: %w", dir, ErrNotRepository)
		}
		return nil, fmt.Errorf("opening git repository %s: %w", dir, err)
	}
	r := &Repo{dir: dir, repo: repo}
	if head, err := repo.Head(); err == nil {
		r.base = head.Hash()
	}
	return r, nil
}

// Base is the commit the session started from ("" for a repository without commits).
func (r *Repo) Base() string {
	if r.base.IsZero() {
		return ""
	}
	return r.base.String()
}

// Status lists changed and untracked files like `git status --short`, sorted.
func (r *Repo) Status() (string, error) {
	wt, err := r.repo.Worktree()
	if err != nil {
		return "", fmt.Errorf("opening worktree: %w", err)
	}
	st, err := wt.Status()
	if err != nil {
		return "", fmt.Errorf("computing status: %w", err)
	}
	var lines []string
	for p, s := range st {
		if s.Staging == git.Unmodified && s.Worktree == git.Unmodified {
			continue
		}
		lines = append(lines, fmt.Sprintf("%c%c %s", s.Staging, s.Worktree, p))
	}
	slices.SortFunc(lines, func(a, b string) int { return strings.Compare(a[3:], b[3:]) })
	return strings.Join(lines, "\n"), nil
}

// FileStat is the change to one file.
type FileStat struct {
	Path      string
	Additions int
	Deletions int
	Binary    bool
}

// Patch is the workspace's change against the base commit.
type Patch struct {
	Text  []byte
	Files []FileStat
}

// Additions and Deletions count changed lines over all files.
func (p Patch) Totals() (files, additions, deletions int) {
	for _, f := range p.Files {
		additions += f.Additions
		deletions += f.Deletions
	}
	return len(p.Files), additions, deletions
}

// Diff returns a patch (applicable with `git apply`) from the base commit to
// the working tree, untracked files included and ignored files excluded. With
// paths, only those files or directories are included.
func (r *Repo) Diff(paths ...string) (Patch, error) {
	wt, err := r.repo.Worktree()
	if err != nil {
		return Patch{}, fmt.Errorf("opening worktree: %w", err)
	}
	st, err := wt.Status()
	if err != nil {
		return Patch{}, fmt.Errorf("computing status: %w", err)
	}
	candidates := map[string]bool{}
	for p, s := range st {
		if s.Staging != git.Unmodified || s.Worktree != git.Unmodified {
			candidates[p] = true
		}
	}
	var baseTree *object.Tree
	if !r.base.IsZero() {
		c, err := r.repo.CommitObject(r.base)
		if err != nil {
			return Patch{}, fmt.Errorf("reading base commit: %w", err)
		}
		if baseTree, err = c.Tree(); err != nil {
			return Patch{}, fmt.Errorf("reading base tree: %w", err)
		}
		// If the model committed, files changed by those commits are clean in
		// status but still differ from the base.
		if head, err := r.repo.Head(); err == nil && head.Hash() != r.base {
			if hc, err := r.repo.CommitObject(head.Hash()); err == nil {
				if ht, err := hc.Tree(); err == nil {
					changes, err := object.DiffTree(baseTree, ht)
					if err != nil {
						return Patch{}, fmt.Errorf("comparing base and HEAD: %w", err)
					}
					for _, ch := range changes {
						for _, n := range []string{ch.From.Name, ch.To.Name} {
							if n != "" {
								candidates[n] = true
							}
						}
					}
				}
			}
		}
	}
	var names []string
	for p := range candidates {
		if selected(p, paths) {
			names = append(names, p)
		}
	}
	slices.Sort(names)

	var fps []filePatch
	var stats []FileStat
	for _, name := range names {
		from, err := r.baseFile(baseTree, name)
		if err != nil {
			return Patch{}, err
		}
		to, err := r.diskFile(name)
		if err != nil {
			return Patch{}, err
		}
		if from == nil && to == nil {
			continue
		}
		if from != nil && to != nil && from.hash == to.hash && from.mode == to.mode {
			continue
		}
		fp := newFilePatch(from, to)
		fps = append(fps, fp)
		stats = append(stats, fp.stat())
	}
	var buf bytes.Buffer
	if len(fps) > 0 {
		if err := encode(&buf, fps); err != nil {
			return Patch{}, err
		}
	}
	return Patch{Text: buf.Bytes(), Files: stats}, nil
}

func selected(p string, paths []string) bool {
	if len(paths) == 0 {
		return true
	}
	for _, s := range paths {
		s = strings.TrimSuffix(s, "/")
		if s == "." || s == "" || p == s || strings.HasPrefix(p, s+"/") {
			return true
		}
	}
	return false
}

func (r *Repo) baseFile(tree *object.Tree, name string) (*fileVersion, error) {
	if tree == nil {
		return nil, nil
	}
	f, err := tree.File(name)
	if errors.Is(err, object.ErrFileNotFound) || errors.Is(err, object.ErrDirectoryNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s from base commit: %w", name, err)
	}
	content, err := blobBytes(f)
	if err != nil {
		return nil, fmt.Errorf("reading %s from base commit: %w", name, err)
	}
	return &fileVersion{path: name, mode: f.Mode, hash: f.Hash, content: content}, nil
}

func blobBytes(f *object.File) ([]byte, error) {
	rd, err := f.Reader()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	return io.ReadAll(rd)
}

func (r *Repo) diskFile(name string) (*fileVersion, error) {
	p := filepath.Join(r.dir, filepath.FromSlash(name))
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	var content []byte
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		t, err := os.Readlink(p)
		if err != nil {
			return nil, fmt.Errorf("reading symlink %s: %w", name, err)
		}
		content = []byte(t)
	case fi.Mode().IsRegular():
		if content, err = os.ReadFile(p); err != nil {
			return nil, fmt.Errorf("reading %s: %w", name, err)
		}
	default:
		return nil, nil // directories (submodules), sockets: not part of a patch
	}
	mode := modeOf(fi)
	return &fileVersion{path: name, mode: mode, hash: plumbing.ComputeHash(plumbing.BlobObject, content), content: content}, nil
}
