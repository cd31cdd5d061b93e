package runner_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner/approval"
	"github.com/agentry-dev/agentry/runner/mcptools"
	"github.com/agentry-dev/agentry/test/scriptedllm"
)

// gatewayCalls stands in for the gateway's call endpoint; the loop's approval decisions
// are what is under test (the real gateway is in the gateway package's MCP tests).
type gatewayCalls struct{ ran []string }

func (g *gatewayCalls) Call(_ context.Context, server, tool string, args json.RawMessage) (contract.MCPCallResult, error) {
	g.ran = append(g.ran, server+"/"+tool+" "+string(args))
	return contract.MCPCallResult{Content: "ran " + tool}, nil
}

type classRecorder struct{ asked []string }

func (a *classRecorder) Ask(_ context.Context, r approval.Request) (approval.Result, error) {
	a.asked = append(a.asked, string(r.Class)+" "+r.Tool+" "+r.Summary)
	return approval.Result{Decision: contract.DecisionDeny, By: "user:bob", Reason: "not in prod"}, nil
}

func TestMCPToolsFollowTheirServersApprovalMode(t *testing.T) {
	h := newHarness(t, greetRepo,
		scriptedllm.Tools(
			call("mcp__tracker__search", map[string]any{"q": "flaky"}),                     // Allow, although writes are Deny
			call("mcp__tracker__close_issue", map[string]any{"id": 7}),                     // Ask: the person says no
			scriptedllm.Call{Name: "mcp__tracker__search", Args: `{"q":"a","q":"rm -rf"}`}, // refused before anything
		),
		scriptedllm.Text("done"),
	)
	gw := &gatewayCalls{}
	asker := &classRecorder{}
	schema := json.RawMessage(`{"type":"object","properties":{"q":{"type":"string"},"id":{"type":"integer"}}}`)
	for _, tl := range []contract.MCPTool{{Name: "search", InputSchema: schema, Approval: "Allow"}, {Name: "close_issue", InputSchema: schema, Approval: "Ask"}} {
		tool, err := mcptools.New(gw, "tracker", tl)
		if err != nil {
			t.Fatal(err)
		}
		h.loop.Tools = append(h.loop.Tools, tool)
	}
	h.loop.Policy = approval.Policy{Bash: approval.Deny, Writes: approval.Deny}
	h.loop.Approver = asker
	h.run(context.Background())

	if diff := cmp.Diff([]string{`tracker/search {"q":"flaky"}`}, gw.ran); diff != "" {
		t.Errorf("calls that reached the gateway (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{`mcp mcp__tracker__close_issue tracker/close_issue {"id":7}`}, asker.asked); diff != "" {
		t.Errorf("approvals asked (-want +got):\n%s", diff)
	}
	msgs := h.srv.Requests()[1].Body.Messages
	res := msgs[len(msgs)-3:]
	for i, want := range []string{"ran search", "denied: this call was not approved (not in prod)", `duplicate key "q"`} {
		if !strings.Contains(res[i].Content, want) {
			t.Errorf("result %d = %q, want %q", i, res[i].Content, want)
		}
	}
	var approvals []string
	for _, e := range h.events() {
		if e.Type == contract.EventApproval {
			approvals = append(approvals, e.Approval.Tool+" "+string(e.Approval.Decision)+" by "+e.Approval.By)
		}
	}
	if diff := cmp.Diff([]string{"mcp__tracker__close_issue Deny by user:bob"}, approvals); diff != "" {
		t.Errorf("approval events (-want +got):\n%s", diff)
	}
}
