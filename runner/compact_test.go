package runner_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	openai "github.com/sashabaranov/go-openai"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/test/scriptedllm"
)

const compactionSummary = "Summary: read the notes files one by one; nothing changed yet."

// notesRepo has n files of about 3 KB (some 750 tokens each), each with a marker
// naming it, so a test can tell which turns are still in a prompt.
func notesRepo(n int) (map[string]string, []string) {
	files := map[string]string{"README.md": "# notes\n"}
	var paths []string
	for i := range n {
		p := fmt.Sprintf("notes/n%02d.txt", i)
		var b strings.Builder
		fmt.Fprintf(&b, "MARKER-%02d\n", i)
		for l := 0; b.Len() < 3000; l++ {
			fmt.Fprintf(&b, "line %d of note %d: the quick brown fox jumps over the lazy dog\n", l, i)
		}
		files[p] = b.String()
		paths = append(paths, p)
	}
	return files, paths
}

// readingModel reads the files one per turn and then finishes; a request without
// tools (the summary request) gets summary.
func readingModel(paths []string, summary scriptedllm.Step) func(int, scriptedllm.Request) scriptedllm.Step {
	turn := 0
	return func(_ int, r scriptedllm.Request) scriptedllm.Step {
		if len(r.Body.Tools) == 0 {
			return summary
		}
		turn++
		if turn <= len(paths) {
			return scriptedllm.Tools(call("read_file", map[string]any{"path": paths[turn-1]}))
		}
		return scriptedllm.Text("Read every note.")
	}
}

func splitRequests(reqs []scriptedllm.Request) (turns, summaries []scriptedllm.Request) {
	for _, r := range reqs {
		if len(r.Body.Tools) == 0 {
			summaries = append(summaries, r)
		} else {
			turns = append(turns, r)
		}
	}
	return turns, summaries
}

func eventsOf(evs []contract.Event, t contract.EventType) []contract.Event {
	var out []contract.Event
	for _, e := range evs {
		if e.Type == t {
			out = append(out, e)
		}
	}
	return out
}

// promptTokens is the scripted server's count of a request (about four bytes a token).
func promptTokens(r scriptedllm.Request) int {
	n := 0
	for _, m := range r.Body.Messages {
		n += 4 + len(m.Content)/4
		for _, tc := range m.ToolCalls {
			n += len(tc.Function.Arguments) / 4
		}
	}
	return n
}

func TestCompactionSummarisesOlderTurnsAndTheSessionFinishes(t *testing.T) {
	files, paths := notesRepo(8)
	h := newHarness(t, files)
	h.loop.Config.ContextWindow = 4000
	h.srv.Generate(readingModel(paths, scriptedllm.Text(compactionSummary)))

	res := h.run(context.Background())
	if res.Outcome != contract.OutcomeCompleted {
		t.Fatalf("outcome %s (%s), want Completed", res.Outcome, res.Summary)
	}
	turns, summaries := splitRequests(h.srv.Requests())
	if len(summaries) == 0 {
		t.Fatal("the session crossed 80% of its window without a summary request")
	}

	// The summary request: no tools, the task, and the older turns' content.
	first := summaries[0].Body
	if len(first.Tools) != 0 || first.ToolChoice != nil {
		t.Errorf("summary request offered tools: %+v", first.Tools)
	}
	asked := first.Messages[len(first.Messages)-1].Content
	for _, want := range []string{"Make ./test.sh pass.", "MARKER-00", "read_file"} {
		if !strings.Contains(asked, want) {
			t.Errorf("summary request lacks %q:\n%s", want, asked)
		}
	}

	// Every prompt after a compaction starts with the system prompt, the task and
	// the summary, continues with an assistant turn (never an orphaned tool
	// result) and no longer carries the first note.
	var compacted int
	for _, r := range turns {
		m := r.Body.Messages
		if len(m) < 3 || !strings.HasPrefix(m[2].Content, "[Context compaction:") {
			continue
		}
		compacted++
		if m[0].Role != openai.ChatMessageRoleSystem || m[1].Role != openai.ChatMessageRoleUser || m[1].Content != "Make ./test.sh pass." {
			t.Errorf("compacted prompt lost its head: %s %s %.40q", m[0].Role, m[1].Role, m[1].Content)
		}
		if !strings.Contains(m[2].Content, compactionSummary) {
			t.Errorf("summary message %.200q lacks the model's summary", m[2].Content)
		}
		if len(m) > 3 && m[3].Role != openai.ChatMessageRoleAssistant {
			t.Errorf("the kept turns start with a %s message, want assistant", m[3].Role)
		}
		if strings.Contains(string(r.Raw), "MARKER-00") {
			t.Error("the first note is still in a compacted prompt")
		}
		if got := promptTokens(r); got > 4000 {
			t.Errorf("a compacted prompt has %d tokens, over the 4,000-token window", got)
		}
	}
	if compacted == 0 {
		t.Fatal("no model request carried the summary")
	}

	// The transcript says what happened, and the window is in the first event.
	evs := h.events()
	if got := evs[0].SessionStart.ContextWindow; got != 4000 {
		t.Errorf("sessionStart.contextWindow = %d, want 4000", got)
	}
	comps := eventsOf(evs, contract.EventCompaction)
	if len(comps) != len(summaries) {
		t.Fatalf("%d compaction events for %d summary requests", len(comps), len(summaries))
	}
	c := comps[0].Compaction
	if c.ContextWindow != 4000 || c.PromptTokens < 3200 || c.DroppedMessages < 2 || c.DroppedTurns < 1 || c.KeptMessages < 3 ||
		!strings.Contains(c.Summary, compactionSummary) || c.Usage.PromptTokens == 0 {
		t.Errorf("compaction event %+v", c)
	}
	// The summary calls' tokens count in the session's usage.
	var want contract.Usage
	for _, e := range eventsOf(evs, contract.EventModelResponse) {
		want = want.Add(e.ModelResponse.Usage)
	}
	for _, e := range comps {
		want = want.Add(e.Compaction.Usage)
	}
	if res.Usage != want {
		t.Errorf("session usage %+v, want model turns plus summary calls %+v", res.Usage, want)
	}
}

func TestCompactionKeepsAHundredTurnSessionWithinTheWindow(t *testing.T) {
	files, paths := notesRepo(100)
	h := newHarness(t, files)
	h.loop.Config.ContextWindow = 4000
	h.loop.Config.MaxTurns = 0
	h.srv.Generate(readingModel(paths, scriptedllm.Text(compactionSummary)))

	res := h.run(context.Background())
	if res.Outcome != contract.OutcomeCompleted || res.Turns != 101 {
		t.Fatalf("outcome %s after %d turns (%s), want Completed after 101", res.Outcome, res.Turns, res.Summary)
	}
	turns, summaries := splitRequests(h.srv.Requests())
	for i, r := range turns {
		if got := promptTokens(r); got > 4000 {
			t.Fatalf("turn %d sent %d prompt tokens, over the 4,000-token window", i+1, got)
		}
	}
	for i, r := range summaries {
		if got := promptTokens(r); got > 4000 {
			t.Fatalf("summary request %d has %d prompt tokens, over the window", i+1, got)
		}
	}
	// Each compaction keeps few enough turns that the next one is several turns away.
	if len(summaries) > len(turns)/2 {
		t.Errorf("%d summary calls in %d turns: compaction fires almost every turn", len(summaries), len(turns))
	}
}

func TestCompactionSummaryCountsTowardTheTokenBudget(t *testing.T) {
	cases := map[string]scriptedllm.Step{
		"the summary's tokens pass maxTokens":  {Content: compactionSummary, Usage: usage(900_000, 100, 0)},
		"the gateway refuses the summary call": {Status: 429, ErrorCode: contract.ErrorCodeBudgetExceeded, ErrorMessage: "session token budget exhausted"},
	}
	for name, summary := range cases {
		t.Run(name, func(t *testing.T) {
			files, paths := notesRepo(8)
			h := newHarness(t, files)
			h.loop.Config.ContextWindow = 4000
			h.loop.Config.MaxTokens = 500_000
			h.srv.Generate(readingModel(paths, summary))

			res := h.run(context.Background())
			if res.Outcome != contract.OutcomeBudgetExceeded || res.ExitCode() != contract.ExitBudgetExceeded {
				t.Fatalf("outcome %s exit %v (%s), want BudgetExceeded", res.Outcome, res.ExitCode(), res.Summary)
			}
			reqs := h.srv.Requests()
			if last := reqs[len(reqs)-1]; len(last.Body.Tools) != 0 {
				t.Error("the model was called again after the summary call spent the budget")
			}
			if res.Patch != nil || res.Turns == 0 {
				t.Errorf("patch %q after %d turns", res.Patch, res.Turns)
			}
			if evs := h.events(); evs[len(evs)-1].Type != contract.EventFinish {
				t.Error("transcript not closed with a finish event")
			}
		})
	}
}

func TestCompactionFallsBackWhenTheSummaryFails(t *testing.T) {
	cases := map[string]scriptedllm.Step{
		"provider error": scriptedllm.Error(400, "context_length_exceeded"),
		"empty answer":   scriptedllm.Text(""),
		// A hostile or confused model calls a tool it was not offered: nothing runs.
		"tool call instead of a summary": scriptedllm.Tools(call("write_file", map[string]any{"path": "pwned.txt", "content": "x"})),
	}
	for name, summary := range cases {
		t.Run(name, func(t *testing.T) {
			files, paths := notesRepo(8)
			h := newHarness(t, files)
			h.loop.Config.ContextWindow = 4000
			h.srv.Generate(readingModel(paths, summary))

			res := h.run(context.Background())
			if res.Outcome != contract.OutcomeCompleted {
				t.Fatalf("outcome %s (%s), want Completed despite the failed summary", res.Outcome, res.Summary)
			}
			if len(res.Patch) != 0 {
				t.Errorf("a tool call in the summary answer changed the workspace:\n%s", res.Patch)
			}
			evs := h.events()
			errs := slices.IndexFunc(evs, func(e contract.Event) bool {
				return e.Type == contract.EventError && strings.HasPrefix(e.Error.Message, "summarising earlier turns for compaction: ")
			})
			if errs < 0 {
				t.Error("no error event for the failed summary")
			}
			comps := eventsOf(evs, contract.EventCompaction)
			if len(comps) == 0 || !strings.Contains(comps[0].Compaction.Summary, "no summary is available") {
				t.Fatalf("no fallback compaction event: %+v", comps)
			}
			turns, _ := splitRequests(h.srv.Requests())
			for i, r := range turns {
				if got := promptTokens(r); got > 4000 {
					t.Errorf("turn %d sent %d prompt tokens, over the window", i+1, got)
				}
			}
			for _, e := range eventsOf(evs, contract.EventToolCall) {
				if e.ToolCall.Name == "write_file" {
					t.Error("the tool call in the summary answer was run")
				}
			}
		})
	}
}

func TestCompactionCapsAnOversizedSummary(t *testing.T) {
	files, paths := notesRepo(8)
	h := newHarness(t, files)
	h.loop.Config.ContextWindow = 4000
	// A provider that ignores the output limit sends 200 KB.
	h.srv.Generate(readingModel(paths, scriptedllm.Text(strings.Repeat("summary ", 25_000))))

	res := h.run(context.Background())
	if res.Outcome != contract.OutcomeCompleted {
		t.Fatalf("outcome %s (%s)", res.Outcome, res.Summary)
	}
	comps := eventsOf(h.events(), contract.EventCompaction)
	if len(comps) == 0 {
		t.Fatal("no compaction")
	}
	// window/10 tokens of output at four bytes a token, plus the note.
	if n := len(comps[0].Compaction.Summary); n > 400*4+400 {
		t.Errorf("summary message is %d bytes; the summary must be capped", n)
	}
}

func TestCompactionNeverDropsTheOnlyTurn(t *testing.T) {
	// One read fills the window by itself: there is nothing older to summarise, so
	// no summary call is made (it could not help) and the session goes on.
	files := map[string]string{"big.txt": strings.Repeat("0123456789abcdef\n", 1200)} // ~20 KB, ~5,100 tokens
	h := newHarness(t, files,
		scriptedllm.Tools(call("read_file", map[string]any{"path": "big.txt"})),
		scriptedllm.Text("It is big."),
	)
	h.loop.Config.ContextWindow = 4000
	res := h.run(context.Background())
	if res.Outcome != contract.OutcomeCompleted {
		t.Fatalf("outcome %s (%s)", res.Outcome, res.Summary)
	}
	if _, summaries := splitRequests(h.srv.Requests()); len(summaries) != 0 {
		t.Errorf("%d summary calls with nothing to drop", len(summaries))
	}
}

func TestCompactionKeepsAFollowUpsCarriedHistory(t *testing.T) {
	files, paths := notesRepo(8)
	h := newHarness(t, files)
	h.loop.Config.ContextWindow = 4000
	h.loop.Config.History = []contract.HistoryMessage{
		{Role: openai.ChatMessageRoleUser, Content: "HISTORY-TASK: list the notes."},
		{Role: openai.ChatMessageRoleAssistant, Content: "HISTORY-ANSWER: there are eight notes."},
	}
	h.srv.Generate(readingModel(paths, scriptedllm.Text(compactionSummary)))

	if res := h.run(context.Background()); res.Outcome != contract.OutcomeCompleted {
		t.Fatalf("outcome %s (%s)", res.Outcome, res.Summary)
	}
	turns, summaries := splitRequests(h.srv.Requests())
	if len(summaries) == 0 {
		t.Fatal("no compaction")
	}
	for i, r := range turns {
		var head []string
		for _, m := range r.Body.Messages[1:4] {
			head = append(head, m.Role+": "+m.Content)
		}
		want := []string{"user: HISTORY-TASK: list the notes.", "assistant: HISTORY-ANSWER: there are eight notes.", "user: Make ./test.sh pass."}
		if !slices.Equal(head, want) {
			t.Fatalf("turn %d: the prompt after the system prompt is %q, want the carried history then the task", i+1, head)
		}
	}
}
