package cli_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner/gitrepo"
	"github.com/agentry-dev/agentry/runner/internal/testrepo"
)

const continuationToken = "follow-up-runner-token"

// continuationGateway answers the continuation endpoint as the session gateway does, for
// the token continuationToken only; it serves resp as given (tampering included).
func continuationGateway(t *testing.T, resp contract.ContinuationResponse) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != contract.PathContinuation {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+continuationToken {
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(contract.GatewayError{Error: "bad token"})
			return
		}
		_ = json.NewEncoder(w).Encode(resp)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func tokenFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(continuationToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func headOf(t *testing.T, dir string) string {
	t.Helper()
	repo, err := git.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	head, err := repo.Head()
	if err != nil {
		t.Fatal(err)
	}
	return head.Hash().String()
}

func continuationOf(patch []byte, commit string) contract.ContinuationResponse {
	sum := sha256.Sum256(patch)
	return contract.ContinuationResponse{Session: "first", Commit: commit, PatchSHA256: hex.EncodeToString(sum[:]), Patch: patch}
}

// earlierPatch is what the earlier session's runner archived: its workspace diff after
// changing, adding (one executable), deleting and linking files.
func earlierPatch(t *testing.T, origin string) []byte {
	t.Helper()
	ws := filepath.Join(t.TempDir(), "earlier")
	if code, out := checkout(t, "--repo", origin, "--dir", ws); code != 0 {
		t.Fatalf("checkout: %s", out)
	}
	testrepo.Write(t, ws, map[string]string{"main.go": "package main\n\nfunc main() { println(\"hello\") }\n", "docs/new.md": "# new\n"})
	if err := os.WriteFile(filepath.Join(ws, "run.sh"), []byte("#!/bin/sh\necho run\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(ws, "old.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("docs/new.md", filepath.Join(ws, "NEW")); err != nil {
		t.Fatal(err)
	}
	return diffOf(t, ws)
}

func diffOf(t *testing.T, dir string) []byte {
	t.Helper()
	r, err := gitrepo.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.Diff()
	if err != nil {
		t.Fatal(err)
	}
	return p.Text
}

// TestCheckoutAppliesTheEarlierSessionsPatch: a follow-up's checkout ends with the earlier
// session's changes in the working tree, uncommitted, so the follow-up's own patch (against
// the same base) still carries them.
func TestCheckoutAppliesTheEarlierSessionsPatch(t *testing.T) {
	origin := testrepo.New(t, map[string]string{"main.go": "package main\n\nfunc main() {}\n", "old.txt": "old\n"})
	commit := headOf(t, origin)
	patch := earlierPatch(t, origin)
	gw := continuationGateway(t, continuationOf(patch, commit))

	ws := filepath.Join(t.TempDir(), "ws")
	code, out := checkout(t, "--repo", origin, "--dir", ws, "--ref", commit,
		"--continuation-from-gateway", gw.URL, "--token-file", tokenFile(t), "--allow-plain-http-gateway")
	if code != 0 {
		t.Fatalf("checkout exit %d: %s", code, out)
	}
	if !strings.Contains(out, "applied the patch of session first (5 files") {
		t.Errorf("output %q does not say what was applied", out)
	}
	if b, _ := os.ReadFile(filepath.Join(ws, "main.go")); !strings.Contains(string(b), `println("hello")`) {
		t.Errorf("main.go = %q, want the earlier change", b)
	}
	if fi, err := os.Stat(filepath.Join(ws, "run.sh")); err != nil || fi.Mode().Perm()&0o100 == 0 {
		t.Errorf("run.sh = %v, %v; want an executable file", fi, err)
	}
	if _, err := os.Lstat(filepath.Join(ws, "old.txt")); !os.IsNotExist(err) {
		t.Errorf("old.txt should be deleted: %v", err)
	}
	if target, err := os.Readlink(filepath.Join(ws, "NEW")); err != nil || target != "docs/new.md" {
		t.Errorf("NEW = %q, %v; want a symlink to docs/new.md", target, err)
	}
	if headOf(t, ws) != commit {
		t.Errorf("the patch was committed: HEAD moved from %s", commit)
	}
	if got := diffOf(t, ws); string(got) != string(patch) {
		t.Errorf("the follow-up's diff differs from the earlier patch:\n%s\nwant:\n%s", got, patch)
	}
}

// TestCheckoutRefusesAHostilePatch: the earlier session's agent wrote the patch. A path
// into .git (any spelling), out of the workspace, through a symlink, a patch that does not
// apply, or one that is not the patch the gateway vouches for fails the checkout with a
// message naming the problem, and writes nothing there.
func TestCheckoutRefusesAHostilePatch(t *testing.T) {
	origin := testrepo.New(t, map[string]string{"main.go": "package main\n", "docs/a.md": "a\n"})
	commit := headOf(t, origin)
	newFile := func(p string) string {
		return "diff --git a/" + p + " b/" + p + "\nnew file mode 100644\n--- /dev/null\n+++ b/" + p + "\n@@ -0,0 +1 @@\n+#!/bin/sh\n"
	}
	tampered := continuationOf([]byte(newFile("ok.txt")), commit)
	tampered.PatchSHA256 = strings.Repeat("0", 64)
	cases := map[string]struct {
		resp    contract.ContinuationResponse
		want    string
		planted string
	}{
		"git hook":        {continuationOf([]byte(newFile(".git/hooks/post-checkout")), commit), "names a .git directory", ".git/hooks/post-checkout"},
		"git case":        {continuationOf([]byte(newFile(".GIT/config")), commit), "names a .git directory", ".GIT/config"},
		"git 8.3 name":    {continuationOf([]byte(newFile("GIT~1/config")), commit), "names a .git directory", ""},
		"parent dir":      {continuationOf([]byte(newFile("../escaped")), commit), "..", "../escaped"},
		"absolute":        {continuationOf([]byte("diff --git a//tmp/x b//tmp/x\nnew file mode 100644\n--- /dev/null\n+++ b//tmp/x\n@@ -0,0 +1 @@\n+x\n"), commit), "not a relative repository path", ""},
		"through symlink": {continuationOf([]byte("diff --git a/link b/link\nnew file mode 120000\n--- /dev/null\n+++ b/link\n@@ -0,0 +1 @@\n+.git\n\\ No newline at end of file\n"+newFile("link/hooks/pre-commit")), commit), "link is not a directory", ".git/hooks/pre-commit"},
		"does not apply":  {continuationOf([]byte("diff --git a/main.go b/main.go\n--- a/main.go\n+++ b/main.go\n@@ -1 +1 @@\n-package other\n+package main2\n"), commit), "main.go: hunk 1 does not apply", ""},
		"already exists":  {continuationOf([]byte(newFile("docs/a.md")), commit), "already has it", ""},
		"tampered":        {tampered, "refusing it", "ok.txt"},
		"other base":      {continuationOf([]byte(newFile("ok.txt")), strings.Repeat("1", 40)), "its patch is not applied", "ok.txt"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			gw := continuationGateway(t, tc.resp)
			base := t.TempDir()
			ws := filepath.Join(base, "ws")
			code, out := checkout(t, "--repo", origin, "--dir", ws, "--ref", commit,
				"--continuation-from-gateway", gw.URL, "--token-file", tokenFile(t), "--allow-plain-http-gateway")
			if code == 0 {
				t.Fatalf("a hostile patch was applied: %s", out)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("output %q lacks %q", out, tc.want)
			}
			if tc.planted != "" {
				if _, err := os.Lstat(filepath.Join(ws, tc.planted)); !os.IsNotExist(err) {
					t.Errorf("%s was written: %v", tc.planted, err)
				}
			}
			if b, _ := os.ReadFile(filepath.Join(ws, "main.go")); string(b) != "package main\n" {
				t.Errorf("main.go changed to %q", b)
			}
		})
	}
}

// TestCheckoutContinuationNeedsTheToken: without the pod's token the gateway answers
// nothing, and the checkout says so instead of starting without the earlier work.
func TestCheckoutContinuationNeedsTheToken(t *testing.T) {
	origin := testrepo.New(t, map[string]string{"main.go": "package main\n"})
	gw := continuationGateway(t, continuationOf(nil, headOf(t, origin)))
	bad := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(bad, []byte("someone-elses-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out := checkout(t, "--repo", origin, "--dir", filepath.Join(t.TempDir(), "ws"),
		"--continuation-from-gateway", gw.URL, "--token-file", bad, "--allow-plain-http-gateway")
	if code == 0 || !strings.Contains(out, "refused the earlier session's archive (401)") {
		t.Fatalf("exit %d, output %q", code, out)
	}
	code, out = checkout(t, "--repo", origin, "--dir", filepath.Join(t.TempDir(), "ws"),
		"--continuation-from-gateway", gw.URL, "--token-file", bad)
	if code == 0 || !strings.Contains(out, "--continuation-from-gateway") {
		t.Fatalf("a plain-http gateway was used without --allow-plain-http-gateway: exit %d, %q", code, out)
	}
}
