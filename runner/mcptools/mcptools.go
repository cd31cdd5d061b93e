// Package mcptools offers an MCP server's tools to the model, reached through
// the session gateway (which holds the server's credentials): each tool the
// gateway lists becomes a tools.Tool named mcp__<server>__<tool>. The tools
// run in the runner, on the trusted side of the pod: a call is an
// authenticated request to the gateway, which the agent's code cannot make.
package mcptools

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/display"
	"github.com/agentry-dev/agentry/runner/approval"
	"github.com/agentry-dev/agentry/runner/gatewayclient"
	"github.com/agentry-dev/agentry/runner/tools"
)

// Class is the approval class of MCP tool calls, as shown with a pending approval.
const Class approval.Class = "mcp"

// Bounds on what the gateway's answers may hold, whatever they hold.
const (
	maxListBody   = 8 << 20
	maxResultBody = 1 << 20
	maxNameLen    = 64
)

// Client calls the gateway's MCP endpoints with the pod's token.
type Client struct {
	GW *gatewayclient.Client
}

// List returns the tools of server the session may use.
func (c *Client) List(ctx context.Context, server string) (contract.MCPToolList, error) {
	var out contract.MCPToolList
	err := c.do(ctx, http.MethodGet, server, "tools", nil, maxListBody, &out)
	return out, err
}

// Call runs one tool; arguments is a JSON object.
func (c *Client) Call(ctx context.Context, server, tool string, arguments json.RawMessage) (contract.MCPCallResult, error) {
	var out contract.MCPCallResult
	body, err := json.Marshal(contract.MCPCallRequest{Tool: tool, Arguments: arguments})
	if err != nil {
		return out, err
	}
	err = c.do(ctx, http.MethodPost, server, "call", body, maxResultBody, &out)
	return out, err
}

func (c *Client) do(ctx context.Context, method, server, op string, body []byte, limit int64, out any) error {
	req, err := c.GW.NewRequest(ctx, method, contract.PathMCP+url.PathEscape(server)+"/"+op, body)
	if err != nil {
		return err
	}
	resp, err := c.GW.Send(req)
	if err != nil {
		return fmt.Errorf("MCP server %s: reaching the gateway: %w", server, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return fmt.Errorf("MCP server %s: reading the gateway's answer: %w", server, err)
	}
	if int64(len(b)) > limit {
		return fmt.Errorf("MCP server %s: the gateway's answer is larger than %d bytes", server, limit)
	}
	if resp.StatusCode != http.StatusOK {
		var ge contract.GatewayError
		if json.Unmarshal(b, &ge) == nil && ge.Error != "" {
			return fmt.Errorf("MCP server %s: %s (HTTP %d)", server, ge.Error, resp.StatusCode)
		}
		return fmt.Errorf("MCP server %s: the gateway answered HTTP %d", server, resp.StatusCode)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("MCP server %s: decoding the gateway's answer: %w", server, err)
	}
	return nil
}

// Caller is what a tool needs of the gateway; *Client implements it.
type Caller interface {
	Call(ctx context.Context, server, tool string, arguments json.RawMessage) (contract.MCPCallResult, error)
}

// Load lists each server's tools through the gateway and returns them as
// tools, in the servers' order. Tools denied by their server's policy are not
// offered; a tool whose name collides with another's after sanitizing, or
// whose approval mode is unknown, is left out and named in skipped. A server
// that cannot be listed is an error: the session was promised its tools.
func Load(ctx context.Context, c *Client, servers []string) (set tools.Set, skipped []string, err error) {
	seen := map[string]string{}
	for _, srv := range servers {
		list, err := c.List(ctx, srv)
		if err != nil {
			return nil, nil, fmt.Errorf("--mcp-server %s: listing its tools: %w", srv, err)
		}
		for _, t := range list.Tools {
			tool, err := New(c, srv, t)
			if err != nil {
				skipped = append(skipped, err.Error())
				continue
			}
			if tool.mode == approval.Deny {
				continue
			}
			if other, dup := seen[tool.name]; dup {
				skipped = append(skipped, fmt.Sprintf("%s/%s: its name %s is also %s's", srv, display.Escape(t.Name), tool.name, other))
				continue
			}
			seen[tool.name] = srv + "/" + display.Escape(t.Name)
			set = append(set, tool)
		}
	}
	return set, skipped, nil
}

var unsafeChars = regexp.MustCompile(`[^a-zA-Z0-9_-]`)

// ToolName is the name the model sees: mcp__<server>__<tool>, with every
// character OpenAI does not allow in a function name replaced by "_", and a
// name longer than 64 characters cut and ended with a hash of the whole, so
// two long names stay apart.
func ToolName(server, tool string) string {
	n := unsafeChars.ReplaceAllString("mcp__"+server+"__"+tool, "_")
	if len(n) <= maxNameLen {
		return n
	}
	sum := sha256.Sum256([]byte(server + "\x00" + tool))
	return n[:maxNameLen-9] + "_" + hex.EncodeToString(sum[:4])
}

// New makes the tool the gateway listed for server.
func New(c Caller, server string, t contract.MCPTool) (*Tool, error) {
	mode, err := approval.ParseMode(t.Approval)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", server, display.Escape(t.Name), err)
	}
	if t.Name == "" || !json.Valid(t.InputSchema) {
		return nil, fmt.Errorf("%s/%s: no name or no valid input schema", server, display.Escape(t.Name))
	}
	return &Tool{Caller: c, Server: server, Tool: t.Name, name: ToolName(server, t.Name), desc: t.Description, schema: t.InputSchema, mode: mode}, nil
}

// Tool is one MCP tool offered to the model.
type Tool struct {
	Caller Caller
	Server string
	// Tool is the name at the server.
	Tool   string
	name   string
	desc   string
	schema json.RawMessage
	mode   approval.Mode
}

func (t *Tool) Name() string { return t.name }

func (t *Tool) Description() string {
	d := strings.TrimSpace(t.desc)
	if d == "" {
		d = "(no description)"
	}
	return fmt.Sprintf("Tool %q of the MCP server %s. %s", t.Tool, t.Server, d)
}

func (t *Tool) Schema() json.RawMessage { return t.schema }

// Kind is write: a call may change things outside the workspace, so it is a
// barrier between parallel reads and goes through approval.
func (t *Tool) Kind() tools.Kind { return tools.KindWrite }

func (t *Tool) Args() any { return new(map[string]any) }

// Approval is the MCPServer's mode for this tool; it replaces the class modes
// (--approval-writes does not apply).
func (t *Tool) Approval() (approval.Class, approval.Mode, string) {
	return Class, t.mode, fmt.Sprintf("MCPServer %s approval for %s is %s", t.Server, t.Tool, t.mode)
}

// Canonical replaces tools.Canonical's struct decoding: the arguments are
// whatever object the server's schema describes. Duplicate keys are refused
// and the object is encoded again (keys sorted), so what is approved is what
// the gateway receives; the server validates the values against its schema.
func (t *Tool) Canonical(raw json.RawMessage) (json.RawMessage, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("{}")
	}
	fail := func(why string) error {
		return fmt.Errorf("invalid arguments for %s: %s; arguments must be one JSON object matching %s", t.name, why, display.Truncate(string(t.schema), 2000))
	}
	if err := noDuplicateKeys(raw); err != nil {
		return nil, fail(err.Error())
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil || v == nil {
		return nil, fail("not a JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fail("unexpected data after the object")
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fail(err.Error())
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// noDuplicateKeys refuses an object with a key twice, at any depth: decoders
// keep one of the two, and a person approving the call might read the other.
func noDuplicateKeys(raw json.RawMessage) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	var walk func() error
	walk = func() error {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("not valid JSON: %w", err)
		}
		d, ok := tok.(json.Delim)
		if !ok {
			return nil
		}
		switch d {
		case '{':
			seen := map[string]bool{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return fmt.Errorf("not valid JSON: %w", err)
				}
				key, _ := k.(string)
				if seen[key] {
					return fmt.Errorf("duplicate key %q", key)
				}
				seen[key] = true
				if err := walk(); err != nil {
					return err
				}
			}
		case '[':
			for dec.More() {
				if err := walk(); err != nil {
					return err
				}
			}
		}
		_, err = dec.Token() // the closing delimiter
		return err
	}
	return walk()
}

func (t *Tool) Execute(ctx context.Context, args json.RawMessage) (string, error) {
	res, err := t.Caller.Call(ctx, t.Server, t.Tool, args)
	if err != nil {
		return "", err
	}
	out := res.Content
	if res.Truncated {
		out += "\n[… the result was cut at the gateway's limit …]"
	}
	if res.IsError {
		return "", fmt.Errorf("the MCP tool %s reported an error: %s", t.Tool, out)
	}
	return out, nil
}

// Describe renders the call for approval prompts and progress lines. The
// arguments are shown whole (escaped), since a person decides on them.
func (t *Tool) Describe(args json.RawMessage) string {
	return fmt.Sprintf("%s/%s %s", t.Server, display.Escape(t.Tool), display.Escape(string(args)))
}
