package cli_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner/internal/testrepo"
	"github.com/agentry-dev/agentry/test/scriptedllm"
)

func TestContextWindowFlagCompactsALongSession(t *testing.T) {
	files := map[string]string{}
	for i := range 6 {
		files[fmt.Sprintf("n%d.txt", i)] = strings.Repeat(fmt.Sprintf("note %d: the quick brown fox jumps over the lazy dog\n", i), 60)
	}
	origin := testrepo.New(t, files)
	srv := scriptedllm.New()
	defer srv.Close()
	srv.RequireKey(key)
	turn := 0
	srv.Generate(func(_ int, r scriptedllm.Request) scriptedllm.Step {
		if len(r.Body.Tools) == 0 {
			return scriptedllm.Text("Read notes so far.")
		}
		if turn++; turn <= len(files) {
			return scriptedllm.Tools(scriptedllm.Call{Name: "read_file", Args: map[string]any{"path": fmt.Sprintf("n%d.txt", turn-1)}})
		}
		return scriptedllm.Text("Read every note.")
	})
	dir := t.TempDir()
	r := run(t, map[string]string{"OPENAI_API_KEY": key},
		"run", "--repo", origin, "--task", "Read the notes", "--base-url", srv.URL, "--model", "scripted",
		"--transcript-dir", dir, "--context-window", "3000", "--quiet")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	evs := readEvents(t, dir)
	if got := evs[0].SessionStart.ContextWindow; got != 3000 {
		t.Errorf("sessionStart.contextWindow = %d, want 3000", got)
	}
	var comps int
	for _, e := range evs {
		if e.Type == contract.EventCompaction {
			comps++
		}
	}
	if comps == 0 {
		t.Error("no compaction event in a session past 80% of --context-window")
	}
}

func TestCompactionFlagsAreChecked(t *testing.T) {
	cases := map[string]struct{ args []string }{
		"window too small":       {[]string{"--context-window", "100"}},
		"negative window":        {[]string{"--context-window", "-1"}},
		"share above the window": {[]string{"--context-window", "8000", "--compact-at", "1.5"}},
		"share of nothing":       {[]string{"--context-window", "8000", "--compact-at", "0"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			srv := scriptedllm.New()
			defer srv.Close()
			flag := tc.args[len(tc.args)-2]
			args := append([]string{"run", "--workspace", t.TempDir(), "--task", "x", "--base-url", srv.URL}, tc.args...)
			r := run(t, map[string]string{"OPENAI_API_KEY": key}, args...)
			if r.code != int(contract.ExitUsage) || !strings.Contains(r.stderr, flag+": want") {
				t.Errorf("exit %d, stderr %q; want a usage error naming %s", r.code, r.stderr, flag)
			}
			if n := len(srv.Requests()); n != 0 {
				t.Errorf("the model was called %d times despite the bad flag", n)
			}
		})
	}
}
