package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/agentry-dev/agentry/contract"
)

// samples collects what the simulated runners observed.
type samples struct {
	mu sync.Mutex
	// gateway and direct are the same streamed model call through the gateway and straight
	// to the scripted model, interleaved turn by turn; paired is gateway minus direct
	// within one turn.
	gateway, direct, paired []time.Duration
	events                  []time.Duration // one batch's acknowledgement
	approvals               []time.Duration // request to decision, the user deciding at once
	finishes                []time.Duration
	eventsAcked             int64
	errors                  map[string]int
}

func newSamples() *samples { return &samples{errors: map[string]int{}} }

func (s *samples) fail(kind string) {
	s.mu.Lock()
	s.errors[kind]++
	s.mu.Unlock()
}

// runnerConfig is what every simulated runner shares.
type runnerConfig struct {
	gatewayURL, llmURL string
	gw, direct         *http.Client
	think              time.Duration
	approvalEvery      int
	deadline           time.Time
	out                *samples
}

// chatBody is a realistic agent turn: a system prompt, the task, some history and the
// tool definitions, streamed.
var chatBody = func() []byte {
	tool := func(name, desc string) map[string]any {
		return map[string]any{"type": "function", "function": map[string]any{"name": name, "description": desc,
			"parameters": map[string]any{"type": "object", "properties": map[string]any{"path": map[string]any{"type": "string"}}, "required": []string{"path"}}}}
	}
	history := []map[string]any{
		{"role": "system", "content": strings.Repeat("You are a careful coding agent working in a git repository. ", 25)},
		{"role": "user", "content": "Fix the failing test in pkg/parse."},
	}
	for i := range 3 {
		history = append(history,
			map[string]any{"role": "assistant", "tool_calls": []any{map[string]any{"id": fmt.Sprintf("call_%d", i), "type": "function",
				"function": map[string]any{"name": "read_file", "arguments": `{"path":"pkg/parse/parse.go"}`}}}},
			map[string]any{"role": "tool", "tool_call_id": fmt.Sprintf("call_%d", i), "content": strings.Repeat("func parse(s string) (int, error) { return strconv.Atoi(s) }\n", 12)})
	}
	b, _ := json.Marshal(map[string]any{
		"model": "bench-model", "stream": true, "messages": history,
		"tools": []any{tool("read_file", "Read a file."), tool("write_file", "Write a file."), tool("run_command", "Run a command."), tool("list_dir", "List a directory.")},
	})
	return b
}()

// streamCall posts a streamed chat completion and reads the stream to its end.
func streamCall(ctx context.Context, c *http.Client, url, token string) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(chatBody))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	d := time.Since(start)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %d: %.200s", resp.StatusCode, b)
	}
	if !bytes.Contains(b, []byte("[DONE]")) {
		return 0, errors.New("stream ended without [DONE]")
	}
	return d, nil
}

func postJSON(ctx context.Context, c *http.Client, url, token string, in, out any) (int, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("status %d: %.200s", resp.StatusCode, b)
	}
	return resp.StatusCode, json.Unmarshal(b, out)
}

// runner is one simulated runner: the loop of runner/loop.go without the tools, speaking
// the gateway's wire contract.
type runner struct {
	cfg  *runnerConfig
	s    *benchSession
	idx  int
	seq  int64
	turn int
	rng  *rand.Rand
}

func (r *runner) event(typ contract.EventType, set func(*contract.Event)) contract.Event {
	r.seq++
	ev := contract.Event{Version: contract.SchemaVersion, Seq: r.seq, Time: time.Now().UTC(), Type: typ, Turn: r.turn}
	set(&ev)
	return ev
}

func (r *runner) run(ctx context.Context) {
	cfg, out := r.cfg, r.cfg.out
	batch := []contract.Event{r.event(contract.EventSessionStart, func(e *contract.Event) {
		e.SessionStart = &contract.SessionStart{Session: r.s.key.Name, Task: "Fix the failing test in pkg/parse.", Model: "bench-model",
			Tools: []string{"read_file", "write_file", "run_command"}, Workspace: "/workspace"}
	})}
	// Runners start spread over one think time, as sessions do.
	sleepCtx(ctx, time.Duration(r.rng.Int64N(int64(cfg.think)+1)))
	for time.Now().Before(cfg.deadline) && ctx.Err() == nil {
		r.turn++
		r.modelCall(ctx)
		call := fmt.Sprintf("call_%d", r.turn)
		batch = append(batch,
			r.event(contract.EventModelRequest, func(e *contract.Event) {
				e.ModelRequest = &contract.ModelRequest{Model: "bench-model", Messages: 2 + 2*r.turn, Tools: 4}
			}),
			r.event(contract.EventModelResponse, func(e *contract.Event) {
				e.ModelResponse = &contract.ModelResponse{ToolCalls: []contract.ToolCallSpec{{ID: call, Name: "read_file", Arguments: `{"path":"pkg/parse/parse.go"}`}},
					FinishReason: "tool_calls", Usage: contract.Usage{PromptTokens: 3000, CompletionTokens: 120, CachedTokens: 2500}, Attempts: 1, DurationMS: 40}
			}),
			r.event(contract.EventToolCall, func(e *contract.Event) {
				e.ToolCall = &contract.ToolCall{ID: call, Name: "read_file", Arguments: `{"path":"pkg/parse/parse.go"}`, ReadOnly: true}
			}))
		if cfg.approvalEvery > 0 && (r.turn+r.idx)%cfg.approvalEvery == 0 {
			batch = append(batch, r.approve(ctx))
		}
		batch = append(batch, r.event(contract.EventToolResult, func(e *contract.Event) {
			e.ToolResult = &contract.ToolResult{ID: call, Name: "read_file", Output: strings.Repeat("func parse(s string) (int, error) { return strconv.Atoi(s) }\n", 24), DurationMS: 2}
		}))
		if r.postEvents(ctx, batch) {
			batch = batch[:0]
		}
		sleepCtx(ctx, cfg.think/2+time.Duration(r.rng.Int64N(int64(cfg.think)+1)))
	}
	batch = append(batch, r.event(contract.EventFinish, func(e *contract.Event) {
		e.Finish = &contract.Finish{Outcome: contract.OutcomeCompleted, Turns: r.turn, Summary: "Fixed."}
	}))
	if !r.postEvents(ctx, batch) {
		return
	}
	start := time.Now()
	var resp contract.FinishResponse
	if _, err := postJSON(ctx, cfg.gw, cfg.gatewayURL+contract.PathFinish, r.s.token, contract.FinishRequest{LastSeq: r.seq,
		Summary: contract.Summary{Version: 1, Outcome: contract.OutcomeCompleted, Turns: r.turn, Message: "Fixed.", Events: r.seq}}, &resp); err != nil {
		out.fail("finish: " + short(err))
		return
	}
	out.mu.Lock()
	out.finishes = append(out.finishes, time.Since(start))
	out.mu.Unlock()
}

// modelCall makes the turn's call through the gateway and the same call straight to the
// scripted model, in random order.
func (r *runner) modelCall(ctx context.Context) {
	cfg, out := r.cfg, r.cfg.out
	gwFirst := r.rng.IntN(2) == 0
	var gw, direct time.Duration
	var gwErr, directErr error
	for i := range 2 {
		if (i == 0) == gwFirst {
			gw, gwErr = streamCall(ctx, cfg.gw, cfg.gatewayURL+contract.PathChatCompletions, r.s.token)
		} else {
			direct, directErr = streamCall(ctx, cfg.direct, cfg.llmURL+"/chat/completions", providerKey)
		}
	}
	if gwErr != nil {
		out.fail("chat via gateway: " + short(gwErr))
	}
	if directErr != nil {
		out.fail("chat direct: " + short(directErr))
	}
	out.mu.Lock()
	defer out.mu.Unlock()
	if gwErr == nil {
		out.gateway = append(out.gateway, gw)
	}
	if directErr == nil {
		out.direct = append(out.direct, direct)
	}
	if gwErr == nil && directErr == nil {
		out.paired = append(out.paired, gw-direct)
	}
}

// approve asks for an approval and long-polls until the bench's user decides.
func (r *runner) approve(ctx context.Context) contract.Event {
	cfg, out := r.cfg, r.cfg.out
	id := fmt.Sprintf("ap-%d", r.turn)
	req := contract.ApprovalRequest{ID: id, Tool: "run_command", Class: "exec", Summary: "go test ./pkg/parse/...", Command: "go test ./pkg/parse/..."}
	start := time.Now()
	var ans contract.ApprovalAnswer
	for ctx.Err() == nil {
		ans = contract.ApprovalAnswer{}
		if _, err := postJSON(ctx, cfg.gw, cfg.gatewayURL+contract.PathApprovals, r.s.token, req, &ans); err != nil {
			out.fail("approval: " + short(err))
			sleepCtx(ctx, time.Second)
			continue
		}
		if !ans.Pending {
			break
		}
	}
	out.mu.Lock()
	out.approvals = append(out.approvals, time.Since(start))
	out.mu.Unlock()
	return r.event(contract.EventApproval, func(e *contract.Event) {
		e.Approval = &contract.Approval{ID: id, Tool: "run_command", Summary: req.Summary, Decision: ans.Decision, By: "gateway"}
	})
}

// postEvents sends a batch, resending from the gateway's lastSeq on a 409 as the runner
// does; it reports whether the batch is acknowledged.
func (r *runner) postEvents(ctx context.Context, batch []contract.Event) bool {
	cfg, out := r.cfg, r.cfg.out
	for attempt := 0; attempt < 5 && ctx.Err() == nil; attempt++ {
		start := time.Now()
		var ack contract.EventAck
		code, err := postJSON(ctx, cfg.gw, cfg.gatewayURL+contract.PathEvents, r.s.token, contract.EventBatch{Events: batch}, &ack)
		if err == nil {
			out.mu.Lock()
			out.events = append(out.events, time.Since(start))
			out.eventsAcked += int64(len(batch))
			out.mu.Unlock()
			return true
		}
		out.fail(fmt.Sprintf("events: %d", code))
		sleepCtx(ctx, 500*time.Millisecond)
	}
	return false
}

func short(err error) string {
	s := err.Error()
	if i := strings.Index(s, ":"); i > 0 && strings.HasPrefix(s, "status ") {
		return s[:i]
	}
	if len(s) > 60 {
		s = s[:60]
	}
	return s
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
