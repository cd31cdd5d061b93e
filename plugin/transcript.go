package plugin

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"io"
	"os"
	"strings"
	"time"

	"charm.land/glamour/v2"
	"github.com/spf13/cobra"
	"github.com/yuin/goldmark"
	"golang.org/x/term"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/display"
)

// Transcript formats.
const (
	formatText     = "text"
	formatMarkdown = "markdown"
	formatJSON     = "json"
	formatHTML     = "html"
)

// maxResultLines bounds a tool result shown in a rendered transcript; json has all of it.
const maxResultLines = 20

func transcriptCommand(out io.Writer, a *artifactsCmd) *cobra.Command {
	var format, output string
	cmd := &cobra.Command{
		Use:   "transcript SESSION",
		Short: "Show a session's archived conversation: in the terminal, or as Markdown, JSON lines or HTML",
		Long: `Read the session's archived transcript through a temporary share link (created and
deleted by this command) and render it:

  text      the conversation for the terminal: the model's text as Markdown, tool calls and
            short results, approvals, the finish (the default on a terminal)
  markdown  the same as a Markdown document (the default when stdout is not a terminal)
  json      the transcript as archived: one JSON event per line
  html      a self-contained HTML page, written to --output (default SESSION.html)`,
		Example: `  kubectl agentry transcript fix-flaky-test
  kubectl agentry transcript fix-flaky-test --format markdown > fix-flaky-test.md
  kubectl agentry transcript fix-flaky-test --format json | jq 'select(.type=="toolCall")'
  kubectl agentry transcript fix-flaky-test --format html -o review.html`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch format {
			case "":
				format = formatMarkdown
				if isTerminal(out) {
					format = formatText
				}
			case formatText, formatMarkdown, formatJSON, formatHTML:
			default:
				return usageErrorf("--format must be text, markdown, json or html, got %q", format)
			}
			return a.transcript(cmd.Context(), out, cmd.ErrOrStderr(), args[0], format, output)
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "text, markdown, json or html (default text on a terminal, else markdown)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to this file instead of stdout (html: default SESSION.html)")
	return cmd
}

func (a *artifactsCmd) transcript(ctx context.Context, out, errOut io.Writer, name, format, output string) error {
	c, ns, err := a.connect()
	if err != nil {
		return err
	}
	s, err := getSession(ctx, c, ns, name)
	if err != nil {
		return err
	}
	files, err := a.fetchArchived(ctx, c, errOut, ns, name, transcriptFile)
	if err != nil {
		return err
	}
	raw := files[transcriptFile.path]
	if err := checkDigest("transcript", raw, s.Status.Transcript); err != nil {
		return err
	}
	var doc []byte
	if format == formatJSON {
		doc = raw
	} else {
		evs, err := decodeTranscript(raw)
		if err != nil {
			return fmt.Errorf("the archived transcript of session %s/%s: %w", ns, name, err)
		}
		md := transcriptMarkdown(s, evs)
		switch format {
		case formatMarkdown:
			doc = []byte(md)
		case formatText:
			r, err := glamour.NewTermRenderer(glamour.WithEnvironmentConfig(), glamour.WithWordWrap(terminalWidth(out)))
			if err != nil {
				return err
			}
			text, err := r.Render(md)
			if err != nil {
				return fmt.Errorf("rendering the transcript: %w", err)
			}
			doc = []byte(text)
		case formatHTML:
			if doc, err = transcriptHTML(s, md); err != nil {
				return err
			}
			if output == "" {
				output = name + ".html"
			}
		}
	}
	if output == "" {
		_, err = out.Write(doc)
		return err
	}
	if err := os.WriteFile(output, doc, 0o644); err != nil {
		return fmt.Errorf("writing the transcript: %w", err)
	}
	fmt.Fprintf(out, "wrote %s (%s, %d bytes)\n", output, format, len(doc))
	return nil
}

// transcriptMarkdown is the conversation as a Markdown document. Every string from the
// transcript was written by the agent, the model or the repository: control characters are
// escaped (so the document is safe to print to a terminal) and code is fenced with a fence
// longer than any backtick run inside it, so it cannot close its own block.
func transcriptMarkdown(s *v1.AgentSession, evs []contract.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Session %s/%s\n\n", s.Namespace, s.Name)
	calls := map[string]contract.ToolCall{}
	turn := 0
	for _, ev := range evs {
		switch ev.Type {
		case contract.EventSessionStart:
			st := ev.SessionStart
			b.WriteString("## Task\n\n")
			b.WriteString(quote(display.EscapeMultiline(st.Task)))
			b.WriteString("\n")
			row := func(k, v string) {
				if v != "" {
					fmt.Fprintf(&b, "- **%s:** %s\n", k, inlineCode(v))
				}
			}
			row("model", st.Model)
			repo := st.Repository
			if repo != "" && st.Ref != "" {
				repo += "@" + st.Ref
			}
			row("repository", repo)
			row("base commit", st.BaseCommit)
			row("tools", strings.Join(st.Tools, " "))
			if st.ContinuedFrom != nil {
				row("continues", st.ContinuedFrom.Session)
			}
			var sources []string
			for _, in := range st.Instructions {
				sources = append(sources, in.Source)
			}
			row("instructions", strings.Join(sources, ", "))
			row("hidden by .agentryignore", strings.Join(st.Ignored, " "))
			b.WriteString("\n")
		case contract.EventModelResponse:
			r := ev.ModelResponse
			if ev.Turn != turn {
				turn = ev.Turn
				fmt.Fprintf(&b, "## Turn %d\n\n", turn)
			}
			fmt.Fprintf(&b, "*model %s · ↑%s ↓%s tokens*\n\n", display.Millis(r.DurationMS), display.Tokens(r.Usage.PromptTokens), display.Tokens(r.Usage.CompletionTokens))
			if t := strings.TrimSpace(r.Content); t != "" {
				b.WriteString(display.EscapeMultiline(t))
				b.WriteString("\n\n")
			}
		case contract.EventToolCall:
			calls[ev.ToolCall.ID] = *ev.ToolCall
			tc := ev.ToolCall
			fmt.Fprintf(&b, "**→ %s**", inlineCode(tc.Name))
			if d := describeCall(*tc); d != "" && !strings.Contains(d, "\n") {
				fmt.Fprintf(&b, " %s\n\n", inlineCode(d))
			} else if d != "" {
				b.WriteString("\n\n")
				b.WriteString(fenced(d, "sh"))
			} else {
				b.WriteString("\n\n")
				b.WriteString(fenced(tc.Arguments, "json"))
			}
		case contract.EventToolResult:
			r := ev.ToolResult
			delete(calls, r.ID)
			mark := "✓"
			if r.IsError {
				mark = "✗"
			}
			fmt.Fprintf(&b, "%s %s · %s\n\n", mark, inlineCode(r.Name), display.Millis(r.DurationMS))
			if o := strings.TrimRight(r.Output, "\n"); o != "" {
				b.WriteString(fenced(firstLines(o, maxResultLines), ""))
			}
		case contract.EventApproval:
			ap := ev.Approval
			fmt.Fprintf(&b, "> ⚑ **%s** %s %s by %s", display.Escape(string(ap.Decision)), inlineCode(ap.ID), inlineCode(ap.Tool), inlineCode(ap.By))
			if ap.Reason != "" {
				fmt.Fprintf(&b, " — %s", display.Prose(ap.Reason, 500))
			}
			b.WriteString("\n>\n")
			b.WriteString(quote(inlineCode(display.Truncate(ap.Summary, 300))))
			b.WriteString("\n")
		case contract.EventError:
			e := ev.Error
			if e.Retrying {
				fmt.Fprintf(&b, "*↻ %s error, attempt %d, retrying: %s*\n\n", display.Escape(e.Source), e.Attempt, display.Prose(e.Message, 200))
			} else {
				fmt.Fprintf(&b, "**✗ %s error:** %s\n\n", display.Escape(e.Source), display.Prose(e.Message, 500))
			}
		case contract.EventLimitHit:
			l := ev.LimitHit
			fmt.Fprintf(&b, "**■ limit %s reached** (%d of %d)\n\n", display.Escape(l.Limit), l.Used, l.Max)
		case contract.EventSetup:
			mark, line := display.SetupLine(ev.Setup)
			fmt.Fprintf(&b, "%s %s\n\n", mark, inlineCode(line))
			if o := strings.TrimRight(ev.Setup.Output, "\n"); o != "" {
				b.WriteString(fenced(lastLines(o, maxResultLines), ""))
			}
		case contract.EventCompaction:
			c := ev.Compaction
			fmt.Fprintf(&b, "**≡ %s**\n\n", display.Escape(display.CompactionLine(c)))
			b.WriteString(fenced(firstLines(c.Summary, maxResultLines), ""))
		case contract.EventFinish:
			f := ev.Finish
			fmt.Fprintf(&b, "## Finish: %s\n\n", display.Escape(string(f.Outcome)))
			fmt.Fprintf(&b, "%d turns · %d tool calls · %s tokens · %s · %d files changed, +%d -%d\n\n",
				f.Turns, f.ToolCalls, display.Tokens(f.Usage.Total()), (time.Duration(f.DurationMS) * time.Millisecond).Round(100*time.Millisecond),
				f.Diff.FilesChanged, f.Diff.Additions, f.Diff.Deletions)
			if f.Error != "" {
				fmt.Fprintf(&b, "**error:** %s\n\n", display.Prose(f.Error, 1000))
			}
			if sum := strings.TrimSpace(f.Summary); sum != "" {
				b.WriteString(display.EscapeMultiline(sum))
				b.WriteString("\n")
			}
		}
	}
	return b.String()
}

// fenced puts s in a code block whose fence no backtick run in s can close.
func fenced(s, lang string) string {
	s = display.EscapeMultiline(s)
	longest, run := 0, 0
	for _, r := range s {
		if r == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	fence := strings.Repeat("`", max(3, longest+1))
	return fence + lang + "\n" + s + "\n" + fence + "\n\n"
}

// inlineCode is s, on one line and escaped, as inline code that cannot end early.
func inlineCode(s string) string {
	s = display.Escape(s)
	ticks := "`"
	for strings.Contains(s, ticks) {
		ticks += "`"
	}
	pad := ""
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		pad = " "
	}
	return ticks + pad + s + pad + ticks
}

func quote(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "> " + l
	}
	return strings.Join(lines, "\n") + "\n"
}

// lastLines keeps the last n lines: the end of a failed command's output says why.
func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) <= n {
		return s
	}
	return fmt.Sprintf("… (%d lines before)\n", len(lines)-n) + strings.Join(lines[len(lines)-n:], "\n")
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) <= n {
		return s
	}
	return strings.Join(lines[:n], "\n") + fmt.Sprintf("\n… (%d more lines)", strings.Count(lines[n], "\n")+1)
}

// transcriptHTML is a self-contained page: the Markdown rendered by goldmark, which drops
// raw HTML and javascript: links by default, under a policy that lets the page load and run
// nothing from anywhere (an image the model linked would tell its server who reads it).
func transcriptHTML(s *v1.AgentSession, md string) ([]byte, error) {
	var body bytes.Buffer
	if err := goldmark.Convert([]byte(md), &body); err != nil {
		return nil, fmt.Errorf("rendering the transcript as HTML: %w", err)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Session %s/%s</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1f2328}
pre{background:#f6f8fa;padding:.75rem;overflow-x:auto;border-radius:6px}
code{font:13px ui-monospace,monospace}
blockquote{border-left:4px solid #d0d7de;margin:0;padding:0 1rem;color:#59636e}
h2{border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
</style></head><body>
`, html.EscapeString(s.Namespace), html.EscapeString(s.Name))
	b.Write(body.Bytes())
	b.WriteString("</body></html>\n")
	return b.Bytes(), nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func terminalWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if width, _, err := term.GetSize(int(f.Fd())); err == nil && width > 20 {
			return min(width, 120)
		}
	}
	return 100
}
