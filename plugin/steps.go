package plugin

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/display"
)

// decodeTranscript parses transcript.jsonl. A line that is not a valid event is an error
// naming its line number: a reader must not guess.
func decodeTranscript(b []byte) ([]contract.Event, error) {
	var evs []contract.Event
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), maxTranscriptBytes)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		ev, err := contract.DecodeEvent(line)
		if err != nil {
			return nil, fmt.Errorf("transcript line %d: %w", n, err)
		}
		evs = append(evs, ev)
	}
	return evs, sc.Err()
}

// writeSteps prints events as the step lines the runner writes to its log
// (runner/cli/progress.go, without colour, as in a pod), so `logs` reads the same whether it
// streams the pod or replays the archive. Everything the agent influenced is escaped.
func writeSteps(w io.Writer, evs []contract.Event) {
	calls := map[string]contract.ToolCall{}
	for _, ev := range evs {
		switch ev.Type {
		case contract.EventSessionStart:
			st := ev.SessionStart
			fmt.Fprintf(w, "agentry runner  session %s\n", display.Escape(st.Session))
			fmt.Fprintf(w, "  %-10s %s\n", "model", display.Escape(st.Model))
			if st.Repository != "" {
				src := display.Escape(st.Repository)
				if st.Ref != "" {
					src += "@" + display.Escape(st.Ref)
				}
				if st.BaseCommit != "" {
					src += "  " + display.Escape(st.BaseCommit[:min(len(st.BaseCommit), 10)])
				}
				fmt.Fprintf(w, "  %-10s %s\n", "workspace", src)
			}
			fmt.Fprintf(w, "  %-10s %s\n\n", "task", display.Prose(st.Task, 100))
		case contract.EventModelResponse:
			r := ev.ModelResponse
			tok := fmt.Sprintf("↑%s ↓%s", display.Tokens(r.Usage.PromptTokens), display.Tokens(r.Usage.CompletionTokens))
			if r.Usage.CachedTokens > 0 {
				tok += fmt.Sprintf(" (%s cached)", display.Tokens(r.Usage.CachedTokens))
			}
			what := fmt.Sprintf("%d tool calls", len(r.ToolCalls))
			switch len(r.ToolCalls) {
			case 0:
				what = "answer"
			case 1:
				what = "1 tool call"
			}
			retries := ""
			if r.Attempts > 1 {
				retries = fmt.Sprintf(" · %d attempts", r.Attempts)
			}
			fmt.Fprintf(w, "turn %-3d model %s · %s tokens · %s%s\n", ev.Turn, display.Millis(r.DurationMS), tok, what, retries)
			if t := strings.TrimSpace(r.Content); t != "" && len(r.ToolCalls) > 0 {
				fmt.Fprintf(w, "   “%s”\n", display.Prose(t, 110))
			}
		case contract.EventToolCall:
			calls[ev.ToolCall.ID] = *ev.ToolCall
			if ev.ToolCall.Name == "bash" {
				fmt.Fprintf(w, "   › %s %s\n", display.Escape(ev.ToolCall.Name), display.Verbatim(describeCall(*ev.ToolCall), 90))
			}
		case contract.EventToolResult:
			r := ev.ToolResult
			call := calls[r.ID]
			delete(calls, r.ID)
			mark, detail := "✓", display.ResultDetail(r.Name, r.Output)
			if r.IsError {
				mark, detail = "✗", display.Prose(strings.TrimPrefix(r.Output, "error: "), 100)
			}
			fmt.Fprintf(w, "   %s %s %s  %s %s\n", mark, display.Escape(r.Name), display.Verbatim(describeCall(call), 70), display.Millis(r.DurationMS), detail)
		case contract.EventApproval:
			a := ev.Approval
			reason := ""
			if a.Reason != "" {
				reason = " — " + display.Prose(a.Reason, 200)
			}
			fmt.Fprintf(w, "   ⚑ %s %s by %s%s\n", display.Escape(string(a.Decision)), display.Escape(a.Tool), display.Escape(a.By), reason)
		case contract.EventError:
			e := ev.Error
			if e.Retrying {
				fmt.Fprintf(w, "   ↻ attempt %d failed, retrying in %s: %s\n", e.Attempt, display.Millis(e.RetryInMS), display.Prose(e.Message, 100))
			} else {
				fmt.Fprintf(w, "   ✗ %s\n", display.Prose(e.Message, 160))
			}
		case contract.EventLimitHit:
			l := ev.LimitHit
			fmt.Fprintf(w, "   ■ limit %s reached (%d of %d)\n", display.Escape(l.Limit), l.Used, l.Max)
		case contract.EventSetup:
			mark, line := display.SetupLine(ev.Setup)
			fmt.Fprintf(w, "   %s %s\n", mark, line)
			if mark != "✓" {
				for _, l := range display.SetupTail(ev.Setup, 10) {
					fmt.Fprintf(w, "     %s\n", l)
				}
			}
		case contract.EventCompaction:
			fmt.Fprintf(w, "   ≡ %s\n", display.CompactionLine(ev.Compaction))
		case contract.EventFinish:
			f := ev.Finish
			mark := "✓"
			if f.Outcome != contract.OutcomeCompleted {
				mark = "✗"
			}
			fmt.Fprintf(w, "\n%s %s after %d turns · %d tool calls · %s tokens · %s · exit %d\n", mark, display.Escape(string(f.Outcome)),
				f.Turns, f.ToolCalls, display.Tokens(f.Usage.Total()), (time.Duration(f.DurationMS) * time.Millisecond).Round(100*time.Millisecond), f.ExitCode)
			if f.Diff.FilesChanged > 0 {
				fmt.Fprintf(w, "  %d files changed, +%d -%d\n", f.Diff.FilesChanged, f.Diff.Additions, f.Diff.Deletions)
			} else {
				fmt.Fprintln(w, "  no files changed")
			}
			if f.Error != "" {
				fmt.Fprintf(w, "  error: %s\n", display.Prose(f.Error, 200))
			}
			if s := strings.TrimSpace(f.Summary); s != "" {
				fmt.Fprintln(w, display.EscapeMultiline(s))
			}
		}
	}
}

// callSubject names the argument that says what a tool call is about, as the runner's tools
// describe themselves (runner/tools: Describe).
var callSubject = map[string]string{
	"bash":       "command",
	"read_file":  "path",
	"write_file": "path",
	"edit_file":  "path",
	"git_diff":   "path",
	"list_dir":   "path",
	"glob":       "pattern",
	"grep":       "pattern",
}

func describeCall(c contract.ToolCall) string {
	field, ok := callSubject[c.Name]
	if !ok {
		return ""
	}
	var m map[string]any
	if json.Unmarshal([]byte(c.Arguments), &m) != nil {
		return ""
	}
	v, _ := m[field].(string)
	return v
}

// displayOneLine is prose for completion descriptions.
func displayOneLine(s string, n int) string { return display.Prose(s, n) }
