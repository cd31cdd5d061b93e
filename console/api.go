// Package console serves a session's page and artifacts behind an AgentSessionShare's link:
// the viewer (console/viewer) and the data it reads. The manager serves it for share links;
// `kubectl agentry console` serves the same page on localhost.
package console

import "time"

// Paths under a share's link (status.url, which ends in "/"). The viewer is the link itself.
const (
	// PathSession answers a SessionView (JSON).
	PathSession = "session.json"
	// PathEvents answers the transcript events with seq > the "after" query parameter
	// (default 0) as JSON lines, at most MaxEventsPerPage of them; the header
	// X-Agentry-Last-Seq carries the last seq sent (or "after" when none).
	PathEvents = "events"
	// PathTranscript, PathPatch and PathSummary answer the archived objects as stored, when
	// the share includes them.
	PathTranscript = "transcript.jsonl"
	PathPatch      = "result.patch"
	PathSummary    = "summary.json"

	// MaxEventsPerPage bounds one events answer.
	MaxEventsPerPage = 5000
	// LastSeqHeader names the response header of PathEvents.
	LastSeqHeader = "X-Agentry-Last-Seq"
)

// SessionView is the page's header and what it may load.
type SessionView struct {
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	Task       string `json:"task"`
	Repository string `json:"repository"`
	Ref        string `json:"ref,omitempty"`
	CommitSHA  string `json:"commitSHA,omitempty"`
	Model      string `json:"model,omitempty"`
	Phase      string `json:"phase"`
	// Reason and Message are the Succeeded condition's.
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	Summary string `json:"summary,omitempty"`

	PromptTokens     int64 `json:"promptTokens"`
	CompletionTokens int64 `json:"completionTokens"`
	TotalTokens      int64 `json:"totalTokens"`
	ToolCalls        int32 `json:"toolCalls"`
	Turns            int32 `json:"turns"`
	FilesChanged     int32 `json:"filesChanged"`
	Additions        int32 `json:"additions"`
	Deletions        int32 `json:"deletions"`

	CreationTime   time.Time  `json:"creationTime"`
	StartTime      *time.Time `json:"startTime,omitempty"`
	CompletionTime *time.Time `json:"completionTime,omitempty"`

	PullRequestURL string `json:"pullRequestURL,omitempty"`
	// ContinuedFrom is the session this one continues (status.continuedFrom.session).
	ContinuedFrom string `json:"continuedFrom,omitempty"`

	// Decisions are spec.approvals: who allowed or denied which call.
	Decisions []Decision `json:"decisions,omitempty"`

	// Live is true while the session runs: the page polls PathEvents and PathSession.
	Live bool `json:"live"`
	// Artifacts are the share's (Transcript, Patch, Summary); the page offers the patch
	// only when it is listed.
	Artifacts []string `json:"artifacts"`
	// ExpiresAt is when the link stops working; the page shows it.
	ExpiresAt time.Time `json:"expiresAt"`
	// Visibility is Private or Link.
	Visibility string `json:"visibility"`
}

// Decision is one entry of spec.approvals.
type Decision struct {
	ID        string `json:"id"`
	Decision  string `json:"decision"`
	DecidedBy string `json:"decidedBy"`
	Reason    string `json:"reason,omitempty"`
}
