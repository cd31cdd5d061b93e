package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner/gatewayclient"
)

// The web tools run in the session gateway: the runner sends the request with
// its token and the gateway applies the namespace's policy, resolves and
// fetches. They never run in the agent container (which has no credential to
// call the gateway with) and do not touch the workspace.

// webCallTimeout bounds one call: the gateway's own fetch timeout and some.
const webCallTimeout = 45 * time.Second

// maxWebAnswer bounds what is read of the gateway's answer (the text is capped
// there at the policy's maxBytes, at most 1 MiB).
const maxWebAnswer = 4 << 20

// WebNames are the tools that run in the gateway.
var WebNames = []string{"web_fetch", "web_search"}

// Web returns the gateway-backed tools; gw nil means this run has no gateway.
func Web(gw *gatewayclient.Client) Set {
	return Set{&WebFetch{GW: gw}, &WebSearch{GW: gw}}
}

// WebFetch fetches one page through the gateway.
type WebFetch struct {
	typed[webFetchArgs]
	GW *gatewayclient.Client
}

type webFetchArgs struct {
	URL string `json:"url" jsonschema:"The http or https URL of the page"`
}

func (webFetchArgs) bounds() bounds     { return bounds{"url": {maxLength: 2048}} }
func (a *webFetchArgs) missing() string { return missing("url", a.URL) }

func (*WebFetch) Name() string                         { return "web_fetch" }
func (*WebFetch) Kind() Kind                           { return KindRead }
func (*WebFetch) Description() string                  { return doc("web_fetch") }
func (*WebFetch) Describe(args json.RawMessage) string { return describeArg(args, "url") }

func (t *WebFetch) Execute(ctx context.Context, raw json.RawMessage) (string, error) {
	a, err := parse[webFetchArgs](t, raw)
	if err != nil {
		return "", err
	}
	return webCall(ctx, t.GW, contract.PathWebFetch, contract.WebFetchRequest{URL: a.URL})
}

// WebSearch queries the configured search endpoint through the gateway.
type WebSearch struct {
	typed[webSearchArgs]
	GW *gatewayclient.Client
}

type webSearchArgs struct {
	Query string `json:"query" jsonschema:"Search terms"`
}

func (webSearchArgs) bounds() bounds     { return bounds{"query": {maxLength: 1024}} }
func (a *webSearchArgs) missing() string { return missing("query", strings.TrimSpace(a.Query)) }

func (*WebSearch) Name() string                         { return "web_search" }
func (*WebSearch) Kind() Kind                           { return KindRead }
func (*WebSearch) Description() string                  { return doc("web_search") }
func (*WebSearch) Describe(args json.RawMessage) string { return describeArg(args, "query") }

func (t *WebSearch) Execute(ctx context.Context, raw json.RawMessage) (string, error) {
	a, err := parse[webSearchArgs](t, raw)
	if err != nil {
		return "", err
	}
	return webCall(ctx, t.GW, contract.PathWebSearch, contract.WebSearchRequest{Query: a.Query})
}

// webCall posts the request and renders the result for the model: a short header
// (final URL, status, type, size) and the text. A refusal or failure is the
// gateway's message, which says what is allowed.
func webCall(ctx context.Context, gw *gatewayclient.Client, path string, req any) (string, error) {
	if gw == nil {
		return "", errors.New("the web tools need the session gateway, which this run does not have")
	}
	body, err := json.Marshal(req)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, webCallTimeout)
	defer cancel()
	hr, err := gw.NewRequest(ctx, http.MethodPost, path, body)
	if err != nil {
		return "", err
	}
	resp, err := gw.Send(hr)
	if err != nil {
		return "", fmt.Errorf("asking the session gateway: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxWebAnswer))
	if err != nil {
		return "", fmt.Errorf("reading the session gateway's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var ge contract.GatewayError
		if json.Unmarshal(b, &ge) == nil && ge.Error != "" {
			return "", errors.New(ge.Error)
		}
		return "", fmt.Errorf("the session gateway answered %s", resp.Status)
	}
	var res contract.WebResult
	if err := json.Unmarshal(b, &res); err != nil {
		return "", fmt.Errorf("decoding the session gateway's answer: %w", err)
	}
	return renderWeb(res), nil
}

func renderWeb(r contract.WebResult) string {
	status := fmt.Sprint(r.Status)
	if t := http.StatusText(r.Status); t != "" {
		status += " " + t
	}
	return fmt.Sprintf("URL: %s\nStatus: %s\nContent-Type: %s\nBytes: %d\n\n%s", r.URL, status, r.ContentType, r.Bytes, r.Text)
}

// SplitWeb separates the web tools' names from the others, keeping the order.
func SplitWeb(names []string) (others, web []string) {
	for _, n := range names {
		if slices.Contains(WebNames, strings.TrimSpace(n)) {
			web = append(web, strings.TrimSpace(n))
		} else {
			others = append(others, n)
		}
	}
	return others, web
}
