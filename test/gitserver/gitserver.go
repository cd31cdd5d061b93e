// Package gitserver serves bare repositories over git's smart HTTP protocol in tests, with
// git http-backend (the server git itself ships) behind net/http/cgi: clones, fetches and,
// for a user with the right password, pushes.
package gitserver

import (
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Server is a running git server.
type Server struct {
	// URL is the server's root; a repository created with Init is at URL + "/" + name.
	URL  string
	Root string
	// User and Password are what a push must carry as HTTP basic auth.
	User, Password string
	// Pushes counts receive-pack requests that were let through.
	Pushes int
}

// Start serves a fresh directory of bare repositories until the test ends.
func Start(t testing.TB, user, password string) *Server {
	t.Helper()
	git, err := exec.LookPath("git")
	if err != nil {
		t.Fatalf("git is needed to serve repositories: %v", err)
	}
	s := &Server{Root: t.TempDir(), User: user, Password: password}
	backend := &cgi.Handler{
		Path: git,
		Args: []string{"http-backend"},
		Env:  []string{"GIT_PROJECT_ROOT=" + s.Root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		push := strings.HasSuffix(r.URL.Path, "/git-receive-pack") || r.URL.Query().Get("service") == "git-receive-pack"
		if push {
			u, p, ok := r.BasicAuth()
			if !ok {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
			if u != s.User || p != s.Password {
				http.Error(w, "forbidden", http.StatusForbidden)
				return
			}
			if strings.HasSuffix(r.URL.Path, "/git-receive-pack") {
				s.Pushes++
			}
			r.Header.Set("Remote-User", u)
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Init creates a bare repository name.git holding files on branch, and returns its URL.
func (s *Server) Init(t testing.TB, name, branch string, files map[string]string) string {
	t.Helper()
	work := t.TempDir()
	Git(t, work, "init", "-q", "-b", branch)
	for p, content := range files {
		full := filepath.Join(work, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	Git(t, work, "add", "-A")
	Git(t, work, "commit", "-q", "-m", "initial")
	bare := filepath.Join(s.Root, name+".git")
	Git(t, s.Root, "clone", "-q", "--bare", work, bare)
	Git(t, bare, "config", "http.receivepack", "true")
	return s.URL + "/" + name + ".git"
}

// Git runs git in dir with a fixed identity and no user or system configuration.
func Git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_NOSYSTEM=1", "HOME="+dir, "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
