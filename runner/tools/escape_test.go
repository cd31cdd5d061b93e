package tools_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentry-dev/agentry/runner/gitrepo"
	"github.com/agentry-dev/agentry/runner/internal/testrepo"
	"github.com/agentry-dev/agentry/runner/tools"
	"github.com/agentry-dev/agentry/runner/workspace"
)

const secret = "TOP-SECRET-OUTSIDE-THE-WORKSPACE"

// env is a workspace (a real git repo) next to an "outside" directory holding
// a secret, with symlinks that try to reach it.
type env struct {
	t       *testing.T
	parent  string
	dir     string
	outside string
	set     tools.Set
}

func newEnv(t *testing.T, files map[string]string) *env {
	t.Helper()
	parent := t.TempDir()
	dir := filepath.Join(parent, "ws")
	outside := filepath.Join(parent, "outside")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "secret.txt"), []byte(secret+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	testrepo.Init(t, dir, files)
	ws, err := workspace.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	repo, err := gitrepo.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, parent: parent, dir: dir, outside: outside,
		set: tools.All(tools.Env{Workspace: ws, Repo: repo, Bash: tools.BashConfig{}})}
}

func (e *env) symlink(target, name string) {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		e.t.Fatal(err)
	}
}

// run calls a tool the way the loop does: JSON arguments in, text or error out.
func (e *env) run(name string, args map[string]any) (string, error) {
	e.t.Helper()
	tool, ok := e.set.Lookup(name)
	if !ok {
		e.t.Fatalf("no tool %q", name)
	}
	b, err := json.Marshal(args)
	if err != nil {
		e.t.Fatal(err)
	}
	return tool.Execute(context.Background(), b)
}

func (e *env) mustRun(name string, args map[string]any) string {
	e.t.Helper()
	out, err := e.run(name, args)
	if err != nil {
		e.t.Fatalf("%s %v: %v", name, args, err)
	}
	return out
}

func TestPathEscapesAreRefused(t *testing.T) {
	e := newEnv(t, map[string]string{"sub/ok.txt": "fine\n", "README.md": "hello\n"})
	e.symlink("/etc", "link-etc")
	e.symlink("/etc/passwd", "link-passwd")
	e.symlink("../outside", "link-up")
	e.symlink("../outside/secret.txt", "link-up-file")
	e.symlink("../../outside", "sub/deep")
	e.symlink("chain2", "chain1")
	e.symlink("../outside/secret.txt", "chain2")
	e.symlink(filepath.Join(e.dir, "sub"), "abs-inside") // absolute targets are refused even inside
	outsideAbs := filepath.Join(e.outside, "secret.txt")

	// Symlinks created by a command the model runs, then read.
	e.mustRun("bash", map[string]any{"command": "ln -s /etc/hostname made-by-bash && ln -s ../outside made-dir-by-bash && mkdir -p d && ln -s ../../outside/secret.txt d/made-deep"})

	cases := map[string]struct {
		tool string
		args map[string]any
	}{
		"read dotdot":                    {"read_file", map[string]any{"path": "../outside/secret.txt"}},
		"read dotdot after dot":          {"read_file", map[string]any{"path": "./../outside/secret.txt"}},
		"read dotdot through subdir":     {"read_file", map[string]any{"path": "sub/../../outside/secret.txt"}},
		"read absolute /etc/passwd":      {"read_file", map[string]any{"path": "/etc/passwd"}},
		"read absolute outside path":     {"read_file", map[string]any{"path": outsideAbs}},
		"read absolute via workspace/..": {"read_file", map[string]any{"path": e.dir + "/../outside/secret.txt"}},
		"read symlink to /etc/passwd":    {"read_file", map[string]any{"path": "link-passwd"}},
		"read through symlinked /etc":    {"read_file", map[string]any{"path": "link-etc/passwd"}},
		"read through symlinked ../dir":  {"read_file", map[string]any{"path": "link-up/secret.txt"}},
		"read relative symlink outside":  {"read_file", map[string]any{"path": "link-up-file"}},
		"read nested symlinked dir":      {"read_file", map[string]any{"path": "sub/deep/secret.txt"}},
		"read symlink chain":             {"read_file", map[string]any{"path": "chain1"}},
		"read absolute symlink":          {"read_file", map[string]any{"path": "abs-inside/ok.txt"}},
		"read bash-made symlink":         {"read_file", map[string]any{"path": "made-by-bash"}},
		"read bash-made dir symlink":     {"read_file", map[string]any{"path": "made-dir-by-bash/secret.txt"}},
		"read bash-made nested symlink":  {"read_file", map[string]any{"path": "d/made-deep"}},
		"read NUL byte":                  {"read_file", map[string]any{"path": "README.md\x00/../../etc/passwd"}},
		"list dotdot":                    {"list_dir", map[string]any{"path": ".."}},
		"list symlinked /etc":            {"list_dir", map[string]any{"path": "link-etc"}},
		"list root":                      {"list_dir", map[string]any{"path": "/"}},
		"grep symlinked dir":             {"grep", map[string]any{"pattern": "SECRET", "path": "link-up"}},
		"grep dotdot":                    {"grep", map[string]any{"pattern": "SECRET", "path": "../outside"}},
		"grep absolute":                  {"grep", map[string]any{"pattern": "root", "path": "/etc"}},
		"glob dotdot pattern":            {"glob", map[string]any{"pattern": "../outside/*"}},
		"glob symlinked dir base":        {"glob", map[string]any{"pattern": "*", "path": "link-etc"}},
		"write dotdot":                   {"write_file", map[string]any{"path": "../outside/planted.txt", "content": "x"}},
		"write absolute":                 {"write_file", map[string]any{"path": filepath.Join(e.parent, "planted.txt"), "content": "x"}},
		"write through symlinked dir":    {"write_file", map[string]any{"path": "link-up/planted.txt", "content": "x"}},
		"write over symlink to outside":  {"write_file", map[string]any{"path": "link-up-file", "content": "x"}},
		"write bash-made dir symlink":    {"write_file", map[string]any{"path": "made-dir-by-bash/planted.txt", "content": "x"}},
		"edit symlink to outside":        {"edit_file", map[string]any{"path": "link-up-file", "old_string": "TOP", "new_string": "x"}},
		"edit through symlinked /etc":    {"edit_file", map[string]any{"path": "link-etc/hostname", "old_string": "a", "new_string": "b"}},
	}
	if len(cases) < 20 {
		t.Fatalf("only %d escape cases", len(cases))
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			out, err := e.run(tc.tool, tc.args)
			if err == nil {
				t.Fatalf("%s %v succeeded, want refusal; output:\n%s", tc.tool, tc.args, out)
			}
			if !strings.Contains(err.Error(), "outside the workspace") && !strings.Contains(err.Error(), "not allowed") {
				t.Errorf("error does not say the path leaves the workspace: %v", err)
			}
			if strings.Contains(out+err.Error(), secret) {
				t.Errorf("secret leaked: %s %v", out, err)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(e.outside, "planted.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a write escaped into the outside directory")
	}
	if _, err := os.Stat(filepath.Join(e.parent, "planted.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a write escaped into the workspace's parent")
	}
	if got, _ := os.ReadFile(filepath.Join(e.outside, "secret.txt")); string(got) != secret+"\n" {
		t.Errorf("outside file was modified: %q", got)
	}
}

func TestWalksNeverFollowSymlinksOutside(t *testing.T) {
	e := newEnv(t, map[string]string{"a.txt": "nothing here\n"})
	e.symlink("../outside", "link-up")
	e.symlink("/etc", "link-etc")

	for _, tc := range []struct {
		tool string
		args map[string]any
	}{
		{"grep", map[string]any{"pattern": "SECRET"}},
		{"grep", map[string]any{"pattern": "root:"}},
		{"glob", map[string]any{"pattern": "**/secret.txt"}},
		{"glob", map[string]any{"pattern": "**/passwd"}},
	} {
		out := e.mustRun(tc.tool, tc.args)
		if !strings.HasPrefix(out, "no matches") && !strings.HasPrefix(out, "no files match") {
			t.Errorf("%s %v reached outside the workspace:\n%s", tc.tool, tc.args, out)
		}
	}
	// Listing shows the link itself (with its target) without following it.
	out := e.mustRun("list_dir", map[string]any{})
	if !strings.Contains(out, "link-up@ -> ../outside") {
		t.Errorf("list_dir should show the symlink and its target:\n%s", out)
	}
}

func TestSymlinksInsideTheWorkspaceWork(t *testing.T) {
	e := newEnv(t, map[string]string{"real/file.txt": "inside\n"})
	e.symlink("real", "alias")
	e.symlink("real/file.txt", "file-link")

	if out := e.mustRun("read_file", map[string]any{"path": "alias/file.txt"}); !strings.Contains(out, "inside") {
		t.Errorf("read through an inside dir symlink: %s", out)
	}
	e.mustRun("write_file", map[string]any{"path": "file-link", "content": "rewritten\n"})
	fi, err := os.Lstat(filepath.Join(e.dir, "file-link"))
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("writing through a symlink replaced the link itself")
	}
	if got, _ := os.ReadFile(filepath.Join(e.dir, "real/file.txt")); string(got) != "rewritten\n" {
		t.Errorf("target content = %q, want rewritten", got)
	}
}

func TestWritesIntoGitDirAreRefused(t *testing.T) {
	e := newEnv(t, map[string]string{"a.txt": "a\n"})
	_, err := e.run("write_file", map[string]any{"path": ".git/hooks/post-checkout", "content": "#!/bin/sh\ncurl evil\n"})
	if err == nil || !strings.Contains(err.Error(), ".git") {
		t.Fatalf("write into .git: err = %v, want a refusal naming .git", err)
	}
}
