package cli_test

import (
	"strings"
	"testing"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner/internal/testrepo"
	"github.com/agentry-dev/agentry/test/scriptedllm"
)

// MCP servers are reached through the gateway only: locally there is nobody to hold their
// credentials, so the flag alone is a usage error, before the model is called.
func TestMCPServerNeedsTheGateway(t *testing.T) {
	origin := testrepo.New(t, map[string]string{"a.txt": "a\n"})
	srv := scriptedllm.New(scriptedllm.Text("never asked"))
	defer srv.Close()
	r := run(t, map[string]string{"OPENAI_API_KEY": key},
		"run", "--repo", origin, "--task", "t", "--base-url", srv.URL, "--mcp-server", "tracker", "--quiet")
	if r.code != int(contract.ExitUsage) || !strings.Contains(r.stderr, "--mcp-server needs --gateway") {
		t.Errorf("exit %d, stderr %q; want %d naming --gateway", r.code, r.stderr, contract.ExitUsage)
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("the model was called %d times", n)
	}
}
