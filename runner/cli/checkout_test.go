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

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner/cli"
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
