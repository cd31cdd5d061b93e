package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	openai "github.com/sashabaranov/go-openai"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/display"
	"github.com/agentry-dev/agentry/runner/llm"
)

// Compaction keeps a long session's prompt within the model's context window.
// Before each model turn the loop estimates the next prompt's size; once it
// crosses Config.CompactAt of the window, the turns between the pinned head of
// the history (system prompt, task, carried-over history) and the most recent
// turns are replaced by one message carrying a model-written summary of them.

const (
	defaultCompactAt = 0.8
	defaultKeepTurns = 4
	// keptShare bounds the recent turns kept verbatim, so a compaction always
	// brings the prompt well under the threshold instead of firing every turn.
	keptShare = 0.5
	// summaryInputShare bounds the turns rendered into the summary request, so
	// that request fits the window too.
	summaryInputShare = 0.6
	// renderedMessageMax caps one message in the summary request; the summary
	// needs the gist of an old tool result, not all of it.
	renderedMessageMax = 4 << 10
	// bytesPerToken approximates a tokenizer where the provider reported nothing.
	bytesPerToken = 4
)

const summarySystemPrompt = `You are summarising the earlier part of an autonomous coding session so that the session can continue within the model's context window. The summary replaces the messages below; nothing else of them remains.

Write a concise, factual summary that lets the engineer carry on: what has been done (files read and changed, commands run and their results), what was learned about the code, decisions taken and why, errors met, and what remains to do. Keep exact file paths, identifiers, commands and error messages that will matter. Do not invent anything, do not call tools, do not address the user.`

// compactionState is what the loop knows about the size of its prompt.
type compactionState struct {
	// pinned is how many leading messages are never compacted: the system
	// prompt, the task and any history a follow-up session carried over.
	pinned int
	// tokens is the provider's count of the last prompt plus its completion;
	// upTo is the history length that count covers. Zero tokens: unknown.
	tokens int64
	upTo   int
	// toolTokens estimates the tool definitions, which every prompt carries
	// but the history does not show.
	toolTokens int64
}

func (s *session) initCompaction() {
	s.compaction.pinned = len(s.messages)
	if b, err := json.Marshal(s.defs); err == nil {
		s.compaction.toolTokens = int64(len(b) / bytesPerToken)
	}
}

// observeUsage records the provider's count after a response entered the history.
func (s *session) observeUsage(u contract.Usage) {
	s.compaction.tokens, s.compaction.upTo = u.PromptTokens+u.CompletionTokens, len(s.messages)
}

// promptEstimate is the next prompt's size in tokens: the provider's count of
// the last prompt and completion plus an estimate of the tool results since;
// an estimate of everything when the provider reports no usage or the history
// was compacted since.
func (s *session) promptEstimate() int64 {
	c := s.compaction
	if c.tokens <= 0 || c.upTo > len(s.messages) {
		return c.toolTokens + estimateTokens(s.messages...)
	}
	return c.tokens + estimateTokens(s.messages[c.upTo:]...)
}

// estimateTokens approximates a tokenizer at about four bytes a token, plus a
// few tokens of framing per message.
func estimateTokens(msgs ...openai.ChatCompletionMessage) int64 {
	var n int64
	for _, m := range msgs {
		n += 4 + int64(len(m.Content)/bytesPerToken)
		for _, tc := range m.ToolCalls {
			n += int64((len(tc.Function.Name) + len(tc.Function.Arguments)) / bytesPerToken)
		}
	}
	return n
}

func (c Config) compactAt() float64 {
	if c.CompactAt <= 0 || c.CompactAt >= 1 {
		return defaultCompactAt
	}
	return c.CompactAt
}

func (c Config) keepTurns() int {
	if c.KeepTurns <= 0 {
		return defaultKeepTurns
	}
	return c.KeepTurns
}

// compactIfNeeded summarises older turns when the next prompt would cross the
// threshold. It returns a result when the session must end: the summary
// call spent the token budget, or the session was cancelled meanwhile.
func (s *session) compactIfNeeded(ctx context.Context) (Result, bool) {
	window := s.Config.ContextWindow
	if window <= 0 {
		return Result{}, false
	}
	estimate := s.promptEstimate()
	if float64(estimate) < s.Config.compactAt()*float64(window) {
		return Result{}, false
	}
	cut := s.compactionCut()
	dropped := s.messages[s.compaction.pinned:cut]
	turns := assistantTurns(dropped)
	if turns == 0 {
		// Only the most recent turn (and an earlier summary) is left: there is
		// nothing a summary could save.
		return Result{}, false
	}
	turn := s.res.Turns
	summary, usage, err := s.summarise(ctx, turn, dropped)
	s.res.Usage = s.res.Usage.Add(usage)
	note := fmt.Sprintf("[Context compaction: %d earlier messages (%d turns) were replaced by this summary, written by the model, to keep the prompt within the context window. Re-read any file you need exactly.]\n\n", len(dropped), turns)
	if err != nil {
		if ctx.Err() != nil {
			return s.interrupted(ctx, turn), true
		}
		info := &contract.ErrorInfo{Source: "model", Message: "summarising earlier turns for compaction: " + err.Error()}
		var pe *llm.ProviderError
		if errors.As(err, &pe) {
			info.HTTPStatus = pe.Status
		}
		s.emit(turn, contract.Event{Type: contract.EventError, Error: info})
		if errors.Is(err, llm.ErrBudgetExceeded) {
			return s.end(contract.OutcomeBudgetExceeded, "stopped: "+err.Error(), err), true
		}
		// The session goes on without the old turns rather than overflowing
		// the window; the model is told what it lost.
		note, summary = fmt.Sprintf("[Context compaction: %d earlier messages (%d turns) were removed to keep the prompt within the context window. Summarising them failed, so no summary is available: re-inspect the workspace for what was done so far.]", len(dropped), turns), ""
	}
	s.replaceHistory(cut, note+summary)
	s.emit(turn, contract.Event{Type: contract.EventCompaction, Compaction: &contract.Compaction{
		PromptTokens: estimate, ContextWindow: window, DroppedMessages: len(dropped), DroppedTurns: turns,
		KeptMessages: len(s.messages), Summary: note + summary, Usage: usage,
	}})
	_ = s.Transcript.Flush(ctx)
	if s.Config.MaxTokens > 0 && s.res.Usage.Total() >= s.Config.MaxTokens {
		s.emit(turn, contract.Event{Type: contract.EventLimitHit, LimitHit: &contract.LimitHit{Limit: "maxTokens", Max: s.Config.MaxTokens, Used: s.res.Usage.Total()}})
		return s.end(contract.OutcomeBudgetExceeded, fmt.Sprintf("stopped: used %d tokens, the limit is %d", s.res.Usage.Total(), s.Config.MaxTokens), nil), true
	}
	return Result{}, false
}

// compactionCut is the index where the kept recent turns begin: at most
// KeepTurns assistant turns, fewer when they alone would fill keptShare of the
// window, and always the last one (the model continues from it). A cut is
// always at an assistant message, so a kept tool result never loses the call
// it answers, which the API would reject.
func (s *session) compactionCut() int {
	budget := int64(keptShare * float64(s.Config.ContextWindow))
	cut, turns := len(s.messages), 0
	var size int64
	for i := len(s.messages) - 1; i >= s.compaction.pinned; i-- {
		size += estimateTokens(s.messages[i])
		if s.messages[i].Role != openai.ChatMessageRoleAssistant {
			continue
		}
		if turns > 0 && (turns >= s.Config.keepTurns() || size > budget) {
			break
		}
		cut, turns = i, turns+1
	}
	if turns == 0 {
		return s.compaction.pinned
	}
	return cut
}

func assistantTurns(msgs []openai.ChatCompletionMessage) int {
	n := 0
	for _, m := range msgs {
		if m.Role == openai.ChatMessageRoleAssistant {
			n++
		}
	}
	return n
}

// replaceHistory swaps the messages between the pinned head and cut for one
// user message with the summary.
func (s *session) replaceHistory(cut int, text string) {
	kept := s.messages[cut:]
	next := make([]openai.ChatCompletionMessage, 0, s.compaction.pinned+1+len(kept))
	next = append(next, s.messages[:s.compaction.pinned]...)
	next = append(next, openai.ChatCompletionMessage{Role: openai.ChatMessageRoleUser, Content: text})
	s.messages = append(next, kept...)
	// The provider's last count described the old history.
	s.compaction.tokens, s.compaction.upTo = 0, 0
}

// summarise asks the model, without tools, for a summary of dropped. Its
// usage is returned even when the answer is unusable: the tokens were spent.
func (s *session) summarise(ctx context.Context, turn int, dropped []openai.ChatCompletionMessage) (string, contract.Usage, error) {
	window := s.Config.ContextWindow
	maxOut := int(min(max(window/10, 256), 4096))
	if s.Config.MaxOutputTokens > 0 {
		maxOut = min(maxOut, s.Config.MaxOutputTokens)
	}
	resp, err := s.Model.Complete(ctx, llm.Request{
		Model: s.Config.Model, Messages: summaryRequest(s.task, dropped, window),
		Temperature: s.Config.Temperature, MaxOutputTokens: maxOut,
		OnRetry: func(n llm.RetryNotice) {
			s.emit(turn, contract.Event{Type: contract.EventError, Error: &contract.ErrorInfo{
				Source: "model", Message: "summarising earlier turns for compaction: " + n.Err.Error(), HTTPStatus: n.Status,
				Retrying: true, Attempt: n.Attempt, RetryInMS: n.Delay.Milliseconds(),
			}})
		},
	})
	if err != nil {
		return "", resp.Usage, err
	}
	text := strings.TrimSpace(resp.Message.Content)
	// No tools were offered, so a tool call is never run; an answer without
	// text is no summary.
	if len(resp.Message.ToolCalls) > 0 || text == "" {
		return "", resp.Usage, errors.New("the model answered without a summary")
	}
	// A provider may ignore the output limit; the summary must stay small
	// whatever it sends, or compaction would not bound the prompt.
	return display.Truncate(text, maxOut*bytesPerToken), resp.Usage, nil
}

// summaryRequest renders the dropped turns as text: sending them as chat
// messages would need the tool definitions (which would invite tool calls)
// and an API-valid structure; a transcript says the same.
func summaryRequest(task string, dropped []openai.ChatCompletionMessage, window int64) []openai.ChatCompletionMessage {
	var b strings.Builder
	for _, m := range dropped {
		switch m.Role {
		case openai.ChatMessageRoleAssistant:
			b.WriteString("[assistant]\n")
			if c := strings.TrimSpace(m.Content); c != "" {
				b.WriteString(cutMiddle(c, renderedMessageMax) + "\n")
			}
			for _, tc := range m.ToolCalls {
				fmt.Fprintf(&b, "→ %s %s\n", tc.Function.Name, cutMiddle(tc.Function.Arguments, renderedMessageMax))
			}
		case openai.ChatMessageRoleTool:
			fmt.Fprintf(&b, "[result of %s]\n%s\n", m.Name, cutMiddle(m.Content, renderedMessageMax))
		default:
			fmt.Fprintf(&b, "[%s]\n%s\n", m.Role, cutMiddle(m.Content, renderedMessageMax))
		}
		b.WriteString("\n")
	}
	turns := cutMiddle(b.String(), int(summaryInputShare*float64(window))*bytesPerToken)
	return []openai.ChatCompletionMessage{
		{Role: openai.ChatMessageRoleSystem, Content: summarySystemPrompt},
		{Role: openai.ChatMessageRoleUser, Content: "The session's task:\n\n" + cutMiddle(task, renderedMessageMax) +
			"\n\nThe earlier part of the session, which your summary replaces:\n\n" + turns +
			"\nWrite the summary now."},
	}
}

// cutMiddle keeps the head (a third) and the tail of an oversized text: the
// start of an old history holds the earlier summary, its end the latest state.
func cutMiddle(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	head := limit / 3
	for head > 0 && !utf8.RuneStart(s[head]) {
		head--
	}
	tail := len(s) - (limit - limit/3)
	for tail < len(s) && !utf8.RuneStart(s[tail]) {
		tail++
	}
	return fmt.Sprintf("%s\n[… %d bytes omitted …]\n%s", s[:head], tail-head, s[tail:])
}
