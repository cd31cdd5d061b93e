package cli_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner/cli"
	"github.com/agentry-dev/agentry/runner/gitrepo"
	"github.com/agentry-dev/agentry/runner/internal/testrepo"
)

// gitHTTPServer serves the repositories under root with git's own smart-HTTP backend,
// behind basic auth: what a forge looks like to the checkout step.
func gitHTTPServer(t *testing.T, root, user, password string) *httptest.Server {
	t.Helper()
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("git is needed to serve repositories over http: %v", err)
	}
	backend := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(out)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func checkout(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Run(context.Background(), append([]string{"checkout"}, args...), cli.IO{In: strings.NewReader(""), Out: &out, Err: &errb})
	return code, out.String() + errb.String()
}

func TestCheckoutOverHTTPWithCredentials(t *testing.T) {
	root := t.TempDir()
	testrepo.Init(t, filepath.Join(root, "repo.git"), map[string]string{"README.md": "hello\n"})
	srv := gitHTTPServer(t, root, "bot", "s3cret-token")
	url := srv.URL + "/repo.git"

	creds := t.TempDir()
	write := func(name, v string) {
		if err := os.WriteFile(filepath.Join(creds, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("no credentials", func(t *testing.T) {
		code, out := checkout(t, "--repo", url, "--dir", filepath.Join(t.TempDir(), "ws"))
		if code != int(contract.ExitError) || !strings.Contains(out, "authentication required") {
			t.Fatalf("code %d, output %q: want a clear authentication error", code, out)
		}
	})
	t.Run("wrong token", func(t *testing.T) {
		write("username", "bot")
		write("password", "wrong")
		code, out := checkout(t, "--repo", url, "--dir", filepath.Join(t.TempDir(), "ws"), "--credentials-dir", creds)
		if code != int(contract.ExitError) || !strings.Contains(out, "authentication") {
			t.Fatalf("code %d, output %q", code, out)
		}
	})
	t.Run("right token", func(t *testing.T) {
		write("password", "s3cret-token\n")
		ws := filepath.Join(t.TempDir(), "ws")
		code, out := checkout(t, "--repo", url, "--ref", "main", "--dir", ws, "--credentials-dir", creds)
		if code != 0 {
			t.Fatalf("code %d: %s", code, out)
		}
		if b, err := os.ReadFile(filepath.Join(ws, "README.md")); err != nil || string(b) != "hello\n" {
			t.Fatalf("README.md = %q, %v", b, err)
		}
		if strings.Contains(out, "s3cret-token") {
			t.Fatalf("checkout output reveals the token: %s", out)
		}
	})
	t.Run("ssh without known_hosts is refused", func(t *testing.T) {
		write("ssh-privatekey", "not-a-key")
		code, out := checkout(t, "--repo", "git@git.example.com:org/repo.git", "--dir", t.TempDir(), "--credentials-dir", creds)
		if code != int(contract.ExitUsage) || !strings.Contains(out, "ssh-privatekey") {
			t.Fatalf("code %d, output %q", code, out)
		}
	})
	t.Run("missing flags", func(t *testing.T) {
		code, out := checkout(t, "--repo", url)
		if code != int(contract.ExitUsage) || !strings.Contains(out, "--dir") {
			t.Fatalf("code %d, output %q", code, out)
		}
	})
}

// TestCheckoutWritesSymlinksAsCommitted clones a repository holding absolute
// and relative symlinks. The checkout must hold the committed targets
// verbatim (go-git's default file system rewrote `/etc` to `<dir>/etc`), so
// the workspace starts clean for go-git and for git.
func TestCheckoutWritesSymlinksAsCommitted(t *testing.T) {
	links := map[string]string{
		"etcdir":        "/etc",
		"dangling":      "/nonexistent/target",
		"readme-link":   "README.md",
		"sub/up":        "../README.md",
		"sub/inside-ws": "../sub/file.txt",
	}
	origin := t.TempDir()
	// The origin is built through bound file systems too, so the commit holds
	// the exact targets; checked below.
	wt := osfs.New(origin, osfs.WithBoundOS())
	st := filesystem.NewStorage(osfs.New(filepath.Join(origin, ".git"), osfs.WithBoundOS()), cache.NewObjectLRUDefault())
	repo, err := git.InitWithOptions(st, wt, git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")})
	if err != nil {
		t.Fatal(err)
	}
	testrepo.Write(t, origin, map[string]string{"README.md": "hello\n", "sub/file.txt": "file\n"})
	for link, target := range links {
		if err := os.Symlink(target, filepath.Join(origin, link)); err != nil {
			t.Fatal(err)
		}
	}
	testrepo.Commit(t, repo, "symlinks")
	head, err := repo.Head()
	if err != nil {
		t.Fatal(err)
	}
	commit, err := repo.CommitObject(head.Hash())
	if err != nil {
		t.Fatal(err)
	}
	tree, err := commit.Tree()
	if err != nil {
		t.Fatal(err)
	}
	for link, target := range links {
		f, err := tree.File(link)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := f.Contents(); f.Mode != filemode.Symlink || got != target {
			t.Fatalf("test setup: %s committed as %v %q, want a symlink to %q", link, f.Mode, got, target)
		}
	}

	for name, url := range map[string]string{"path": origin, "file URL": "file://" + origin} {
		t.Run(name, func(t *testing.T) {
			ws := filepath.Join(t.TempDir(), "ws")
			if code, out := checkout(t, "--repo", url, "--dir", ws); code != 0 {
				t.Fatalf("code %d: %s", code, out)
			}
			for link, want := range links {
				if got, err := os.Readlink(filepath.Join(ws, link)); err != nil || got != want {
					t.Errorf("%s -> %q (%v), want -> %q", link, got, err, want)
				}
			}
			r, err := gitrepo.Open(ws)
			if err != nil {
				t.Fatal(err)
			}
			if s, err := r.Status(); err != nil || s != "" {
				t.Errorf("go-git status after checkout: %q %v", s, err)
			}
			if p, err := r.Diff(); err != nil || len(p.Text) != 0 || len(p.Omitted) != 0 {
				t.Errorf("diff after checkout: %q %+v %v", p.Text, p.Omitted, err)
			}
			if _, err := exec.LookPath("git"); err != nil {
				t.Skip("no git binary")
			}
			cmd := exec.Command("git", "status", "--porcelain")
			cmd.Dir = ws
			out, err := cmd.CombinedOutput()
			if err != nil || len(out) != 0 {
				t.Errorf("git status --porcelain after checkout: %q %v", out, err)
			}
		})
	}
}

// Second line behind the controller: credentials never travel over plain http:// to
// another host. The refusal comes before any connection (the host does not even exist).
func TestCheckoutRefusesCredentialsOverPlainHTTP(t *testing.T) {
	creds := t.TempDir()
	if err := os.WriteFile(filepath.Join(creds, "password"), []byte("s3cret-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out := checkout(t, "--repo", "http://git.example.invalid/org/repo.git", "--dir", filepath.Join(t.TempDir(), "ws"), "--credentials-dir", creds)
	if code == int(contract.ExitOK) || !strings.Contains(out, "refusing to send credentials over plain http://") {
		t.Fatalf("code %d, output %q: want a refusal", code, out)
	}
	if strings.Contains(out, "s3cret-token") {
		t.Fatalf("the output shows the credential: %q", out)
	}
}
