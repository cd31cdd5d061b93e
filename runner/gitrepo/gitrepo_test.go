package gitrepo_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/go-cmp/cmp"

	"github.com/agentry-dev/agentry/runner/gitrepo"
	"github.com/agentry-dev/agentry/runner/internal/testrepo"
)

func TestCloneChecksOutBranchesTagsAndCommitsWithoutGit(t *testing.T) {
	origin := testrepo.New(t, map[string]string{"v.txt": "one\n"})
	repo, err := git.PlainOpen(origin)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := repo.Head()
	if _, err := repo.CreateTag("v1", first.Hash(), nil); err != nil {
		t.Fatal(err)
	}
	wt, _ := repo.Worktree()
	if err := wt.Checkout(&git.CheckoutOptions{Branch: plumbing.NewBranchReferenceName("feature"), Create: true}); err != nil {
		t.Fatal(err)
	}
	testrepo.Write(t, origin, map[string]string{"v.txt": "two\n"})
	testrepo.Commit(t, repo, "second")
	if err := wt.Checkout(&git.CheckoutOptions{Branch: plumbing.NewBranchReferenceName("main")}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", "") // no git binary can be found: cloning must be pure Go

	cases := map[string]struct{ ref, want string }{
		"default branch": {"", "one\n"},
		"branch":         {"feature", "two\n"},
		"tag":            {"v1", "one\n"},
		"commit":         {first.Hash().String(), "one\n"},
		"short commit":   {first.Hash().String()[:10], "one\n"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ws")
			commit, err := gitrepo.Clone(context.Background(), origin, tc.ref, dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "v.txt")); string(b) != tc.want {
				t.Errorf("v.txt = %q, want %q", b, tc.want)
			}
			r, err := gitrepo.Open(dir)
			if err != nil || r.Base() != commit {
				t.Errorf("base %q, clone returned %q (%v)", r.Base(), commit, err)
			}
		})
	}
	if _, err := gitrepo.Clone(context.Background(), origin, "no-such-ref", filepath.Join(t.TempDir(), "ws"), nil); err == nil || !strings.Contains(err.Error(), "not a branch, tag or commit") {
		t.Errorf("unknown ref: %v", err)
	}
}

func TestDiffCoversEveryKindOfChangeAndApplies(t *testing.T) {
	origin := testrepo.New(t, map[string]string{
		"keep.txt":    "same\n",
		"edit.txt":    "a\nb\nc\nd\ne\nf\ng\nh\n",
		"gone.txt":    "bye\n",
		"script.sh":   "#!/bin/sh\necho hi\n",
		"noeol.txt":   "no newline",
		".gitignore":  "*.tmp\n",
		"bin/old.dat": "\x00\x01binary",
	})
	dir := filepath.Join(t.TempDir(), "ws")
	if _, err := gitrepo.Clone(context.Background(), origin, "", dir, nil); err != nil {
		t.Fatal(err)
	}
	r, err := gitrepo.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := r.Diff(); err != nil || len(p.Text) != 0 {
		t.Fatalf("fresh clone has a diff: %q %v", p.Text, err)
	}
	testrepo.Write(t, dir, map[string]string{
		"edit.txt":      "a\nB\nc\nd\ne\nf\ng\nH\n",
		"new/file.go":   "package x\n",
		"noeol.txt":     "no newline, changed",
		"scratch.tmp":   "ignored\n",
		"bin/old.dat":   "\x00\x02binary changed",
		"committed.txt": "the model committed this\n",
	})
	must(t, os.Remove(filepath.Join(dir, "gone.txt")))
	must(t, os.Chmod(filepath.Join(dir, "script.sh"), 0o755))
	// The model commits part of its work: the diff is still against the base.
	repo, _ := git.PlainOpen(dir)
	wt, _ := repo.Worktree()
	_, err = wt.Add("committed.txt")
	must(t, err)
	sig := &object.Signature{Name: "model", Email: "m@example.com", When: time.Unix(1700000100, 0)}
	_, err = wt.Commit("model commit", &git.CommitOptions{Author: sig, Committer: sig})
	must(t, err)

	p, err := r.Diff()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range p.Files {
		names = append(names, f.Path)
	}
	if diff := cmp.Diff([]string{"bin/old.dat", "committed.txt", "edit.txt", "gone.txt", "new/file.go", "noeol.txt", "script.sh"}, names); diff != "" {
		t.Errorf("changed files (-want +got):\n%s\n%s", diff, p.Text)
	}
	files, add, del := p.Totals()
	if files != 7 || add != 5 || del != 4 {
		t.Errorf("totals %d files +%d -%d\n%s", files, add, del, p.Text)
	}

	// git apply accepts it on a fresh clone (binary hunks aside, which git
	// reports as "Binary files differ"; exclude them like a reviewer would).
	fresh := filepath.Join(t.TempDir(), "fresh")
	run(t, "", "git", "clone", "-q", origin, fresh)
	patchFile := filepath.Join(t.TempDir(), "p.patch")
	must(t, os.WriteFile(patchFile, p.Text, 0o644))
	run(t, fresh, "git", "apply", "--exclude=bin/old.dat", patchFile)
	for name, want := range map[string]string{"edit.txt": "a\nB\nc\nd\ne\nf\ng\nH\n", "new/file.go": "package x\n", "noeol.txt": "no newline, changed", "committed.txt": "the model committed this\n"} {
		if b, _ := os.ReadFile(filepath.Join(fresh, name)); string(b) != want {
			t.Errorf("%s after apply = %q", name, b)
		}
	}
	if _, err := os.Stat(filepath.Join(fresh, "gone.txt")); !os.IsNotExist(err) {
		t.Error("deletion not applied")
	}
	if fi, _ := os.Stat(filepath.Join(fresh, "script.sh")); fi.Mode().Perm()&0o100 == 0 {
		t.Error("mode change not applied")
	}

	st, err := r.Status()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st, " D gone.txt") || !strings.Contains(st, "?? new/file.go") || strings.Contains(st, "scratch.tmp") {
		t.Errorf("status:\n%s", st)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, dir string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}
