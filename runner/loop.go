// Package runner is the agent loop: it sends the task and the tool schemas to
// the model, runs the tool calls the model returns (read-only ones in
// parallel), appends the results and repeats until the model answers without
// calling a tool or a limit ends the session. It always finishes by producing
// the workspace patch and closing the transcript.
package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/display"
	"github.com/agentry-dev/agentry/runner/approval"
	"github.com/agentry-dev/agentry/runner/gitrepo"
	"github.com/agentry-dev/agentry/runner/instructions"
	"github.com/agentry-dev/agentry/runner/llm"
	"github.com/agentry-dev/agentry/runner/tools"
	"github.com/agentry-dev/agentry/runner/transcript"
)

// Clock is the loop's source of time, for durations in the transcript.
type Clock interface{ Now() time.Time }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Recorder is the transcript as the loop uses it; *transcript.Recorder
// implements it.
type Recorder interface {
	Emit(contract.Event) contract.Event
	Flush(ctx context.Context) error
	Close(ctx context.Context, final transcript.Final) ([]transcript.Stored, error)
}

// Differ produces the session's patch; *gitrepo.Repo implements it. Nil when
// the workspace is not a git checkout.
type Differ interface {
	Diff(paths ...string) (gitrepo.Patch, error)
}

// Config is what the loop needs to know about the session.
type Config struct {
	Session         string
	Model           string
	BaseURL         string
	Temperature     *float32
	MaxOutputTokens int
	MaxTurns        int
	MaxTokens       int64
	Timeout         time.Duration
	// SystemPrompt overrides the built-in prompt.
	SystemPrompt string
	Workspace    string
	Repository   string
	Ref          string
	BaseCommit   string
	// Parallelism bounds concurrent read-only calls; 0 means 8.
	Parallelism int
	// MaxToolOutput caps any tool result sent to the model; 0 means 128 KiB.
	// Tools bound their own output well below this; it is a safety net.
	MaxToolOutput int
	RunnerVersion string
	// History is carried over from the session a follow-up continues (ContinuedFrom): it
	// goes between the system prompt and the task.
	History       []contract.HistoryMessage
	ContinuedFrom *contract.Continuation
	// Ignored are the .agentryignore patterns in effect, for the transcript.
	Ignored []string
	// ContextWindow is the model's context window in tokens; 0 turns compaction off.
	ContextWindow int64
	// CompactAt is the share of the window at which older turns are replaced by a
	// summary (compact.go); 0 means 0.8. KeepTurns is how many recent assistant turns
	// are kept verbatim; 0 means 4.
	CompactAt float64
	KeepTurns int
	// Setup are the setup phase's results (from `runner setup`), recorded before the first
	// model call; a failed command ends the session SetupFailed without calling the model.
	// SetupError says why the results could not be read, which also ends it SetupFailed.
	Setup      []contract.Setup
	SetupError string
}

// Loop runs one session.
type Loop struct {
	Model      llm.Client
	Tools      tools.Set
	Transcript Recorder
	Policy     approval.Policy
	Approver   approval.Asker
	Diff       Differ
	Clock      Clock
	Config     Config
	// Guide adds the instructions to the system prompt and hands nested AGENTS.md files to
	// the model when a file tool first touches their directory. Nil: none.
	Guide *instructions.Guide
}

// Result is how the session ended.
type Result struct {
	Outcome contract.Outcome
	// Summary is the model's final answer, or a description of why it stopped.
	Summary   string
	Err       error
	Turns     int
	ToolCalls int
	Usage     contract.Usage
	Patch     []byte
	Diff      contract.DiffStats
	Duration  time.Duration
	Events    int64
	// Stored lists, per sink, where the artifacts went.
	Stored []transcript.Stored
	// SinkErr reports transcript storage problems; the session result stands.
	SinkErr error
}

// ExitCode is the process status for this result.
func (r Result) ExitCode() contract.ExitCode { return r.Outcome.ExitCode() }

// TerminationSummary is the ≤4 KiB message for the controller.
func (r Result) TerminationSummary(model, baseCommit string) contract.Summary {
	s := contract.Summary{
		Outcome: r.Outcome, ExitCode: r.ExitCode(), Message: r.Summary, Turns: r.Turns, ToolCalls: r.ToolCalls,
		Usage: r.Usage, Diff: r.Diff, BaseCommit: baseCommit, Model: model, Events: r.Events,
	}
	// The last sink is the most remote one (S3, gateway) by convention of the
	// caller; prefer it, since the controller cannot read the pod's disk.
	for i := len(r.Stored) - 1; i >= 0; i-- {
		if r.Stored[i].Transcript != nil {
			s.Transcript, s.Patch = r.Stored[i].Transcript, r.Stored[i].Patch
			break
		}
	}
	return s
}

// ErrTimeout is the cause of the session context when Config.Timeout elapses.
var ErrTimeout = errors.New("session timeout elapsed")

// Run executes the session. It returns after the transcript is closed; the
// returned error is non-nil only for misuse (no model, no tools).
func (l *Loop) Run(ctx context.Context, task string) (Result, error) {
	if l.Model == nil || l.Transcript == nil {
		return Result{}, errors.New("runner: Loop needs a Model and a Transcript")
	}
	if l.Clock == nil {
		l.Clock = realClock{}
	}
	if l.Approver == nil {
		l.Approver = approval.Fixed{Decision: contract.DecisionDeny, By: "runner", Reason: "no approver is configured"}
	}
	start := l.Clock.Now()
	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if l.Config.Timeout > 0 {
		runCtx, cancel = context.WithTimeoutCause(ctx, l.Config.Timeout, ErrTimeout)
	}
	defer cancel()

	s := &session{Loop: l, task: task}
	s.start()
	res, ok := s.setup()
	if ok {
		res = s.run(runCtx)
	}
	res.Duration = l.Clock.Now().Sub(start)

	// Finishing must happen even when the session context is gone: the patch
	// and the transcript are the point of a session that hit a limit.
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer fcancel()
	l.finish(fctx, &res)
	return res, nil
}

func (l *Loop) finish(ctx context.Context, res *Result) {
	if l.Diff != nil {
		if p, err := l.Diff.Diff(); err != nil {
			l.Transcript.Emit(contract.Event{Type: contract.EventError, Error: &contract.ErrorInfo{Source: "runner", Message: "computing the patch: " + err.Error()}})
		} else {
			res.Patch = p.Text
			f, a, d := p.Totals()
			res.Diff = contract.DiffStats{FilesChanged: f, Additions: a, Deletions: d}
			for _, o := range p.Omitted {
				res.Diff.Omitted = append(res.Diff.Omitted, contract.OmittedFile{Path: o.Path, Size: o.Size, Reason: o.Reason})
			}
		}
	}
	fin := &contract.Finish{
		Outcome: res.Outcome, ExitCode: res.ExitCode(), Summary: res.Summary, Turns: res.Turns, ToolCalls: res.ToolCalls,
		Usage: res.Usage, Diff: res.Diff, DurationMS: res.Duration.Milliseconds(),
	}
	if res.Err != nil {
		fin.Error = res.Err.Error()
	}
	ev := l.Transcript.Emit(contract.Event{Type: contract.EventFinish, Turn: res.Turns, Finish: fin})
	res.Summary = ev.Finish.Summary // the redacted form is what leaves the runner
	res.Events = ev.Seq
	summary := res.TerminationSummary(l.Config.Model, l.Config.BaseCommit)
	res.Stored, res.SinkErr = l.Transcript.Close(ctx, transcript.Final{Summary: summary, Patch: res.Patch})
}

// session is the mutable state of one Run.
type session struct {
	*Loop
	task string
	// approvals counts approval requests, so their ids are unique in the
	// session whatever ids the model sends (or omits).
	approvals atomic.Int64
	messages  []openai.ChatCompletionMessage
	defs      []openai.Tool
	res       Result
	// compaction tracks the prompt's size against the context window (compact.go).
	compaction compactionState
}

func (s *session) start() {
	prompt := s.Config.SystemPrompt
	if prompt == "" {
		prompt = DefaultSystemPrompt(s.Tools)
	}
	var guide instructions.Context
	if s.Guide != nil {
		guide = s.Guide.Context
		prompt = instructions.SystemPrompt(prompt, guide)
	}
	s.messages = []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleSystem, Content: prompt}}
	for _, m := range s.Config.History {
		s.messages = append(s.messages, openai.ChatCompletionMessage{Role: m.Role, Content: m.Content})
	}
	s.messages = append(s.messages, openai.ChatCompletionMessage{Role: openai.ChatMessageRoleUser, Content: s.task})
	for _, t := range s.Tools {
		s.defs = append(s.defs, openai.Tool{Type: openai.ToolTypeFunction, Function: &openai.FunctionDefinition{
			Name: t.Name(), Description: t.Description(), Parameters: t.Schema(),
		}})
	}
	c := s.Config
	s.Transcript.Emit(contract.Event{Type: contract.EventSessionStart, SessionStart: &contract.SessionStart{
		Session: c.Session, Task: s.task, SystemPrompt: prompt, Model: c.Model, BaseURL: c.BaseURL,
		Temperature: c.Temperature, MaxOutputTokens: c.MaxOutputTokens, Tools: s.Tools.Names(),
		Workspace: c.Workspace, Repository: c.Repository, Ref: c.Ref, BaseCommit: c.BaseCommit,
		Limits:        contract.Limits{MaxTurns: c.MaxTurns, MaxTokens: c.MaxTokens, TimeoutSeconds: int64(c.Timeout.Seconds())},
		RunnerVersion: c.RunnerVersion,
		Instructions:  guide.Instructions, Project: guide.Project, Ignored: c.Ignored,
		ContextWindow: c.ContextWindow, ContinuedFrom: c.ContinuedFrom,
	}})
}

// DefaultSystemPrompt tells the model how the session works with these tools.
func DefaultSystemPrompt(set tools.Set) string {
	var b strings.Builder
	b.WriteString("You are an autonomous software engineer working in a git repository (the workspace). ")
	b.WriteString("Complete the user's task by inspecting the code, changing files with the tools, and verifying your work")
	if _, ok := set.Lookup("bash"); ok {
		b.WriteString(" (build and run the relevant tests with bash)")
	}
	b.WriteString(".\n\nRules:\n")
	b.WriteString("- Paths are relative to the workspace root; you cannot access files outside it.\n")
	b.WriteString("- Tool errors explain what went wrong; adjust the call instead of repeating it.\n")
	b.WriteString("- Independent read-only calls may be issued together in one turn; they run in parallel.\n")
	b.WriteString("- Nobody can answer questions during the session; make reasonable decisions yourself.\n")
	b.WriteString("- When the task is done, reply without calling any tool: a short summary of what you changed and how you verified it. That reply ends the session.\n")
	b.WriteString("\nAvailable tools: " + strings.Join(set.Names(), ", ") + ".\n")
	return b.String()
}

func (s *session) emit(turn int, ev contract.Event) contract.Event {
	ev.Turn = turn
	return s.Transcript.Emit(ev)
}

func (s *session) run(ctx context.Context) Result {
	defer func() { _ = s.Transcript.Flush(context.WithoutCancel(ctx)) }()
	s.initCompaction()
	for turn := 1; ; turn++ {
		if s.Config.MaxTurns > 0 && turn > s.Config.MaxTurns {
			s.emit(turn-1, contract.Event{Type: contract.EventLimitHit, LimitHit: &contract.LimitHit{Limit: "maxTurns", Max: int64(s.Config.MaxTurns), Used: int64(turn - 1)}})
			return s.end(contract.OutcomeMaxTurns, fmt.Sprintf("stopped: reached the limit of %d turns before the model finished", s.Config.MaxTurns), nil)
		}
		if res, done := s.compactIfNeeded(ctx); done {
			return res
		}
		s.emit(turn, contract.Event{Type: contract.EventModelRequest, ModelRequest: &contract.ModelRequest{Model: s.Config.Model, Messages: len(s.messages), Tools: len(s.defs)}})
		_ = s.Transcript.Flush(ctx)

		began := s.Clock.Now()
		resp, err := s.Model.Complete(ctx, llm.Request{
			Model: s.Config.Model, Messages: s.messages, Tools: s.defs,
			Temperature: s.Config.Temperature, MaxOutputTokens: s.Config.MaxOutputTokens,
			OnRetry: func(n llm.RetryNotice) {
				s.emit(turn, contract.Event{Type: contract.EventError, Error: &contract.ErrorInfo{
					Source: "model", Message: n.Err.Error(), HTTPStatus: n.Status, Retrying: true, Attempt: n.Attempt, RetryInMS: n.Delay.Milliseconds(),
				}})
				_ = s.Transcript.Flush(ctx)
			},
		})
		if err != nil {
			return s.modelFailed(ctx, turn, err)
		}
		s.res.Turns = turn
		s.res.Usage = s.res.Usage.Add(resp.Usage)
		// Some OpenAI-compatible servers omit call ids; tool results must
		// reference one, so missing ids are made up once, before the message
		// enters the history.
		for i := range resp.Message.ToolCalls {
			if resp.Message.ToolCalls[i].ID == "" {
				resp.Message.ToolCalls[i].ID = fmt.Sprintf("call_%d_%d", turn, i)
			}
			if resp.Message.ToolCalls[i].Type == "" {
				resp.Message.ToolCalls[i].Type = openai.ToolTypeFunction
			}
		}
		mr := &contract.ModelResponse{
			Content: resp.Message.Content, FinishReason: resp.FinishReason, Usage: resp.Usage,
			Attempts: resp.Attempts, DurationMS: s.Clock.Now().Sub(began).Milliseconds(),
		}
		for _, tc := range resp.Message.ToolCalls {
			mr.ToolCalls = append(mr.ToolCalls, contract.ToolCallSpec{ID: tc.ID, Name: tc.Function.Name, Arguments: tc.Function.Arguments})
		}
		s.emit(turn, contract.Event{Type: contract.EventModelResponse, ModelResponse: mr})
		// The assistant message goes into history exactly as received, so the
		// next request's prefix is byte-identical and prompt caching applies.
		s.messages = append(s.messages, resp.Message)
		s.observeUsage(resp.Usage)

		if len(resp.Message.ToolCalls) == 0 {
			summary := strings.TrimSpace(resp.Message.Content)
			if summary == "" {
				summary = "(the model finished without a message)"
			}
			return s.end(contract.OutcomeCompleted, summary, nil)
		}
		s.runTools(ctx, turn, resp.Message.ToolCalls)
		_ = s.Transcript.Flush(ctx)
		if ctx.Err() != nil {
			return s.interrupted(ctx, turn)
		}
		if s.Config.MaxTokens > 0 && s.res.Usage.Total() >= s.Config.MaxTokens {
			s.emit(turn, contract.Event{Type: contract.EventLimitHit, LimitHit: &contract.LimitHit{Limit: "maxTokens", Max: s.Config.MaxTokens, Used: s.res.Usage.Total()}})
			return s.end(contract.OutcomeBudgetExceeded, fmt.Sprintf("stopped: used %d tokens, the limit is %d", s.res.Usage.Total(), s.Config.MaxTokens), nil)
		}
	}
}

func (s *session) end(o contract.Outcome, summary string, err error) Result {
	s.res.Outcome, s.res.Summary, s.res.Err = o, summary, err
	return s.res
}

func (s *session) interrupted(ctx context.Context, turn int) Result {
	if errors.Is(context.Cause(ctx), ErrTimeout) {
		s.emit(turn, contract.Event{Type: contract.EventLimitHit, LimitHit: &contract.LimitHit{Limit: "timeout", Max: int64(s.Config.Timeout.Seconds()), Used: int64(s.Config.Timeout.Seconds())}})
		return s.end(contract.OutcomeTimeout, fmt.Sprintf("stopped: the session timeout of %s elapsed", s.Config.Timeout), nil)
	}
	return s.end(contract.OutcomeCancelled, "stopped: the session was cancelled", context.Cause(ctx))
}

func (s *session) modelFailed(ctx context.Context, turn int, err error) Result {
	if ctx.Err() != nil {
		return s.interrupted(ctx, turn)
	}
	info := &contract.ErrorInfo{Source: "model", Message: err.Error()}
	var pe *llm.ProviderError
	if errors.As(err, &pe) {
		info.HTTPStatus = pe.Status
	}
	s.emit(turn, contract.Event{Type: contract.EventError, Error: info})
	if errors.Is(err, llm.ErrBudgetExceeded) {
		return s.end(contract.OutcomeBudgetExceeded, "stopped: "+err.Error(), err)
	}
	return s.end(contract.OutcomeModelError, "stopped: "+err.Error(), err)
}

// call is one tool call being processed.
type call struct {
	tc   openai.ToolCall
	tool tools.Tool // nil if unknown
	// args is the canonical form of the arguments (tools.Canonical): what is
	// approved, run and recorded. Nil when they did not decode.
	args   json.RawMessage
	argErr error
	out    string
	isErr  bool
	took   time.Duration
	denied bool
}

// runTools executes the calls of one turn and appends their results to the
// history in the model's order. Consecutive read-only calls run concurrently;
// a write or shell call is a barrier, so it sees every earlier call's effect
// and no later call runs before it.
func (s *session) runTools(ctx context.Context, turn int, tcs []openai.ToolCall) {
	calls := make([]*call, len(tcs))
	for i, tc := range tcs {
		c := &call{tc: tc}
		c.tool, _ = s.Tools.Lookup(tc.Function.Name)
		if c.tool != nil {
			c.args, c.argErr = tools.Canonical(c.tool, json.RawMessage(tc.Function.Arguments))
		}
		calls[i] = c
	}
	for i := 0; i < len(calls); {
		j := i + 1
		if readOnly(calls[i]) {
			for j < len(calls) && readOnly(calls[j]) {
				j++
			}
		}
		group := calls[i:j]
		for _, c := range group {
			// The transcript records the arguments as they run; the model's own
			// spelling is in the model_response event.
			args := c.tc.Function.Arguments
			if c.args != nil {
				args = string(c.args)
			}
			s.emit(turn, contract.Event{Type: contract.EventToolCall, ToolCall: &contract.ToolCall{
				ID: c.tc.ID, Name: c.tc.Function.Name, Arguments: args, ReadOnly: readOnly(c),
			}})
		}
		if len(group) == 1 {
			_ = s.Transcript.Flush(ctx)
			s.execute(ctx, turn, group[0])
		} else {
			_ = s.Transcript.Flush(ctx)
			s.executeParallel(ctx, turn, group)
		}
		for _, c := range group {
			s.res.ToolCalls++
			s.emit(turn, contract.Event{Type: contract.EventToolResult, ToolResult: &contract.ToolResult{
				ID: c.tc.ID, Name: c.tc.Function.Name, Output: c.out, IsError: c.isErr, DurationMS: c.took.Milliseconds(),
			}})
		}
		i = j
	}
	for _, c := range calls {
		content := c.out
		if content == "" {
			content = "(no output)"
		}
		s.messages = append(s.messages, openai.ChatCompletionMessage{
			Role: openai.ChatMessageRoleTool, ToolCallID: c.tc.ID, Name: c.tc.Function.Name, Content: content,
		})
	}
}

func readOnly(c *call) bool { return c.tool == nil || c.tool.Kind() == tools.KindRead }

func (s *session) executeParallel(ctx context.Context, turn int, group []*call) {
	limit := s.Config.Parallelism
	if limit <= 0 {
		limit = 8
	}
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for _, c := range group {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			s.execute(ctx, turn, c)
		})
	}
	wg.Wait()
}

func (s *session) execute(ctx context.Context, turn int, c *call) {
	began := s.Clock.Now()
	defer func() { c.took = s.Clock.Now().Sub(began) }()
	if c.tool == nil {
		c.out, c.isErr = fmt.Sprintf("error: unknown tool %q; available tools: %s", c.tc.Function.Name, strings.Join(s.Tools.Names(), ", ")), true
		return
	}
	if c.argErr != nil {
		c.out, c.isErr = "error: "+c.argErr.Error(), true
		return
	}
	if ctx.Err() != nil {
		c.out, c.isErr = "error: not run: the session is ending", true
		return
	}
	if c.tool.Kind() != tools.KindRead && !s.approve(ctx, turn, c) {
		return
	}
	out, err := safeExecute(ctx, c.tool, c.args)
	if err != nil {
		c.out, c.isErr = "error: "+err.Error(), true
		return
	}
	c.out = capOutput(out, s.Config.MaxToolOutput)
	if c.tool.Kind() != tools.KindShell {
		c.out += s.Guide.NoteFor(instructions.PathArgument(c.args))
	}
}

func safeExecute(ctx context.Context, t tools.Tool, args json.RawMessage) (out string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error in %s (this is a runner bug, not your mistake): %v\n%s", t.Name(), r, debug.Stack())
		}
	}()
	return t.Execute(ctx, args)
}

// approve applies the policy and, for Ask, the Asker. A refusal becomes the
// call's result, worded so the model changes course instead of retrying.
func (s *session) approve(ctx context.Context, turn int, c *call) bool {
	class := approval.ClassWrite
	if c.tool.Kind() == tools.KindShell {
		class = approval.ClassShell
	}
	// A tool with a policy of its own (an MCP server's tool: its MCPServer's
	// spec.approval) is decided by that mode, not by the class modes.
	own, hasOwn := c.tool.(ownApproval)
	var ownMode approval.Mode
	var ownReason string
	if hasOwn {
		class, ownMode, ownReason = own.Approval()
	}
	// The id is the runner's, never the model's: tool-call ids come from the
	// provider (or are made up when it omits them) and repeat across turns, and
	// a decision must never carry over to another action that reuses an id.
	req := approval.Request{
		ID: fmt.Sprintf("ap-%d", s.approvals.Add(1)), CallID: c.tc.ID,
		Tool: c.tc.Function.Name, Class: class, Summary: c.tool.Describe(c.args),
	}
	if cmd, ok := c.tool.(interface{ Command(json.RawMessage) string }); ok {
		req.Command = cmd.Command(c.args)
	}
	mode, reason := s.Policy.Decide(req)
	if hasOwn {
		mode, reason = ownMode, ownReason
	}
	res := approval.Result{Decision: contract.DecisionAllow, By: "policy", Reason: reason}
	switch mode {
	case approval.Allow:
		if strings.HasPrefix(reason, "command matches") {
			s.recordApproval(turn, req, res)
		}
		return true
	case approval.Deny:
		res.Decision = contract.DecisionDeny
	case approval.Ask:
		// A person decides from the summary, so it is shown whole or not at all.
		if n := len(display.Escape(req.Summary)); n > contract.MaxApprovalSummaryBytes {
			res = approval.Result{Decision: contract.DecisionDeny, By: "runner", Reason: fmt.Sprintf(
				"the action is %d bytes as a person reads it (control characters shown as escapes); the limit is %d so that it can be "+
					"shown whole before approval. Shorten it: write a script or the content with write_file first",
				n, contract.MaxApprovalSummaryBytes)}
			break
		}
		var err error
		if res, err = s.Approver.Ask(ctx, req); err != nil {
			res = approval.Result{Decision: contract.DecisionDeny, By: "runner", Reason: "approval was not obtained: " + err.Error()}
		}
	}
	s.recordApproval(turn, req, res)
	if res.Decision == contract.DecisionAllow {
		return true
	}
	what := "this file change"
	if class == approval.ClassShell {
		what = "this command"
	} else if hasOwn {
		what = "this call"
	}
	msg := fmt.Sprintf("denied: %s was not approved (%s)", what, res.Reason)
	c.out, c.isErr, c.denied = msg+". Do not retry the same call; find another way or finish and explain what is blocked.", true, true
	return false
}

// ownApproval is a tool that carries its own approval class and mode.
type ownApproval interface {
	Approval() (approval.Class, approval.Mode, string)
}

func (s *session) recordApproval(turn int, req approval.Request, res approval.Result) {
	s.emit(turn, contract.Event{Type: contract.EventApproval, Approval: &contract.Approval{
		ID: req.ID, CallID: req.CallID, Tool: req.Tool, Summary: req.Summary, Decision: res.Decision, By: res.By, Reason: res.Reason,
	}})
}

// capOutput keeps the head and tail of an oversized result; the middle of a
// long log is the least useful part.
func capOutput(s string, limit int) string {
	if limit <= 0 {
		limit = 128 << 10
	}
	if len(s) <= limit {
		return s
	}
	half := limit / 2
	return fmt.Sprintf("%s\n[… %d bytes omitted …]\n%s", s[:half], len(s)-2*half, s[len(s)-half:])
}
