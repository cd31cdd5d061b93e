package llm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner/gatewayclient"
	"github.com/agentry-dev/agentry/runner/gatewaytls"
)

// Config configures the OpenAI-compatible client.
type Config struct {
	// BaseURL is the API root, e.g. https://api.openai.com/v1 or the session gateway.
	BaseURL string
	// APIKey is sent as a bearer token.
	APIKey string
	// APIKeyFile, if set, is re-read before every request and wins over
	// APIKey. In a pod this is the projected ServiceAccount token, which the
	// kubelet rotates.
	APIKeyFile string
	// Stream uses SSE streaming with stream_options.include_usage.
	Stream bool
	// AttemptTimeout bounds one HTTP attempt (a hung provider is retried); 0 means 10 minutes.
	AttemptTimeout time.Duration
	Backoff        Backoff
	// HTTPClient's transport is wrapped; nil means http.DefaultTransport.
	HTTPClient *http.Client
}

// OpenAI is a Client for OpenAI-compatible endpoints.
type OpenAI struct {
	cfg    Config
	client *openai.Client
}

// NewOpenAI builds the client.
func NewOpenAI(cfg Config) *OpenAI {
	if cfg.AttemptTimeout == 0 {
		cfg.AttemptTimeout = 10 * time.Minute
	}
	if cfg.Backoff.MaxAttempts == 0 {
		cfg.Backoff = DefaultBackoff()
	}
	base := http.DefaultTransport
	if cfg.HTTPClient != nil && cfg.HTTPClient.Transport != nil {
		base = cfg.HTTPClient.Transport
	}
	oc := openai.DefaultConfig(cfg.APIKey)
	if cfg.BaseURL != "" {
		oc.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	}
	if cfg.APIKeyFile != "" {
		oc = openai.DefaultConfig("")
		oc.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	}
	oc.HTTPClient = &http.Client{Transport: &observingTransport{base: base, keyFile: cfg.APIKeyFile}}
	return &OpenAI{cfg: cfg, client: openai.NewClientWithConfig(oc)}
}

// attempt carries what the transport saw about the HTTP response, because
// go-openai's error types drop the response headers (Retry-After).
type attempt struct {
	status     int
	retryAfter time.Duration
}

type attemptKey struct{}

type observingTransport struct {
	base    http.RoundTripper
	keyFile string
}

func (t *observingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.keyFile != "" {
		req = req.Clone(req.Context())
		if err := gatewayclient.SetToken(req, t.keyFile); err != nil {
			return nil, fmt.Errorf("reading API key file: %w", err)
		}
	}
	resp, err := t.base.RoundTrip(req)
	if a, ok := req.Context().Value(attemptKey{}).(*attempt); ok && resp != nil {
		a.status = resp.StatusCode
		a.retryAfter = retryAfter(resp.Header, time.Now())
	}
	return resp, err
}

// Complete performs one model turn, retrying transient failures.
func (c *OpenAI) Complete(ctx context.Context, req Request) (Response, error) {
	oreq := c.request(req)
	var last error
	for n := 1; ; n++ {
		a := &attempt{}
		actx, cancel := context.WithTimeout(context.WithValue(ctx, attemptKey{}, a), c.cfg.AttemptTimeout)
		var resp Response
		var err error
		if c.cfg.Stream {
			resp, err = c.stream(actx, oreq)
		} else {
			resp, err = c.once(actx, oreq)
		}
		cancel()
		if err == nil {
			resp.Attempts = n
			return resp, nil
		}
		if ctx.Err() != nil {
			return Response{}, context.Cause(ctx)
		}
		retry, final := classify(err, a.status)
		if !retry {
			return Response{}, final
		}
		last = final
		if n >= c.cfg.Backoff.MaxAttempts {
			return Response{}, &RetriesExhaustedError{Attempts: n, Last: last}
		}
		d := c.cfg.Backoff.Delay(n, a.retryAfter)
		if req.OnRetry != nil {
			req.OnRetry(RetryNotice{Attempt: n, Status: a.status, Err: final, Delay: d})
		}
		if err := c.cfg.Backoff.sleep(ctx, d); err != nil {
			return Response{}, err
		}
	}
}

func (c *OpenAI) request(req Request) openai.ChatCompletionRequest {
	o := openai.ChatCompletionRequest{
		Model:               req.Model,
		Messages:            req.Messages,
		Tools:               req.Tools,
		MaxCompletionTokens: req.MaxOutputTokens,
	}
	if req.Temperature != nil {
		o.Temperature = *req.Temperature
		// go-openai drops a zero temperature (omitempty), which providers read
		// as their default of 1; the smallest positive float is sent instead.
		if o.Temperature == 0 {
			o.Temperature = math.SmallestNonzeroFloat32
		}
	}
	if c.cfg.Stream {
		o.Stream = true
		o.StreamOptions = &openai.StreamOptions{IncludeUsage: true}
	}
	return o
}

func (c *OpenAI) once(ctx context.Context, req openai.ChatCompletionRequest) (Response, error) {
	r, err := c.client.CreateChatCompletion(ctx, req)
	if err != nil {
		return Response{}, err
	}
	if len(r.Choices) == 0 {
		return Response{}, errors.New("model response has no choices")
	}
	ch := r.Choices[0]
	msg := ch.Message
	msg.Role = openai.ChatMessageRoleAssistant
	return Response{Message: msg, FinishReason: string(ch.FinishReason), Usage: usageOf(&r.Usage)}, nil
}

func (c *OpenAI) stream(ctx context.Context, req openai.ChatCompletionRequest) (Response, error) {
	s, err := c.client.CreateChatCompletionStream(ctx, req)
	if err != nil {
		return Response{}, err
	}
	defer s.Close()
	var (
		content strings.Builder
		finish  string
		usage   contract.Usage
		calls   = map[int]*openai.ToolCall{}
	)
	for {
		chunk, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Response{}, err
		}
		if chunk.Usage != nil {
			usage = usageOf(chunk.Usage)
		}
		for _, ch := range chunk.Choices {
			if ch.Index != 0 {
				continue
			}
			content.WriteString(ch.Delta.Content)
			if ch.FinishReason != "" {
				finish = string(ch.FinishReason)
			}
			for i, tc := range ch.Delta.ToolCalls {
				idx := i
				if tc.Index != nil {
					idx = *tc.Index
				}
				acc, ok := calls[idx]
				if !ok {
					acc = &openai.ToolCall{Type: openai.ToolTypeFunction}
					calls[idx] = acc
				}
				if tc.ID != "" {
					acc.ID = tc.ID
				}
				if tc.Function.Name != "" {
					acc.Function.Name += tc.Function.Name
				}
				acc.Function.Arguments += tc.Function.Arguments
			}
		}
	}
	// go-openai reports a connection cut mid-stream as a clean EOF; a real
	// end always carries a finish_reason, so its absence means truncation.
	if finish == "" {
		return Response{}, fmt.Errorf("stream ended before the model finished: %w", io.ErrUnexpectedEOF)
	}
	msg := openai.ChatCompletionMessage{Role: openai.ChatMessageRoleAssistant, Content: content.String()}
	idxs := make([]int, 0, len(calls))
	for i := range calls {
		idxs = append(idxs, i)
	}
	sort.Ints(idxs)
	for _, i := range idxs {
		msg.ToolCalls = append(msg.ToolCalls, *calls[i])
	}
	return Response{Message: msg, FinishReason: finish, Usage: usage}, nil
}

func usageOf(u *openai.Usage) contract.Usage {
	out := contract.Usage{PromptTokens: int64(u.PromptTokens), CompletionTokens: int64(u.CompletionTokens)}
	if u.PromptTokensDetails != nil {
		out.CachedTokens = int64(u.PromptTokensDetails.CachedTokens)
	}
	return out
}

// classify decides whether err is worth retrying and turns it into the error
// the loop reports. status is what the transport observed (0 if no response).
func classify(err error, status int) (retry bool, out error) {
	var apiErr *openai.APIError
	var reqErr *openai.RequestError
	pe := &ProviderError{Status: status}
	switch {
	case errors.As(err, &apiErr):
		if apiErr.HTTPStatusCode != 0 {
			pe.Status = apiErr.HTTPStatusCode
		}
		pe.Message, pe.Type = apiErr.Message, apiErr.Type
		// go-openai turns `"code": null` into the integer 0.
		if c := fmt.Sprint(apiErr.Code); apiErr.Code != nil && c != "0" {
			pe.Code = c
		}
	case errors.As(err, &reqErr):
		if reqErr.HTTPStatusCode != 0 {
			pe.Status = reqErr.HTTPStatusCode
		}
		pe.Message = strings.TrimSpace(string(reqErr.Body))
		if len(pe.Message) > 500 {
			pe.Message = pe.Message[:500] + "…"
		}
		if pe.Message == "" && reqErr.Err != nil {
			pe.Message = reqErr.Err.Error()
		}
	default:
		// No HTTP error body: a transport failure, a timed-out attempt or a
		// stream cut short. The request is resent whole, which is safe because a
		// completion has no side effects.
		if gatewaytls.Untrusted(err) {
			return false, fmt.Errorf("model request failed: %w", err)
		}
		var ne net.Error
		if errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
			errors.Is(err, context.DeadlineExceeded) || errors.Is(err, openai.ErrTooManyEmptyStreamMessages) || status >= 500 || status == 429 {
			return true, fmt.Errorf("model request failed: %w", err)
		}
		if status != 0 {
			pe.Message = err.Error()
			break
		}
		return true, fmt.Errorf("model request failed: %w", err)
	}
	if pe.Code == contract.ErrorCodeBudgetExceeded || pe.Status == http.StatusPaymentRequired {
		return false, fmt.Errorf("%w: %s", ErrBudgetExceeded, pe.Error())
	}
	switch {
	case pe.Status == http.StatusTooManyRequests, pe.Status == http.StatusRequestTimeout,
		pe.Status == http.StatusConflict, pe.Status >= 500:
		return true, pe
	case pe.Status == 0:
		return true, pe
	}
	return false, pe
}
