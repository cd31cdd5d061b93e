// Package gatewayclient is how the runner calls the session gateway: one base URL, one
// transport that trusts only the CA bundle the controller mounts (see gatewaytls), and the
// pod's projected token, read again for every request because the kubelet rotates it.
// The approval asker, the transcript sink, the MCP and web tools, the continuation fetch
// and the model client (when the model endpoint is the gateway) all go through it.
package gatewayclient

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/agentry-dev/agentry/runner/gatewaytls"
)

// Client sends authenticated requests to the gateway. It is safe for concurrent use.
type Client struct {
	base      string
	tokenFile string
	transport http.RoundTripper
	http      *http.Client
}

// New returns a client of the gateway at base whose requests carry the bearer token in
// tokenFile. With caFile, the gateway must present a certificate from that bundle only
// (re-read for every new connection); without, the default transport is used (tests, and
// plain HTTP where the namespace allows it). A bundle without a certificate is an error now,
// so a broken mount fails at start-up.
func New(base, tokenFile, caFile string) (*Client, error) {
	tr := http.DefaultTransport
	if caFile != "" {
		t, err := gatewaytls.Transport(caFile)
		if err != nil {
			return nil, err
		}
		tr = t
	}
	return &Client{base: strings.TrimSuffix(base, "/"), tokenFile: tokenFile, transport: tr, http: &http.Client{Transport: tr}}, nil
}

// URL is the gateway's root, without a trailing slash.
func (c *Client) URL() string { return c.base }

// Transport is the connection to the gateway without the token: a model endpoint on the
// gateway's host trusts the same bundle and sets its own Authorization header.
func (c *Client) Transport() http.RoundTripper { return c.transport }

// NewRequest returns a request for path below the gateway's root carrying the current
// token; a body is sent as JSON.
func (c *Client) NewRequest(ctx context.Context, method, path string, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if err := SetToken(req, c.tokenFile); err != nil {
		return nil, fmt.Errorf("reading the gateway token: %w", err)
	}
	return req, nil
}

// Do sends an authenticated request for path; the caller closes the response body. Bound it
// with ctx: the client itself has no timeout, since an approval long-polls.
func (c *Client) Do(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	req, err := c.NewRequest(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	return c.Send(req)
}

// Send sends a request made by NewRequest, for callers that tell a token they cannot read
// from a gateway they cannot reach.
func (c *Client) Send(req *http.Request) (*http.Response, error) { return c.http.Do(req) }

// SetToken reads the bearer token in file and sets it as req's Authorization header. The
// file is read for every request: a projected ServiceAccount token is replaced on disk
// before it expires, and a cached copy would stop working an hour into a session.
func SetToken(req *http.Request, file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(b)))
	return nil
}
