// Package gitrepo clones the session's repository and computes what the session
// changed, in pure Go (go-git) so neither the runner image nor a laptop needs a
// git binary for the runner's own bookkeeping.
package gitrepo

import (
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
//
// The checkout is what the commit holds: symlinks are written with their
// committed targets, absolute ones included (go-git's default file system
// would rebase `/etc` onto the checkout, so `git status` would start dirty).
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
	repo, err := cloneInto(ctx, dir, &git.CloneOptions{URL: url, Auth: auth, Progress: progress, Tags: git.AllTags})
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

// cloneInto is git.PlainCloneContext with file systems bound to dir
// (osfs.WithBoundOS): paths cannot leave dir and symlink targets are written
// verbatim. Like PlainClone, it removes what it created if the clone fails.
func cloneInto(ctx context.Context, dir string, o *git.CloneOptions) (*git.Repository, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	created := false
	switch fi, err := os.Stat(abs); {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(abs, 0o755); err != nil {
			return nil, err
		}
		created = true
	case err != nil:
		return nil, err
	case !fi.IsDir():
		return nil, fmt.Errorf("%s is not a directory", abs)
	}
	ents, err := os.ReadDir(abs)
	if err != nil {
		return nil, err
	}
	empty := len(ents) == 0
	wt := osfs.New(abs, osfs.WithBoundOS())
	dot := osfs.New(filepath.Join(abs, git.GitDirName), osfs.WithBoundOS())
	repo, err := git.CloneContext(ctx, filesystem.NewStorage(dot, cache.NewObjectLRUDefault()), wt, o)
	if err != nil {
		switch {
		case created:
			_ = os.RemoveAll(abs)
		case empty:
			ents, _ := os.ReadDir(abs)
			for _, e := range ents {
				_ = os.RemoveAll(filepath.Join(abs, e.Name()))
			}
		}
		return nil, err
	}
	return repo, nil
}

func resolve(repo *git.Repository, ref string) (plumbing.Hash, error) {
	for _, rev := range []string{"refs/remotes/origin/" + ref, "refs/tags/" + ref, ref} {
		if h, err := repo.ResolveRevision(plumbing.Revision(rev)); err == nil {
			return *h, nil
		}
	}
	return plumbing.ZeroHash, errors.New("not a branch, tag or commit of the repository")
}

// Options bound what building a patch reads and produces.
type Options struct {
	// MaxFileBytes is the largest text file (either side of a change) whose
	// content goes into the patch text; 0 means 1 MiB. Larger text files are
	// listed in Patch.Omitted. Binary files are listed as binary at any size.
	MaxFileBytes int64
	// MaxPatchBytes bounds Patch.Text; 0 means 8 MiB. Files that would take
	// the patch over it are listed in Patch.Omitted.
	MaxPatchBytes int64
}

// Default limits of Options.
const (
	DefaultMaxFileBytes  = 1 << 20
	DefaultMaxPatchBytes = 8 << 20
)

// Repo is a checkout with the commit the session started from. It reads the
// workspace as hostile input: only through os.Root (no symlink is followed
// out of the workspace, .git included), never another object store
// (objects/info/alternates), and with bounded memory whatever the files'
// sizes.
type Repo struct {
	dir  string
	base plumbing.Hash
	opts Options
}

// Open opens the checkout at dir with the default limits and records its HEAD
// as the session's base: everything is diffed against it, even if the model
// commits.
func Open(dir string) (*Repo, error) { return OpenWithOptions(dir, Options{}) }

// OpenWithOptions is Open with limits for the patch.
func OpenWithOptions(dir string, o Options) (*Repo, error) {
	if o.MaxFileBytes <= 0 {
		o.MaxFileBytes = DefaultMaxFileBytes
	}
	if o.MaxPatchBytes <= 0 {
		o.MaxPatchBytes = DefaultMaxPatchBytes
	}
	r := &Repo{dir: dir, opts: o}
	s, err := r.open()
	if err != nil {
		return nil, err
	}
	defer s.close()
	if head, err := s.repo.Head(); err == nil {
		r.base = head.Hash()
	}
	return r, nil
}

// session is the repository opened for one operation. Each operation opens
// the workspace afresh, so nothing resolved earlier is trusted later.
type session struct {
	repo *git.Repository
	root *os.Root // the workspace
	c    *closers
}

func (s *session) close() { s.c.close() }

func (r *Repo) open() (*session, error) {
	rs := &closers{}
	root, err := os.OpenRoot(r.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", r.dir, ErrNotRepository)
	}
	if err != nil {
		return nil, fmt.Errorf("opening workspace %s: %w", r.dir, err)
	}
	rs.add(root)
	fail := func(err error) (*session, error) { rs.close(); return nil, err }
	fi, err := root.Lstat(git.GitDirName)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fail(fmt.Errorf("%s: %w", r.dir, ErrNotRepository))
	case err != nil:
		return fail(fmt.Errorf("opening git repository %s: %w", r.dir, err))
	case fi.Mode()&fs.ModeSymlink != 0:
		return fail(fmt.Errorf("%s: .git is a symlink, which is not followed: %w", r.dir, ErrNotRepository))
	case !fi.IsDir():
		return fail(fmt.Errorf("%s: .git is not a directory (a \"gitdir:\" file is not followed): %w", r.dir, ErrNotRepository))
	}
	dot, err := root.OpenRoot(git.GitDirName)
	if err != nil {
		return fail(fmt.Errorf("opening git repository %s: %w", r.dir, err))
	}
	rs.add(dot)
	dotFS := newRootFS(dot, filepath.Join(r.dir, git.GitDirName), gitDirLimit, rs)
	st := filesystem.NewStorageWithOptions(dotFS, cache.NewObjectLRU(16*cache.MiByte), filesystem.Options{
		LargeObjectThreshold: largeObjectBytes,
		AlternatesFS:         noAlternates{dotFS},
	})
	repo, err := git.Open(st, newRootFS(root, r.dir, worktreeLimit, rs))
	if errors.Is(err, git.ErrRepositoryNotExists) {
		return fail(fmt.Errorf("%s: %w", r.dir, ErrNotRepository))
	}
	if err != nil {
		return fail(fmt.Errorf("opening git repository %s: %w", r.dir, err))
	}
	return &session{repo: repo, root: root, c: rs}, nil
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
	s, err := r.open()
	if err != nil {
		return "", err
	}
	defer s.close()
	st, err := status(s.repo)
	if err != nil {
		return "", err
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

func status(repo *git.Repository) (git.Status, error) {
	wt, err := repo.Worktree()
	if err != nil {
		return nil, fmt.Errorf("opening worktree: %w", err)
	}
	st, err := wt.Status()
	if err != nil {
		return nil, fmt.Errorf("computing status: %w", err)
	}
	return st, nil
}

// FileStat is the change to one file.
type FileStat struct {
	Path      string
	Additions int
	Deletions int
	Binary    bool
}

// OmittedFile is a changed file whose content the patch text leaves out.
type OmittedFile struct {
	Path string
	// Size is the file's size in bytes: in the working tree, or in the base
	// commit for a deletion.
	Size int64
	// Reason is a short sentence, e.g. "text file over the 1 MiB per-file limit".
	Reason string
}

func (o OmittedFile) String() string {
	return fmt.Sprintf("%s (%d bytes): %s", o.Path, o.Size, o.Reason)
}

// Patch is the workspace's change against the base commit.
type Patch struct {
	// Text applies with `git apply`; it holds the files of Files only.
	Text  []byte
	Files []FileStat
	// Omitted lists changed files left out of Text because of the limits in
	// Options; Text stays a valid patch without them.
	Omitted []OmittedFile
}

// Totals counts changed files (omitted ones included) and changed lines
// (of the files in Text).
func (p Patch) Totals() (files, additions, deletions int) {
	for _, f := range p.Files {
		additions += f.Additions
		deletions += f.Deletions
	}
	return len(p.Files) + len(p.Omitted), additions, deletions
}

// Diff returns a patch (applicable with `git apply`) from the base commit to
// the working tree, untracked files included and ignored files excluded. With
// paths, only those files or directories are included. Memory is bounded by
// the Options, whatever the size of the files.
func (r *Repo) Diff(paths ...string) (Patch, error) {
	s, err := r.open()
	if err != nil {
		return Patch{}, err
	}
	defer s.close()
	st, err := status(s.repo)
	if err != nil {
		return Patch{}, err
	}
	candidates := map[string]bool{}
	for p, s := range st {
		if s.Staging != git.Unmodified || s.Worktree != git.Unmodified {
			candidates[p] = true
		}
	}
	var baseTree *object.Tree
	if !r.base.IsZero() {
		c, err := s.repo.CommitObject(r.base)
		if err != nil {
			return Patch{}, fmt.Errorf("reading base commit: %w", err)
		}
		if baseTree, err = c.Tree(); err != nil {
			return Patch{}, fmt.Errorf("reading base tree: %w", err)
		}
		// If the model committed, files changed by those commits are clean in
		// status but still differ from the base.
		if head, err := s.repo.Head(); err == nil && head.Hash() != r.base {
			if hc, err := s.repo.CommitObject(head.Hash()); err == nil {
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
		// Names come from the index and commits, which the agent can write:
		// "../x", "/x" or ".git/x" never name a workspace file of the patch.
		if fs.ValidPath(p) && !hasGitComponent(p) && selected(p, paths) {
			names = append(names, p)
		}
	}
	slices.Sort(names)

	b := &patchBuilder{opts: r.opts}
	for _, name := range names {
		from, err := b.baseSide(s.repo, baseTree, name)
		if err != nil {
			return Patch{}, err
		}
		to, err := b.diskSide(s.root, name, from)
		if err != nil {
			return Patch{}, err
		}
		if err := b.add(from, to); err != nil {
			return Patch{}, err
		}
	}
	return b.patch(), nil
}

func hasGitComponent(p string) bool {
	for _, c := range strings.Split(p, "/") {
		if strings.EqualFold(c, git.GitDirName) {
			return true
		}
	}
	return false
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
