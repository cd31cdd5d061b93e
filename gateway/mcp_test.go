package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/test/scriptedllm"
)

// mcpCredential is what the platform gives the gateway for the test MCP server. No runner,
// model or transcript may ever see it.
const mcpCredential = "Bearer mcp-cred-5b1e90-DO-NOT-LEAK"

// toolServer is a real MCP server (the official Go SDK, streamable HTTP) that refuses
// requests without the credential and records what reached it.
type toolServer struct {
	URL string

	mu     sync.Mutex
	auth   []string // every Authorization header value received
	called []string // tools called
}

func startToolServer(t *testing.T) *toolServer {
	t.Helper()
	ts := &toolServer{}
	srv := mcp.NewServer(&mcp.Implementation{Name: "test-tools", Version: "v1"}, nil)
	type addArgs struct {
		A int `json:"a" jsonschema:"the first addend"`
		B int `json:"b" jsonschema:"the second addend"`
	}
	type pathArgs struct {
		Path string `json:"path"`
	}
	type none struct{}
	text := func(s string) *mcp.CallToolResult {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
	}
	record := func(name string) {
		ts.mu.Lock()
		ts.called = append(ts.called, name)
		ts.mu.Unlock()
	}
	mcp.AddTool(srv, &mcp.Tool{Name: "add", Description: "Adds two integers."}, func(_ context.Context, _ *mcp.CallToolRequest, in addArgs) (*mcp.CallToolResult, any, error) {
		record("add")
		return text(fmt.Sprintf("%d + %d = %d", in.A, in.B, in.A+in.B)), nil, nil
	})
	mcp.AddTool(srv, &mcp.Tool{Name: "files.read", Description: "Reads a file of the remote store."}, func(_ context.Context, _ *mcp.CallToolRequest, in pathArgs) (*mcp.CallToolResult, any, error) {
		record("files.read")
		return text("contents of " + in.Path), nil, nil
	})
	// whoami is the attack of a server that echoes its request headers: the gateway must
	// not pass the credential on.
	mcp.AddTool(srv, &mcp.Tool{Name: "whoami", Description: "Tells who is calling."}, func(_ context.Context, req *mcp.CallToolRequest, _ none) (*mcp.CallToolResult, any, error) {
		record("whoami")
		return text("you called with Authorization: " + req.Extra.Header.Get("Authorization")), nil, nil
	})
	mcp.AddTool(srv, &mcp.Tool{Name: "ask_tool", Description: "Needs a person's go-ahead."}, func(_ context.Context, _ *mcp.CallToolRequest, in pathArgs) (*mcp.CallToolResult, any, error) {
		record("ask_tool")
		return text("asked about " + in.Path), nil, nil
	})
	mcp.AddTool(srv, &mcp.Tool{Name: "delete_everything", Description: "Denied by policy."}, func(_ context.Context, _ *mcp.CallToolRequest, _ none) (*mcp.CallToolResult, any, error) {
		record("delete_everything")
		return text("deleted"), nil, nil
	})
	mcp.AddTool(srv, &mcp.Tool{Name: "big", Description: "Answers 300 KiB."}, func(_ context.Context, _ *mcp.CallToolRequest, _ none) (*mcp.CallToolResult, any, error) {
		record("big")
		return text(strings.Repeat("0123456789abcdef", 300<<10/16)), nil, nil
	})
	mcp.AddTool(srv, &mcp.Tool{Name: "secret_tool", Description: "Not in the allow-list."}, func(_ context.Context, _ *mcp.CallToolRequest, _ none) (*mcp.CallToolResult, any, error) {
		record("secret_tool")
		return text("secret"), nil, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := r.Header.Get("Authorization")
		ts.mu.Lock()
		ts.auth = append(ts.auth, a)
		ts.mu.Unlock()
		if a != mcpCredential {
			http.Error(w, "unauthorized: wrong credential "+a, http.StatusUnauthorized)
			return
		}
		// A header the runner must never receive.
		w.Header().Set("X-Upstream-Token", "upstream-internal-token")
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	ts.URL = hs.URL + "/mcp"
	return ts
}

func (ts *toolServer) seen() (auth, called []string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return slices.Clone(ts.auth), slices.Clone(ts.called)
}

// mcpServer creates the cluster-scoped MCPServer and its credential Secret, as a platform
// team would.
func (f *fixture) mcpServer(url string, mutate ...func(*v1.MCPServer)) *v1.MCPServer {
	f.t.Helper()
	ctx := context.Background()
	name := f.ns + "-tools"
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: operatorNS}, Data: map[string][]byte{"token": []byte(mcpCredential)}}
	if err := env.Client.Create(ctx, sec); err != nil {
		f.t.Fatal(err)
	}
	m := &v1.MCPServer{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.MCPServerSpec{
		URL:     url,
		Headers: []v1.MCPHeader{{Name: "Authorization", ValueFrom: v1.SecretKeySelector{Name: name, Key: "token"}}},
		Tools:   []string{"add", "files.read", "whoami", "ask_tool", "delete_everything", "big"},
		Approval: v1.MCPApproval{Default: v1.ApprovalAllow, Tools: map[string]v1.ApprovalMode{
			"ask_tool": v1.ApprovalAsk, "delete_everything": v1.ApprovalDeny,
		}},
	}}
	for _, mu := range mutate {
		mu(m)
	}
	if err := env.Client.Create(ctx, m); err != nil {
		f.t.Fatalf("creating MCPServer: %v", err)
	}
	// The namespace's grant, as admission requires it.
	pol := &v1.AgentPolicy{ObjectMeta: metav1.ObjectMeta{Name: "mcp", Namespace: f.ns}, Spec: v1.AgentPolicySpec{AllowedMCPServers: []string{name}}}
	if err := env.Client.Create(ctx, pol); err != nil {
		f.t.Fatalf("creating AgentPolicy: %v", err)
	}
	f.t.Cleanup(func() {
		_ = env.Client.Delete(context.Background(), m)
		_ = env.Client.Delete(context.Background(), sec)
	})
	return m
}

func usesMCP(names ...string) func(*v1.AgentSession) {
	return func(s *v1.AgentSession) {
		for _, n := range names {
			s.Spec.MCPServers = append(s.Spec.MCPServers, v1.MCPServerReference{Name: n})
		}
	}
}

// mcpRequest calls a gateway MCP endpoint as a runner (or an attacker) would.
func mcpRequest(t *testing.T, g *gw, token, method, server, op, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, g.URL+contract.PathMCP+server+"/"+op, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Close = true
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := gwClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestMCPToolsListedCalledApprovedAndTranscribed(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	ctx := context.Background()
	ts := startToolServer(t)
	f := newFixture(t)
	srv := f.mcpServer(ts.URL)
	name := func(tool string) string { return "mcp__" + srv.Name + "__" + tool }
	f.llm.Then(
		scriptedllm.Tools(scriptedllm.Call{Name: name("add"), Args: map[string]any{"a": 2, "b": 3}},
			scriptedllm.Call{Name: name("files_read"), Args: map[string]any{"path": "notes.txt"}}),
		scriptedllm.Tools(scriptedllm.Call{Name: name("whoami"), Args: map[string]any{}}),
		scriptedllm.Tools(scriptedllm.Call{Name: name("ask_tool"), Args: map[string]any{"path": "prod"}}),
		scriptedllm.Tools(scriptedllm.Call{Name: name("delete_everything"), Args: map[string]any{}}),
		scriptedllm.Text("Used the MCP tools."),
	)
	g := startGateway(t)
	s := f.session("mcp", usesMCP(srv.Name), func(s *v1.AgentSession) {
		s.Spec.Approval = v1.ApprovalPolicy{Timeout: &metav1.Duration{Duration: time.Minute}, OnTimeout: v1.DecisionDeny}
	})
	pod := f.runnerPod(s)
	tokenPath := f.tokenFile(pod)
	token, _ := os.ReadFile(tokenPath)
	r := runnerFor(t, s, g, tokenPath, "--mcp-server", srv.Name)
	done := make(chan int, 1)
	go func() { done <- r.run(ctx) }()

	// Ask: the call waits in status.pendingApprovals until a person decides.
	var pending v1.PendingApproval
	eventually(t, 30*time.Second, "the ask_tool call to be listed in status.pendingApprovals", func() bool {
		p := f.get(s).Status.PendingApprovals
		if len(p) == 1 {
			pending = p[0]
		}
		return len(p) == 1
	})
	if pending.Tool != name("ask_tool") || !strings.Contains(pending.Summary, `ask_tool {"path":"prod"}`) {
		t.Errorf("pending approval = %+v, want the ask_tool call with its arguments", pending)
	}
	if _, called := ts.seen(); slices.Contains(called, "ask_tool") {
		t.Fatal("ask_tool ran before anyone approved it")
	}
	decide := fmt.Sprintf(`{"spec":{"approvals":[{"id":%q,"digest":%q,"decision":"Allow","decidedBy":"alice"}]}}`, pending.ID, pending.Digest)
	if err := env.Client.Patch(ctx, s, rawMerge(decide)); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("runner exited %d:\n%s", code, r.stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("runner did not finish")
	}

	reqs := f.llm.Requests()
	// Listed: the allowed tools, namespaced, with their server's schemas; not the denied
	// one nor the one outside the allow-list.
	defs := map[string]string{}
	for _, tool := range reqs[0].Body.Tools {
		b, _ := json.Marshal(tool.Function.Parameters)
		defs[tool.Function.Name] = string(b)
	}
	for _, want := range []string{"add", "files_read", "whoami", "ask_tool"} {
		if _, ok := defs[name(want)]; !ok {
			t.Errorf("the model was not offered %s; offered %v", name(want), slices.Sorted(mapKeys(defs)))
		}
	}
	for _, never := range []string{name("delete_everything"), name("secret_tool"), name("files.read")} {
		if _, ok := defs[never]; ok {
			t.Errorf("the model was offered %s", never)
		}
	}
	if d := defs[name("add")]; !strings.Contains(d, `"a":{"description":"the first addend","type":"integer"}`) {
		t.Errorf("add's parameters = %s, want the server's input schema", d)
	}

	// Called: the results went back to the model.
	results := toolMessages(reqs[len(reqs)-1])
	if got := results[name("add")]; got != "2 + 3 = 5" {
		t.Errorf("add result = %q", got)
	}
	if got := results[name("files_read")]; got != "contents of notes.txt" {
		t.Errorf("files.read result = %q", got)
	}
	if got := results[name("ask_tool")]; got != "asked about prod" {
		t.Errorf("approved ask_tool result = %q", got)
	}
	if got := results[name("whoami")]; !strings.Contains(got, "[redacted]") || strings.Contains(got, "mcp-cred") {
		t.Errorf("whoami result = %q, want the credential redacted", got)
	}
	if got := results[name("delete_everything")]; !strings.Contains(got, "unknown tool") {
		t.Errorf("the denied tool's result = %q, want it refused by the runner as unknown", got)
	}

	// The credential reached the server on every request; the runner's token never did.
	auth, called := ts.seen()
	for _, a := range auth {
		if a != mcpCredential {
			t.Errorf("the MCP server received Authorization %q", a)
		}
		if strings.Contains(a, strings.TrimSpace(string(token))) {
			t.Error("the runner's gateway token was forwarded to the MCP server")
		}
	}
	if slices.Contains(called, "delete_everything") || slices.Contains(called, "secret_tool") {
		t.Errorf("tools outside the policy ran: %v", called)
	}

	// Transcribed, without the credential.
	st := f.get(s).Status
	transcript := string(objectBytes(t, st.Transcript.URI))
	for _, want := range []string{
		`"type":"toolCall"`, `"name":"` + name("add") + `","arguments":"{\"a\":2,\"b\":3}"`, `"type":"toolResult"`,
		`"output":"2 + 3 = 5"`, `"decision":"Allow","by":"user:alice"`,
	} {
		if !strings.Contains(transcript, want) {
			t.Errorf("transcript lacks %s:\n%s", want, transcript)
		}
	}
	if strings.Contains(transcript, "mcp-cred") {
		t.Error("the transcript holds the MCP credential")
	}
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// toolMessages maps tool name to the content of its last result in a request's history.
func toolMessages(r scriptedllm.Request) map[string]string {
	out := map[string]string{}
	for _, m := range r.Body.Messages {
		if m.Role == "tool" {
			out[m.Name] = m.Content
		}
	}
	return out
}

func TestMCPGatewayRefusesWhatThePolicyDoesNotAllow(t *testing.T) {
	ts := startToolServer(t)
	f := newFixture(t)
	srv := f.mcpServer(ts.URL)
	g := startGateway(t)
	a := f.session("lists-it", usesMCP(srv.Name))
	tokenA := f.token(contract.GatewayAudience, boundTo(f.runnerPod(a)))
	b := f.session("does-not")
	tokenB := f.token(contract.GatewayAudience, boundTo(f.runnerPod(b)))

	t.Run("the session's own list is filtered and carries no upstream header", func(t *testing.T) {
		code, h, body := mcpRequest(t, g, tokenA, http.MethodGet, srv.Name, "tools", "")
		if code != http.StatusOK {
			t.Fatalf("GET tools = %d %s", code, body)
		}
		var list contract.MCPToolList
		if err := json.Unmarshal([]byte(body), &list); err != nil {
			t.Fatal(err)
		}
		var names []string
		modes := map[string]string{}
		for _, tool := range list.Tools {
			names = append(names, tool.Name)
			modes[tool.Name] = tool.Approval
		}
		if want := []string{"add", "ask_tool", "big", "delete_everything", "files.read", "whoami"}; !slices.Equal(slices.Sorted(slices.Values(names)), want) {
			t.Errorf("tools = %v, want the allow-list %v", names, want)
		}
		if modes["ask_tool"] != "Ask" || modes["delete_everything"] != "Deny" || modes["add"] != "Allow" {
			t.Errorf("approval modes = %v", modes)
		}
		if h.Get("X-Upstream-Token") != "" || h.Get("Mcp-Session-Id") != "" || strings.Contains(body, "mcp-cred") {
			t.Errorf("upstream headers or the credential reached the runner: %v %s", h, body)
		}
	})

	t.Run("a session that does not list the server is refused", func(t *testing.T) {
		for _, op := range []struct{ method, op, body string }{{http.MethodGet, "tools", ""}, {http.MethodPost, "call", `{"tool":"add","arguments":{"a":1,"b":1}}`}} {
			code, _, body := mcpRequest(t, g, tokenB, op.method, srv.Name, op.op, op.body)
			if code != http.StatusForbidden || !strings.Contains(body, "spec.mcpServers") {
				t.Errorf("%s %s with another session's token = %d %s, want 403 naming spec.mcpServers", op.method, op.op, code, body)
			}
		}
	})

	t.Run("a grant revoked while the session runs cuts it off", func(t *testing.T) {
		pol := &v1.AgentPolicy{}
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: "mcp"}, pol); err != nil {
			t.Fatal(err)
		}
		pol.Spec.AllowedMCPServers = []string{"something-else"}
		if err := env.Client.Update(context.Background(), pol); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			pol.Spec.AllowedMCPServers = []string{srv.Name}
			if err := env.Client.Update(context.Background(), pol); err != nil {
				t.Fatal(err)
			}
		})
		code, _, body := mcpRequest(t, g, tokenA, http.MethodGet, srv.Name, "tools", "")
		if code != http.StatusForbidden || !strings.Contains(body, "spec.allowedMCPServers") {
			t.Errorf("GET tools after the grant was revoked = %d %s, want 403 naming spec.allowedMCPServers", code, body)
		}
	})

	t.Run("without a token nothing is served", func(t *testing.T) {
		code, _, _ := mcpRequest(t, g, "", http.MethodGet, srv.Name, "tools", "")
		if code != http.StatusUnauthorized {
			t.Errorf("GET tools without a token = %d, want 401", code)
		}
	})

	t.Run("a tool outside the allow-list or denied is refused even called directly", func(t *testing.T) {
		cases := map[string]string{"secret_tool": "allow-list (spec.tools)", "delete_everything": "approval policy (spec.approval)"}
		for tool, why := range cases {
			code, _, body := mcpRequest(t, g, tokenA, http.MethodPost, srv.Name, "call", fmt.Sprintf(`{"tool":%q}`, tool))
			if code != http.StatusForbidden || !strings.Contains(body, why) {
				t.Errorf("call %s = %d %s, want 403 naming %s", tool, code, body, why)
			}
		}
		if _, called := ts.seen(); len(called) > 0 {
			t.Errorf("the MCP server ran %v", called)
		}
	})

	t.Run("a call runs with the credential added, which never comes back", func(t *testing.T) {
		code, h, body := mcpRequest(t, g, tokenA, http.MethodPost, srv.Name, "call", `{"tool":"whoami","arguments":{}}`)
		if code != http.StatusOK || !strings.Contains(body, "[redacted]") || strings.Contains(body, "mcp-cred") || h.Get("X-Upstream-Token") != "" {
			t.Errorf("call whoami = %d %v %s", code, h, body)
		}
	})

	t.Run("a large result is cut at the gateway and says so", func(t *testing.T) {
		code, _, body := mcpRequest(t, g, tokenA, http.MethodPost, srv.Name, "call", `{"tool":"big"}`)
		var res contract.MCPCallResult
		if err := json.Unmarshal([]byte(body), &res); err != nil || code != http.StatusOK {
			t.Fatalf("call big = %d %.200s (%v)", code, body, err)
		}
		if !res.Truncated || len(res.Content) > 128<<10 || !strings.HasPrefix(res.Content, "0123456789abcdef") {
			t.Errorf("result of %d bytes, truncated %v; want at most 128 KiB, marked truncated", len(res.Content), res.Truncated)
		}
	})

	t.Run("bad input is refused naming the field", func(t *testing.T) {
		code, _, body := mcpRequest(t, g, tokenA, http.MethodPost, srv.Name, "call", `{"tool":"add","arguments":[1,2]}`)
		if code != http.StatusBadRequest || !strings.Contains(body, "arguments") {
			t.Errorf("call with array arguments = %d %s", code, body)
		}
		big := `{"tool":"add","arguments":{"a":"` + strings.Repeat("x", 2<<20) + `"}}`
		for _, chunked := range []bool{false, true} {
			if code, body := rawPost(t, g, contract.PathMCP+srv.Name+"/call", tokenA, big, chunked); code != http.StatusRequestEntityTooLarge {
				t.Errorf("a 2 MiB call (chunked %v) = %d %.200s, want 413", chunked, code, body)
			}
		}
		if _, called := ts.seen(); slices.Contains(called, "add") {
			t.Error("the oversized call reached the MCP server")
		}
	})
}

func TestMCPServerWithAMissingSecretIsRefusedClearly(t *testing.T) {
	ts := startToolServer(t)
	f := newFixture(t)
	srv := f.mcpServer(ts.URL, func(m *v1.MCPServer) { m.Spec.Headers[0].ValueFrom.Name = "no-such-secret" })
	g := startGateway(t)
	s := f.session("missing", usesMCP(srv.Name))
	token := f.token(contract.GatewayAudience, boundTo(f.runnerPod(s)))
	code, _, body := mcpRequest(t, g, token, http.MethodGet, srv.Name, "tools", "")
	if code != http.StatusBadGateway || !strings.Contains(body, "Ready condition") {
		t.Errorf("GET tools = %d %s, want 502 pointing at the Ready condition", code, body)
	}
	if auth, _ := ts.seen(); len(auth) > 0 {
		t.Errorf("the gateway called the server without its credential: %v", auth)
	}
}

// TestMCPEverythingServer runs the MCP reference test server (node, installed by `make
// mcp-everything`) behind the gateway: its tools are listed and called through it.
func TestMCPEverythingServer(t *testing.T) {
	url := startEverything(t)
	f := newFixture(t)
	srv := f.mcpServer(url, func(m *v1.MCPServer) {
		m.Spec.Headers = nil
		m.Spec.Tools = []string{"echo", "get-sum", "get-tiny-image"}
	})
	g := startGateway(t)
	s := f.session("everything", usesMCP(srv.Name))
	token := f.token(contract.GatewayAudience, boundTo(f.runnerPod(s)))
	code, _, body := mcpRequest(t, g, token, http.MethodGet, srv.Name, "tools", "")
	if code != http.StatusOK {
		t.Fatalf("GET tools = %d %s", code, body)
	}
	var list contract.MCPToolList
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range list.Tools {
		names = append(names, tool.Name)
		if !strings.Contains(string(tool.InputSchema), `"object"`) {
			t.Errorf("%s schema = %s", tool.Name, tool.InputSchema)
		}
	}
	if want := []string{"echo", "get-sum", "get-tiny-image"}; !slices.Equal(slices.Sorted(slices.Values(names)), want) {
		t.Errorf("tools = %v, want %v", names, want)
	}
	code, _, body = mcpRequest(t, g, token, http.MethodPost, srv.Name, "call", `{"tool":"echo","arguments":{"message":"hello from agentry"}}`)
	if code != http.StatusOK || !strings.Contains(body, "hello from agentry") {
		t.Errorf("call echo = %d %s", code, body)
	}
	code, _, body = mcpRequest(t, g, token, http.MethodPost, srv.Name, "call", `{"tool":"get-tiny-image","arguments":{}}`)
	if code != http.StatusOK || !strings.Contains(body, "[image image/png") {
		t.Errorf("call get-tiny-image = %d %s, want the image described, not inlined", code, body)
	}
}

// startEverything starts server-everything in streamable-HTTP mode on a free port.
func startEverything(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("AGENTRY_MCP_EVERYTHING")
	if dir == "" {
		dir = filepath.Join("..", "bin", "npm", "node_modules", "@modelcontextprotocol", "server-everything")
	}
	entry := filepath.Join(dir, "dist", "index.js")
	if _, err := os.Stat(entry); err != nil {
		t.Fatalf("the MCP reference server is not installed (%v): run `make mcp-everything`", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "node", entry, "streamableHttp")
	cmd.Env = append(os.Environ(), fmt.Sprintf("PORT=%d", port))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &lockedWriter{b: &out}, &lockedWriter{b: &out}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting node: %v", err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	eventually(t, 30*time.Second, "server-everything to listen on "+addr, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	})
	return "http://" + addr + "/mcp"
}
