package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/display"
	"github.com/agentry-dev/agentry/runner"
	"github.com/agentry-dev/agentry/runner/tools"
	"github.com/agentry-dev/agentry/runner/transcript"
)

// progress renders the (already redacted) event stream for a human. It is a
// transcript sink, so what the terminal shows is exactly what was recorded.
// Every string the agent, the model or the repository influenced goes through
// display escaping (see prose and verbatim), so no output can move the
// cursor, rewrite a line or reorder text on the user's terminal.
type progress struct {
	mu       sync.Mutex
	w        io.Writer
	quiet    bool
	color    bool
	describe func(name, args string) string
	calls    map[string]contract.ToolCall
	turn     int
}

func newProgress(w io.Writer, quiet bool) *progress {
	color := false
	if f, ok := w.(*os.File); ok && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb" {
		color = isTerminal(f)
	}
	return &progress{w: w, quiet: quiet, color: color, calls: map[string]contract.ToolCall{}}
}

func describer(set tools.Set) func(name, args string) string {
	return func(name, args string) string {
		if t, ok := set.Lookup(name); ok {
			return t.Describe(json.RawMessage(args))
		}
		return ""
	}
}

const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiDim    = "\x1b[2m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiCyan   = "\x1b[36m"
)

func (p *progress) c(code, s string) string {
	if !p.color || s == "" {
		return s
	}
	return code + s + ansiReset
}

func (p *progress) printf(format string, a ...any) {
	if p.quiet {
		return
	}
	fmt.Fprintf(p.w, format, a...)
}

// warn and note escape the whole message: their arguments include errors and
// paths that a repository can influence.
func (p *progress) warn(format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%s %s\n", p.c(ansiYellow, "warning:"), display.Escape(fmt.Sprintf(format, a...)))
}

func (p *progress) note(format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.printf("%s\n", p.c(ansiDim, display.Escape(fmt.Sprintf(format, a...))))
}

func (p *progress) header(o *options, ws, commit, task string, set tools.Set) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.printf("%s  session %s\n", p.c(ansiBold, "agentry runner"), display.Escape(o.session))
	row := func(k, v string) { p.printf("  %s %s\n", p.c(ansiDim, fmt.Sprintf("%-10s", k)), v) }
	row("model", fmt.Sprintf("%s  %s", display.Escape(o.model), p.c(ansiDim, display.Escape(o.baseURL))))
	src := display.Escape(ws)
	if o.repo != "" {
		src += p.c(ansiDim, "  ← "+display.Escape(o.repo))
		if o.ref != "" {
			src += p.c(ansiDim, "@"+display.Escape(o.ref))
		}
	}
	if commit != "" {
		src += p.c(ansiDim, "  "+display.Escape(shortSHA(commit)))
	}
	row("workspace", src)
	var lim []string
	if o.maxTurns > 0 {
		lim = append(lim, fmt.Sprintf("%d turns", o.maxTurns))
	}
	if o.maxTokens > 0 {
		lim = append(lim, display.Tokens(o.maxTokens)+" tokens")
	}
	if o.timeout > 0 {
		lim = append(lim, o.timeout.String())
	}
	if len(lim) == 0 {
		lim = []string{"none"}
	}
	row("limits", strings.Join(lim, " · "))
	row("approval", fmt.Sprintf("bash %s · writes %s", o.approvalBash, o.approvalWrites))
	row("tools", strings.Join(set.Names(), " "))
	row("task", display.Prose(task, 100))
	p.printf("\n")
}

// Write renders a batch; it never fails, so a closed terminal cannot stall a session.
func (p *progress) Write(_ context.Context, batch []contract.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.quiet {
		return nil
	}
	for _, ev := range batch {
		p.render(ev)
	}
	return nil
}

func (p *progress) Close(context.Context, transcript.Final) (transcript.Stored, error) {
	return transcript.Stored{}, nil
}

func (p *progress) render(ev contract.Event) {
	switch ev.Type {
	case contract.EventModelResponse:
		r := ev.ModelResponse
		if ev.Turn != p.turn {
			p.turn = ev.Turn
		}
		tok := fmt.Sprintf("↑%s ↓%s", display.Tokens(r.Usage.PromptTokens), display.Tokens(r.Usage.CompletionTokens))
		if r.Usage.CachedTokens > 0 {
			tok += fmt.Sprintf(" (%s cached)", display.Tokens(r.Usage.CachedTokens))
		}
		what := fmt.Sprintf("%d tool calls", len(r.ToolCalls))
		if len(r.ToolCalls) == 1 {
			what = "1 tool call"
		} else if len(r.ToolCalls) == 0 {
			what = "answer"
		}
		retries := ""
		if r.Attempts > 1 {
			retries = fmt.Sprintf(" · %d attempts", r.Attempts)
		}
		p.printf("%s %s\n", p.c(ansiBold, fmt.Sprintf("turn %-3d", ev.Turn)),
			p.c(ansiDim, fmt.Sprintf("model %s · %s tokens · %s%s", display.Millis(r.DurationMS), tok, what, retries)))
		if t := strings.TrimSpace(r.Content); t != "" && len(r.ToolCalls) > 0 {
			p.printf("   %s\n", p.c(ansiDim, "“"+display.Prose(t, 110)+"”"))
		}
	case contract.EventToolCall:
		p.calls[ev.ToolCall.ID] = *ev.ToolCall
		if ev.ToolCall.Name == "bash" {
			// Commands may take minutes: show them as they start.
			p.printf("   %s %s %s\n", p.c(ansiCyan, "›"), display.Escape(ev.ToolCall.Name), display.Verbatim(p.describeCall(*ev.ToolCall), 90))
		}
	case contract.EventToolResult:
		r := ev.ToolResult
		call := p.calls[r.ID]
		delete(p.calls, r.ID)
		mark, detail := p.c(ansiGreen, "✓"), display.ResultDetail(r.Name, r.Output)
		if r.IsError {
			mark, detail = p.c(ansiRed, "✗"), p.c(ansiRed, display.Prose(strings.TrimPrefix(r.Output, "error: "), 100))
		}
		p.printf("   %s %s %s  %s %s\n", mark, display.Escape(r.Name), display.Verbatim(p.describeCall(call), 70), p.c(ansiDim, display.Millis(r.DurationMS)), detail)
	case contract.EventApproval:
		a := ev.Approval
		col := ansiGreen
		if a.Decision == contract.DecisionDeny {
			col = ansiYellow
		}
		reason := ""
		if a.Reason != "" {
			reason = " — " + display.Prose(a.Reason, 200)
		}
		p.printf("   %s %s %s%s\n", p.c(col, "⚑ "+display.Escape(string(a.Decision))), display.Escape(a.Tool), p.c(ansiDim, "by "+display.Escape(a.By)), p.c(ansiDim, reason))
	case contract.EventError:
		e := ev.Error
		if e.Retrying {
			p.printf("   %s %s\n", p.c(ansiYellow, "↻"), p.c(ansiDim, fmt.Sprintf("attempt %d failed, retrying in %s: %s", e.Attempt, display.Millis(e.RetryInMS), display.Prose(e.Message, 100))))
		} else {
			p.printf("   %s %s\n", p.c(ansiRed, "✗"), display.Prose(e.Message, 160))
		}
	case contract.EventLimitHit:
		p.printf("   %s %s\n", p.c(ansiYellow, "■"), limitLine(ev.LimitHit))
	case contract.EventSetup:
		mark, line := display.SetupLine(ev.Setup)
		if mark == "✓" {
			p.printf("   %s %s\n", p.c(ansiGreen, mark), line)
			break
		}
		p.printf("   %s %s\n", p.c(ansiRed, mark), line)
		for _, l := range display.SetupTail(ev.Setup, 10) {
			p.printf("     %s\n", p.c(ansiDim, l))
		}
	case contract.EventCompaction:
		p.printf("   %s %s\n", p.c(ansiCyan, "≡"), display.CompactionLine(ev.Compaction))
	}
}

// limitLine says which limit ended the session, with units:
// "limit timeout reached (12s of 12s)", "limit maxTokens reached (1.2k of
// 1.0k tokens)", "limit maxTurns reached (12 of 12 turns)".
func limitLine(l *contract.LimitHit) string {
	used, max := fmt.Sprint(l.Used), fmt.Sprint(l.Max)
	switch l.Limit {
	case "timeout": // seconds
		used, max = (time.Duration(l.Used) * time.Second).String(), (time.Duration(l.Max) * time.Second).String()
	case "maxTokens":
		used, max = display.Tokens(l.Used), display.Tokens(l.Max)+" tokens"
	case "maxTurns":
		max += " turns"
	}
	return fmt.Sprintf("limit %s reached (%s of %s)", display.Escape(l.Limit), used, max)
}

func (p *progress) describeCall(c contract.ToolCall) string {
	if p.describe == nil {
		return ""
	}
	return p.describe(c.Name, c.Arguments)
}

func (p *progress) result(out io.Writer, res runner.Result, dir *transcript.Dir) {
	p.mu.Lock()
	defer p.mu.Unlock()
	mark, col := "✓", ansiGreen
	if res.Outcome != contract.OutcomeCompleted {
		mark, col = "✗", ansiRed
		if res.Outcome == contract.OutcomeMaxTurns || res.Outcome == contract.OutcomeBudgetExceeded || res.Outcome == contract.OutcomeTimeout {
			mark, col = "■", ansiYellow
		}
	}
	tokens := display.Tokens(res.Usage.Total())
	if res.Usage.CachedTokens > 0 {
		tokens += fmt.Sprintf(" (%s cached)", display.Tokens(res.Usage.CachedTokens))
	}
	fmt.Fprintf(p.w, "\n%s %s %s\n", p.c(col, mark), p.c(ansiBold, string(res.Outcome)),
		p.c(ansiDim, fmt.Sprintf("after %d turns · %d tool calls · %s tokens · %s · exit %d",
			res.Turns, res.ToolCalls, tokens, res.Duration.Round(100*time.Millisecond), res.ExitCode())))
	if res.Diff.FilesChanged > 0 {
		files := "1 file"
		if res.Diff.FilesChanged != 1 {
			files = fmt.Sprintf("%d files", res.Diff.FilesChanged)
		}
		fmt.Fprintf(p.w, "  %s changed, %s %s\n", files,
			p.c(ansiGreen, fmt.Sprintf("+%d", res.Diff.Additions)), p.c(ansiRed, fmt.Sprintf("-%d", res.Diff.Deletions)))
	} else {
		fmt.Fprintf(p.w, "  no files changed\n")
	}
	row := func(k, v string) { fmt.Fprintf(p.w, "  %s %s\n", p.c(ansiDim, fmt.Sprintf("%-11s", k)), v) }
	row("transcript", dir.TranscriptPath())
	if len(res.Patch) > 0 {
		row("patch", dir.Path()+"/"+transcript.PatchFile)
	}
	for _, st := range res.Stored {
		if st.Transcript != nil && strings.HasPrefix(st.Transcript.URI, "s3://") {
			row("s3", strings.TrimSuffix(st.Transcript.URI, transcript.TranscriptFile))
		}
	}
	// The model's answer goes to stdout so it can be piped; everything else is
	// stderr. It keeps its lines; anything else that could act on a terminal
	// is escaped.
	fmt.Fprintln(out, display.EscapeMultiline(strings.TrimSpace(res.Summary)))
}

func shortSHA(s string) string {
	if len(s) > 10 {
		return s[:10]
	}
	return s
}
