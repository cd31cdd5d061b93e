package giteaserver_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentry-dev/agentry/test/giteaserver"
)

// TestCreateRepoAndClone starts a real Gitea, creates a repository with one file and clones
// it over smart HTTP with the admin's token: what the forge tests rely on.
func TestCreateRepoAndClone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	s, err := giteaserver.Start(ctx, giteaserver.Binary(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	t.Logf("gitea ready in %v", time.Since(start))

	cloneURL, err := s.CreateRepo(ctx, "", "sample", map[string]string{"docs/README.md": "# sample\n"}, "main")
	if err != nil {
		t.Fatalf("CreateRepo: %v", err)
	}
	work := t.TempDir()
	if _, err := s.Git(ctx, work, "clone", "-q", cloneURL, "clone"); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(work, "clone", "docs", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "# sample\n" {
		t.Fatalf("README.md = %q, want %q", got, "# sample\n")
	}
	if branch, err := s.Git(ctx, filepath.Join(work, "clone"), "branch", "--show-current"); err != nil || branch != "main\n" {
		t.Fatalf("cloned branch = %q (%v), want main", branch, err)
	}
}
