package viewer_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/agentry-dev/agentry/console"
	"github.com/agentry-dev/agentry/console/viewer"
	"github.com/agentry-dev/agentry/contract"
)

// linkPath is where the test server mounts a share, shaped like a real link, so the page's
// relative URLs are exercised under a deep path.
const linkPath = "/s/shop/fix-lru/Zm9vYmFyYmF6cXV4/"

// transcript builds a session's events through the contract types, numbering and
// validating each one as the runner's sink would.
type transcript struct {
	events []contract.Event
	at     time.Time
}

func (b *transcript) add(turn int, payload any) {
	e := contract.Event{Version: contract.SchemaVersion, Seq: int64(len(b.events) + 1), Time: b.at, Turn: turn}
	switch p := payload.(type) {
	case *contract.SessionStart:
		e.Type, e.SessionStart = contract.EventSessionStart, p
	case *contract.ModelRequest:
		e.Type, e.ModelRequest = contract.EventModelRequest, p
	case *contract.ModelResponse:
		e.Type, e.ModelResponse = contract.EventModelResponse, p
	case *contract.ToolCall:
		e.Type, e.ToolCall = contract.EventToolCall, p
	case *contract.ToolResult:
		e.Type, e.ToolResult = contract.EventToolResult, p
	case *contract.Approval:
		e.Type, e.Approval = contract.EventApproval, p
	case *contract.LimitHit:
		e.Type, e.LimitHit = contract.EventLimitHit, p
	case *contract.ErrorInfo:
		e.Type, e.Error = contract.EventError, p
	case *contract.Finish:
		e.Type, e.Finish = contract.EventFinish, p
	default:
		panic(fmt.Sprintf("no event type for %T", payload))
	}
	if err := e.Validate(); err != nil {
		panic(err)
	}
	b.events = append(b.events, e)
	b.at = b.at.Add(700 * time.Millisecond)
}

// fixture is a session as the console serves it, and what the page must show of it.
type fixture struct {
	view      console.SessionView
	events    []contract.Event
	patch     string
	turns     int
	toolCalls int
}

// The recorded session's tool calls, in rotation. The first six give the screenshots a
// failing test run, a file read, an edit, an approved command and a diff.
type call struct {
	name, args, output string
	readOnly           bool
}

func goTestOutput(lines int, fail bool) string {
	var b strings.Builder
	for i := range lines {
		fmt.Fprintf(&b, "=== RUN   TestCache/case_%03d\n", i)
		if i%7 == 3 {
			fmt.Fprintf(&b, "    lru_test.go:%d: evicted key %q, want %q\n", 40+i, "k"+strconv.Itoa(i), "k"+strconv.Itoa(i+1))
		}
	}
	if fail {
		b.WriteString("--- FAIL: TestCache (0.31s)\nFAIL\nFAIL\tgit.example.com/acme/shop/internal/cache\t0.412s\nexit code: 1\n")
	} else {
		b.WriteString("ok  \tgit.example.com/acme/shop/internal/cache\t0.388s\nexit code: 0\n")
	}
	return b.String()
}

func readFileOutput() string {
	var b strings.Builder
	b.WriteString("package cache\n\n// LRU is a fixed-size cache that evicts the least recently used key.\ntype LRU struct {\n\tmax   int\n\tll    *list.List\n\titems map[string]*list.Element\n}\n\n")
	for i := range 50 {
		fmt.Fprintf(&b, "// line %d of the cache implementation, with enough text to wrap on a phone\n", 10+i)
	}
	return b.String()
}

const gitDiffOutput = `diff --git a/internal/cache/lru.go b/internal/cache/lru.go
index 3b18e51..a9c4f02 100644
--- a/internal/cache/lru.go
+++ b/internal/cache/lru.go
@@ -41,9 +41,10 @@ func (c *LRU) Get(key string) (any, bool) {
 	el, ok := c.items[key]
 	if !ok {
 		return nil, false
 	}
-	return el.Value.(*entry).value, true
+	c.ll.MoveToFront(el)
+	return el.Value.(*entry).value, true
 }
@@ -63,7 +64,7 @@ func (c *LRU) Add(key string, value any) {
-	if c.ll.Len() >= c.max {
+	if c.ll.Len() > c.max {
 		c.removeOldest()
 	}
[1 file changed, 2 insertions(+), 1 deletion(-)]`

var rotation = []call{
	{name: "bash", args: `{"command":"go test ./internal/cache/..."}`, output: goTestOutput(110, true)},
	{name: "read_file", args: `{"path":"internal/cache/lru.go"}`, output: readFileOutput(), readOnly: true},
	{name: "edit_file", args: `{"path":"internal/cache/lru.go","old_string":"\treturn el.Value.(*entry).value, true","new_string":"\tc.ll.MoveToFront(el)\n\treturn el.Value.(*entry).value, true"}`, output: "edited internal/cache/lru.go (1 replacement)"},
	{name: "bash", args: `{"command":"rm -rf /tmp/cache-test && go test -count=1 ./internal/cache/...","timeout_seconds":120}`, output: goTestOutput(45, false)},
	{name: "git_diff", args: `{}`, output: gitDiffOutput, readOnly: true},
	{name: "grep", args: `{"pattern":"removeOldest","path":"internal"}`, output: "internal/cache/lru.go:66:\t\tc.removeOldest()\ninternal/cache/lru.go:88:func (c *LRU) removeOldest() {\n[2 matches]", readOnly: true},
}

// approvalCall is the index of the rotation's call that asks for approval (once).
const approvalCall = 3

func assistantText(turn int) string {
	switch turn % 4 {
	case 1:
		return "I'll check what the cache does on a **hit**. The test expects `Get` to refresh a key:\n\n```go\nc.Add(\"a\", 1)\nc.Add(\"b\", 2)\nc.Get(\"a\")     // a is now the newest\nc.Add(\"c\", 3) // evicts b, not a\n```\n\nLet me run the tests first."
	case 2:
		return "The eviction check is off by one:\n\n1. `Add` evicts when `Len() >= max`, *before* inserting;\n2. so a cache of size 2 never holds two keys.\n\nI'll fix both places."
	case 3:
		return "### Next step\n\nRunning the package tests again, then looking at the diff. See [the LRU notes](https://go.dev/doc/effective_go) for the idiom."
	default:
		return "Checking the callers:\n\n- `internal/cache/lru.go`\n- `internal/http/middleware.go`"
	}
}

const finalSummary = "## Fixed the LRU eviction\n\n- `Get` now moves the key to the front, so a hit counts as a use.\n- `Add` evicts only when the cache is **over** its size.\n\n```diff\n-\tif c.ll.Len() >= c.max {\n+\tif c.ll.Len() > c.max {\n```\n\nAll tests in `./internal/cache/...` pass."

const patchText = gitDiffOutput + `
diff --git a/internal/cache/lru_test.go b/internal/cache/lru_test.go
index 5e2f1aa..0c7d3b9 100644
--- a/internal/cache/lru_test.go
+++ b/internal/cache/lru_test.go
@@ -12,3 +12,12 @@ func TestCache(t *testing.T) {
+
+func TestGetRefreshes(t *testing.T) {
+	c := New(2)
+	c.Add("a", 1)
+	c.Add("b", 2)
+	c.Get("a")
+	c.Add("c", 3)
+	if _, ok := c.Get("a"); !ok {
+		t.Fatal("a was evicted")
+	}
+}
`

// recorded builds a finished session of exactly n events: a session start, turns of one to
// three tool calls (some with long outputs, one approved, one diff), one retried model call,
// a final answer and the finish event.
func recorded(n int, now time.Time) fixture {
	start := now.Add(-47 * time.Minute)
	b := &transcript{at: start}
	b.add(0, &contract.SessionStart{Session: "fix-lru", Task: "Fix the LRU cache", Model: "qwen3-coder-30b", Tools: []string{"bash", "read_file", "write_file", "edit_file", "grep", "glob", "list_dir", "git_status", "git_diff"},
		Workspace: "/workspace", Repository: "https://git.example.com/acme/shop.git", Ref: "main", BaseCommit: "4f9c2d1e8b7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d",
		Limits: contract.Limits{MaxTurns: 1000, MaxTokens: 20_000_000, TimeoutSeconds: 7200}, RunnerVersion: "v0.9.0"})
	const fixed = 6 // start, approval, retried error, final request and answer, finish
	left := n - fixed
	f := fixture{}
	var usage contract.Usage
	calls := 0
	turn := 1
	for ; left > 0; turn++ {
		k := 1
		switch {
		case left%4 == 2:
			k = 2
		case turn%5 == 0 && left >= 8:
			k = 3
		}
		b.add(turn, &contract.ModelRequest{Model: "qwen3-coder-30b", Messages: 2 + 3*turn, Tools: 9})
		if turn == 3 {
			b.add(turn, &contract.ErrorInfo{Message: "model answered 429 Too Many Requests", Source: "model", HTTPStatus: 429, Retrying: true, Attempt: 1, RetryInMS: 1500})
		}
		u := contract.Usage{PromptTokens: int64(1800 + 40*turn), CompletionTokens: int64(120 + turn%90)}
		usage = usage.Add(u)
		resp := &contract.ModelResponse{Content: assistantText(turn), FinishReason: "tool_calls", Usage: u, Attempts: 1, DurationMS: int64(900 + turn%700)}
		var batch []call
		for j := range k {
			c := rotation[(calls+j)%len(rotation)]
			id := fmt.Sprintf("call_%d", calls+j)
			resp.ToolCalls = append(resp.ToolCalls, contract.ToolCallSpec{ID: id, Name: c.name, Arguments: c.args})
			batch = append(batch, c)
		}
		if turn == 3 {
			resp.Attempts = 2
		}
		b.add(turn, resp)
		for _, c := range batch {
			id := fmt.Sprintf("call_%d", calls)
			if calls == approvalCall {
				b.add(turn, &contract.Approval{ID: "ap-1", CallID: id, Tool: c.name, Summary: "rm -rf /tmp/cache-test && go test -count=1 ./internal/cache/...", Decision: contract.DecisionAllow, By: "gateway"})
			}
			b.add(turn, &contract.ToolCall{ID: id, Name: c.name, Arguments: c.args, ReadOnly: c.readOnly})
			b.add(turn, &contract.ToolResult{ID: id, Name: c.name, Output: c.output, IsError: false, DurationMS: int64(40 + calls%900)})
			calls++
		}
		left -= 2 + 2*k
	}
	b.add(turn, &contract.ModelRequest{Model: "qwen3-coder-30b", Messages: 2 + 3*turn, Tools: 9})
	u := contract.Usage{PromptTokens: 9000, CompletionTokens: 400}
	usage = usage.Add(u)
	b.add(turn, &contract.ModelResponse{Content: finalSummary, FinishReason: "stop", Usage: u, Attempts: 1, DurationMS: 2100})
	b.add(turn, &contract.Finish{Outcome: contract.OutcomeCompleted, ExitCode: contract.ExitOK, Summary: finalSummary, Turns: turn, ToolCalls: calls, Usage: usage,
		Diff: contract.DiffStats{FilesChanged: 2, Additions: 12, Deletions: 1}, DurationMS: int64(b.at.Sub(start) / time.Millisecond)})
	if len(b.events) != n {
		panic(fmt.Sprintf("built %d events, want %d", len(b.events), n))
	}
	done := b.at
	f.events, f.patch, f.turns, f.toolCalls = b.events, patchText, turn, calls
	f.view = console.SessionView{
		Namespace: "shop", Name: "fix-lru", Task: "Fix the LRU cache in internal/cache: a Get must count as a use, and Add evicts one key too early.\n\nKeep the public API.\nAdd a test for the refresh-on-get case.\nRun go test ./internal/cache/... before you finish.\nDo not touch internal/http.",
		Repository: "https://git.example.com/acme/shop.git", Ref: "main", CommitSHA: "4f9c2d1e8b7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d", Model: "qwen3-coder-30b",
		Phase: "Succeeded", Reason: "Completed", Message: "The agent finished and a pull request was opened.", Summary: finalSummary,
		PromptTokens: usage.PromptTokens, CompletionTokens: usage.CompletionTokens, TotalTokens: usage.Total(), ToolCalls: int32(calls), Turns: int32(turn),
		FilesChanged: 2, Additions: 12, Deletions: 1,
		CreationTime: start.Add(-20 * time.Second), StartTime: &start, CompletionTime: &done,
		PullRequestURL: "https://git.example.com/acme/shop/pulls/42",
		Decisions:      []console.Decision{{ID: "ap-1", Decision: "Allow", DecidedBy: "alice@example.com", Reason: "the test only writes under /tmp"}},
		Artifacts:      []string{"Transcript", "Patch", "Summary"},
		ExpiresAt:      now.Add(72 * time.Hour), Visibility: "Link",
	}
	return f
}

// site serves one share link as the console does: the viewer at the link, the data under it.
type site struct {
	mu       sync.Mutex
	view     console.SessionView
	events   []contract.Event
	lines    [][]byte // events[i] encoded
	patch    string
	status   int // when set, every path but the page answers it
	requests map[string]int
}

func newSite(f fixture) *site {
	s := &site{view: f.view, patch: f.patch, requests: map[string]int{}}
	for _, e := range f.events {
		s.append(e)
	}
	return s
}

// append stores an event as the console finds it: one encoded line.
func (s *site) append(e contract.Event) {
	line, err := json.Marshal(e)
	if err != nil {
		panic(err)
	}
	s.events, s.lines = append(s.events, e), append(s.lines, line)
}

func (s *site) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[path]
}

func (s *site) update(fn func(s *site)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s)
}

// follow appends what the feed sends, as the gateway appends to a live transcript.
func (s *site) follow(feed <-chan contract.Event) {
	for e := range feed {
		s.update(func(s *site) { s.append(e) })
	}
}

func (s *site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, linkPath)
	if !ok {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	s.requests[rest]++
	view, status, patch, events, lines := s.view, s.status, s.patch, s.events, s.lines
	s.mu.Unlock()
	if status != 0 && rest != "" {
		// As the console does, a refused link refuses everything under it but the page.
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		fmt.Fprint(w, "<!doctype html><h1>This link has expired</h1>")
		return
	}
	switch rest {
	case "", "index.html":
		viewer.Handler().ServeHTTP(w, r)
	case console.PathSession:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(view)
	case console.PathEvents:
		after, _ := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
		last, n := after, 0
		var out []byte
		for i, e := range events {
			if e.Seq <= after || n == console.MaxEventsPerPage {
				continue
			}
			out = append(append(out, lines[i]...), '\n')
			last, n = e.Seq, n+1
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set(console.LastSeqHeader, strconv.FormatInt(last, 10))
		_, _ = w.Write(out)
	case console.PathPatch:
		w.Header().Set("Content-Type", "text/x-diff; charset=utf-8")
		fmt.Fprint(w, patch)
	default:
		http.NotFound(w, r)
	}
}
