package scriptedllm_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	openai "github.com/sashabaranov/go-openai"

	"github.com/agentry-dev/agentry/test/scriptedllm"
)

func client(s *scriptedllm.Server) *openai.Client {
	cfg := openai.DefaultConfig("key")
	cfg.BaseURL = s.URL
	return openai.NewClientWithConfig(cfg)
}

func TestStreamsToolCallsAndUsageOverTheRealProtocol(t *testing.T) {
	s := scriptedllm.New(scriptedllm.Step{
		Content:   "checking",
		ToolCalls: []scriptedllm.Call{{Name: "grep", Args: map[string]any{"pattern": "TODO"}}},
		Usage:     &scriptedllm.Usage{PromptTokens: 10, CompletionTokens: 5, CachedTokens: 8},
	})
	defer s.Close()
	stream, err := client(s).CreateChatCompletionStream(context.Background(), openai.ChatCompletionRequest{
		Model: "m", Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "hi"}},
		Stream: true, StreamOptions: &openai.StreamOptions{IncludeUsage: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var content, args, finish string
	var usage *openai.Usage
	chunks := 0
	for {
		c, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		chunks++
		if c.Usage != nil {
			usage = c.Usage
		}
		for _, ch := range c.Choices {
			content += ch.Delta.Content
			for _, tc := range ch.Delta.ToolCalls {
				args += tc.Function.Arguments
			}
			if ch.FinishReason != "" {
				finish = string(ch.FinishReason)
			}
		}
	}
	if content != "checking" || args != `{"pattern":"TODO"}` || finish != "tool_calls" || chunks < 6 {
		t.Errorf("content %q args %q finish %q in %d chunks", content, args, finish, chunks)
	}
	if usage == nil || usage.PromptTokens != 10 || usage.PromptTokensDetails.CachedTokens != 8 {
		t.Errorf("usage chunk: %+v", usage)
	}
}

func TestRejectsHistoriesTheRealAPIRejects(t *testing.T) {
	s := scriptedllm.New(scriptedllm.Text("unused"))
	defer s.Close()
	_, err := client(s).CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{
		Model: "m",
		Messages: []openai.ChatCompletionMessage{
			{Role: "user", Content: "hi"},
			{Role: "assistant", ToolCalls: []openai.ToolCall{{ID: "call_1", Type: "function", Function: openai.FunctionCall{Name: "x", Arguments: "{}"}}}},
			{Role: "user", Content: "forgot the tool result"},
		},
	})
	var apiErr *openai.APIError
	if !errors.As(err, &apiErr) || apiErr.HTTPStatusCode != http.StatusBadRequest || !strings.Contains(apiErr.Message, "must be followed by tool messages") {
		t.Errorf("err = %v", err)
	}
	if s.Remaining() != 1 {
		t.Error("a rejected request consumed a scripted step")
	}
	if n := len(s.Requests()); n != 1 {
		t.Errorf("recorded %d requests", n)
	}
}

func TestFaultsAndExhaustion(t *testing.T) {
	s := scriptedllm.New(scriptedllm.RateLimited("2"))
	defer s.Close()
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/chat/completions", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"x"}]}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "2" || !strings.Contains(string(body), `"code":"rate_limit_exceeded"`) {
		t.Errorf("429: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	_, err = client(s).CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{Model: "m", Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "x"}}})
	if err == nil || !strings.Contains(err.Error(), "script exhausted") {
		t.Errorf("exhausted script: %v", err)
	}
	s.Generate(func(n int, r scriptedllm.Request) scriptedllm.Step {
		return scriptedllm.Text("generated " + r.Body.Messages[0].Content)
	})
	r, err := client(s).CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{Model: "m", Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "x"}}})
	if err != nil || r.Choices[0].Message.Content != "generated x" {
		t.Errorf("generated: %v %+v", err, r)
	}
}
