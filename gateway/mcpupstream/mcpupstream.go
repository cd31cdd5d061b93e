// Package mcpupstream connects to an MCPServer's streamable-HTTP endpoint as an
// MCP client, with the server's headers read from Secrets in the operator's
// namespace. The session gateway uses it to serve runners' tool lists and
// calls, and the MCPServer reconciler to check that a server is reachable.
// Nothing here ever hands a header value to its caller except as a secret to
// redact.
package mcpupstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/display"
)

// Bounds on what one server may send, whatever it sends: a hostile or broken
// server must not fill the gateway's memory or the model's context.
const (
	// MaxTools is the most tools kept from one server (the API's status bound).
	MaxTools = 128
	// MaxSchemaBytes is the largest input schema kept; a tool with a larger one is left out.
	MaxSchemaBytes = 32 << 10
	// MaxDescriptionBytes caps a tool's description.
	MaxDescriptionBytes = 4 << 10
	// maxPages bounds tools/list pagination.
	maxPages = 16
)

// ErrSecret is wrapped by errors reading a header Secret.
var ErrSecret = errors.New("header Secret")

// Headers reads the server's header values from their Secrets in namespace.
func Headers(ctx context.Context, r client.Reader, namespace string, s *v1.MCPServer) (http.Header, error) {
	h := http.Header{}
	for i, hd := range s.Spec.Headers {
		ref := hd.ValueFrom
		sec := &corev1.Secret{}
		if err := r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: ref.Name}, sec); err != nil {
			return nil, fmt.Errorf("%w: spec.headers[%d] (%s) of MCPServer %s: reading Secret %s/%s: %w", ErrSecret, i, hd.Name, s.Name, namespace, ref.Name, err)
		}
		v := strings.TrimSpace(string(sec.Data[ref.Key]))
		if v == "" {
			return nil, fmt.Errorf("%w: spec.headers[%d] (%s) of MCPServer %s: Secret %s/%s has no non-empty key %q", ErrSecret, i, hd.Name, s.Name, namespace, ref.Name, ref.Key)
		}
		h.Set(hd.Name, v)
	}
	return h, nil
}

// Secrets lists the header values, for redaction.
func Secrets(h http.Header) []string {
	var out []string
	for _, vs := range h {
		for _, v := range vs {
			out = append(out, v)
			// A bearer token also travels without its scheme.
			if _, tok, ok := strings.Cut(v, " "); ok && len(tok) >= 8 {
				out = append(out, tok)
			}
		}
	}
	return out
}

// Redact replaces every secret in s.
func Redact(s string, secrets []string) string {
	for _, v := range secrets {
		if v != "" {
			s = strings.ReplaceAll(s, v, "[redacted]")
		}
	}
	return s
}

// headerTransport adds the server's headers to every request; it replaces any
// value already set, so nothing a caller put there reaches the server instead.
type headerTransport struct {
	base    http.RoundTripper
	headers http.Header
}

func (t *headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, vs := range t.headers {
		r.Header[k] = slices.Clone(vs)
	}
	return t.base.RoundTrip(r)
}

// Connect opens an MCP session with the server, sending headers with every
// request. The caller closes it.
//
// A session per use, not a pool: the gateway runs on every manager replica and
// a runner's requests land on any of them, so keeping upstream sessions would
// tie a runner to a replica or need shared state; an initialize round trip per
// tool call is small next to a model turn.
func Connect(ctx context.Context, s *v1.MCPServer, headers http.Header, base http.RoundTripper) (*mcp.ClientSession, error) {
	if base == nil {
		base = http.DefaultTransport
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "agentry-gateway", Version: "v1alpha1"}, nil)
	tr := &mcp.StreamableClientTransport{
		Endpoint:             s.Spec.URL,
		HTTPClient:           &http.Client{Transport: &headerTransport{base: base, headers: headers}},
		MaxRetries:           -1,
		DisableStandaloneSSE: true,
		MaxEventSize:         8 << 20,
	}
	cs, err := c.Connect(ctx, tr, nil)
	if err != nil {
		return nil, fmt.Errorf("connecting to MCPServer %s at %s: %w", s.Name, s.Spec.URL, err)
	}
	return cs, nil
}

// Tool is one tool a session may be offered.
type Tool struct {
	Name        string
	Description string
	InputSchema json.RawMessage
	Approval    v1.ApprovalMode
}

// ListTools lists the server's tools that its allow-list (spec.tools) admits,
// in the server's order, with their approval modes. Tools with an unusable
// schema are left out and named in skipped.
func ListTools(ctx context.Context, cs *mcp.ClientSession, s *v1.MCPServer) (tools []Tool, skipped []string, err error) {
	var cursor string
	for range maxPages {
		res, err := cs.ListTools(ctx, &mcp.ListToolsParams{Cursor: cursor})
		if err != nil {
			return nil, nil, fmt.Errorf("listing the tools of MCPServer %s: %w", s.Name, err)
		}
		for _, t := range res.Tools {
			if t == nil || !Allowed(s, t.Name) || len(tools) >= MaxTools {
				continue
			}
			schema, err := json.Marshal(t.InputSchema)
			if err != nil || len(schema) > MaxSchemaBytes || !isObjectSchema(schema) {
				skipped = append(skipped, t.Name)
				continue
			}
			tools = append(tools, Tool{Name: t.Name, Description: display.Truncate(t.Description, MaxDescriptionBytes), InputSchema: schema, Approval: Mode(s, t.Name)})
		}
		if res.NextCursor == "" {
			break
		}
		cursor = res.NextCursor
	}
	return tools, skipped, nil
}

// isObjectSchema says whether the schema describes a JSON object, as a tool's
// arguments must be (and as the model's function parameters must be).
func isObjectSchema(b []byte) bool {
	var s struct {
		Type any `json:"type"`
	}
	if json.Unmarshal(b, &s) != nil {
		return false
	}
	return s.Type == "object"
}

// Allowed says whether spec.tools admits the tool (an empty list admits all).
func Allowed(s *v1.MCPServer, tool string) bool {
	return len(s.Spec.Tools) == 0 || slices.Contains(s.Spec.Tools, tool)
}

// Mode is the tool's approval mode: spec.approval.tools[tool], else
// spec.approval.default, else Ask.
func Mode(s *v1.MCPServer, tool string) v1.ApprovalMode {
	if m, ok := s.Spec.Approval.Tools[tool]; ok && m != "" {
		return m
	}
	if m := s.Spec.Approval.Default; m != "" {
		return m
	}
	return v1.ApprovalAsk
}

// Text renders a call's result as text: text content as is, other content
// described in a line, structured content as JSON when there is no text.
func Text(r *mcp.CallToolResult) string {
	var parts []string
	for _, c := range r.Content {
		switch c := c.(type) {
		case *mcp.TextContent:
			parts = append(parts, c.Text)
		case *mcp.ImageContent:
			parts = append(parts, fmt.Sprintf("[image %s, %d bytes, not shown]", c.MIMEType, len(c.Data)))
		case *mcp.AudioContent:
			parts = append(parts, fmt.Sprintf("[audio %s, %d bytes, not shown]", c.MIMEType, len(c.Data)))
		case *mcp.ResourceLink:
			parts = append(parts, fmt.Sprintf("[resource %s: %s]", c.Name, c.URI))
		case *mcp.EmbeddedResource:
			if c.Resource != nil && c.Resource.Text != "" {
				parts = append(parts, c.Resource.Text)
			} else if c.Resource != nil {
				parts = append(parts, fmt.Sprintf("[resource %s, %d bytes, not shown]", c.Resource.URI, len(c.Resource.Blob)))
			}
		default:
			parts = append(parts, fmt.Sprintf("[%T content, not shown]", c))
		}
	}
	if len(parts) == 0 && r.StructuredContent != nil {
		if b, err := json.Marshal(r.StructuredContent); err == nil {
			parts = append(parts, string(b))
		}
	}
	return strings.Join(parts, "\n")
}
