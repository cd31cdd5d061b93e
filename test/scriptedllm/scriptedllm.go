// Package scriptedllm is an OpenAI-compatible chat-completions server that
// answers from a script, for tests across the repository. It speaks the real
// wire protocol (JSON and SSE streaming with stream_options.include_usage),
// validates requests the way the real API does (tool results must answer every
// tool call), injects faults (HTTP errors with Retry-After, truncated streams,
// hangs) and records every request so tests can assert what the model was sent.
package scriptedllm

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	openai "github.com/sashabaranov/go-openai"
)

// Call is a tool call the scripted model makes.
type Call struct {
	Name string `json:"name"`
	// Args is the arguments object; a string is sent verbatim (to script
	// malformed JSON), anything else is marshalled.
	Args any `json:"args,omitempty"`
}

// Usage overrides the token counts reported for a reply.
type Usage struct {
	PromptTokens     int `json:"promptTokens"`
	CompletionTokens int `json:"completionTokens"`
	CachedTokens     int `json:"cachedTokens"`
}

// Step is one response. Exactly one of the reply fields (Content/ToolCalls),
// Status, Hang, Truncate or Respond is meaningful.
type Step struct {
	Content      string `json:"content,omitempty"`
	ToolCalls    []Call `json:"toolCalls,omitempty"`
	Usage        *Usage `json:"usage,omitempty"`
	FinishReason string `json:"finishReason,omitempty"`

	// Status, when set, answers with an OpenAI-style error body.
	Status       int    `json:"status,omitempty"`
	RetryAfter   string `json:"retryAfter,omitempty"`
	ErrorMessage string `json:"errorMessage,omitempty"`
	ErrorCode    string `json:"errorCode,omitempty"`
	ErrorType    string `json:"errorType,omitempty"`

	// Hang never answers; the request ends when the client gives up or the
	// server closes.
	Hang bool `json:"hang,omitempty"`
	// Truncate starts a streamed reply and cuts the connection mid-way (for
	// non-streaming requests it sends half a JSON body).
	Truncate bool `json:"truncate,omitempty"`

	// NoCallIDs omits tool call ids, as some OpenAI-compatible servers do.
	NoCallIDs bool `json:"noCallIDs,omitempty"`

	// Respond computes the step from the request.
	Respond func(Request) Step `json:"-"`
}

// Text is a final answer.
func Text(s string) Step { return Step{Content: s} }

// Tools is a turn calling the given tools.
func Tools(calls ...Call) Step { return Step{ToolCalls: calls} }

// Error answers with an HTTP error status and an OpenAI-style body.
func Error(status int, message string) Step { return Step{Status: status, ErrorMessage: message} }

// RateLimited is a 429 with a Retry-After header.
func RateLimited(retryAfter string) Step {
	return Step{Status: http.StatusTooManyRequests, RetryAfter: retryAfter, ErrorMessage: "Rate limit reached for requests", ErrorType: "requests", ErrorCode: "rate_limit_exceeded"}
}

// Hang never answers.
func Hang() Step { return Step{Hang: true} }

// Request is a recorded request.
type Request struct {
	Header http.Header
	Body   openai.ChatCompletionRequest
	Raw    []byte
}

// Server is a running scripted endpoint.
type Server struct {
	// URL is the base URL to configure clients with (ends in /v1).
	URL string

	ts      *httptest.Server
	closing chan struct{}

	mu       sync.Mutex
	steps    []Step
	next     int
	requests []Request
	apiKey   string
	// generate answers once the script is exhausted; nil means HTTP 500.
	generate func(n int, r Request) Step
	calls    int
}

// New starts a server on a loopback port that answers with steps in order.
func New(steps ...Step) *Server {
	s, err := Listen("127.0.0.1:0", steps...)
	if err != nil {
		panic(fmt.Sprintf("scriptedllm: %v", err))
	}
	return s
}

// Listen is New on a chosen address, for the standalone binary.
func Listen(addr string, steps ...Step) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	s := &Server{steps: steps, closing: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/chat/completions", s.handle)
	mux.HandleFunc("/chat/completions", s.handle)
	mux.HandleFunc("/v1/models", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"object":"list","data":[{"id":"scripted","object":"model","owned_by":"agentry"}]}`)
	})
	s.ts = httptest.NewUnstartedServer(mux)
	_ = s.ts.Listener.Close()
	s.ts.Listener = l
	s.ts.Start()
	s.URL = s.ts.URL + "/v1"
	return s, nil
}

// Close stops the server, releasing hung requests first.
func (s *Server) Close() {
	select {
	case <-s.closing:
	default:
		close(s.closing)
	}
	s.ts.Close()
}

// RequireKey makes the server answer 401, as OpenAI does, unless the request
// carries "Authorization: Bearer key".
func (s *Server) RequireKey(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apiKey = key
}

// Then appends steps to the script.
func (s *Server) Then(steps ...Step) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.steps = append(s.steps, steps...)
}

// Generate answers every request after the script with fn (n counts from 0
// over generated answers). For long or endless sessions, e.g. benchmarks.
func (s *Server) Generate(fn func(n int, r Request) Step) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.generate = fn
}

// Requests returns every request received so far, in order, including
// those answered with faults.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Remaining is the number of scripted steps not yet used.
func (s *Server) Remaining() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.steps) - s.next
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, "Only POST is supported", "invalid_request_error", "")
		return
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "could not read body", "invalid_request_error", "")
		return
	}
	var body openai.ChatCompletionRequest
	decodeErr := json.Unmarshal(raw, &body)
	rec := Request{Header: r.Header.Clone(), Body: body, Raw: raw}

	s.mu.Lock()
	s.requests = append(s.requests, rec)
	key := s.apiKey
	s.mu.Unlock()

	if key != "" {
		got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if got != key {
			writeError(w, http.StatusUnauthorized, "Incorrect API key provided: "+mask(got)+". You can find your API key at https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key")
			return
		}
	}
	if decodeErr != nil {
		writeError(w, http.StatusBadRequest, "We could not parse the JSON body of your request: "+decodeErr.Error(), "invalid_request_error", "")
		return
	}
	if msg := validate(body); msg != "" {
		writeError(w, http.StatusBadRequest, msg, "invalid_request_error", "")
		return
	}

	step, ok := s.take(rec)
	if !ok {
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("scriptedllm: script exhausted after %d steps", s.used()), "server_error", "")
		return
	}
	for step.Respond != nil {
		step = step.Respond(rec)
	}
	switch {
	case step.Hang:
		select {
		case <-r.Context().Done():
		case <-s.closing:
		}
		return
	case step.Status != 0:
		if step.RetryAfter != "" {
			w.Header().Set("Retry-After", step.RetryAfter)
		}
		msg := step.ErrorMessage
		if msg == "" {
			msg = http.StatusText(step.Status)
		}
		typ := step.ErrorType
		if typ == "" {
			typ = "server_error"
			if step.Status < 500 {
				typ = "invalid_request_error"
			}
		}
		writeError(w, step.Status, msg, typ, step.ErrorCode)
		return
	}
	s.reply(w, body, step)
}

func (s *Server) take(r Request) (Step, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next < len(s.steps) {
		st := s.steps[s.next]
		s.next++
		return st, true
	}
	if s.generate != nil {
		n := s.calls
		s.calls++
		return s.generate(n, r), true
	}
	return Step{}, false
}

func (s *Server) used() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next
}

// validate applies the checks of the real API that catch agent-loop bugs.
func validate(b openai.ChatCompletionRequest) string {
	if b.Model == "" {
		return "you must provide a model parameter"
	}
	if len(b.Messages) == 0 {
		return "'messages' must contain at least one message"
	}
	for _, t := range b.Tools {
		if t.Type != openai.ToolTypeFunction || t.Function == nil || t.Function.Name == "" {
			return "Invalid tool definition: each tool needs type 'function' and a function name"
		}
		params, _ := json.Marshal(t.Function.Parameters)
		var obj map[string]any
		if json.Unmarshal(params, &obj) != nil || obj["type"] != "object" {
			return fmt.Sprintf("Invalid schema for function '%s': schema must be a JSON Schema of 'type: \"object\"'", t.Function.Name)
		}
	}
	pending := map[string]bool{}
	for i, m := range b.Messages {
		if len(pending) > 0 && m.Role != openai.ChatMessageRoleTool {
			return fmt.Sprintf("An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. (messages[%d])", i)
		}
		switch m.Role {
		case openai.ChatMessageRoleAssistant:
			for _, tc := range m.ToolCalls {
				pending[tc.ID] = true
			}
		case openai.ChatMessageRoleTool:
			if !pending[m.ToolCallID] {
				return fmt.Sprintf("Invalid parameter: messages[%d] with role 'tool' must be a response to a preceding message with 'tool_calls'.", i)
			}
			delete(pending, m.ToolCallID)
		}
	}
	return ""
}

func mask(key string) string {
	if len(key) <= 8 {
		return strings.Repeat("*", len(key))
	}
	return key[:3] + strings.Repeat("*", len(key)-7) + key[len(key)-4:]
}

func writeError(w http.ResponseWriter, status int, msg, typ, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	var c any
	if code != "" {
		c = code
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": msg, "type": typ, "param": nil, "code": c}})
}

type toolCallJSON struct {
	Index    *int   `json:"index,omitempty"`
	ID       string `json:"id,omitempty"`
	Type     string `json:"type,omitempty"`
	Function struct {
		Name      string `json:"name,omitempty"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

func (s *Server) reply(w http.ResponseWriter, req openai.ChatCompletionRequest, st Step) {
	s.mu.Lock()
	n := len(s.requests)
	s.mu.Unlock()
	id := fmt.Sprintf("chatcmpl-scripted-%d", n)
	calls := make([]toolCallJSON, len(st.ToolCalls))
	for i, c := range st.ToolCalls {
		if !st.NoCallIDs {
			calls[i].ID = fmt.Sprintf("call_%d_%d", n, i)
		}
		calls[i].Type = "function"
		calls[i].Function.Name = c.Name
		switch a := c.Args.(type) {
		case nil:
			calls[i].Function.Arguments = "{}"
		case string:
			calls[i].Function.Arguments = a
		default:
			b, err := json.Marshal(a)
			if err != nil {
				writeError(w, 500, "scriptedllm: marshalling args: "+err.Error(), "server_error", "")
				return
			}
			calls[i].Function.Arguments = string(b)
		}
	}
	finish := st.FinishReason
	if finish == "" {
		finish = "stop"
		if len(calls) > 0 {
			finish = "tool_calls"
		}
	}
	usage := st.Usage
	if usage == nil {
		usage = &Usage{PromptTokens: promptTokens(req), CompletionTokens: 1 + len(st.Content)/4}
		for _, c := range calls {
			usage.CompletionTokens += 1 + (len(c.Function.Name)+len(c.Function.Arguments))/4
		}
	}
	usageJSON := map[string]any{
		"prompt_tokens": usage.PromptTokens, "completion_tokens": usage.CompletionTokens,
		"total_tokens":          usage.PromptTokens + usage.CompletionTokens,
		"prompt_tokens_details": map[string]any{"cached_tokens": usage.CachedTokens},
	}
	created := time.Now().Unix()
	if !req.Stream {
		msg := map[string]any{"role": "assistant", "content": st.Content}
		if len(calls) > 0 {
			msg["tool_calls"] = calls
			if st.Content == "" {
				msg["content"] = nil
			}
		}
		b, _ := json.Marshal(map[string]any{
			"id": id, "object": "chat.completion", "created": created, "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "message": msg, "finish_reason": finish}},
			"usage":   usageJSON,
		})
		w.Header().Set("Content-Type", "application/json")
		if st.Truncate {
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			_, _ = w.Write(b[:len(b)/2])
			return
		}
		_, _ = w.Write(b)
		return
	}

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	flusher, _ := w.(http.Flusher)
	send := func(v any) {
		b, _ := json.Marshal(v)
		_, _ = fmt.Fprintf(w, "data: %s\n\n", b)
		if flusher != nil {
			flusher.Flush()
		}
	}
	chunk := func(delta map[string]any, finish any) map[string]any {
		return map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}}}
	}
	send(chunk(map[string]any{"role": "assistant", "content": ""}, nil))
	if st.Truncate {
		send(chunk(map[string]any{"content": "partial"}, nil))
		// Abort the connection without the terminating chunk or [DONE].
		panic(http.ErrAbortHandler)
	}
	for _, part := range split(st.Content, 3) {
		send(chunk(map[string]any{"content": part}, nil))
	}
	for i, c := range calls {
		idx := i
		head := toolCallJSON{Index: &idx, ID: c.ID, Type: "function"}
		head.Function.Name = c.Function.Name
		send(chunk(map[string]any{"tool_calls": []any{head}}, nil))
		for _, part := range split(c.Function.Arguments, 3) {
			frag := toolCallJSON{Index: &idx}
			frag.Function.Arguments = part
			send(chunk(map[string]any{"tool_calls": []any{frag}}, nil))
		}
	}
	send(chunk(map[string]any{}, finish))
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		send(map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": req.Model,
			"choices": []any{}, "usage": usageJSON})
	}
	_, _ = io.WriteString(w, "data: [DONE]\n\n")
	if flusher != nil {
		flusher.Flush()
	}
}

// promptTokens approximates a tokenizer (about four bytes per token), which
// is enough for tests of accounting and limits.
func promptTokens(req openai.ChatCompletionRequest) int {
	n := 0
	for _, m := range req.Messages {
		n += 4 + len(m.Content)/4
		for _, tc := range m.ToolCalls {
			n += len(tc.Function.Arguments) / 4
		}
	}
	return n
}

// split cuts s into up to n pieces at byte offsets that keep UTF-8 intact, so
// clients must reassemble deltas as with a real provider.
func split(s string, n int) []string {
	if s == "" {
		return nil
	}
	var out []string
	size := (len(s) + n - 1) / n
	for len(s) > 0 {
		cut := min(size, len(s))
		for cut < len(s) && (s[cut]&0xC0) == 0x80 {
			cut++
		}
		out = append(out, s[:cut])
		s = s[cut:]
	}
	return out
}
