package cli_test

import (
	"strings"
	"testing"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner/internal/testrepo"
	"github.com/agentry-dev/agentry/test/scriptedllm"
)

// Without a gateway there is nowhere for the web tools to run: asking for them is a usage
// error naming what is missing, before the model is called.
func TestWebToolsNeedTheGateway(t *testing.T) {
	origin := testrepo.New(t, map[string]string{"a.txt": "a\n"})
	srv := scriptedllm.New(scriptedllm.Text("done"))
	defer srv.Close()
	r := run(t, map[string]string{"OPENAI_API_KEY": key}, "run", "--repo", origin, "--base-url", srv.URL, "--transcript-dir", t.TempDir(),
		"--task", "x", "--tools", "read_file,web_fetch,web_search")
	if r.code != int(contract.ExitUsage) || !strings.Contains(r.stderr, "--tools: web_fetch and web_search run in the session gateway and need --gateway") {
		t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("the model was called %d times", n)
	}
}
