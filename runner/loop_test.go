package runner_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner"
	"github.com/agentry-dev/agentry/runner/approval"
	"github.com/agentry-dev/agentry/runner/gitrepo"
	"github.com/agentry-dev/agentry/runner/internal/testrepo"
	"github.com/agentry-dev/agentry/runner/llm"
	"github.com/agentry-dev/agentry/runner/tools"
	"github.com/agentry-dev/agentry/runner/transcript"
	"github.com/agentry-dev/agentry/runner/workspace"
	"github.com/agentry-dev/agentry/test/scriptedllm"
)

const apiKey = "sk-proj-runnerTestKey0123456789abcdefXYZ"

var greetRepo = map[string]string{
	"lib/greet.sh": "greet() {\n  echo \"Hello, $1\"\n}\n",
	"test.sh":      "#!/bin/sh\n. ./lib/greet.sh\nif [ \"$(greet Ada)\" = \"Hello, Ada!\" ]; then echo PASS; else echo \"FAIL: got '$(greet Ada)'\"; exit 1; fi\n",
	"README.md":    "# greet\nSay hello to people.\n",
}

// harness wires a Loop exactly as the CLI does, over a cloned workspace.
type harness struct {
	t      *testing.T
	origin string // the repository the session cloned
	ws     *workspace.Root
	srv    *scriptedllm.Server
	dir    *transcript.Dir
	loop   *runner.Loop
	sleeps []time.Duration
}

func newHarness(t *testing.T, files map[string]string, steps ...scriptedllm.Step) *harness {
	t.Helper()
	h := &harness{t: t, origin: testrepo.New(t, files)}
	wsDir := filepath.Join(t.TempDir(), "ws")
	base, err := gitrepo.Clone(context.Background(), h.origin, "main", wsDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h.ws, err = workspace.Open(wsDir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.ws.Close() })
	repo, err := gitrepo.Open(wsDir)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = scriptedllm.New(steps...)
	t.Cleanup(h.srv.Close)
	h.srv.RequireKey(apiKey)
	if h.dir, err = transcript.NewDir(filepath.Join(t.TempDir(), "session")); err != nil {
		t.Fatal(err)
	}
	backoff := llm.DefaultBackoff()
	backoff.Sleep = func(ctx context.Context, d time.Duration) error { h.sleeps = append(h.sleeps, d); return ctx.Err() }
	h.loop = &runner.Loop{
		Model:      llm.NewOpenAI(llm.Config{BaseURL: h.srv.URL, APIKey: apiKey, Stream: true, Backoff: backoff}),
		Tools:      tools.All(tools.Env{Workspace: h.ws, Repo: repo}),
		Transcript: transcript.NewRecorder(transcript.NewRedactor(apiKey), nil, h.dir),
		Policy:     approval.Policy{Bash: approval.Allow, Writes: approval.Allow},
		Diff:       repo,
		Config:     runner.Config{Session: "test", Model: "scripted", MaxTurns: 20, Workspace: wsDir, Repository: h.origin, BaseCommit: base},
	}
	return h
}

func (h *harness) run(ctx context.Context) runner.Result {
	h.t.Helper()
	res, err := h.loop.Run(ctx, "Make ./test.sh pass.")
	if err != nil {
		h.t.Fatal(err)
	}
	return res
}

func (h *harness) events() []contract.Event {
	h.t.Helper()
	evs, err := transcript.ReadFile(h.dir.TranscriptPath())
	if err != nil {
		h.t.Fatal(err)
	}
	return evs
}

func call(name string, args map[string]any) scriptedllm.Call {
	return scriptedllm.Call{Name: name, Args: args}
}

func usage(p, c, cached int) *scriptedllm.Usage {
	return &scriptedllm.Usage{PromptTokens: p, CompletionTokens: c, CachedTokens: cached}
}

func TestSessionEndToEnd(t *testing.T) {
	h := newHarness(t, greetRepo,
		scriptedllm.Step{Content: "Let me look at the code.", Usage: usage(1000, 50, 0), ToolCalls: []scriptedllm.Call{
			call("list_dir", map[string]any{}),
			call("grep", map[string]any{"pattern": `greet\(\)`}),
			call("read_file", map[string]any{"path": "lib/greet.sh"}),
		}},
		scriptedllm.Step{Usage: usage(1400, 20, 1000), ToolCalls: []scriptedllm.Call{call("bash", map[string]any{"command": "sh test.sh"})}},
		scriptedllm.Step{Usage: usage(1600, 40, 1400), ToolCalls: []scriptedllm.Call{call("edit_file", map[string]any{
			"path": "lib/greet.sh", "old_string": `echo "Hello, $1"`, "new_string": `echo "Hello, $1!"`,
		})}},
		scriptedllm.Step{Usage: usage(1700, 60, 1600), ToolCalls: []scriptedllm.Call{
			call("bash", map[string]any{"command": "sh test.sh"}),
			call("write_file", map[string]any{"path": "docs/CHANGES.md", "content": "- greet now ends with an exclamation mark\n"}),
		}},
		scriptedllm.Step{Usage: usage(1900, 30, 1700), Content: "Fixed greet to add the exclamation mark; ./test.sh passes."},
	)
	res := h.run(context.Background())

	// What the user sees: the outcome, the accounting and the change.
	want := runner.Result{
		Outcome: contract.OutcomeCompleted, Summary: "Fixed greet to add the exclamation mark; ./test.sh passes.",
		Turns: 5, ToolCalls: 7,
		Usage: contract.Usage{PromptTokens: 7600, CompletionTokens: 200, CachedTokens: 5700},
		Diff:  contract.DiffStats{FilesChanged: 2, Additions: 2, Deletions: 1},
	}
	if diff := cmp.Diff(want, res, cmp.FilterPath(func(p cmp.Path) bool {
		switch p.Last().String() {
		case ".Patch", ".Duration", ".Events", ".Stored":
			return true
		}
		return false
	}, cmp.Ignore())); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	if res.ExitCode() != contract.ExitOK || res.SinkErr != nil {
		t.Errorf("exit %v, sink error %v", res.ExitCode(), res.SinkErr)
	}

	// What the model was sent: tool results in its order, the failing test
	// output, then the passing one; history only ever appended.
	reqs := h.srv.Requests()
	if len(reqs) != 5 {
		t.Fatalf("%d model requests, want 5", len(reqs))
	}
	if last := reqs[2].Body.Messages[len(reqs[2].Body.Messages)-1]; !strings.Contains(last.Content, "FAIL: got 'Hello, Ada'") || !strings.HasSuffix(last.Content, "exit code: 1") {
		t.Errorf("the model should see the failing test: %q", last.Content)
	}
	r4 := reqs[4].Body.Messages
	if !strings.HasPrefix(r4[len(r4)-2].Content, "PASS\n") || !strings.HasPrefix(r4[len(r4)-1].Content, "created docs/CHANGES.md") {
		t.Errorf("turn 4 results out of order: %q / %q", r4[len(r4)-2].Content, r4[len(r4)-1].Content)
	}
	turn1 := reqs[1].Body.Messages[3:]
	if !strings.Contains(turn1[0].Content, "lib/") || !strings.Contains(turn1[1].Content, "lib/greet.sh:1:greet() {") || !strings.Contains(turn1[2].Content, "     2\t  echo \"Hello, $1\"") {
		t.Errorf("parallel read results not in the model's order: %+v", turn1)
	}
	for i := 1; i < len(reqs); i++ {
		prev, cur := reqs[i-1].Body.Messages, reqs[i].Body.Messages
		a, _ := json.Marshal(prev)
		b, _ := json.Marshal(cur[:len(prev)])
		if !bytes.Equal(a, b) {
			t.Errorf("request %d rewrote history instead of appending (breaks prompt caching)", i)
		}
	}

	// The transcript round-trips: every line decodes, validates and encodes
	// back to the same bytes.
	raw, err := os.ReadFile(h.dir.TranscriptPath())
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, 1<<20)
	var types []contract.EventType
	for sc.Scan() {
		ev, err := contract.DecodeEvent(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		again, _ := json.Marshal(ev)
		if !bytes.Equal(again, sc.Bytes()) {
			t.Errorf("event %d does not round-trip:\n%s\n%s", ev.Seq, sc.Bytes(), again)
		}
		types = append(types, ev.Type)
	}
	evs := h.events()
	if evs[0].Type != contract.EventSessionStart || evs[len(evs)-1].Type != contract.EventFinish {
		t.Errorf("transcript must start with sessionStart and end with finish: %v", types)
	}
	if n := countType(evs, contract.EventToolCall); n != 7 || countType(evs, contract.EventToolResult) != 7 || countType(evs, contract.EventModelResponse) != 5 {
		t.Errorf("event counts wrong: %v", types)
	}
	fin := evs[len(evs)-1].Finish
	if fin.Outcome != contract.OutcomeCompleted || fin.Usage != want.Usage || !cmp.Equal(fin.Diff, want.Diff) {
		t.Errorf("finish event: %+v", fin)
	}
	if res.Events != int64(len(evs)) {
		t.Errorf("result counts %d events, transcript has %d", res.Events, len(evs))
	}

	// The patch applies to a fresh clone of the original repository and the
	// test passes there.
	patch, err := os.ReadFile(filepath.Join(h.dir.Path(), transcript.PatchFile))
	if err != nil || !bytes.Equal(patch, res.Patch) {
		t.Fatalf("result.patch: %v", err)
	}
	fresh := filepath.Join(t.TempDir(), "fresh")
	gitCmd(t, "", "clone", "-q", h.origin, fresh)
	gitCmd(t, fresh, "apply", "--index", filepath.Join(h.dir.Path(), transcript.PatchFile))
	out, err := exec.Command("sh", "-c", "cd "+fresh+" && sh test.sh && cat docs/CHANGES.md").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "PASS\n- greet now ends") {
		t.Errorf("patched clone: %v\n%s", err, out)
	}

	var sum contract.Summary
	b, _ := os.ReadFile(filepath.Join(h.dir.Path(), transcript.SummaryFile))
	if err := json.Unmarshal(b, &sum); err != nil || sum.Outcome != contract.OutcomeCompleted || sum.Transcript == nil || sum.Patch == nil || sum.Events != res.Events {
		t.Errorf("summary.json: %v %+v", err, sum)
	}
}

func countType(evs []contract.Event, ty contract.EventType) int {
	n := 0
	for _, e := range evs {
		if e.Type == ty {
			n++
		}
	}
	return n
}

func gitCmd(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// orderLog wraps real tools to record when each call starts and ends.
type orderLog struct {
	mu  sync.Mutex
	log []string
}

type logged struct {
	tools.Tool
	log *orderLog
	// barrier, if set, makes read calls wait until n of them run at once,
	// which can only happen if they run concurrently.
	barrier *barrier
}

type barrier struct {
	mu      sync.Mutex
	n, seen int
	all     chan struct{}
}

func (l logged) Execute(ctx context.Context, args json.RawMessage) (string, error) {
	label := l.Name() + " " + l.Describe(args)
	l.log.add("start " + label)
	defer l.log.add("end " + label)
	if l.barrier != nil && l.Kind() == tools.KindRead {
		l.barrier.mu.Lock()
		l.barrier.seen++
		if l.barrier.seen == l.barrier.n {
			close(l.barrier.all)
		}
		l.barrier.mu.Unlock()
		select {
		case <-l.barrier.all:
		case <-time.After(10 * time.Second):
			return "", fmt.Errorf("read calls did not run concurrently")
		}
	}
	return l.Tool.Execute(ctx, args)
}

func (o *orderLog) add(s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.log = append(o.log, s)
}

func TestReadOnlyCallsRunConcurrentlyAndWritesKeepOrder(t *testing.T) {
	files := map[string]string{}
	var reads []scriptedllm.Call
	for i := range 8 {
		name := fmt.Sprintf("f%d.txt", i)
		files[name] = fmt.Sprintf("content %d\n", i)
		reads = append(reads, call("read_file", map[string]any{"path": name}))
	}
	h := newHarness(t, files,
		scriptedllm.Tools(reads...),
		scriptedllm.Tools(
			call("read_file", map[string]any{"path": "f0.txt"}),
			call("write_file", map[string]any{"path": "f0.txt", "content": "rewritten\n"}),
			call("read_file", map[string]any{"path": "f0.txt"}),
			call("bash", map[string]any{"command": "echo appended >> f0.txt"}),
			call("read_file", map[string]any{"path": "f0.txt"}),
		),
		scriptedllm.Text("done"),
	)
	log := &orderLog{}
	b := &barrier{n: 8, all: make(chan struct{})}
	var wrapped tools.Set
	for _, tool := range h.loop.Tools {
		wrapped = append(wrapped, logged{Tool: tool, log: log, barrier: b})
	}
	h.loop.Tools = wrapped
	res := h.run(context.Background())
	if res.Outcome != contract.OutcomeCompleted {
		t.Fatalf("outcome %s: %s", res.Outcome, res.Summary)
	}
	for i, r := range h.events() {
		if r.Type == contract.EventToolResult && r.ToolResult.IsError {
			t.Errorf("event %d: %s", i, r.ToolResult.Output)
		}
	}
	// Turn 2: each call sees exactly the effects of the calls before it.
	msgs := h.srv.Requests()[2].Body.Messages
	results := msgs[len(msgs)-5:]
	want := []string{"     1\tcontent 0\n", "overwrote", "     1\trewritten\n", "exit code: 0", "     1\trewritten\n     2\tappended\n"}
	for i, w := range want {
		if !strings.HasPrefix(results[i].Content, w) {
			t.Errorf("turn 2 result %d = %q, want prefix %q", i, results[i].Content, w)
		}
	}
	turn2 := log.log[16:]
	wantOrder := []string{
		"start read_file f0.txt", "end read_file f0.txt",
		"start write_file f0.txt (10 bytes)", "end write_file f0.txt (10 bytes)",
		"start read_file f0.txt", "end read_file f0.txt",
		"start bash echo appended >> f0.txt", "end bash echo appended >> f0.txt",
		"start read_file f0.txt", "end read_file f0.txt",
	}
	if diff := cmp.Diff(wantOrder, turn2); diff != "" {
		t.Errorf("writes and shell calls must be barriers (-want +got):\n%s", diff)
	}
}

func TestLimitsEndTheSessionButKeepThePatchAndTranscript(t *testing.T) {
	writeThenLoop := func(h *harness) {
		h.srv.Then(scriptedllm.Tools(call("write_file", map[string]any{"path": "progress.txt", "content": "partial work\n"})))
		h.srv.Generate(func(n int, _ scriptedllm.Request) scriptedllm.Step {
			return scriptedllm.Step{Usage: usage(50_000, 100, 0), ToolCalls: []scriptedllm.Call{call("read_file", map[string]any{"path": "README.md"})}}
		})
	}
	cases := map[string]struct {
		setup     func(h *harness)
		ctx       func() (context.Context, context.CancelFunc)
		outcome   contract.Outcome
		exit      contract.ExitCode
		limitHit  string
		wantPatch bool
	}{
		"max turns": {
			setup:   func(h *harness) { h.loop.Config.MaxTurns = 3; writeThenLoop(h) },
			outcome: contract.OutcomeMaxTurns, exit: contract.ExitLimitReached, limitHit: "maxTurns", wantPatch: true,
		},
		"max tokens": {
			setup:   func(h *harness) { h.loop.Config.MaxTokens = 120_000; writeThenLoop(h) },
			outcome: contract.OutcomeBudgetExceeded, exit: contract.ExitBudgetExceeded, limitHit: "maxTokens", wantPatch: true,
		},
		"timeout during a hung command": {
			setup: func(h *harness) {
				h.loop.Config.Timeout = 1500 * time.Millisecond
				h.srv.Then(
					scriptedllm.Tools(call("write_file", map[string]any{"path": "progress.txt", "content": "partial work\n"})),
					scriptedllm.Tools(call("bash", map[string]any{"command": "sleep 600", "timeout_seconds": 900})),
				)
			},
			outcome: contract.OutcomeTimeout, exit: contract.ExitTimeout, limitHit: "timeout", wantPatch: true,
		},
		"timeout while the model hangs": {
			setup: func(h *harness) {
				h.loop.Config.Timeout = 500 * time.Millisecond
				h.srv.Then(scriptedllm.Hang())
			},
			outcome: contract.OutcomeTimeout, exit: contract.ExitTimeout, limitHit: "timeout",
		},
		"budget refused by the gateway": {
			setup: func(h *harness) {
				h.srv.Then(scriptedllm.Step{Status: 429, ErrorCode: contract.ErrorCodeBudgetExceeded, ErrorMessage: "session token budget exhausted"})
			},
			outcome: contract.OutcomeBudgetExceeded, exit: contract.ExitBudgetExceeded,
		},
		"provider rejects the request": {
			setup:   func(h *harness) { h.srv.Then(scriptedllm.Error(400, "model 'scripted' does not support tools")) },
			outcome: contract.OutcomeModelError, exit: contract.ExitModelError,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, greetRepo)
			tc.setup(h)
			res := h.run(context.Background())
			if res.Outcome != tc.outcome || res.ExitCode() != tc.exit {
				t.Fatalf("outcome %s exit %v, want %s %v (summary %q)", res.Outcome, res.ExitCode(), tc.outcome, tc.exit, res.Summary)
			}
			evs := h.events()
			last := evs[len(evs)-1]
			if last.Type != contract.EventFinish || last.Finish.Outcome != tc.outcome {
				t.Errorf("transcript not closed with a finish event: %+v", last)
			}
			if tc.limitHit != "" {
				i := slices.IndexFunc(evs, func(e contract.Event) bool { return e.Type == contract.EventLimitHit })
				if i < 0 || evs[i].LimitHit.Limit != tc.limitHit {
					t.Errorf("no limitHit %q event", tc.limitHit)
				}
			}
			if got := bytes.Contains(res.Patch, []byte("+partial work")); got != tc.wantPatch {
				t.Errorf("patch contains the partial work = %v, want %v:\n%s", got, tc.wantPatch, res.Patch)
			}
			if _, err := os.Stat(filepath.Join(h.dir.Path(), transcript.SummaryFile)); err != nil {
				t.Errorf("summary.json missing: %v", err)
			}
		})
	}
}

func TestCancellationEndsTheSession(t *testing.T) {
	h := newHarness(t, greetRepo, scriptedllm.Tools(call("bash", map[string]any{"command": "touch started; sleep 600"})))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan runner.Result, 1)
	go func() { done <- h.run(ctx) }()
	started := filepath.Join(h.ws.Dir(), "started")
	for {
		if _, err := os.Stat(started); err == nil {
			break
		}
		select {
		case res := <-done:
			t.Fatalf("session ended before the command started: %s", res.Summary)
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	res := <-done
	if res.Outcome != contract.OutcomeCancelled || res.ExitCode() != contract.ExitCancelled {
		t.Fatalf("outcome %s", res.Outcome)
	}
	if evs := h.events(); evs[len(evs)-1].Type != contract.EventFinish || !bytes.Contains(res.Patch, []byte("started")) {
		t.Errorf("cancelled session must still close the transcript and produce the patch")
	}
}

func TestRateLimitStormInsideASession(t *testing.T) {
	h := newHarness(t, greetRepo,
		scriptedllm.RateLimited("3"), scriptedllm.RateLimited("3"), scriptedllm.Error(503, "overloaded"),
		scriptedllm.Text("nothing to do"),
	)
	res := h.run(context.Background())
	if res.Outcome != contract.OutcomeCompleted {
		t.Fatalf("outcome %s: %s", res.Outcome, res.Summary)
	}
	var retries []int
	for _, e := range h.events() {
		if e.Type == contract.EventError && e.Error.Retrying {
			retries = append(retries, e.Error.HTTPStatus)
		}
	}
	if diff := cmp.Diff([]int{429, 429, 503}, retries); diff != "" {
		t.Errorf("retry events (-want +got):\n%s", diff)
	}
	if len(h.sleeps) != 3 || h.sleeps[0] < 3*time.Second || h.sleeps[1] < 3*time.Second {
		t.Errorf("waits %v should honour Retry-After: 3", h.sleeps)
	}
}

func TestUnauthorizedFailsCleanly(t *testing.T) {
	h := newHarness(t, greetRepo, scriptedllm.Text("unreachable"))
	h.srv.RequireKey("sk-proj-aDifferentKeyThanTheRunnerHas00000")
	res := h.run(context.Background())
	if res.Outcome != contract.OutcomeModelError || res.ExitCode() != contract.ExitModelError {
		t.Fatalf("outcome %s", res.Outcome)
	}
	if !strings.Contains(res.Summary, "401") || !strings.Contains(res.Summary, "Incorrect API key provided") {
		t.Errorf("summary should carry the provider's message: %q", res.Summary)
	}
	if len(h.srv.Requests()) != 1 || len(h.sleeps) != 0 {
		t.Errorf("401 must not be retried")
	}
	evs := h.events()
	if fin := evs[len(evs)-1].Finish; fin == nil || !strings.Contains(fin.Error, "invalid_api_key") {
		t.Errorf("finish event should record the error: %+v", evs[len(evs)-1])
	}
}

func TestModelMistakesBecomeReadableErrors(t *testing.T) {
	h := newHarness(t, greetRepo,
		scriptedllm.Tools(
			call("delete_everything", map[string]any{}),
			scriptedllm.Call{Name: "read_file", Args: `{"path": "README.md"`}, // truncated JSON
			call("read_file", map[string]any{"path": "README.md"}),
		),
		scriptedllm.Text("ok"),
	)
	res := h.run(context.Background())
	if res.Outcome != contract.OutcomeCompleted {
		t.Fatalf("outcome %s", res.Outcome)
	}
	msgs := h.srv.Requests()[1].Body.Messages
	got := msgs[len(msgs)-3:]
	if !strings.HasPrefix(got[0].Content, `error: unknown tool "delete_everything"; available tools: read_file,`) ||
		!strings.HasPrefix(got[1].Content, "error: invalid arguments for read_file") ||
		!strings.Contains(got[2].Content, "# greet") {
		t.Errorf("results: %q / %q / %q", got[0].Content, got[1].Content, got[2].Content)
	}
}

func TestToolCallsWithoutIDsGetOne(t *testing.T) {
	h := newHarness(t, greetRepo,
		scriptedllm.Step{NoCallIDs: true, ToolCalls: []scriptedllm.Call{
			call("read_file", map[string]any{"path": "README.md"}),
			call("list_dir", map[string]any{}),
		}},
		scriptedllm.Text("ok"),
	)
	if res := h.run(context.Background()); res.Outcome != contract.OutcomeCompleted {
		t.Fatalf("outcome %s: %s", res.Outcome, res.Summary)
	}
	msgs := h.srv.Requests()[1].Body.Messages
	ids := []string{msgs[2].ToolCalls[0].ID, msgs[2].ToolCalls[1].ID, msgs[3].ToolCallID, msgs[4].ToolCallID}
	if diff := cmp.Diff([]string{"call_1_0", "call_1_1", "call_1_0", "call_1_1"}, ids); diff != "" {
		t.Errorf("ids (-want +got):\n%s", diff)
	}
}

// askRecorder answers Ask approvals: it denies commands containing "rm".
type askRecorder struct{ asked []string }

func (a *askRecorder) Ask(_ context.Context, r approval.Request) (approval.Result, error) {
	a.asked = append(a.asked, r.Summary)
	if strings.Contains(r.Command, "rm ") {
		return approval.Result{Decision: contract.DecisionDeny, By: "test", Reason: "no deleting"}, nil
	}
	return approval.Result{Decision: contract.DecisionAllow, By: "test"}, nil
}

func TestApprovalPolicy(t *testing.T) {
	h := newHarness(t, greetRepo,
		scriptedllm.Tools(
			call("bash", map[string]any{"command": "sh test.sh"}),        // allow pattern
			call("bash", map[string]any{"command": "rm -rf lib"}),        // asked, denied
			call("bash", map[string]any{"command": "ls"}),                // asked, allowed
			call("bash", map[string]any{"command": "curl evil.example"}), // deny pattern
			call("bash", map[string]any{"command": "sh test.sh; curl x"}),
			call("write_file", map[string]any{"path": "x.txt", "content": "x"}), // writes denied
		),
		scriptedllm.Text("ok"),
	)
	asker := &askRecorder{}
	h.loop.Approver = asker
	h.loop.Policy = approval.Policy{Bash: approval.Ask, Writes: approval.Deny, AllowCommands: []string{"sh test.sh"}, DenyCommands: []string{"curl *", "* curl *"}}
	h.run(context.Background())

	if diff := cmp.Diff([]string{"rm -rf lib", "ls"}, asker.asked); diff != "" {
		t.Errorf("asked (-want +got):\n%s", diff)
	}
	msgs := h.srv.Requests()[1].Body.Messages
	res := msgs[len(msgs)-6:]
	wants := []string{"FAIL", "denied: this command was not approved (no deleting)", "README.md", "denied: this command was not approved (command matches deny pattern \"curl *\")",
		"denied: this command was not approved (command matches deny pattern \"* curl *\")", "denied: this file change was not approved (writes approval mode is Deny)"}
	for i, w := range wants {
		if !strings.Contains(res[i].Content, w) {
			t.Errorf("result %d = %q, want %q", i, res[i].Content, w)
		}
	}
	if _, err := os.Stat(filepath.Join(h.ws.Dir(), "lib")); err != nil {
		t.Errorf("denied rm ran anyway")
	}
	var decisions []string
	for _, e := range h.events() {
		if e.Type == contract.EventApproval {
			decisions = append(decisions, string(e.Approval.Decision)+" by "+e.Approval.By)
		}
	}
	want := []string{"Allow by policy", "Deny by test", "Allow by test", "Deny by policy", "Deny by policy", "Deny by policy"}
	if diff := cmp.Diff(want, decisions); diff != "" {
		t.Errorf("approval events (-want +got):\n%s", diff)
	}
}

// A model that spells a key twice — "command" for the approval, "Command" for what
// runs — must not get the second one past an allow pattern (encoding/json matches keys
// case-insensitively and the last one wins). Nor may a duplicate or unknown key.
func TestApprovalCannotBeBypassedByKeySpelling(t *testing.T) {
	h := newHarness(t, greetRepo,
		scriptedllm.Tools(
			scriptedllm.Call{Name: "bash", Args: `{"command":"sh test.sh","Command":"touch PWNED1"}`},
			scriptedllm.Call{Name: "bash", Args: `{"command":"sh test.sh","command":"touch PWNED2"}`},
			scriptedllm.Call{Name: "bash", Args: `{"command":"sh test.sh","cmd":"touch PWNED3"}`},
			scriptedllm.Call{Name: "write_file", Args: `{"path":"ok.txt","content":"x","Path":".git/config"}`},
		),
		scriptedllm.Text("ok"),
	)
	h.loop.Policy = approval.Policy{Bash: approval.Deny, Writes: approval.Allow, AllowCommands: []string{"sh test.sh"}}
	h.run(context.Background())

	for _, f := range []string{"PWNED1", "PWNED2", "PWNED3", "ok.txt"} {
		if _, err := os.Stat(filepath.Join(h.ws.Dir(), f)); err == nil {
			t.Errorf("%s exists: a call with a second spelling of a key ran", f)
		}
	}
	msgs := h.srv.Requests()[1].Body.Messages
	res := msgs[len(msgs)-4:]
	for i, want := range []string{`unknown key "Command" (keys are case-sensitive: did you mean "command"?)`, `duplicate key "command"`, `unknown key "cmd"`, `unknown key "Path"`} {
		if !strings.Contains(res[i].Content, want) {
			t.Errorf("result %d = %q, want it to say %q", i, res[i].Content, want)
		}
	}
	for _, e := range h.events() {
		if e.Type == contract.EventApproval {
			t.Errorf("a malformed call reached approval: %+v", e.Approval)
		}
	}
}

// What is approved, what runs and what the transcript records are one value.
func TestTranscriptRecordsTheArgumentsThatRan(t *testing.T) {
	h := newHarness(t, greetRepo,
		scriptedllm.Tools(scriptedllm.Call{Name: "bash", Args: ` { "timeout_seconds": 30, "command": "sh test.sh 2>&1" } `}),
		scriptedllm.Text("ok"),
	)
	asker := &askRecorder{}
	h.loop.Approver = asker
	h.loop.Policy = approval.Policy{Bash: approval.Ask, Writes: approval.Allow}
	h.run(context.Background())
	if diff := cmp.Diff([]string{"sh test.sh 2>&1"}, asker.asked); diff != "" {
		t.Errorf("asked (-want +got):\n%s", diff)
	}
	for _, e := range h.events() {
		if e.Type == contract.EventToolCall {
			if want := `{"command":"sh test.sh 2>&1","timeout_seconds":30}`; e.ToolCall.Arguments != want {
				t.Errorf("transcript arguments = %s, want %s", e.ToolCall.Arguments, want)
			}
		}
	}
}

// A command longer than a person can be shown whole is refused, not shown cut. The length
// that counts is the escaped one a person reads: a command under the limit in raw bytes
// whose TABs each become two characters would otherwise be cut in status, hiding its tail.
func TestOverlongCommandIsRefusedBeforeApproval(t *testing.T) {
	for name, long := range map[string]string{
		"raw bytes": "echo " + strings.Repeat("a", tools.MaxCommandBytes) + "; touch PWNED",
		"escaped":   "echo " + strings.Repeat("\t", 100) + strings.Repeat("a", tools.MaxCommandBytes-120-len("echo ; touch PWNED")) + "; touch PWNED",
	} {
		t.Run(name, func(t *testing.T) {
			if name == "escaped" && len(long) > tools.MaxCommandBytes {
				t.Fatalf("the command is %d raw bytes; the case needs it under the limit", len(long))
			}
			h := refusedUnasked(t, call("bash", map[string]any{"command": long}), approval.Policy{Bash: approval.Ask, Writes: approval.Allow})
			if _, err := os.Stat(filepath.Join(h.ws.Dir(), "PWNED")); err == nil {
				t.Error("the overlong command ran")
			}
		})
	}
}

// Any action asked about, not only a command, is shown whole or refused: a path whose
// control characters make it longer than the limit when escaped is never asked about.
func TestOverlongActionIsRefusedBeforeApproval(t *testing.T) {
	path := strings.Repeat("\x01", contract.MaxApprovalSummaryBytes/4) + "x.txt"
	h := refusedUnasked(t, call("write_file", map[string]any{"path": path, "content": "x"}), approval.Policy{Bash: approval.Allow, Writes: approval.Ask})
	if _, err := os.Stat(filepath.Join(h.ws.Dir(), path)); err == nil {
		t.Error("the file was written")
	}
}

// refusedUnasked runs one call under policy and checks that it was never shown for
// approval and that the model was told to shorten it.
func refusedUnasked(t *testing.T, c scriptedllm.Call, policy approval.Policy) *harness {
	t.Helper()
	h := newHarness(t, greetRepo, scriptedllm.Tools(c), scriptedllm.Text("ok"))
	asker := &askRecorder{}
	h.loop.Approver = asker
	h.loop.Policy = policy
	h.run(context.Background())
	if len(asker.asked) != 0 {
		t.Errorf("an action too long to show whole was shown for approval: %.80q", asker.asked[0])
	}
	msgs := h.srv.Requests()[1].Body.Messages
	if got := msgs[len(msgs)-1].Content; !strings.Contains(got, "Shorten it") {
		t.Errorf("model was told %q", got)
	}
	return h
}

// A file too large for the patch is left out and listed, with the reason, in the result the
// controller and the gateway turn into status.
func TestOversizedFileIsListedNotPatched(t *testing.T) {
	h := newHarness(t, greetRepo,
		scriptedllm.Tools(call("bash", map[string]any{"command": "head -c 3000000 /dev/zero | tr '\\0' a > big.txt; echo small > small.txt"})),
		scriptedllm.Text("ok"),
	)
	res := h.run(context.Background())
	if len(res.Diff.Omitted) != 1 || res.Diff.Omitted[0].Path != "big.txt" || res.Diff.Omitted[0].Size != 3000000 || res.Diff.Omitted[0].Reason == "" {
		t.Fatalf("omitted = %+v, want big.txt with its size and a reason", res.Diff.Omitted)
	}
	if res.Diff.FilesChanged != 2 || bytes.Contains(res.Patch, []byte("big.txt")) || !bytes.Contains(res.Patch, []byte("small.txt")) {
		t.Errorf("files changed %d, patch:\n%s", res.Diff.FilesChanged, res.Patch)
	}
	var fin *contract.Finish
	for _, e := range h.events() {
		if e.Type == contract.EventFinish {
			fin = e.Finish
		}
	}
	if fin == nil || len(fin.Diff.Omitted) != 1 {
		t.Errorf("the finish event does not list the omitted file: %+v", fin)
	}
}

type idRecorder struct{ ids, cmds []string }

func (a *idRecorder) Ask(_ context.Context, r approval.Request) (approval.Result, error) {
	a.ids, a.cmds = append(a.ids, r.ID), append(a.cmds, r.Command)
	return approval.Result{Decision: contract.DecisionAllow, By: "test"}, nil
}

// Tool-call ids come from the provider and repeat: approvals get ids of the runner's own,
// so a decision on one action can never be looked up for another that reuses the call id.
func TestApprovalIDsAreMintedByTheRunner(t *testing.T) {
	h := newHarness(t, greetRepo,
		scriptedllm.Step{NoCallIDs: true, ToolCalls: []scriptedllm.Call{call("bash", map[string]any{"command": "sh test.sh"})}},
		scriptedllm.Step{NoCallIDs: true, ToolCalls: []scriptedllm.Call{call("bash", map[string]any{"command": "echo other"})}},
		scriptedllm.Text("ok"),
	)
	asker := &idRecorder{}
	h.loop.Approver = asker
	h.loop.Policy = approval.Policy{Bash: approval.Ask, Writes: approval.Allow}
	h.run(context.Background())
	if diff := cmp.Diff([]string{"ap-1", "ap-2"}, asker.ids); diff != "" {
		t.Errorf("approval ids (-want +got):\n%s", diff)
	}
	var calls []string
	for _, e := range h.events() {
		if e.Type == contract.EventApproval {
			calls = append(calls, e.Approval.ID+"="+e.Approval.CallID)
		}
	}
	if len(calls) != 2 || calls[0] == calls[1] {
		t.Errorf("approval events %v: want two distinct approvals, each naming its call", calls)
	}
}
