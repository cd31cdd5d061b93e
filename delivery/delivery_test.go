package delivery_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing/object"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"

	"github.com/agentry-dev/agentry/delivery"
	"github.com/agentry-dev/agentry/runner/gitrepo"
	"github.com/agentry-dev/agentry/test/gitserver"
)

var base = map[string]string{
	"README.md":      "# demo\n",
	"pkg/calc.go":    "package pkg\n\nfunc Add(a, b int) int {\n\treturn a - b\n}\n",
	"pkg/old.go":     "package pkg\n\n// Old is unused.\nfunc Old() {}\n",
	"docs/guide.md":  "one\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\nten\n",
	"scripts/run.sh": "#!/bin/sh\necho run\n",
	"no-newline.txt": "last line without newline",
}

// agentPatch clones url, makes the changes an agent would and returns the patch the runner
// archives for them, made by the runner's own differ.
func agentPatch(t *testing.T, url string, change func(dir string)) []byte {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ws")
	gitserver.Git(t, filepath.Dir(dir), "clone", "-q", url, dir)
	change(dir)
	repo, err := gitrepo.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := repo.Diff()
	if err != nil {
		t.Fatal(err)
	}
	return p.Text
}

func write(t *testing.T, dir, p, content string) {
	t.Helper()
	full := filepath.Join(dir, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func everyKindOfChange(t *testing.T) func(dir string) {
	return func(dir string) {
		write(t, dir, "pkg/calc.go", "package pkg\n\nfunc Add(a, b int) int {\n\treturn a + b\n}\n")
		write(t, dir, "pkg/calc_test.go", "package pkg\n\nimport \"testing\"\n\nfunc TestAdd(t *testing.T) {}\n")
		write(t, dir, "no-newline.txt", "last line without newline, now longer")
		if err := os.Remove(filepath.Join(dir, "pkg/old.go")); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, "scripts/run.sh"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("../README.md", filepath.Join(dir, "docs/readme-link")); err != nil {
			t.Fatal(err)
		}
		write(t, dir, "docs/guide.md", "one\ntwo\nthree\nfour\nFIVE\nsix\nseven\neight\nnine\nten\n")
	}
}

func request(srv *gitserver.Server, url string, patch []byte) delivery.Request {
	return delivery.Request{
		URL:     url,
		Auth:    &githttp.BasicAuth{Username: srv.User, Password: srv.Password},
		Branch:  "agentry/fix-add",
		Patch:   patch,
		Author:  object.Signature{Name: "Agentry", Email: "agentry@users.noreply.agentry.dev", When: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)},
		Message: "Fix Add\n\nAdd subtracted.",
		Session: "team-a/fix-add/0c6f3a9e-uid",
	}
}

// tree lists the files of branch at url with their modes and contents, as git sees them.
func tree(t *testing.T, url, branch string) map[string]string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "check")
	gitserver.Git(t, filepath.Dir(dir), "clone", "-q", "-b", branch, url, dir)
	out := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(gitserver.Git(t, dir, "ls-files", "-s")), "\n") {
		f := strings.Fields(l)
		content := gitserver.Git(t, dir, "cat-file", "-p", f[1])
		out[f[3]] = f[0] + " " + content
	}
	return out
}

func TestDeliverPushesTheAgentsChangeOverSmartHTTP(t *testing.T) {
	ctx := context.Background()
	srv := gitserver.Start(t, "agentry", "s3cret-token")
	url := srv.Init(t, "demo", "main", base)
	patch := agentPatch(t, url, everyKindOfChange(t))

	res, err := delivery.Deliver(ctx, request(srv, url, patch))
	if err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	if !res.Pushed || res.Base != "main" {
		t.Fatalf("result = %+v, want pushed on main", res)
	}

	// The branch holds exactly what the agent's workspace held.
	ws := filepath.Join(t.TempDir(), "ws")
	gitserver.Git(t, filepath.Dir(ws), "clone", "-q", url, ws)
	everyKindOfChange(t)(ws)
	gitserver.Git(t, ws, "add", "-A")
	gitserver.Git(t, ws, "commit", "-q", "-m", "expected")
	got := tree(t, url, "agentry/fix-add")
	want := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(gitserver.Git(t, ws, "ls-files", "-s")), "\n") {
		f := strings.Fields(l)
		want[f[3]] = f[0] + " " + gitserver.Git(t, ws, "cat-file", "-p", f[1])
	}
	if len(got) != len(want) {
		t.Fatalf("branch has %d files, the workspace %d:\n%v\n%v", len(got), len(want), got, want)
	}
	for p, w := range want {
		if got[p] != w {
			t.Errorf("%s on the branch = %q, want %q", p, got[p], w)
		}
	}

	check := filepath.Join(t.TempDir(), "log")
	gitserver.Git(t, filepath.Dir(check), "clone", "-q", "-b", "agentry/fix-add", url, check)
	msg := gitserver.Git(t, check, "log", "-1", "--format=%an <%ae>%n%B")
	if !strings.Contains(msg, "Agentry <agentry@users.noreply.agentry.dev>") || !strings.Contains(msg, "Agentry-Session: team-a/fix-add/0c6f3a9e-uid") {
		t.Fatalf("commit does not carry the author and the session trailer:\n%s", msg)
	}
	if parent := strings.TrimSpace(gitserver.Git(t, check, "rev-parse", "HEAD^")); parent != res.BaseCommit.String() {
		t.Fatalf("parent = %s, want the base head %s", parent, res.BaseCommit)
	}
	gitserver.Git(t, check, "fsck", "--strict") // fails the test on a malformed tree or commit

	// Delivering again (a manager restarted mid-delivery) pushes nothing new.
	pushes := srv.Pushes
	again, err := delivery.Deliver(ctx, request(srv, url, patch))
	if err != nil {
		t.Fatalf("second Deliver: %v", err)
	}
	if again.Pushed || again.Commit != res.Commit || srv.Pushes != pushes {
		t.Fatalf("second delivery = %+v (pushes %d→%d), want the same commit and no push", again, pushes, srv.Pushes)
	}
}

func TestDeliverAppliesOnAMovedBaseOrReportsTheConflict(t *testing.T) {
	ctx := context.Background()
	srv := gitserver.Start(t, "agentry", "pw")
	url := srv.Init(t, "demo", "main", base)
	patch := agentPatch(t, url, func(dir string) {
		write(t, dir, "docs/guide.md", "one\ntwo\nthree\nfour\nFIVE\nsix\nseven\neight\nnine\nten\n")
	})

	// Someone adds lines above the change: the hunk applies shifted.
	up := filepath.Join(t.TempDir(), "up")
	gitserver.Git(t, filepath.Dir(up), "clone", "-q", url, up)
	write(t, up, "docs/guide.md", "zero\nhalf\none\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\nten\n")
	gitserver.Git(t, up, "commit", "-qam", "prepend")
	gitserver.Git(t, up, "push", "-q", "http://agentry:pw@"+strings.TrimPrefix(url, "http://"), "main")

	if _, err := delivery.Deliver(ctx, request(srv, url, patch)); err != nil {
		t.Fatalf("Deliver on a moved base: %v", err)
	}
	if got := tree(t, url, "agentry/fix-add")["docs/guide.md"]; !strings.HasSuffix(got, "zero\nhalf\none\ntwo\nthree\nfour\nFIVE\nsix\nseven\neight\nnine\nten\n") {
		t.Fatalf("guide.md = %q", got)
	}

	// Someone changes the same line: the change does not apply, nothing is pushed.
	write(t, up, "docs/guide.md", "zero\nhalf\none\ntwo\nthree\nfour\nfive!\nsix\nseven\neight\nnine\nten\n")
	gitserver.Git(t, up, "commit", "-qam", "conflict")
	gitserver.Git(t, up, "push", "-q", "http://agentry:pw@"+strings.TrimPrefix(url, "http://"), "main")
	pushes := srv.Pushes
	_, err := delivery.Deliver(ctx, request(srv, url, patch))
	var conflict *delivery.ConflictError
	if !errors.As(err, &conflict) || conflict.Path != "docs/guide.md" {
		t.Fatalf("err = %v, want a conflict on docs/guide.md", err)
	}
	if srv.Pushes != pushes {
		t.Fatalf("a conflicting delivery pushed")
	}
}

func TestDeliverRefusesWhatItMustNot(t *testing.T) {
	ctx := context.Background()
	srv := gitserver.Start(t, "agentry", "pw")
	url := srv.Init(t, "demo", "main", base)
	patch := agentPatch(t, url, func(dir string) { write(t, dir, "README.md", "# changed\n") })

	t.Run("wrong password", func(t *testing.T) {
		r := request(srv, url, patch)
		r.Auth = &githttp.BasicAuth{Username: "agentry", Password: "wrong"}
		if _, err := delivery.Deliver(ctx, r); err == nil || strings.Contains(err.Error(), "wrong") {
			t.Fatalf("err = %v, want a refusal that does not echo the password", err)
		}
	})
	t.Run("a branch someone else owns", func(t *testing.T) {
		up := filepath.Join(t.TempDir(), "up")
		gitserver.Git(t, filepath.Dir(up), "clone", "-q", url, up)
		gitserver.Git(t, up, "checkout", "-qb", "agentry/fix-add")
		write(t, up, "mine.txt", "a person's work\n")
		gitserver.Git(t, up, "add", "-A")
		gitserver.Git(t, up, "commit", "-qm", "my work")
		gitserver.Git(t, up, "push", "-q", "http://agentry:pw@"+strings.TrimPrefix(url, "http://"), "agentry/fix-add")
		pushes := srv.Pushes
		_, err := delivery.Deliver(ctx, request(srv, url, patch))
		if !errors.Is(err, delivery.ErrBranchExists) {
			t.Fatalf("err = %v, want ErrBranchExists", err)
		}
		if srv.Pushes != pushes || tree(t, url, "agentry/fix-add")["mine.txt"] == "" {
			t.Fatalf("the person's branch was overwritten")
		}
	})
	t.Run("same session re-created replaces its own delivery", func(t *testing.T) {
		r := request(srv, url, patch)
		r.Branch = "agentry/again"
		if _, err := delivery.Deliver(ctx, r); err != nil {
			t.Fatal(err)
		}
		r.Session = "team-a/fix-add/another-uid"
		r.Patch = agentPatch(t, url, func(dir string) { write(t, dir, "README.md", "# changed twice\n") })
		if _, err := delivery.Deliver(ctx, r); err != nil {
			t.Fatalf("re-delivery by the same session name: %v", err)
		}
		if got := tree(t, url, "agentry/again")["README.md"]; !strings.HasSuffix(got, "# changed twice\n") {
			t.Fatalf("README.md = %q", got)
		}
	})

	hostile := map[string]string{
		"hook in .git":     "diff --git a/.git/hooks/pre-commit b/.git/hooks/pre-commit\nnew file mode 100755\n--- /dev/null\n+++ b/.git/hooks/pre-commit\n@@ -0,0 +1 @@\n+touch /tmp/pwned\n",
		".GIT spelling":    "diff --git a/.GIT/config b/.GIT/config\nnew file mode 100644\n--- /dev/null\n+++ b/.GIT/config\n@@ -0,0 +1 @@\n+[core]\n",
		"nested .git":      "diff --git a/sub/.git./config b/sub/.git./config\nnew file mode 100644\n--- /dev/null\n+++ b/sub/.git./config\n@@ -0,0 +1 @@\n+x\n",
		"NTFS stream":      "diff --git a/.git::$INDEX_ALLOCATION/config b/.git::$INDEX_ALLOCATION/config\nnew file mode 100644\n--- /dev/null\n+++ b/.git::$INDEX_ALLOCATION/config\n@@ -0,0 +1 @@\n+x\n",
		"HFS ignorable":    "diff --git a/.g\u200cit/config b/.g\u200cit/config\nnew file mode 100644\n--- /dev/null\n+++ b/.g\u200cit/config\n@@ -0,0 +1 @@\n+x\n",
		"dot-dot":          "diff --git a/../escape b/../escape\nnew file mode 100644\n--- /dev/null\n+++ b/../escape\n@@ -0,0 +1 @@\n+x\n",
		"absolute path":    "diff --git a//etc/passwd b//etc/passwd\nnew file mode 100644\n--- /dev/null\n+++ b//etc/passwd\n@@ -0,0 +1 @@\n+x\n",
		"submodule":        "diff --git a/sub b/sub\nnew file mode 160000\n--- /dev/null\n+++ b/sub\n@@ -0,0 +1 @@\n+Subproject commit 0000000000000000000000000000000000000000\n",
		"rename":           "diff --git a/README.md b/x.md\nsimilarity index 100%\nrename from README.md\nrename to x.md\n",
		"binary":           "diff --git a/img.png b/img.png\nnew file mode 100644\nBinary files /dev/null and b/img.png differ\n",
		"lying hunk count": "diff --git a/README.md b/README.md\n--- a/README.md\n+++ b/README.md\n@@ -1,1 +1,5 @@\n-# demo\n+# x\n",
		"file under a symlink": "diff --git a/link b/link\nnew file mode 120000\n--- /dev/null\n+++ b/link\n@@ -0,0 +1 @@\n+/etc\n\\ No newline at end of file\n" +
			"diff --git a/link/passwd b/link/passwd\nnew file mode 100644\n--- /dev/null\n+++ b/link/passwd\n@@ -0,0 +1 @@\n+root::0:0::/:/bin/sh\n",
	}
	for name, p := range hostile {
		t.Run(name, func(t *testing.T) {
			pushes := srv.Pushes
			r := request(srv, url, []byte(p))
			r.Branch = "agentry/hostile"
			_, err := delivery.Deliver(ctx, r)
			var conflict *delivery.ConflictError
			if !errors.Is(err, delivery.ErrPatch) && !errors.As(err, &conflict) {
				t.Fatalf("err = %v, want the patch refused", err)
			}
			if srv.Pushes != pushes {
				t.Fatalf("a hostile patch was pushed")
			}
		})
	}
}
