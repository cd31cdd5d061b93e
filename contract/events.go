package contract

import (
	"encoding/json"
	"fmt"
	"time"
)

// SchemaVersion is written in every event's "v" field. Readers must reject
// events with a major version they do not know; new optional fields may be added
// within a version.
const SchemaVersion = 1

// EventType names the payload an Event carries; exactly the payload field with
// the same name is set.
type EventType string

const (
	EventSessionStart  EventType = "sessionStart"
	EventModelRequest  EventType = "modelRequest"
	EventModelResponse EventType = "modelResponse"
	EventToolCall      EventType = "toolCall"
	EventToolResult    EventType = "toolResult"
	EventApproval      EventType = "approval"
	EventLimitHit      EventType = "limitHit"
	EventError         EventType = "error"
	EventFinish        EventType = "finish"
	// EventSetup is one spec.setup command, recorded before the agent starts.
	EventSetup EventType = "setup"
	// EventCompaction records that older turns were replaced by a summary.
	EventCompaction EventType = "compaction"
)

// Event is one line of transcript.jsonl. Seq starts at 1 and increases by one
// per event within a session, which lets sinks deduplicate retried batches and
// lets readers detect gaps.
type Event struct {
	Version int       `json:"v"`
	Seq     int64     `json:"seq"`
	Time    time.Time `json:"time"`
	Type    EventType `json:"type"`
	// Turn is the model turn the event belongs to (1-based); 0 before the first request.
	Turn int `json:"turn,omitempty"`

	SessionStart  *SessionStart  `json:"sessionStart,omitempty"`
	ModelRequest  *ModelRequest  `json:"modelRequest,omitempty"`
	ModelResponse *ModelResponse `json:"modelResponse,omitempty"`
	ToolCall      *ToolCall      `json:"toolCall,omitempty"`
	ToolResult    *ToolResult    `json:"toolResult,omitempty"`
	Approval      *Approval      `json:"approval,omitempty"`
	LimitHit      *LimitHit      `json:"limitHit,omitempty"`
	Error         *ErrorInfo     `json:"error,omitempty"`
	Finish        *Finish        `json:"finish,omitempty"`
	Setup         *Setup         `json:"setup,omitempty"`
	Compaction    *Compaction    `json:"compaction,omitempty"`
}

// Validate checks what a reader relies on: a known version, a positive
// sequence number and exactly the payload named by Type.
func (e *Event) Validate() error {
	if e.Version != SchemaVersion {
		return fmt.Errorf("event seq %d: unsupported schema version %d (want %d)", e.Seq, e.Version, SchemaVersion)
	}
	if e.Seq < 1 {
		return fmt.Errorf("event has seq %d, want >= 1", e.Seq)
	}
	payloads := map[EventType]bool{
		EventSessionStart:  e.SessionStart != nil,
		EventModelRequest:  e.ModelRequest != nil,
		EventModelResponse: e.ModelResponse != nil,
		EventToolCall:      e.ToolCall != nil,
		EventToolResult:    e.ToolResult != nil,
		EventApproval:      e.Approval != nil,
		EventLimitHit:      e.LimitHit != nil,
		EventError:         e.Error != nil,
		EventFinish:        e.Finish != nil,
		EventSetup:         e.Setup != nil,
		EventCompaction:    e.Compaction != nil,
	}
	set, ok := payloads[e.Type]
	if !ok {
		return fmt.Errorf("event seq %d: unknown type %q", e.Seq, e.Type)
	}
	if !set {
		return fmt.Errorf("event seq %d: type %q without its payload", e.Seq, e.Type)
	}
	for t, has := range payloads {
		if has && t != e.Type {
			return fmt.Errorf("event seq %d: type %q also carries a %q payload", e.Seq, e.Type, t)
		}
	}
	return nil
}

// Usage is token accounting as reported by the provider's `usage` field.
type Usage struct {
	PromptTokens     int64 `json:"promptTokens"`
	CompletionTokens int64 `json:"completionTokens"`
	CachedTokens     int64 `json:"cachedTokens"`
}

// MaxTokenCount bounds every token count Agentry takes from another party (a provider's
// usage, a runner's summary, a status another writer set): about a trillion, past any
// real session, and small enough that the sums of millions of such counts never overflow.
const MaxTokenCount = 1 << 40

// Bounded returns u with each count within [0, MaxTokenCount].
func (u Usage) Bounded() Usage {
	b := func(n int64) int64 { return min(max(n, 0), MaxTokenCount) }
	return Usage{PromptTokens: b(u.PromptTokens), CompletionTokens: b(u.CompletionTokens), CachedTokens: b(u.CachedTokens)}
}

// Total is what the maxTokens limit counts: prompt plus completion tokens.
func (u Usage) Total() int64 { return u.PromptTokens + u.CompletionTokens }

// Add returns the element-wise sum.
func (u Usage) Add(o Usage) Usage {
	return Usage{
		PromptTokens:     u.PromptTokens + o.PromptTokens,
		CompletionTokens: u.CompletionTokens + o.CompletionTokens,
		CachedTokens:     u.CachedTokens + o.CachedTokens,
	}
}

// SessionStart records everything needed to understand (and replay) a session:
// the prompt, the model settings, the tools offered and the limits.
type SessionStart struct {
	// Session is the AgentSession name in a pod, a generated id locally.
	Session         string   `json:"session"`
	Task            string   `json:"task"`
	SystemPrompt    string   `json:"systemPrompt"`
	Model           string   `json:"model"`
	BaseURL         string   `json:"baseURL,omitempty"`
	Temperature     *float32 `json:"temperature,omitempty"`
	MaxOutputTokens int      `json:"maxOutputTokens,omitempty"`
	Tools           []string `json:"tools"`
	Workspace       string   `json:"workspace"`
	Repository      string   `json:"repository,omitempty"`
	Ref             string   `json:"ref,omitempty"`
	BaseCommit      string   `json:"baseCommit,omitempty"`
	Limits          Limits   `json:"limits"`
	RunnerVersion   string   `json:"runnerVersion,omitempty"`
	// Instructions are the instruction sources in the system prompt, in its order.
	Instructions []Instruction `json:"instructions,omitempty"`
	// Project is the detected toolchain note added to the system prompt.
	Project string `json:"project,omitempty"`
	// Ignored lists the .agentryignore patterns hiding paths from the file tools.
	Ignored []string `json:"ignored,omitempty"`
	// ContextWindow is the model's context window in tokens (0: unknown, no compaction).
	ContextWindow int64 `json:"contextWindow,omitempty"`
	// ContinuedFrom is the earlier session a follow-up continues.
	ContinuedFrom *Continuation `json:"continuedFrom,omitempty"`
}

// Instruction is one source of instructions in the system prompt.
type Instruction struct {
	// Source says where the text came from: "AgentPolicy", "AGENTS.md",
	// "src/api/AGENTS.md", "spec.instructions", "ConfigMap team-rules key rules.md".
	Source string `json:"source"`
	Text   string `json:"text"`
}

// Continuation describes the session a follow-up continues.
type Continuation struct {
	Session string `json:"session"`
	// Commit is the earlier session's base commit; PatchSHA256 its applied patch.
	Commit      string `json:"commit,omitempty"`
	PatchSHA256 string `json:"patchSHA256,omitempty"`
	// Messages is how many history messages were carried over.
	Messages int `json:"messages,omitempty"`
}

// Setup is one setup command's result.
type Setup struct {
	Command    string `json:"command"`
	ExitCode   int    `json:"exitCode"`
	Output     string `json:"output,omitempty"`
	DurationMS int64  `json:"durationMs"`
	// TimedOut is set when the setup timeout ended the command.
	TimedOut bool `json:"timedOut,omitempty"`
}

// Compaction records older turns replaced by a model-written summary.
type Compaction struct {
	// PromptTokens is the prompt size that triggered it; ContextWindow the model's window.
	PromptTokens  int64 `json:"promptTokens"`
	ContextWindow int64 `json:"contextWindow"`
	// DroppedMessages and DroppedTurns are what the summary replaced.
	DroppedMessages int `json:"droppedMessages"`
	DroppedTurns    int `json:"droppedTurns,omitempty"`
	// KeptMessages is the history length afterwards.
	KeptMessages int    `json:"keptMessages"`
	Summary      string `json:"summary"`
	// Usage is the summary call's token use (counted in the session's usage and limits).
	Usage Usage `json:"usage"`
}

// Limits are the bounds the loop enforces; zero means unlimited.
type Limits struct {
	MaxTurns       int   `json:"maxTurns,omitempty"`
	MaxTokens      int64 `json:"maxTokens,omitempty"`
	TimeoutSeconds int64 `json:"timeoutSeconds,omitempty"`
}

// ModelRequest is logged before each chat-completions call. Because the
// message history is append-only (except where a compaction event records
// older turns replaced by its summary), the request is fully described by the
// events before it; only the counts are repeated here.
type ModelRequest struct {
	Model    string `json:"model"`
	Messages int    `json:"messages"`
	Tools    int    `json:"tools"`
}

// ModelResponse is the assistant message the model returned.
type ModelResponse struct {
	Content      string         `json:"content,omitempty"`
	ToolCalls    []ToolCallSpec `json:"toolCalls,omitempty"`
	FinishReason string         `json:"finishReason,omitempty"`
	Usage        Usage          `json:"usage"`
	// Attempts counts HTTP attempts including retries after 429/5xx.
	Attempts   int   `json:"attempts"`
	DurationMS int64 `json:"durationMs"`
}

// ToolCallSpec is a call as the model asked for it.
type ToolCallSpec struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// ToolCall is logged when the runner starts executing a call.
type ToolCall struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
	ReadOnly  bool   `json:"readOnly"`
}

// ToolResult is what was sent back to the model for a call.
type ToolResult struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Output     string `json:"output"`
	IsError    bool   `json:"isError,omitempty"`
	DurationMS int64  `json:"durationMs"`
}

// Decision is an approval outcome.
type Decision string

const (
	DecisionAllow Decision = "Allow"
	DecisionDeny  Decision = "Deny"
)

// Approval records how a write or shell call was authorised.
type Approval struct {
	// ID is the approval's id, minted by the runner and unique in the session
	// ("ap-1", "ap-2", ...): what status.pendingApprovals and spec.approvals name.
	ID string `json:"id"`
	// CallID is the model's id of the tool call the approval is about.
	CallID   string   `json:"callId,omitempty"`
	Tool     string   `json:"tool"`
	Summary  string   `json:"summary"`
	Decision Decision `json:"decision"`
	// By is "policy" (Allow/Deny mode or a command pattern) or the asker that
	// answered: "terminal", "flag" (--yes), "gateway".
	By     string `json:"by"`
	Reason string `json:"reason,omitempty"`
}

// LimitHit is logged once, when the loop stops because of a limit.
type LimitHit struct {
	Limit string `json:"limit"` // maxTurns | maxTokens | timeout
	Max   int64  `json:"max"`
	Used  int64  `json:"used"`
}

// ErrorInfo is a failure. Retrying errors (429, 5xx) are logged too, so a
// reader can see where time went.
type ErrorInfo struct {
	Message    string `json:"message"`
	Source     string `json:"source"` // model | tool | sink | runner
	HTTPStatus int    `json:"httpStatus,omitempty"`
	Retrying   bool   `json:"retrying,omitempty"`
	Attempt    int    `json:"attempt,omitempty"`
	RetryInMS  int64  `json:"retryInMs,omitempty"`
}

// Finish is always the last event of a session.
type Finish struct {
	Outcome    Outcome   `json:"outcome"`
	ExitCode   ExitCode  `json:"exitCode"`
	Summary    string    `json:"summary,omitempty"`
	Error      string    `json:"error,omitempty"`
	Turns      int       `json:"turns"`
	ToolCalls  int       `json:"toolCalls"`
	Usage      Usage     `json:"usage"`
	Diff       DiffStats `json:"diff"`
	DurationMS int64     `json:"durationMs"`
}

// DiffStats summarises the workspace patch against the session's base commit.
type DiffStats struct {
	FilesChanged int `json:"filesChanged"`
	Additions    int `json:"additions"`
	Deletions    int `json:"deletions"`
	// Omitted lists changed files left out of the patch text (too large, or the
	// patch would pass its size limit); FilesChanged counts them.
	Omitted []OmittedFile `json:"omitted,omitempty"`
}

// MaxOmittedInSummary bounds the omitted files the termination message and
// status list; the transcript's finish event and summary.json have them all.
const MaxOmittedInSummary = 10

// OmittedFile is a changed file the patch does not carry, and why.
type OmittedFile struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	Reason string `json:"reason"`
}

// DecodeEvent parses and validates one JSONL line.
func DecodeEvent(line []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(line, &e); err != nil {
		return Event{}, fmt.Errorf("decoding transcript event: %w", err)
	}
	if err := e.Validate(); err != nil {
		return Event{}, err
	}
	return e, nil
}
