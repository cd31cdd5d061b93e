// Package llm talks to an OpenAI-compatible chat-completions endpoint: one
// call per model turn, streamed or not, retried on 429/5xx with bounded,
// jittered exponential backoff that honours Retry-After.
package llm

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/agentry-dev/agentry/contract"
)

// Request is one chat-completions call. Messages is the full, append-only
// history; the client never rewrites it, so provider prompt caches hit.
type Request struct {
	Model           string
	Messages        []openai.ChatCompletionMessage
	Tools           []openai.Tool
	Temperature     *float32
	MaxOutputTokens int
	// OnRetry, if set, is told about each failed attempt that will be retried.
	OnRetry func(RetryNotice)
}

// Response is the assistant's reply.
type Response struct {
	Message      openai.ChatCompletionMessage
	FinishReason string
	Usage        contract.Usage
	Attempts     int
}

// RetryNotice describes a failed attempt before the client waits and retries.
type RetryNotice struct {
	Attempt int
	Status  int // HTTP status, 0 for transport errors
	Err     error
	Delay   time.Duration
}

// Client is what the loop needs from a model.
type Client interface {
	Complete(ctx context.Context, req Request) (Response, error)
}

// ErrBudgetExceeded is returned when the gateway (or provider) refuses a call
// because a token budget is spent (error code contract.ErrorCodeBudgetExceeded
// or HTTP 402).
var ErrBudgetExceeded = errors.New("token budget exceeded")

// ProviderError is a non-retryable refusal by the provider, carrying its message.
type ProviderError struct {
	Status  int
	Code    string
	Type    string
	Message string
}

func (e *ProviderError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "model provider returned %d %s", e.Status, http.StatusText(e.Status))
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	if e.Code != "" {
		fmt.Fprintf(&b, " (code %s)", e.Code)
	}
	return b.String()
}

// RetriesExhaustedError wraps the last error after the retry budget ran out.
type RetriesExhaustedError struct {
	Attempts int
	Last     error
}

func (e *RetriesExhaustedError) Error() string {
	return fmt.Sprintf("model call failed after %d attempts: %v", e.Attempts, e.Last)
}

func (e *RetriesExhaustedError) Unwrap() error { return e.Last }
