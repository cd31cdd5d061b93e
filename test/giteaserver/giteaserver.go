// Package giteaserver runs Gitea, a real git forge, as a child process for tests: pull
// requests, labels and git over smart HTTP, on a loopback port, backed by SQLite in a
// directory of its own. The binary is built by hack/build-gitea.sh into bin/.
package giteaserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Server is a running Gitea with one admin user.
type Server struct {
	// URL is the web and git root, http://127.0.0.1:PORT, without a trailing slash.
	URL           string
	AdminUser     string
	AdminPassword string
	// AdminToken is an access token of AdminUser with all scopes.
	AdminToken string
	// Dir holds the configuration, the database, the repositories and the log.
	Dir string

	bin  string
	conf string
	cmd  *exec.Cmd
	done chan error
}

// Binary returns the gitea binary: $AGENTRY_GITEA, or bin/gitea.
func Binary() string {
	if b := os.Getenv("AGENTRY_GITEA"); b != "" {
		return b
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "bin", "gitea")
}

// Start configures Gitea in dir (created if missing), creates the admin user and its token,
// and serves on a free loopback port until Stop. ctx bounds the start only.
func Start(ctx context.Context, binary, dir string) (*Server, error) {
	if _, err := os.Stat(binary); err != nil {
		return nil, fmt.Errorf("gitea not found at %s: run 'bash hack/build-gitea.sh' first: %w", binary, err)
	}
	static, err := staticRoot(ctx, binary)
	if err != nil {
		return nil, err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{
		URL:           "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		AdminUser:     "agentry",
		AdminPassword: randomHex(12),
		Dir:           dir,
		bin:           binary,
		conf:          filepath.Join(dir, "app.ini"),
	}
	if err := os.WriteFile(s.conf, []byte(appINI(dir, static, port)), 0o600); err != nil {
		return nil, err
	}
	if _, err := s.admin(ctx, "migrate"); err != nil {
		return nil, err
	}
	if _, err := s.admin(ctx, "admin", "user", "create", "--admin", "--username", s.AdminUser,
		"--password", s.AdminPassword, "--email", s.AdminUser+"@agentry.test", "--must-change-password=false"); err != nil {
		return nil, err
	}
	if s.AdminToken, err = s.NewToken(ctx, s.AdminUser, "admin"); err != nil {
		return nil, err
	}
	return s, s.serve(ctx)
}

// appINI is the whole configuration: everything under dir, nothing Gitea would otherwise
// do in the background (cron, indexers, mail) that a test does not need.
func appINI(dir, static string, port int) string {
	var b strings.Builder
	b.WriteString("APP_NAME = agentry-test\nRUN_MODE = prod\n")
	if u, err := user.Current(); err == nil {
		fmt.Fprintf(&b, "RUN_USER = %s\n", u.Username)
	}
	if os.Getuid() == 0 {
		// Gitea refuses root, the user of many CI containers.
		b.WriteString("I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true\n")
	}
	fmt.Fprintf(&b, `
[server]
HTTP_ADDR = 127.0.0.1
HTTP_PORT = %[3]d
ROOT_URL = http://127.0.0.1:%[3]d/
DISABLE_SSH = true
START_SSH_SERVER = false
OFFLINE_MODE = true
LFS_START_SERVER = false
APP_DATA_PATH = %[1]s/data
STATIC_ROOT_PATH = %[2]s

[database]
DB_TYPE = sqlite3
PATH = %[1]s/data/gitea.db

[repository]
ROOT = %[1]s/repositories

[security]
INSTALL_LOCK = true
SECRET_KEY = %[4]s
INTERNAL_TOKEN = %[5]s

[service]
DISABLE_REGISTRATION = true

[log]
MODE = file
LEVEL = Info
ROOT_PATH = %[1]s/log

[indexer]
ISSUE_INDEXER_TYPE = db
REPO_INDEXER_ENABLED = false

[cron]
ENABLED = false

[cron.update_checker]
ENABLED = false

[mailer]
ENABLED = false

[oauth2]
ENABLED = false

[webhook]
ALLOWED_HOST_LIST = *
`, dir, static, port, randomHex(32), randomHex(48))
	return b.String()
}

// staticRoot is where Gitea reads its options (translations among them; it does not start
// without them): $AGENTRY_GITEA_STATIC, or the Gitea module source hack/build-gitea.sh built
// the binary from, found by the version in the binary's name (bin/gitea -> gitea-v1.27.3).
func staticRoot(ctx context.Context, binary string) (string, error) {
	if d := os.Getenv("AGENTRY_GITEA_STATIC"); d != "" {
		return d, nil
	}
	target, err := filepath.EvalSymlinks(binary)
	if err != nil {
		return "", err
	}
	// hack/build-gitea.sh copies them beside the binary, so bin/ alone is enough.
	if _, err := os.Stat(filepath.Join(target+"-static", "options", "locale")); err == nil {
		return target + "-static", nil
	}
	m := regexp.MustCompile(`^gitea-(v[0-9][^/]*)$`).FindStringSubmatch(filepath.Base(target))
	if m == nil {
		return "", fmt.Errorf("cannot tell the Gitea version of %s (want a file named gitea-vX.Y.Z): set AGENTRY_GITEA_STATIC to its source tree", target)
	}
	out, err := exec.CommandContext(ctx, "go", "env", "GOMODCACHE").Output()
	if err != nil {
		return "", fmt.Errorf("finding the Go module cache: %w", err)
	}
	src := filepath.Join(strings.TrimSpace(string(out)), "code.gitea.io", "gitea@"+m[1])
	if _, err := os.Stat(filepath.Join(src, "options", "locale")); err != nil {
		return "", fmt.Errorf("gitea %s source (its options/) not in the module cache: run 'bash hack/build-gitea.sh' or set AGENTRY_GITEA_STATIC: %w", m[1], err)
	}
	return src, nil
}

// admin runs a gitea command against the configuration and returns its standard output.
func (s *Server) admin(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, s.bin, append([]string{"--config", s.conf, "--work-path", s.Dir}, args...)...)
	cmd.Env = s.env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("gitea %s: %w: %s", strings.Join(args[:min(len(args), 3)], " "), err, lastLines(stderr.String()+stdout.String(), 5))
	}
	return stdout.String(), nil
}

func (s *Server) env() []string {
	return append(os.Environ(), "GITEA_WORK_DIR="+s.Dir, "HOME="+s.Dir)
}

func (s *Server) serve(ctx context.Context) error {
	logf, err := os.Create(filepath.Join(s.Dir, "web.log"))
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own descriptor
	s.cmd = exec.Command(s.bin, "--config", s.conf, "--work-path", s.Dir, "web")
	s.cmd.Env = s.env()
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	// Its own process group, so a test's interrupt does not race our orderly stop.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("starting gitea: %w", err)
	}
	s.done = make(chan error, 1)
	go func() { s.done <- s.cmd.Wait() }()

	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-s.done:
			s.cmd = nil
			return fmt.Errorf("gitea exited at start: %w: %s", err, s.logTail())
		case <-ctx.Done():
			_ = s.Stop()
			return fmt.Errorf("gitea did not answer on %s: %w: %s", s.URL, ctx.Err(), s.logTail())
		case <-tick.C:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/api/healthz", nil)
		if err != nil {
			return err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
}

func (s *Server) logTail() string {
	var out string
	for _, f := range []string{filepath.Join(s.Dir, "web.log"), filepath.Join(s.Dir, "log", "gitea.log")} {
		if b, err := os.ReadFile(f); err == nil {
			out += lastLines(string(b), 10)
		}
	}
	return out
}

// Stop stops the server; its directory stays.
func (s *Server) Stop() error {
	if s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		err = <-s.done
	}
	s.cmd = nil
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return nil // ended by our signal
	}
	return err
}

// NewToken creates an access token for user (all scopes when none are given).
func (s *Server) NewToken(ctx context.Context, user, name string, scopes ...string) (string, error) {
	scope := "all"
	if len(scopes) > 0 {
		scope = strings.Join(scopes, ",")
	}
	out, err := s.admin(ctx, "admin", "user", "generate-access-token", "--username", user, "--token-name", name, "--scopes", scope, "--raw")
	if err != nil {
		return "", err
	}
	lines := strings.Fields(out)
	if len(lines) == 0 {
		return "", errors.New("gitea printed no token")
	}
	return lines[len(lines)-1], nil
}

// CreateRepo creates owner/name (owner "" is the admin user; another owner must exist) with
// one commit of files on defaultBranch, and returns its clone URL.
func (s *Server) CreateRepo(ctx context.Context, owner, name string, files map[string]string, defaultBranch string) (string, error) {
	path := "/api/v1/user/repos"
	if owner == "" {
		owner = s.AdminUser
	} else if owner != s.AdminUser {
		path = "/api/v1/admin/users/" + url.PathEscape(owner) + "/repos"
	}
	req := map[string]any{"name": name, "default_branch": defaultBranch, "private": false}
	if err := s.API(ctx, http.MethodPost, path, req, nil); err != nil {
		return "", err
	}
	cloneURL := s.URL + "/" + owner + "/" + name + ".git"
	work, err := os.MkdirTemp("", "giteaserver-repo-*")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	for p, content := range files {
		f := filepath.Join(work, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	for _, args := range [][]string{
		{"init", "-q", "-b", defaultBranch},
		{"add", "-A"},
		{"commit", "-q", "--allow-empty", "-m", "Initial commit"},
		{"push", "-q", cloneURL, defaultBranch},
	} {
		if _, err := s.Git(ctx, work, args...); err != nil {
			return "", err
		}
	}
	// Gitea takes in a push in the background; until then the repository counts as empty
	// and its pull request API answers 404.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var repo struct {
			Empty bool `json:"empty"`
		}
		if err := s.API(ctx, http.MethodGet, "/api/v1/repos/"+url.PathEscape(owner)+"/"+url.PathEscape(name), nil, &repo); err != nil {
			return "", err
		}
		if !repo.Empty {
			return cloneURL, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("repository %s/%s still empty after the push: %w", owner, name, ctx.Err())
		case <-tick.C:
		}
	}
}

// Git runs git in dir as the admin user: its token travels in an http.extraHeader given on
// the command line, never in a URL or a configuration file. The global and system git
// configuration are ignored.
func (s *Server) Git(ctx context.Context, dir string, args ...string) (string, error) {
	return RunGit(ctx, dir, BasicAuthHeader(s.AdminUser, s.AdminToken), args...)
}

// BasicAuthHeader is an Authorization header value for HTTP basic authentication.
func BasicAuthHeader(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// RunGit runs git in dir with an Authorization header (none when empty) for HTTP remotes,
// as a fixed committer, ignoring the global and system git configuration.
func RunGit(ctx context.Context, dir, authorization string, args ...string) (string, error) {
	full := []string{"-c", "user.name=Agentry Test", "-c", "user.email=test@agentry.test", "-c", "init.defaultBranch=main"}
	if authorization != "" {
		full = append(full, "-c", "http.extraHeader=Authorization: "+authorization)
	}
	cmd := exec.CommandContext(ctx, "git", append(full, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// API calls Gitea's REST API (path from /api/v1) as the admin user, sending in as JSON and
// decoding the answer into out when out is not nil.
func (s *Server) API(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "token "+s.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
