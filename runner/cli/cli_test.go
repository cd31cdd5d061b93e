package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner/cli"
	"github.com/agentry-dev/agentry/runner/internal/s3test"
	"github.com/agentry-dev/agentry/runner/internal/testrepo"
	"github.com/agentry-dev/agentry/test/scriptedllm"
)

const key = "sk-proj-cliTestKey0123456789abcdefABCDEF"

type result struct {
	code             int
	stdout, stderr   string
	termination      contract.Summary
	terminationBytes int
}

func run(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	t.Setenv("TMPDIR", t.TempDir()) // workspaces cloned without --workspace go here
	var out, errb bytes.Buffer
	term := filepath.Join(t.TempDir(), "termination-log")
	args = append(args, "--termination-message-path", term)
	code := cli.Run(context.Background(), args, cli.IO{
		In: strings.NewReader(""), Out: &out, Err: &errb,
		Getenv: func(k string) string { return env[k] },
	})
	r := result{code: code, stdout: out.String(), stderr: errb.String()}
	if b, err := os.ReadFile(term); err == nil {
		r.terminationBytes = len(b)
		if err := json.Unmarshal(b, &r.termination); err != nil {
			t.Fatalf("termination message is not JSON: %v\n%s", err, b)
		}
	}
	return r
}

func TestLocalRunEndToEnd(t *testing.T) {
	origin := testrepo.New(t, map[string]string{"hello.txt": "helo world\n"})
	srv := scriptedllm.New(
		scriptedllm.Tools(scriptedllm.Call{Name: "grep", Args: map[string]any{"pattern": "helo"}}),
		scriptedllm.Tools(scriptedllm.Call{Name: "edit_file", Args: map[string]any{"path": "hello.txt", "old_string": "helo", "new_string": "hello"}}),
		scriptedllm.Tools(scriptedllm.Call{Name: "bash", Args: map[string]any{"command": "cat hello.txt"}}),
		scriptedllm.Text("Fixed the typo in hello.txt."),
	)
	defer srv.Close()
	srv.RequireKey(key)
	dir := filepath.Join(t.TempDir(), "session")
	r := run(t, map[string]string{"OPENAI_API_KEY": key},
		"run", "--repo", origin, "--task", "Fix the typo", "--base-url", srv.URL, "--model", "scripted",
		"--transcript-dir", dir, "--yes")

	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if r.stdout != "Fixed the typo in hello.txt.\n" {
		t.Errorf("stdout = %q, want the model's answer only", r.stdout)
	}
	for _, want := range []string{
		"agentry runner", "cloning " + origin, "turn 1", "✓ grep /helo/", "› bash cat hello.txt", "exit code: 0",
		"✓ Completed", "1 file changed, +1 -1", filepath.Join(dir, "transcript.jsonl"), filepath.Join(dir, "result.patch"),
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("progress lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, key) || strings.Contains(r.stderr, "\x1b[") {
		t.Errorf("progress leaked the key or used colour on a non-terminal")
	}
	s := r.termination
	if s.Outcome != contract.OutcomeCompleted || s.ExitCode != 0 || s.Diff.FilesChanged != 1 || s.Transcript == nil || s.Turns != 4 || r.terminationBytes > 4096 {
		t.Errorf("termination message: %+v", s)
	}
	patch, _ := os.ReadFile(filepath.Join(dir, "result.patch"))
	if !strings.Contains(string(patch), "+hello world") {
		t.Errorf("patch:\n%s", patch)
	}
	if b, _ := os.ReadFile(filepath.Join(origin, "hello.txt")); string(b) != "helo world\n" {
		t.Error("the source repository must not be modified; the session works on a clone")
	}
}

func TestExistingCheckoutIsUsedInPlace(t *testing.T) {
	ws := testrepo.New(t, map[string]string{"a.txt": "a\n"})
	srv := scriptedllm.New(
		scriptedllm.Tools(scriptedllm.Call{Name: "write_file", Args: map[string]any{"path": "b.txt", "content": "b\n"}}),
		scriptedllm.Text("added b"),
	)
	defer srv.Close()
	r := run(t, map[string]string{"OPENAI_API_KEY": key, "AGENTRY_SESSION": "fix-flaky-test"},
		"run", "--workspace", ws, "--repo", "https://git.example/org/repo.git", "--task-file", writeTemp(t, "add b"),
		"--base-url", srv.URL, "--transcript-dir", t.TempDir())
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "using the existing checkout") || strings.Contains(r.stderr, "\ncloning ") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	if b, err := os.ReadFile(filepath.Join(ws, "b.txt")); err != nil || string(b) != "b\n" {
		t.Errorf("the existing checkout was not worked on: %v", err)
	}
	req := srv.Requests()[0]
	if !strings.Contains(string(req.Raw), `"content":"add b"`) {
		t.Errorf("task from --task-file not sent")
	}
}

func TestExitCodesForFailures(t *testing.T) {
	origin := testrepo.New(t, map[string]string{"a.txt": "a\n"})
	srv := scriptedllm.New()
	defer srv.Close()
	srv.RequireKey(key)
	base := []string{"run", "--repo", origin, "--base-url", srv.URL, "--transcript-dir", t.TempDir()}
	cases := map[string]struct {
		env  map[string]string
		args []string
		code contract.ExitCode
		want string
	}{
		"no task":           {map[string]string{"OPENAI_API_KEY": key}, base, contract.ExitUsage, "a task is required"},
		"no repo":           {map[string]string{"OPENAI_API_KEY": key}, []string{"run", "--task", "x"}, contract.ExitUsage, "--repo"},
		"no key":            {nil, append(base, "--task", "x"), contract.ExitUsage, "OPENAI_API_KEY"},
		"bad approval mode": {map[string]string{"OPENAI_API_KEY": key}, append(base, "--task", "x", "--approval-bash", "Sometimes"), contract.ExitUsage, "Allow, Ask or Deny"},
		"unknown tool":      {map[string]string{"OPENAI_API_KEY": key}, append(base, "--task", "x", "--tools", "read_file,teleport"), contract.ExitUsage, `unknown tool "teleport"`},
		"unknown flag":      {map[string]string{"OPENAI_API_KEY": key}, append(base, "--task", "x", "--api-key", "sk-x"), contract.ExitUsage, "unknown flag: --api-key"},
		"bad ref":           {map[string]string{"OPENAI_API_KEY": key}, append(base, "--task", "x", "--ref", "nope"), contract.ExitError, `ref "nope"`},
		"wrong key (401)": {map[string]string{"OPENAI_API_KEY": "sk-proj-wrongKey000000000000000000000000"}, append(base, "--task", "x"),
			contract.ExitModelError, "Incorrect API key provided"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := run(t, tc.env, tc.args...)
			if r.code != int(tc.code) {
				t.Errorf("exit %d, want %d\n%s", r.code, tc.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, r.stderr)
			}
		})
	}
}

func TestAskWithoutATerminalDenies(t *testing.T) {
	origin := testrepo.New(t, map[string]string{"a.txt": "a\n"})
	srv := scriptedllm.New(
		scriptedllm.Tools(scriptedllm.Call{Name: "bash", Args: map[string]any{"command": "touch ran"}}),
		scriptedllm.Text("could not run it"),
	)
	defer srv.Close()
	dir := t.TempDir()
	r := run(t, map[string]string{"OPENAI_API_KEY": key}, "run", "--repo", origin, "--task", "x", "--base-url", srv.URL, "--transcript-dir", dir)
	if r.code != 0 || !strings.Contains(r.stderr, "stdin is not a terminal") || !strings.Contains(r.stderr, "⚑ Deny bash") {
		t.Errorf("exit %d\n%s\nstdout:%s", r.code, r.stderr, r.stdout)
	}
	msgs := srv.Requests()[1].Body.Messages
	if !strings.Contains(msgs[len(msgs)-1].Content, "denied: this command was not approved") {
		t.Errorf("model was not told: %q", msgs[len(msgs)-1].Content)
	}
}

// A file change needing approval without a terminal is denied too, and the hint names the
// flag that governs file changes, not the one for commands.
func TestAskWithoutATerminalDeniesAWriteAndNamesItsFlag(t *testing.T) {
	origin := testrepo.New(t, map[string]string{"a.txt": "a\n"})
	srv := scriptedllm.New(
		scriptedllm.Tools(scriptedllm.Call{Name: "write_file", Args: map[string]any{"path": "a.txt", "content": "changed\n"}}),
		scriptedllm.Text("could not write it"),
	)
	defer srv.Close()
	ws := filepath.Join(t.TempDir(), "ws")
	r := run(t, map[string]string{"OPENAI_API_KEY": key}, "run", "--repo", origin, "--workspace", ws, "--task", "x", "--base-url", srv.URL,
		"--transcript-dir", t.TempDir(), "--approval-writes", "Ask")
	if r.code != 0 || !strings.Contains(r.stderr, "stdin is not a terminal") {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	msgs := srv.Requests()[1].Body.Messages
	if got := msgs[len(msgs)-1].Content; !strings.Contains(got, "--approval-writes Allow for file changes") {
		t.Errorf("the model was told %q, want the hint to name --approval-writes", got)
	}
	if b, _ := os.ReadFile(filepath.Join(ws, "a.txt")); string(b) != "a\n" {
		t.Errorf("a.txt = %q: the denied write happened", b)
	}
}

// Without --workspace the runner clones into a temporary directory: it says where, and the
// directory is gone when the run ends (the patch and transcript are kept elsewhere).
func TestLocalTemporaryWorkspaceIsNamedAndRemoved(t *testing.T) {
	origin := testrepo.New(t, map[string]string{"a.txt": "a\n"})
	srv := scriptedllm.New(
		scriptedllm.Tools(scriptedllm.Call{Name: "write_file", Args: map[string]any{"path": "a.txt", "content": "A\n"}}),
		scriptedllm.Text("done"),
	)
	defer srv.Close()
	dir := t.TempDir()
	r := run(t, map[string]string{"OPENAI_API_KEY": key}, "run", "--repo", origin, "--task", "x", "--base-url", srv.URL,
		"--transcript-dir", dir, "--yes")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	m := regexp.MustCompile(`workspace (\S+) is temporary`).FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("the runner did not say where its temporary workspace is:\n%s", r.stderr)
	}
	if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Errorf("the temporary workspace %s is still there (%v)", m[1], err)
	}
	if patch, err := os.ReadFile(filepath.Join(dir, "result.patch")); err != nil || !strings.Contains(string(patch), "+A") {
		t.Errorf("the patch was not kept: %v %q", err, patch)
	}
}

func TestS3Sink(t *testing.T) {
	s3 := s3test.Start(t)
	origin := testrepo.New(t, map[string]string{"a.txt": "a\n"})
	srv := scriptedllm.New(
		scriptedllm.Tools(scriptedllm.Call{Name: "write_file", Args: map[string]any{"path": "a.txt", "content": "A\n"}}),
		scriptedllm.Text("capitalised"),
	)
	defer srv.Close()
	env := map[string]string{"OPENAI_API_KEY": key, "AWS_ACCESS_KEY_ID": s3.AccessKey, "AWS_SECRET_ACCESS_KEY": s3.SecretKey}
	r := run(t, env, "run", "--repo", origin, "--task", "x", "--base-url", srv.URL, "--session", "s3-session",
		"--transcript-dir", t.TempDir(), "--s3-endpoint", s3.Endpoint, "--s3-bucket", s3.Bucket)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if r.termination.Transcript == nil || r.termination.Transcript.URI != "s3://agentry-test/sessions/s3-session/transcript.jsonl" {
		t.Errorf("termination message should point at S3: %+v", r.termination.Transcript)
	}
	patch, err := os.ReadFile(filepath.Join(s3.Dir, s3.Bucket, "sessions/s3-session/result.patch"))
	if err != nil || !strings.Contains(string(patch), "+A") {
		t.Errorf("patch in S3: %v %s", err, patch)
	}
	if !strings.Contains(r.stderr, "s3://agentry-test/sessions/s3-session/") {
		t.Errorf("progress should show the S3 location:\n%s", r.stderr)
	}
}

func TestHelpListsEveryFlag(t *testing.T) {
	r := run(t, nil, "run", "--help")
	for _, flag := range []string{"--repo", "--ref", "--task", "--task-file", "--workspace", "--model", "--base-url", "--api-key-file",
		"--temperature", "--max-output-tokens", "--max-turns", "--max-tokens", "--timeout", "--tools", "--approval-bash", "--approval-writes",
		"--allow-command", "--deny-command", "--yes", "--transcript-dir", "--s3-endpoint", "--s3-bucket", "--s3-prefix", "--termination-message-path"} {
		if !strings.Contains(r.stdout, flag) {
			t.Errorf("help lacks %s", flag)
		}
	}
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "task.txt")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
