package cli_test

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner/internal/testrepo"
	"github.com/agentry-dev/agentry/test/scriptedllm"
)

func readEvents(t *testing.T, dir string) []contract.Event {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "transcript.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []contract.Event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e contract.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// The documented order: the platform's AgentPolicy rules, the repository's AGENTS.md, the
// session's own instructions, then the project note; a nested AGENTS.md reaches the model
// with the first tool result under its directory, once; all of it is in the first event.
func TestInstructionsReachTheSystemPromptInOrder(t *testing.T) {
	origin := testrepo.New(t, map[string]string{
		"AGENTS.md":           "Repository rule: run make check before finishing.",
		"api/AGENTS.md":       "API rule: keep handlers small.",
		"api/handler.go":      "package api\n",
		"go.mod":              "module example.com/x\n\ngo 1.22\n",
		"Makefile":            "check:\n\tgo vet ./...\n",
		".agentryignore":      "fixtures/\n",
		"fixtures/secret.txt": "fake credentials\n",
	})
	srv := scriptedllm.New(
		scriptedllm.Tools(scriptedllm.Call{Name: "read_file", Args: map[string]any{"path": "api/handler.go"}}),
		scriptedllm.Tools(scriptedllm.Call{Name: "read_file", Args: map[string]any{"path": "api/handler.go"}},
			scriptedllm.Call{Name: "read_file", Args: map[string]any{"path": "fixtures/secret.txt"}}),
		scriptedllm.Text("done"),
	)
	defer srv.Close()
	dir := filepath.Join(t.TempDir(), "session")
	sessionFile := filepath.Join(t.TempDir(), "team.md")
	if err := os.WriteFile(sessionFile, []byte("Session rule: answer in English."), 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(t, map[string]string{"OPENAI_API_KEY": key},
		"run", "--repo", origin, "--task", "Tidy the API", "--base-url", srv.URL, "--model", "scripted",
		"--transcript-dir", dir, "--yes",
		"--instruction", `{"source":"AgentPolicy platform","text":"Platform rule: never push."}`,
		"--instructions-file", sessionFile)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	reqs := srv.Requests()
	system := reqs[0].Body.Messages[0].Content
	order := []string{"Platform rule: never push.", "Repository rule: run make check", "Session rule: answer in English.", "Go module (go.mod)", "`make check` is likely"}
	last := -1
	for _, want := range order {
		i := strings.Index(system, want)
		if i < 0 {
			t.Fatalf("system prompt lacks %q:\n%s", want, system)
		}
		if i < last {
			t.Errorf("%q is out of the documented order:\n%s", want, system)
		}
		last = i
	}
	if strings.Contains(system, "API rule") {
		t.Errorf("the nested AGENTS.md is in the system prompt; it belongs to the first call under api/")
	}
	if !strings.Contains(system, "api/AGENTS.md") {
		t.Errorf("the system prompt does not announce the nested AGENTS.md")
	}

	// The first read under api/ carries the nested instructions; the second does not.
	toolResults := func(n int) []string {
		var out []string
		for _, m := range reqs[n].Body.Messages {
			if m.Role == "tool" {
				out = append(out, m.Content)
			}
		}
		return out
	}
	first := toolResults(1)
	if len(first) != 1 || !strings.Contains(first[0], "[Instructions from api/AGENTS.md") || !strings.Contains(first[0], "API rule: keep handlers small.") {
		t.Errorf("first read under api/ = %q, want the nested AGENTS.md appended", first)
	}
	second := toolResults(2)
	if len(second) != 3 || strings.Contains(second[1], "API rule") {
		t.Errorf("the nested AGENTS.md was repeated: %q", second)
	}
	if !strings.Contains(second[2], "hidden from the file tools by .agentryignore") || strings.Contains(second[2], "fake credentials") {
		t.Errorf("reading a path .agentryignore hides = %q, want a refusal", second[2])
	}

	ev := readEvents(t, dir)
	start := ev[0].SessionStart
	if start == nil {
		t.Fatalf("first event is %s, want sessionStart", ev[0].Type)
	}
	var sources []string
	for _, in := range start.Instructions {
		sources = append(sources, in.Source)
	}
	want := []string{"AgentPolicy platform", "AGENTS.md", sessionFile}
	if strings.Join(sources, "|") != strings.Join(want, "|") {
		t.Errorf("sessionStart.instructions sources = %q, want %q", sources, want)
	}
	if !strings.Contains(start.Project, "Go module") || len(start.Ignored) != 1 || start.Ignored[0] != "fixtures/" {
		t.Errorf("sessionStart project %q ignored %q", start.Project, start.Ignored)
	}
	if start.SystemPrompt != system {
		t.Errorf("sessionStart.systemPrompt differs from what the model received")
	}
}

// A repository's AGENTS.md is hostile: a symlink to a file outside the workspace (the
// runner's token, in a pod) must not put that file in the prompt, and a FIFO must not hang
// the runner.
func TestHostileAgentsFileIsNotRead(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(outside, []byte("eyJhbGciOiJSUzI1NiJ9.secret-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	ws := t.TempDir()
	testrepo.Init(t, ws, map[string]string{"main.go": "package main\n"})
	if err := os.Symlink(outside, filepath.Join(ws, "AGENTS.md")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(ws, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mkfifo(filepath.Join(ws, "sub", "AGENTS.md")); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	srv := scriptedllm.New(
		scriptedllm.Tools(scriptedllm.Call{Name: "list_dir", Args: map[string]any{"path": "sub"}}),
		scriptedllm.Text("done"),
	)
	defer srv.Close()
	dir := filepath.Join(t.TempDir(), "session")
	r := run(t, map[string]string{"OPENAI_API_KEY": key},
		"run", "--workspace", ws, "--task", "Look around", "--base-url", srv.URL, "--model", "scripted",
		"--transcript-dir", dir, "--yes")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	for _, req := range srv.Requests() {
		for _, m := range req.Body.Messages {
			if strings.Contains(m.Content, "secret-token") {
				t.Fatalf("the symlinked file outside the workspace reached the model in a %s message", m.Role)
			}
		}
	}
	if start := readEvents(t, dir)[0].SessionStart; len(start.Instructions) != 0 {
		t.Errorf("instructions = %+v, want none", start.Instructions)
	}
}

func TestMalformedInstructionFlagNamesTheFlag(t *testing.T) {
	r := run(t, map[string]string{"OPENAI_API_KEY": key},
		"run", "--workspace", t.TempDir(), "--task", "x", "--instruction", "not json")
	if r.code != int(contract.ExitUsage) || !strings.Contains(r.stderr, "--instruction: want JSON") {
		t.Errorf("exit %d, stderr %q; want a usage error naming --instruction", r.code, r.stderr)
	}
}
