package mcptools_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner/gatewayclient"
	"github.com/agentry-dev/agentry/runner/mcptools"
)

var openAIName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

func TestToolNamesAreValidFunctionNamesAndStayApart(t *testing.T) {
	cases := map[string]struct{ server, tool, want string }{
		"plain":         {"tracker", "create_issue", "mcp__tracker__create_issue"},
		"dots":          {"fs", "files.read", "mcp__fs__files_read"},
		"hyphens kept":  {"everything", "get-sum", "mcp__everything__get-sum"},
		"unicode/space": {"docs", "lire le\u202efichier", "mcp__docs__lire_le_fichier"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := mcptools.ToolName(c.server, c.tool); got != c.want {
				t.Errorf("ToolName(%q, %q) = %q, want %q", c.server, c.tool, got, c.want)
			}
		})
	}
	long := strings.Repeat("x", 100)
	a, b := mcptools.ToolName("srv", long+"a"), mcptools.ToolName("srv", long+"b")
	if !openAIName.MatchString(a) || !openAIName.MatchString(b) || a == b {
		t.Errorf("long names %q and %q: want two different valid names", a, b)
	}
}

// gatewayAnswering is the gateway's tools endpoint answering list, for the runner's
// decisions about what it lists; the real gateway is in the gateway package's tests.
func gatewayAnswering(t *testing.T, list contract.MCPToolList) (*mcptools.Client, *[]string) {
	t.Helper()
	var auth []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = append(auth, r.Header.Get("Authorization"))
		if r.URL.Path != contract.PathMCP+list.Server+"/tools" {
			http.Error(w, `{"error":"no such path"}`, http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(list)
	}))
	t.Cleanup(srv.Close)
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("pod-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gw, err := gatewayclient.New(srv.URL, token, "")
	if err != nil {
		t.Fatal(err)
	}
	return &mcptools.Client{GW: gw}, &auth
}

func TestLoadOffersAllowedToolsAndRefusesCollisions(t *testing.T) {
	obj := json.RawMessage(`{"type":"object","properties":{}}`)
	c, auth := gatewayAnswering(t, contract.MCPToolList{Server: "fs", Tools: []contract.MCPTool{
		{Name: "files.read", InputSchema: obj, Approval: "Allow"},
		{Name: "files_read", InputSchema: obj, Approval: "Allow"}, // the same name once sanitized
		{Name: "rm", InputSchema: obj, Approval: "Deny"},
		{Name: "odd", InputSchema: obj, Approval: "Sometimes"},
		{Name: "write", InputSchema: obj, Approval: "Ask"},
	}})
	set, skipped, err := mcptools.Load(context.Background(), c, []string{"fs"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(set.Names(), ","); got != "mcp__fs__files_read,mcp__fs__write" {
		t.Errorf("offered %s, want the first of the colliding pair and the Ask tool, not the denied one", got)
	}
	joined := strings.Join(skipped, "\n")
	if !strings.Contains(joined, "fs/files_read: its name mcp__fs__files_read is also fs/files.read's") || !strings.Contains(joined, `invalid approval mode "Sometimes"`) {
		t.Errorf("skipped = %q", skipped)
	}
	if len(*auth) != 1 || (*auth)[0] != "Bearer pod-token" {
		t.Errorf("Authorization sent to the gateway = %q, want the pod's token", *auth)
	}
}

func TestLoadFailsClearlyWhenTheGatewayRefuses(t *testing.T) {
	c, _ := gatewayAnswering(t, contract.MCPToolList{Server: "other"})
	_, _, err := mcptools.Load(context.Background(), c, []string{"fs"})
	if err == nil || !strings.Contains(err.Error(), "--mcp-server fs") || !strings.Contains(err.Error(), "no such path (HTTP 404)") {
		t.Errorf("err = %v, want the flag and the gateway's message", err)
	}
}

type recordingCaller struct{ args []string }

func (r *recordingCaller) Call(_ context.Context, _, _ string, args json.RawMessage) (contract.MCPCallResult, error) {
	r.args = append(r.args, string(args))
	return contract.MCPCallResult{Content: "boom", IsError: true}, nil
}

func TestArgumentsAreCanonicalAndDuplicatesRefused(t *testing.T) {
	rc := &recordingCaller{}
	tool, err := mcptools.New(rc, "fs", contract.MCPTool{Name: "write", InputSchema: json.RawMessage(`{"type":"object"}`), Approval: "Ask"})
	if err != nil {
		t.Fatal(err)
	}
	ok := map[string]string{
		``:                                  `{}`,
		`{"b":1,"a":{"z":2,"y":"<x>"}}`:     `{"a":{"y":"<x>","z":2},"b":1}`,
		`{"n":123456789012345678901234567}`: `{"n":123456789012345678901234567}`,
	}
	for in, want := range ok {
		got, err := tool.Canonical(json.RawMessage(in))
		if err != nil || string(got) != want {
			t.Errorf("Canonical(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
	bad := map[string]string{
		`{"path":"a","path":"b"}`: `duplicate key "path"`,
		`{"x":{"k":1,"k":2}}`:     `duplicate key "k"`,
		`{"x":[{"k":1,"k":2}]}`:   `duplicate key "k"`,
		`[1,2]`:                   "not a JSON object",
		`{"a":1} {"a":2}`:         "unexpected data after the object",
		`{"a":`:                   "not valid JSON",
	}
	for in, want := range bad {
		_, err := tool.Canonical(json.RawMessage(in))
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "mcp__fs__write") {
			t.Errorf("Canonical(%s) = %v, want an error naming the tool and %q", in, err, want)
		}
	}
	if _, err := tool.Execute(context.Background(), json.RawMessage(`{}`)); err == nil || !strings.Contains(err.Error(), "reported an error: boom") {
		t.Errorf("a tool error = %v, want it returned as the call's error", err)
	}
}
