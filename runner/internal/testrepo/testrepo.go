// Package testrepo creates real git repositories for tests with go-git, so
// tests do not need a git binary.
package testrepo

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// New creates a repository in a temporary directory with files committed on
// branch main and returns its path.
func New(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	Init(t, dir, files)
	return dir
}

// Init creates the repository in dir.
func Init(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	repo, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{InitOptions: git.InitOptions{DefaultBranch: "refs/heads/main"}})
	if err != nil {
		t.Fatalf("git init: %v", err)
	}
	Write(t, dir, files)
	Commit(t, repo, "initial commit")
}

// Write writes files (creating directories) without committing.
func Write(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Commit stages everything and commits.
func Commit(t testing.TB, repo *git.Repository, msg string) {
	t.Helper()
	wt, err := repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		t.Fatalf("git add: %v", err)
	}
	sig := &object.Signature{Name: "Test", Email: "test@example.com", When: time.Unix(1700000000, 0)}
	if _, err := wt.Commit(msg, &git.CommitOptions{Author: sig, Committer: sig}); err != nil {
		t.Fatalf("git commit: %v", err)
	}
}
