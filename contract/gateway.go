package contract

import (
	"encoding/json"
	"time"
)

// The session gateway's wire protocol, spoken by the runner's gateway sink and
// approval asker. Every request carries the pod's projected ServiceAccount token
// (audience GatewayAudience) as "Authorization: Bearer <token>"; the gateway
// derives the session from the token, so no request names a session.
const (
	// GatewayAudience is the audience of the token runner pods present.
	GatewayAudience = "agentry-gateway"

	// PathEvents takes an EventBatch (POST) and answers an EventAck once the
	// batch is stored in object storage.
	PathEvents = "/agentry/v1/events"
	// PathFinish takes a FinishRequest (POST) after the last batch and answers a
	// FinishResponse once the consolidated artifacts are stored.
	PathFinish = "/agentry/v1/finish"
	// PathApprovals takes an ApprovalRequest (POST) and long-polls: it answers an
	// ApprovalAnswer when a decision is made, or with Pending after
	// ApprovalPollWindow so the runner asks again.
	PathApprovals = "/agentry/v1/approvals"
	// PathContinuation answers a follow-up session's runner (GET) with a
	// ContinuationResponse: the earlier session's archived patch and its
	// compacted history. A session without spec.continueFrom gets 404.
	PathContinuation = "/agentry/v1/continuation"
	// PathChatCompletions is the OpenAI-compatible proxy, under the base URL
	// <gateway>/v1 the runner is given.
	PathChatCompletions = "/v1/chat/completions"
	// PathMCP is the root of the MCP tool endpoints, one pair per MCPServer the
	// session lists in spec.mcpServers: GET PathMCP+"{server}/tools" answers an
	// MCPToolList, POST PathMCP+"{server}/call" takes an MCPCallRequest and
	// answers an MCPCallResult. The gateway adds the server's credentials.
	PathMCP = "/agentry/v1/mcp/"
	// PathWebFetch takes a WebFetchRequest (POST) and answers a WebResult: the
	// page, fetched by the gateway from a domain the namespace's AgentPolicies
	// allow (spec.webFetch.allowedDomains), as text. Only for sessions listing
	// web_fetch in spec.tools.
	PathWebFetch = "/agentry/v1/tools/web_fetch"
	// PathWebSearch takes a WebSearchRequest (POST) and answers a WebResult: the
	// answer of the search endpoint an AgentPolicy configures
	// (spec.webFetch.searchURL). Only for sessions listing web_search.
	PathWebSearch = "/agentry/v1/tools/web_search"

	// ApprovalPollWindow is how long one approval request is held open.
	ApprovalPollWindow = 20 * time.Second
)

// EventBatch is consecutive transcript events. Resending events the gateway
// already stored is harmless: it skips sequence numbers it has.
type EventBatch struct {
	Events []Event `json:"events"`
}

// EventAck acknowledges every event up to and including LastSeq: those are in
// object storage and the runner may forget them.
type EventAck struct {
	LastSeq int64 `json:"lastSeq"`
}

// FinishRequest closes the session's transcript. LastSeq is the last event's
// sequence number; the gateway refuses to finish (409) while it misses events
// before it, so the runner resends them first.
type FinishRequest struct {
	LastSeq int64   `json:"lastSeq"`
	Summary Summary `json:"summary"`
	// Patch is the workspace diff (result.patch), possibly empty.
	Patch []byte `json:"patch,omitempty"`
}

// FinishResponse says where the consolidated artifacts are.
type FinishResponse struct {
	Transcript *Object `json:"transcript,omitempty"`
	Patch      *Object `json:"patch,omitempty"`
	Summary    *Object `json:"summary,omitempty"`
}

// ApprovalRequest asks a person, through the session's status, whether a call
// may run. ID is stable across retries of the same request.
//
// Summary is what a person reads before deciding, and status.pendingApprovals shows it
// whole: as display.Escape renders it (control, ANSI and bidi characters escaped) it is at
// most MaxApprovalSummaryBytes. The runner refuses a longer action before asking and the
// gateway refuses a longer request; neither cuts it.
type ApprovalRequest struct {
	ID      string `json:"id"`
	Tool    string `json:"tool"`
	Class   string `json:"class"`
	Summary string `json:"summary"`
	Command string `json:"command,omitempty"`
}

// MaxApprovalSummaryBytes bounds an approval's summary as a person reads it (escaped).
const MaxApprovalSummaryBytes = 4000

// ApprovalAnswer is a decision, or Pending when none was made within the poll
// window. By is "user" for a decision in spec.approvals and "timeout" when the
// session's approval.onTimeout applied.
type ApprovalAnswer struct {
	Pending  bool     `json:"pending,omitempty"`
	Decision Decision `json:"decision,omitempty"`
	By       string   `json:"by,omitempty"`
	Reason   string   `json:"reason,omitempty"`
	// ExpiresAt is when onTimeout applies.
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
}

// ContinuationResponse is what a follow-up session starts from: the patch of the
// session it continues (sha256-checked by the gateway against the follow-up's
// status.continuedFrom.patchSHA256) and that session's conversation, compacted.
type ContinuationResponse struct {
	Session     string `json:"session"`
	Commit      string `json:"commit"`
	PatchSHA256 string `json:"patchSHA256"`
	Patch       []byte `json:"patch,omitempty"`
	// History goes between the system prompt and the new task: the earlier
	// task, its compaction summaries and its final summary, capped in size.
	History []HistoryMessage `json:"history,omitempty"`
}

// HistoryMessage is one carried-over chat message.
type HistoryMessage struct {
	// Role is "user" or "assistant".
	Role    string `json:"role"`
	Content string `json:"content"`
}

// MCPToolList is an MCP server's tools a session may call: the server's list
// after the MCPServer's allow-list (spec.tools), each with its approval mode.
type MCPToolList struct {
	Server string    `json:"server"`
	Tools  []MCPTool `json:"tools"`
}

// MCPTool is one tool as its server describes it.
type MCPTool struct {
	// Name is the tool's name at the server.
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// InputSchema is the JSON schema of the tool's arguments object.
	InputSchema json.RawMessage `json:"inputSchema"`
	// Approval is Allow, Ask or Deny, from the MCPServer's spec.approval.
	Approval string `json:"approval"`
}

// MCPCallRequest calls one tool with a JSON object of arguments.
type MCPCallRequest struct {
	Tool      string          `json:"tool"`
	Arguments json.RawMessage `json:"arguments,omitempty"`
}

// MCPCallResult is a tool's result as text: its text content joined, other
// content described, capped in size (Truncated says so).
type MCPCallResult struct {
	Content   string `json:"content"`
	IsError   bool   `json:"isError,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
}

// WebFetchRequest asks for one web page.
type WebFetchRequest struct {
	// URL is an http(s) URL without credentials.
	URL string `json:"url"`
}

// WebSearchRequest asks the configured search endpoint.
type WebSearchRequest struct {
	Query string `json:"query"`
}

// WebResult is a fetched page as text. Text is readable text (HTML converted to
// Markdown-like text; plain text, Markdown and JSON as they were), capped at
// the policy's spec.webFetch.maxBytes with a note when Truncated.
type WebResult struct {
	// URL is the final URL, after redirects.
	URL    string `json:"url"`
	Status int    `json:"status"`
	// ContentType is the media type the server declared (or that was sniffed).
	ContentType string `json:"contentType"`
	// Bytes is the size of the body as read (at most the gateway's hard cap).
	Bytes     int64  `json:"bytes"`
	Text      string `json:"text"`
	Truncated bool   `json:"truncated,omitempty"`
}

// GatewayError is the body of every non-2xx answer outside the OpenAI proxy,
// which answers OpenAI-style errors instead.
type GatewayError struct {
	Error string `json:"error"`
	// LastSeq, on a 409 from PathFinish or PathEvents, is the last event the
	// gateway has stored.
	LastSeq int64 `json:"lastSeq,omitempty"`
}

// The gateway's CA bundle: published by the manager in a ConfigMap in its namespace
// (GatewayCASource) and copied by the controller, under the same name, into every namespace
// that runs sessions (GatewayCACopy); runner pods mount the copy and trust only it.
const (
	// LabelGatewayCA marks the bundle ConfigMaps (value GatewayCASource or GatewayCACopy).
	LabelGatewayCA  = "agentry.dev/gateway-ca"
	GatewayCASource = "source"
	GatewayCACopy   = "copy"
	// GatewayCAKey is the bundle's key in those ConfigMaps.
	GatewayCAKey = "ca.crt"
	// LabelGatewayPlainHTTP on a namespace, with value "allowed", lets its runner pods talk to
	// a gateway that serves plain HTTP (--gateway-tls=none); without it they refuse to.
	LabelGatewayPlainHTTP = "agentry.dev/gateway-plain-http"
)

// The egress phase a session's NetworkPolicy is written for, which the controller records on
// the policy and the gateway reads: the gateway answers the runner's model calls only once the
// policy is in the agent phase, so no tool runs while checkout or setup egress is still open.
const (
	// AnnotationEgressPhase on a session's NetworkPolicy holds EgressPhaseAgent once it has
	// been narrowed to the agent phase ("checkout" or "setup" before).
	AnnotationEgressPhase = "agentry.dev/egress-phase"
	EgressPhaseAgent      = "agent"
	// AnnotationEgressPhaseSince is when the controller wrote the agent phase (RFC 3339); the
	// gateway gives the network plugin a moment from then to enforce it.
	AnnotationEgressPhaseSince = "agentry.dev/egress-phase-since"
)
