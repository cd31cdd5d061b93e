package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/display"
	"github.com/agentry-dev/agentry/gateway/mcpupstream"
)

// +kubebuilder:rbac:groups=agentry.dev,resources=mcpservers,verbs=get;list;watch

// The MCP endpoints.
//
// The gateway is an MCP client of the upstream server and offers the runner a
// two-call JSON API (list, call) rather than relaying JSON-RPC: every request
// the runner can make is then one the gateway understands whole, so the
// allow-list and Deny are enforced on the tool name the server will run, not
// on a parse of a stream the runner controls (batches, notifications,
// session ids and SSE resumption are all ways around a filtering relay); the
// upstream's response headers and session never reach the runner; and the
// runner needs no MCP implementation of its own.
const (
	// maxMCPBody bounds a call request: the model's arguments.
	maxMCPBody = 1 << 20
	// maxMCPResult caps a result's text sent to the runner (the runner caps
	// what the model sees at the same size).
	maxMCPResult = 128 << 10
	// mcpListTimeout bounds connecting and listing tools.
	mcpListTimeout = 30 * time.Second
)

// mcpRoutes registers the MCP endpoints.
func (s *Server) mcpRoutes(mux *http.ServeMux) {
	mux.Handle("GET "+contract.PathMCP+"{server}/tools", s.authenticated("mcp", s.handleMCPTools))
	mux.Handle("POST "+contract.PathMCP+"{server}/call", s.authenticated("mcp", s.handleMCPCall))
}

func (s *Server) handleMCPTools(w http.ResponseWriter, r *http.Request, id identity) {
	srv, headers, ok := s.mcpServer(w, r, id)
	if !ok {
		return
	}
	secrets := mcpupstream.Secrets(headers)
	ctx, cancel := context.WithTimeout(r.Context(), mcpListTimeout)
	defer cancel()
	cs, err := mcpupstream.Connect(ctx, srv, headers, s.http.Transport)
	if err != nil {
		s.mcpUpstreamError(w, r, srv, err, secrets)
		return
	}
	defer cs.Close()
	list, skipped, err := mcpupstream.ListTools(ctx, cs, srv)
	if err != nil {
		s.mcpUpstreamError(w, r, srv, err, secrets)
		return
	}
	if len(skipped) > 0 {
		log.FromContext(r.Context()).Info("Leaving out MCP tools whose input schema is not a JSON object or too large", "MCPServer", srv.Name, "tools", skipped)
	}
	out := contract.MCPToolList{Server: srv.Name, Tools: make([]contract.MCPTool, 0, len(list))}
	for _, t := range list {
		// The server holds its own credential and could describe a tool with it;
		// the runner must never see it.
		out.Tools = append(out.Tools, contract.MCPTool{
			Name: t.Name, Description: mcpupstream.Redact(t.Description, secrets),
			InputSchema: json.RawMessage(mcpupstream.Redact(string(t.InputSchema), secrets)), Approval: string(t.Approval),
		})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleMCPCall(w http.ResponseWriter, r *http.Request, id identity) {
	var req contract.MCPCallRequest
	if !decodeBody(w, r, "mcp", &req) {
		return
	}
	srv, headers, ok := s.mcpServer(w, r, id)
	if !ok {
		return
	}
	if req.Tool == "" || len(req.Tool) > 128 {
		writeError(w, http.StatusBadRequest, "tool: want the name of one of MCPServer %s's tools (1-128 bytes)", srv.Name)
		return
	}
	// The runner applies the same rules before it asks; these hold even for a
	// runner that does not.
	if !mcpupstream.Allowed(srv, req.Tool) {
		writeError(w, http.StatusForbidden, "tool %q of MCPServer %s is not in its allow-list (spec.tools)", display.Escape(req.Tool), srv.Name)
		return
	}
	if mcpupstream.Mode(srv, req.Tool) == v1.ApprovalDeny {
		writeError(w, http.StatusForbidden, "tool %q of MCPServer %s is denied by its approval policy (spec.approval)", display.Escape(req.Tool), srv.Name)
		return
	}
	var args map[string]json.RawMessage
	if len(req.Arguments) > 0 {
		if err := json.Unmarshal(req.Arguments, &args); err != nil {
			writeError(w, http.StatusBadRequest, "arguments: want a JSON object: %v", err)
			return
		}
	}
	secrets := mcpupstream.Secrets(headers)
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.UpstreamTimeout)
	defer cancel()
	cs, err := mcpupstream.Connect(ctx, srv, headers, s.http.Transport)
	if err != nil {
		s.mcpUpstreamError(w, r, srv, err, secrets)
		return
	}
	defer cs.Close()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: req.Tool, Arguments: args})
	if err != nil {
		s.mcpUpstreamError(w, r, srv, err, secrets)
		return
	}
	text := mcpupstream.Redact(mcpupstream.Text(res), secrets)
	out := contract.MCPCallResult{Content: display.Truncate(text, maxMCPResult), IsError: res.IsError, Truncated: len(text) > maxMCPResult}
	writeJSON(w, http.StatusOK, out)
}

// mcpServer resolves the request's server: one the session lists in
// spec.mcpServers, that exists, with its headers read. It answers the error
// itself when it cannot.
func (s *Server) mcpServer(w http.ResponseWriter, r *http.Request, id identity) (*v1.MCPServer, http.Header, bool) {
	ctx := r.Context()
	name := r.PathValue("server")
	sess := &v1.AgentSession{}
	if err := s.auth.get(ctx, id.Session, sess); err != nil {
		writeError(w, http.StatusServiceUnavailable, "reading session %s: %v", id.Session, err)
		return nil, nil, false
	}
	if !slices.ContainsFunc(sess.Spec.MCPServers, func(m v1.MCPServerReference) bool { return m.Name == name }) {
		writeError(w, http.StatusForbidden, "session %s does not list MCPServer %q in spec.mcpServers", id.Session, display.Escape(display.Truncate(name, 80)))
		return nil, nil, false
	}
	// Admission checked the grant when the session was created; a platform that revokes it
	// (or deletes the policy) cuts running sessions off at their next call.
	var policies v1.AgentPolicyList
	if err := s.client.List(ctx, &policies, client.InNamespace(sess.Namespace)); err != nil {
		writeError(w, http.StatusServiceUnavailable, "listing the AgentPolicies of namespace %s: %v", sess.Namespace, err)
		return nil, nil, false
	}
	if !slices.ContainsFunc(policies.Items, func(p v1.AgentPolicy) bool { return slices.Contains(p.Spec.AllowedMCPServers, name) }) {
		writeError(w, http.StatusForbidden, "MCPServer %s is not allowed in namespace %s: no AgentPolicy lists it in spec.allowedMCPServers", name, sess.Namespace)
		return nil, nil, false
	}
	srv := &v1.MCPServer{}
	if err := s.auth.get(ctx, types.NamespacedName{Name: name}, srv); err != nil {
		if apierrors.IsNotFound(err) {
			writeError(w, http.StatusNotFound, "MCPServer %s (spec.mcpServers) does not exist", name)
			return nil, nil, false
		}
		writeError(w, http.StatusServiceUnavailable, "reading MCPServer %s: %v", name, err)
		return nil, nil, false
	}
	headers, err := mcpupstream.Headers(ctx, s.keys, s.cfg.OperatorNamespace, srv)
	if err != nil {
		log.FromContext(ctx).Error(err, "Reading MCP server headers", "MCPServer", name)
		writeError(w, http.StatusBadGateway, "MCPServer %s is not usable: a header Secret is missing; see its Ready condition", name)
		return nil, nil, false
	}
	return srv, headers, true
}

// mcpUpstreamError answers 502 (504 on a timeout) for a server that could not
// be reached or refused, with the error's text minus the credentials.
func (s *Server) mcpUpstreamError(w http.ResponseWriter, r *http.Request, srv *v1.MCPServer, err error, secrets []string) {
	msg := display.Truncate(mcpupstream.Redact(err.Error(), secrets), 2000)
	log.FromContext(r.Context()).Info("MCP server call failed", "MCPServer", srv.Name, "error", msg)
	status := http.StatusBadGateway
	if errors.Is(err, context.DeadlineExceeded) {
		status = http.StatusGatewayTimeout
	}
	writeError(w, status, "MCPServer %s: %s", srv.Name, msg)
}
