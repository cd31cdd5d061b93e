package cli

import (
	"context"
	"time"

	"github.com/agentry-dev/agentry/runner/gatewayclient"
	"github.com/agentry-dev/agentry/runner/mcptools"
	"github.com/agentry-dev/agentry/runner/tools"
)

// mcpTools lists the tools of every --mcp-server through the gateway. A server
// that cannot be listed ends the session before the model is called: the task
// may depend on its tools.
func mcpTools(ctx context.Context, o *options, gw *gatewayclient.Client, p *progress) (tools.Set, error) {
	if len(o.mcpServers) == 0 {
		return nil, nil
	}
	if gw == nil {
		return nil, usagef("--mcp-server needs --gateway: MCP servers are reached through the session gateway, which holds their credentials")
	}
	c := &mcptools.Client{GW: gw}
	lctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	set, skipped, err := mcptools.Load(lctx, c, o.mcpServers)
	if err != nil {
		return nil, err
	}
	for _, s := range skipped {
		p.warn("MCP tool %s is not offered", s)
	}
	if len(set) == 0 {
		p.warn("the MCP servers %v offer no tool this session may call", o.mcpServers)
	}
	return set, nil
}
