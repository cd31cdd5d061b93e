// Package notify tells people and systems that an agent session finished or waits for an
// approval. It knows two kinds of targets: a generic webhook, which receives a CloudEvents
// 1.0 event in structured JSON mode, optionally signed with HMAC-SHA256 (Webhook), and a
// Slack incoming webhook, which receives a readable message (Slack). Both implement Sender;
// Deliver sends with retries and backoff. docs/notifications.md is the receiver's view of the
// same contract.
//
// The package is plain Go: the caller fills a Session from the AgentSession's status and
// decides when to notify and where. Delivery is at least once: a retry after a lost response
// sends the same event again, with the same Event.ID, for the receiver to de-duplicate.
//
// Every text the agent influenced (summary, condition message, the command of an approval) is
// hostile. It is bounded before it is sent (Send bodies are small whatever the session holds),
// and in Slack messages it is escaped so that it cannot add links, mentions or formatting
// outside its place. Errors never contain a Slack webhook URL's path, a webhook URL's query
// or a signing secret, so they can be written to status and Events.
package notify

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/agentry-dev/agentry/display"
)

// Event kinds.
const (
	// KindFinished: the session reached a terminal phase (Succeeded, Failed, Cancelled).
	KindFinished = "Finished"
	// KindWaitingForApproval: the agent waits for a person to decide on a tool call;
	// Session.Approval says which.
	KindWaitingForApproval = "WaitingForApproval"
)

// Bounds on the hostile or unbounded text an event carries, in bytes, applied by both
// senders (Slack applies smaller ones of its own).
const (
	maxSummary = 4096 // status.result.summary and an approval's command are bounded alike
	maxMessage = 1024
	maxText    = 2048 // repository, pull request URL, branch, transcript URI
	maxName    = 253
)

// Session is what a notification says about a session. Its JSON form is the data of a
// webhook's CloudEvent (see docs/notifications.md).
type Session struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
	// Phase is the session's phase: Succeeded, Failed, Cancelled, WaitingForApproval, ...
	Phase string `json:"phase"`
	// Reason and Message are those of the Succeeded condition (e.g. Completed, LimitReached).
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// Summary is the agent's final message: model output, hostile text.
	Summary      string `json:"summary,omitempty"`
	Repository   string `json:"repository,omitempty"`
	TotalTokens  int64  `json:"totalTokens"`
	FilesChanged int32  `json:"filesChanged"`
	Additions    int32  `json:"additions"`
	Deletions    int32  `json:"deletions"`
	// PullRequestURL, Branch and TranscriptURI are empty when there is none.
	PullRequestURL string `json:"pullRequestURL,omitempty"`
	Branch         string `json:"branch,omitempty"`
	TranscriptURI  string `json:"transcriptURI,omitempty"`
	// Approval is set for KindWaitingForApproval.
	Approval *Approval `json:"approval,omitempty"`
	// Time is when the event happened: the completion time, or when the approval was asked.
	Time time.Time `json:"time,omitzero"`
}

// Approval is the tool call a session waits on.
type Approval struct {
	ID   string `json:"id"`
	Tool string `json:"tool"`
	// Summary is the exact command (or action) to decide on, as the agent wrote it.
	Summary   string    `json:"summary"`
	Digest    string    `json:"digest,omitempty"`
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
}

// Event is one notification: what happened, and to which session.
type Event struct {
	Kind    string
	Session Session
}

// ID identifies the event, not the attempt: the same session UID, kind and (for an approval)
// approval ID give the same ID, so a receiver can drop a retried delivery. It is the
// CloudEvents id.
func (e Event) ID() string {
	id := e.Session.UID + "/" + e.Kind
	if e.Kind == KindWaitingForApproval && e.Session.Approval != nil {
		id += "/" + e.Session.Approval.ID
	}
	return id
}

// bounded returns a copy of s whose strings fit the package's bounds, cut at a UTF-8
// boundary.
func (s Session) bounded() Session {
	s.Namespace = display.Truncate(s.Namespace, maxName)
	s.Name = display.Truncate(s.Name, maxName)
	s.UID = display.Truncate(s.UID, maxName)
	s.Phase = display.Truncate(s.Phase, maxName)
	s.Reason = display.Truncate(s.Reason, maxName)
	s.Message = display.Truncate(s.Message, maxMessage)
	s.Summary = display.Truncate(s.Summary, maxSummary)
	s.Repository = display.Truncate(s.Repository, maxText)
	s.PullRequestURL = display.Truncate(s.PullRequestURL, maxText)
	s.Branch = display.Truncate(s.Branch, maxText)
	s.TranscriptURI = display.Truncate(s.TranscriptURI, maxText)
	if a := s.Approval; a != nil {
		s.Approval = &Approval{
			ID:        display.Truncate(a.ID, maxName),
			Tool:      display.Truncate(a.Tool, maxName),
			Summary:   display.Truncate(a.Summary, maxSummary),
			Digest:    display.Truncate(a.Digest, maxName),
			ExpiresAt: a.ExpiresAt,
		}
	}
	return s
}

// StatusError is a response outside 2xx. Deliver retries a 5xx or a 429 and gives up on
// anything else (redirects are not followed, so a 3xx is one too).
type StatusError struct {
	// Code is the HTTP status code.
	Code int
	// Body is the start of the response body (at most 256 bytes, escaped), for the reader
	// of the error.
	Body string
	// RetryAfter is the wait the Retry-After header asked for, 0 without one.
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("HTTP %d %s", e.Code, http.StatusText(e.Code))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// retryable: the server may accept the same request later.
func (e *StatusError) retryable() bool {
	return e.Code == http.StatusTooManyRequests || e.Code >= 500
}

// maxErrorBody bounds the response body quoted in a StatusError.
const maxErrorBody = 256

func newStatusError(code int, header http.Header, body []byte, now time.Time) *StatusError {
	snippet := strings.TrimSpace(string(body))
	return &StatusError{
		Code:       code,
		Body:       display.Truncate(display.Escape(display.Truncate(snippet, maxErrorBody)), maxErrorBody),
		RetryAfter: retryAfter(header.Get("Retry-After"), now),
	}
}

// retryAfter reads a Retry-After value: delay seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// permanentError is a failure no retry can fix: the event or the target is invalid.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanent(format string, args ...any) error {
	return &permanentError{fmt.Errorf(format, args...)}
}

// redactedError replaces an error whose text held a credential. It unwraps to the cause
// below the *url.Error (a net.OpError, context.DeadlineExceeded, ...), never to the
// *url.Error itself, whose text holds the URL.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redactURL shows where a request went without what may be a credential: the scheme and
// host, and the path when keepPath (a Slack webhook's path is its secret; a webhook's query
// may hold a token). Userinfo is always dropped.
func redactURL(raw string, keepPath bool) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "<invalid URL>"
	}
	shown := u.Scheme + "://" + u.Host
	if keepPath {
		shown += u.EscapedPath()
	} else if u.Path != "" && u.Path != "/" {
		shown += "/…"
	}
	if u.RawQuery != "" || u.ForceQuery {
		shown += "?…"
	}
	return shown
}

// requestError rewrites err, from sending to raw, so that its text shows raw only as
// redactURL does. The http client's *url.Error prints the whole URL; its cause is kept.
func requestError(err error, raw string, keepPath bool) error {
	shown := redactURL(raw, keepPath)
	msg, cause := err.Error(), err
	var ue *url.Error
	if errors.As(err, &ue) {
		msg, cause = ue.Op+" "+shown+": "+ue.Err.Error(), ue.Err
	}
	// A cause may quote the URL or its parts too; none of them may survive.
	whole, parts := secretParts(raw, keepPath)
	for _, s := range whole {
		msg = strings.ReplaceAll(msg, s, shown)
	}
	for _, s := range parts {
		msg = strings.ReplaceAll(msg, s, "…")
	}
	return &redactedError{msg: msg, err: cause}
}

// secretParts lists the forms in which raw could appear whole in an error's text, and the
// parts of it that may be secret, longest first.
func secretParts(raw string, keepPath bool) (whole, parts []string) {
	whole = []string{raw, strings.Trim(fmt.Sprintf("%q", raw), `"`)}
	if u, err := url.Parse(raw); err == nil {
		whole = append(whole, u.String())
		if !keepPath {
			parts = append(parts, u.RequestURI(), u.EscapedPath(), u.Path)
		}
		parts = append(parts, u.RawQuery)
		if u.User != nil {
			parts = append(parts, u.User.String())
		}
	}
	// Short parts ("/", "") are not secrets and would mangle the message.
	keep := func(ss []string) []string {
		var out []string
		for _, s := range ss {
			if len(s) >= 6 {
				out = append(out, s)
			}
		}
		return out
	}
	return keep(whole), keep(parts)
}
