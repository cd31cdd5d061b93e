package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"
)

// TrailerKey is the commit-message trailer naming the session a delivered commit came
// from, "namespace/name/uid". Delivery overwrites a branch only when its head carries the
// trailer of the same session name.
const TrailerKey = "Agentry-Session"

// Request is one delivery.
type Request struct {
	// URL is the repository's clone URL; Auth the push credential for it.
	URL  string
	Auth transport.AuthMethod
	// Base is the branch the change is applied on; empty means the repository's default
	// branch (or Ref when it is a branch).
	Base string
	// Ref is spec.repository.ref, used for the default base.
	Ref string
	// Branch is the branch to push.
	Branch string
	// Patch is the archived result.patch.
	Patch []byte
	// Author signs the commit; When is its time (the session's completion, so the commit
	// is the same on every attempt).
	Author object.Signature
	// Message is the commit message without the trailer; Session is the trailer's value.
	Message string
	Session string
}

// Result is what was pushed.
type Result struct {
	Base       string
	BaseCommit plumbing.Hash
	Commit     plumbing.Hash
	// Pushed is false when the branch already pointed at Commit (a repeated delivery).
	Pushed bool
}

// Failure reasons that are the repository's answer rather than the network's.
var (
	// ErrBranchExists: the branch holds a commit that is not this session's delivery.
	ErrBranchExists = errors.New("branch exists")
	// ErrNoDefaultBranch: the remote does not say its default branch and none was given.
	ErrNoDefaultBranch = errors.New("no default branch")
	// ErrNothingToDeliver: the patch changes nothing on the base.
	ErrNothingToDeliver = errors.New("nothing to deliver")
)

// Deliver applies the patch on the base branch's head and pushes the resulting commit to
// the branch. It is idempotent: the commit is a function of the base head, the patch and
// the request, so repeating a delivery pushes nothing new.
func Deliver(ctx context.Context, r Request) (Result, error) {
	changes, err := ParsePatch(r.Patch)
	if err != nil {
		return Result{}, err
	}
	if len(changes) == 0 {
		return Result{}, ErrNothingToDeliver
	}
	for _, c := range changes {
		if c.Binary {
			return Result{}, fmt.Errorf("%w: %s is a binary change, which the patch does not carry", ErrPatch, c.NewPath+c.OldPath)
		}
	}

	remote := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{r.URL}})
	refs, err := remote.ListContext(ctx, &git.ListOptions{Auth: r.Auth})
	if err != nil {
		return Result{}, fmt.Errorf("listing the remote's branches: %w", err)
	}
	base, err := pickBase(refs, r.Base, r.Ref)
	if err != nil {
		return Result{}, err
	}
	var branchHead plumbing.Hash
	for _, ref := range refs {
		if ref.Name() == plumbing.NewBranchReferenceName(r.Branch) {
			branchHead = ref.Hash()
		}
	}

	st := memory.NewStorage()
	fetch := []config.RefSpec{config.RefSpec(fmt.Sprintf("+refs/heads/%s:refs/remotes/origin/%s", base, base))}
	if !branchHead.IsZero() {
		fetch = append(fetch, config.RefSpec(fmt.Sprintf("+refs/heads/%s:refs/remotes/origin/%s", r.Branch, r.Branch)))
	}
	repo, err := git.Init(st, nil)
	if err != nil {
		return Result{}, err
	}
	if _, err := repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{r.URL}}); err != nil {
		return Result{}, err
	}
	if err := repo.FetchContext(ctx, &git.FetchOptions{RemoteName: "origin", RefSpecs: fetch, Auth: r.Auth, Tags: git.NoTags}); err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return Result{}, fmt.Errorf("fetching %s: %w", base, err)
	}
	baseRef, err := repo.Reference(plumbing.NewRemoteReferenceName("origin", base), true)
	if err != nil {
		return Result{}, fmt.Errorf("reading %s: %w", base, err)
	}
	baseCommit, err := repo.CommitObject(baseRef.Hash())
	if err != nil {
		return Result{}, fmt.Errorf("reading %s: %w", base, err)
	}
	tree, err := apply(repo, baseCommit, changes)
	if err != nil {
		return Result{}, err
	}
	if tree == baseCommit.TreeHash {
		return Result{}, ErrNothingToDeliver
	}
	commit, err := writeCommit(repo, tree, baseCommit.Hash, r)
	if err != nil {
		return Result{}, err
	}
	res := Result{Base: base, BaseCommit: baseCommit.Hash, Commit: commit}
	if branchHead == commit {
		return res, nil
	}
	if !branchHead.IsZero() {
		head, err := repo.CommitObject(branchHead)
		if err != nil {
			return Result{}, fmt.Errorf("reading %s: %w", r.Branch, err)
		}
		if !sameSession(head.Message, r.Session) {
			return Result{}, fmt.Errorf("%w: %s has commit %s, which is not a delivery of this session; it is left alone", ErrBranchExists, r.Branch, branchHead.String()[:12])
		}
	}

	// The local branch has the remote's name: go-git's lease check reads
	// refs/remotes/origin/<local branch>, which the fetch above wrote.
	local := plumbing.NewBranchReferenceName(r.Branch)
	if err := repo.Storer.SetReference(plumbing.NewHashReference(local, commit)); err != nil {
		return Result{}, err
	}
	spec := config.RefSpec(fmt.Sprintf("%s:refs/heads/%s", local, r.Branch))
	opts := &git.PushOptions{RemoteName: "origin", RefSpecs: []config.RefSpec{spec}, Auth: r.Auth}
	if !branchHead.IsZero() {
		// Overwrite only what was read: if someone pushed since, the push fails.
		opts.RefSpecs = []config.RefSpec{"+" + spec}
		opts.ForceWithLease = &git.ForceWithLease{RefName: plumbing.NewBranchReferenceName(r.Branch), Hash: branchHead}
	}
	if err := repo.PushContext(ctx, opts); err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return Result{}, fmt.Errorf("pushing %s: %w", r.Branch, err)
	}
	res.Pushed = true
	return res, nil
}

func pickBase(refs []*plumbing.Reference, base, ref string) (string, error) {
	has := func(b string) bool {
		for _, r := range refs {
			if r.Name() == plumbing.NewBranchReferenceName(b) {
				return true
			}
		}
		return false
	}
	if base != "" {
		if !has(base) {
			return "", fmt.Errorf("the base branch %q does not exist on the remote", base)
		}
		return base, nil
	}
	if ref != "" {
		if b := strings.TrimPrefix(ref, "refs/heads/"); has(b) {
			return b, nil
		}
	}
	for _, r := range refs {
		if r.Name() == plumbing.HEAD && r.Type() == plumbing.SymbolicReference && r.Target().IsBranch() {
			return r.Target().Short(), nil
		}
	}
	return "", fmt.Errorf("%w: the remote does not advertise its default branch; set spec.delivery.pullRequest.base", ErrNoDefaultBranch)
}

func sameSession(message, session string) bool {
	// The trailer is "namespace/name/uid"; a session re-created under the same name may
	// replace its predecessor's delivery.
	want := session
	if i := strings.LastIndexByte(want, '/'); i > 0 {
		want = want[:i+1]
	}
	for _, l := range strings.Split(message, "\n") {
		if v, ok := strings.CutPrefix(l, TrailerKey+": "); ok && strings.HasPrefix(strings.TrimSpace(v)+"/", want) {
			return true
		}
	}
	return false
}

func writeCommit(repo *git.Repository, tree, parent plumbing.Hash, r Request) (plumbing.Hash, error) {
	sig := r.Author
	sig.When = sig.When.UTC().Truncate(time.Second)
	msg := strings.TrimRight(r.Message, "\n") + "\n\n" + TrailerKey + ": " + r.Session + "\n"
	c := &object.Commit{Author: sig, Committer: sig, Message: msg, TreeHash: tree, ParentHashes: []plumbing.Hash{parent}}
	obj := repo.Storer.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return repo.Storer.SetEncodedObject(obj)
}

// entry is a tree entry to set (hash non-zero) or remove.
type entry struct {
	mode filemode.FileMode
	hash plumbing.Hash
}

func apply(repo *git.Repository, base *object.Commit, changes []FileChange) (plumbing.Hash, error) {
	tree, err := base.Tree()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	edits := map[string]entry{}
	for _, c := range changes {
		path := c.NewPath
		if path == "" {
			path = c.OldPath
		}
		var old []byte
		if c.OldPath != "" {
			f, err := tree.File(c.OldPath)
			if err != nil {
				return plumbing.ZeroHash, &ConflictError{Path: c.OldPath, Hunk: 0}
			}
			if uint32(f.Mode) != c.OldMode && c.OldMode != 0 {
				return plumbing.ZeroHash, &ConflictError{Path: c.OldPath, Hunk: 0}
			}
			rd, err := f.Reader()
			if err != nil {
				return plumbing.ZeroHash, err
			}
			old, err = io.ReadAll(rd)
			_ = rd.Close()
			if err != nil {
				return plumbing.ZeroHash, err
			}
		} else if _, err := tree.FindEntry(c.NewPath); err == nil {
			return plumbing.ZeroHash, &ConflictError{Path: c.NewPath, Hunk: 0}
		}
		content, err := Apply(c, old)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		if c.NewPath == "" {
			if len(content) != 0 {
				return plumbing.ZeroHash, &ConflictError{Path: c.OldPath, Hunk: len(c.Hunks)}
			}
			edits[path] = entry{}
			continue
		}
		obj := repo.Storer.NewEncodedObject()
		obj.SetType(plumbing.BlobObject)
		w, err := obj.Writer()
		if err != nil {
			return plumbing.ZeroHash, err
		}
		if _, err := w.Write(content); err != nil {
			return plumbing.ZeroHash, err
		}
		_ = w.Close()
		h, err := repo.Storer.SetEncodedObject(obj)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		edits[path] = entry{mode: filemode.FileMode(c.NewMode), hash: h}
	}
	return editTree(repo, base.TreeHash, edits)
}

// editTree returns the hash of tree with edits (paths relative to it) applied; the zero
// hash for a tree left empty.
func editTree(repo *git.Repository, treeHash plumbing.Hash, edits map[string]entry) (plumbing.Hash, error) {
	entries := map[string]object.TreeEntry{}
	if !treeHash.IsZero() {
		t, err := repo.TreeObject(treeHash)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		for _, e := range t.Entries {
			entries[e.Name] = e
		}
	}
	sub := map[string]map[string]entry{}
	for p, e := range edits {
		if dir, rest, ok := strings.Cut(p, "/"); ok {
			if sub[dir] == nil {
				sub[dir] = map[string]entry{}
			}
			sub[dir][rest] = e
			continue
		}
		if e.hash.IsZero() {
			delete(entries, p)
		} else {
			if old, ok := entries[p]; ok && old.Mode == filemode.Dir {
				return plumbing.ZeroHash, &ConflictError{Path: p}
			}
			entries[p] = object.TreeEntry{Name: p, Mode: e.mode, Hash: e.hash}
		}
	}
	for dir, es := range sub {
		var current plumbing.Hash
		if old, ok := entries[dir]; ok {
			if old.Mode != filemode.Dir {
				return plumbing.ZeroHash, &ConflictError{Path: dir}
			}
			current = old.Hash
		}
		h, err := editTree(repo, current, es)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		if h.IsZero() {
			delete(entries, dir)
		} else {
			entries[dir] = object.TreeEntry{Name: dir, Mode: filemode.Dir, Hash: h}
		}
	}
	if len(entries) == 0 {
		return plumbing.ZeroHash, nil
	}
	t := &object.Tree{}
	for _, e := range entries {
		t.Entries = append(t.Entries, e)
	}
	// git orders entries by name, a directory's name compared as if it ended in "/".
	key := func(e object.TreeEntry) string {
		if e.Mode == filemode.Dir {
			return e.Name + "/"
		}
		return e.Name
	}
	sort.Slice(t.Entries, func(i, j int) bool { return key(t.Entries[i]) < key(t.Entries[j]) })
	obj := repo.Storer.NewEncodedObject()
	if err := t.Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return repo.Storer.SetEncodedObject(obj)
}
