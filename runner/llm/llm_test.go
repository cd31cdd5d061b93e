package llm_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	openai "github.com/sashabaranov/go-openai"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner/llm"
	"github.com/agentry-dev/agentry/test/scriptedllm"
)

// sleeps records backoff waits instead of waiting.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = append(s.d, d)
	return ctx.Err()
}

func newClient(srv *scriptedllm.Server, stream bool, rec *sleeps) *llm.OpenAI {
	b := llm.DefaultBackoff()
	b.Sleep = rec.Sleep
	b.Jitter = func() float64 { return 0.5 }
	return llm.NewOpenAI(llm.Config{BaseURL: srv.URL, APIKey: "sk-test-key-000000000000000000", Stream: stream, Backoff: b})
}

func request() llm.Request {
	return llm.Request{Model: "scripted", Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "hi"}}}
}

func TestCompleteReassemblesToolCallsAndUsage(t *testing.T) {
	for _, stream := range []bool{true, false} {
		t.Run(map[bool]string{true: "stream", false: "json"}[stream], func(t *testing.T) {
			srv := scriptedllm.New(scriptedllm.Step{
				Content: "Looking at ünïcode files first.",
				ToolCalls: []scriptedllm.Call{
					{Name: "read_file", Args: map[string]any{"path": "a.go"}},
					{Name: "grep", Args: map[string]any{"pattern": `func \w+`}},
				},
				Usage: &scriptedllm.Usage{PromptTokens: 1200, CompletionTokens: 34, CachedTokens: 1024},
			})
			defer srv.Close()
			resp, err := newClient(srv, stream, &sleeps{}).Complete(context.Background(), request())
			if err != nil {
				t.Fatal(err)
			}
			want := openai.ChatCompletionMessage{
				Role: "assistant", Content: "Looking at ünïcode files first.",
				ToolCalls: []openai.ToolCall{
					{ID: "call_1_0", Type: "function", Function: openai.FunctionCall{Name: "read_file", Arguments: `{"path":"a.go"}`}},
					{ID: "call_1_1", Type: "function", Function: openai.FunctionCall{Name: "grep", Arguments: `{"pattern":"func \\w+"}`}},
				},
			}
			ignoreIndex := cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Index" }, cmp.Ignore())
			if diff := cmp.Diff(want, resp.Message, ignoreIndex); diff != "" {
				t.Errorf("message (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(contract.Usage{PromptTokens: 1200, CompletionTokens: 34, CachedTokens: 1024}, resp.Usage); diff != "" {
				t.Errorf("usage (-want +got):\n%s", diff)
			}
			if resp.FinishReason != "tool_calls" || resp.Attempts != 1 {
				t.Errorf("finish %q attempts %d", resp.FinishReason, resp.Attempts)
			}
			raw := string(srv.Requests()[0].Raw)
			if stream && !strings.Contains(raw, `"stream_options":{"include_usage":true}`) {
				t.Errorf("streaming request must ask for usage: %s", raw)
			}
		})
	}
}

func TestRequestCarriesSettings(t *testing.T) {
	srv := scriptedllm.New(scriptedllm.Text("ok"))
	defer srv.Close()
	req := request()
	zero := float32(0)
	req.Temperature, req.MaxOutputTokens = &zero, 512
	if _, err := newClient(srv, true, &sleeps{}).Complete(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	got := srv.Requests()[0]
	if got.Body.Temperature <= 0 || got.Body.Temperature > 1e-6 {
		t.Errorf("temperature 0 must be sent as ~0, not omitted (provider default 1): %v", got.Body.Temperature)
	}
	if got.Body.MaxCompletionTokens != 512 || got.Header.Get("Authorization") != "Bearer sk-test-key-000000000000000000" {
		t.Errorf("max tokens %d, auth %q", got.Body.MaxCompletionTokens, got.Header.Get("Authorization"))
	}
}

func TestRateLimitStormIsRetriedHonouringRetryAfter(t *testing.T) {
	srv := scriptedllm.New(
		scriptedllm.RateLimited("7"), scriptedllm.RateLimited("7"), scriptedllm.RateLimited("7"),
		scriptedllm.RateLimited("7"), scriptedllm.RateLimited("7"),
		scriptedllm.Text("finally"),
	)
	defer srv.Close()
	rec := &sleeps{}
	var notices []llm.RetryNotice
	req := request()
	req.OnRetry = func(n llm.RetryNotice) { notices = append(notices, n) }
	resp, err := newClient(srv, true, rec).Complete(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Message.Content != "finally" || resp.Attempts != 6 || len(srv.Requests()) != 6 {
		t.Errorf("content %q attempts %d requests %d", resp.Message.Content, resp.Attempts, len(srv.Requests()))
	}
	for i, d := range rec.d {
		if d < 7*time.Second || d > 7700*time.Millisecond {
			t.Errorf("wait %d = %v; Retry-After: 7 asks for 7s (plus at most 10%% jitter)", i, d)
		}
	}
	if len(notices) != 5 || notices[0].Status != http.StatusTooManyRequests || !strings.Contains(notices[0].Err.Error(), "Rate limit reached") {
		t.Errorf("retry notices: %+v", notices)
	}
}

func TestServerErrorsBackOffExponentiallyWithinBounds(t *testing.T) {
	var steps []scriptedllm.Step
	for range 7 {
		steps = append(steps, scriptedllm.Error(http.StatusBadGateway, "upstream hiccup"))
	}
	srv := scriptedllm.New(append(steps, scriptedllm.Text("ok"))...)
	defer srv.Close()
	rec := &sleeps{}
	if _, err := newClient(srv, false, rec).Complete(context.Background(), request()); err != nil {
		t.Fatal(err)
	}
	// Initial 500ms doubling, equal jitter at 0.5 → 0.75 × step, capped at 30s.
	want := []time.Duration{375 * time.Millisecond, 750 * time.Millisecond, 1500 * time.Millisecond, 3 * time.Second, 6 * time.Second, 12 * time.Second, 22500 * time.Millisecond}
	if diff := cmp.Diff(want, rec.d); diff != "" {
		t.Errorf("backoff waits (-want +got):\n%s", diff)
	}
}

func TestRetriesAreBounded(t *testing.T) {
	var steps []scriptedllm.Step
	for range 20 {
		steps = append(steps, scriptedllm.RateLimited("1"))
	}
	srv := scriptedllm.New(steps...)
	defer srv.Close()
	_, err := newClient(srv, true, &sleeps{}).Complete(context.Background(), request())
	var ex *llm.RetriesExhaustedError
	if !errors.As(err, &ex) || ex.Attempts != 8 || len(srv.Requests()) != 8 {
		t.Fatalf("err = %v after %d requests, want RetriesExhaustedError after 8", err, len(srv.Requests()))
	}
	var pe *llm.ProviderError
	if !errors.As(err, &pe) || pe.Status != 429 {
		t.Errorf("last error should be the provider's 429: %v", err)
	}
}

func TestUnauthorizedFailsAtOnceWithProviderMessage(t *testing.T) {
	srv := scriptedllm.New(scriptedllm.Text("never"))
	defer srv.Close()
	srv.RequireKey("sk-the-right-key-0000000000000000")
	_, err := newClient(srv, true, &sleeps{}).Complete(context.Background(), request())
	var pe *llm.ProviderError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want ProviderError", err)
	}
	if pe.Status != 401 || pe.Code != "invalid_api_key" || !strings.Contains(err.Error(), "Incorrect API key provided") {
		t.Errorf("error = %v", err)
	}
	if n := len(srv.Requests()); n != 1 {
		t.Errorf("401 was retried: %d requests", n)
	}
}

func TestBudgetRefusalIsDistinguished(t *testing.T) {
	for name, step := range map[string]scriptedllm.Step{
		"gateway code": {Status: 429, ErrorMessage: "namespace team-a spent its 2M token budget", ErrorCode: contract.ErrorCodeBudgetExceeded},
		"402":          {Status: 402, ErrorMessage: "insufficient quota"},
	} {
		t.Run(name, func(t *testing.T) {
			srv := scriptedllm.New(step)
			defer srv.Close()
			_, err := newClient(srv, true, &sleeps{}).Complete(context.Background(), request())
			if !errors.Is(err, llm.ErrBudgetExceeded) || !strings.Contains(err.Error(), step.ErrorMessage) {
				t.Errorf("err = %v, want ErrBudgetExceeded with the message", err)
			}
			if len(srv.Requests()) != 1 {
				t.Errorf("budget refusal was retried")
			}
		})
	}
}

func TestHungAndTruncatedResponsesAreRetried(t *testing.T) {
	for _, stream := range []bool{true, false} {
		srv := scriptedllm.New(scriptedllm.Hang(), scriptedllm.Step{Truncate: true}, scriptedllm.Text("recovered"))
		b := llm.DefaultBackoff()
		rec := &sleeps{}
		b.Sleep = rec.Sleep
		c := llm.NewOpenAI(llm.Config{BaseURL: srv.URL, APIKey: "k", Stream: stream, Backoff: b, AttemptTimeout: 300 * time.Millisecond})
		resp, err := c.Complete(context.Background(), request())
		srv.Close()
		if err != nil {
			t.Fatalf("stream=%v: %v", stream, err)
		}
		if resp.Message.Content != "recovered" || resp.Attempts != 3 {
			t.Errorf("stream=%v: content %q after %d attempts", stream, resp.Message.Content, resp.Attempts)
		}
	}
}

func TestCancellationStopsRetrying(t *testing.T) {
	srv := scriptedllm.New(scriptedllm.RateLimited("30"), scriptedllm.Text("never"))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	b := llm.DefaultBackoff()
	b.Sleep = func(ctx context.Context, d time.Duration) error { cancel(); <-ctx.Done(); return ctx.Err() }
	c := llm.NewOpenAI(llm.Config{BaseURL: srv.URL, APIKey: "k", Stream: true, Backoff: b})
	if _, err := c.Complete(ctx, request()); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func TestAPIKeyFileIsReadForEveryRequest(t *testing.T) {
	srv := scriptedllm.New(scriptedllm.Text("one"), scriptedllm.Text("two"))
	defer srv.Close()
	keyFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(keyFile, []byte("token-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := llm.NewOpenAI(llm.Config{BaseURL: srv.URL, APIKeyFile: keyFile, Stream: true})
	if _, err := c.Complete(context.Background(), request()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte("token-2"), 0o600); err != nil { // rotated by the kubelet
		t.Fatal(err)
	}
	if _, err := c.Complete(context.Background(), request()); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range srv.Requests() {
		got = append(got, r.Header.Get("Authorization"))
	}
	if diff := cmp.Diff([]string{"Bearer token-1", "Bearer token-2"}, got); diff != "" {
		t.Errorf("Authorization headers (-want +got):\n%s", diff)
	}
}

func TestBackoffDelay(t *testing.T) {
	b := llm.Backoff{Initial: time.Second, Max: 10 * time.Second, Jitter: func() float64 { return 0.999 }}
	cases := []struct {
		attempt    int
		retryAfter time.Duration
		want       time.Duration
	}{
		{1, 0, 1999 * time.Millisecond / 2},
		{3, 0, 4*time.Second/2 + time.Duration(float64(2*time.Second)*0.999)},
		{10, 0, 5*time.Second + time.Duration(float64(5*time.Second)*0.999)},
		{1, 2 * time.Second, 2*time.Second + time.Duration(float64(2*time.Second)*0.1*0.999)},
		{1, time.Hour, 10 * time.Second}, // bounded
	}
	for _, tc := range cases {
		if got := b.Delay(tc.attempt, tc.retryAfter); got != tc.want {
			t.Errorf("Delay(%d, %v) = %v, want %v", tc.attempt, tc.retryAfter, got, tc.want)
		}
	}
}

// Guard against go-openai changing how it marshals tool schemas.
func TestToolSchemaIsSentAsObject(t *testing.T) {
	srv := scriptedllm.New(scriptedllm.Text("ok"))
	defer srv.Close()
	req := request()
	req.Tools = []openai.Tool{{Type: openai.ToolTypeFunction, Function: &openai.FunctionDefinition{
		Name: "read_file", Parameters: json.RawMessage(`{"type":"object","properties":{"path":{"type":"string"}}}`),
	}}}
	if _, err := newClient(srv, false, &sleeps{}).Complete(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if raw := string(srv.Requests()[0].Raw); !strings.Contains(raw, `"parameters":{"type":"object"`) {
		t.Errorf("tools not sent as JSON schema objects: %s", raw)
	}
}
