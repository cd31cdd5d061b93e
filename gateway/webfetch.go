package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/idna"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/display"
	"github.com/agentry-dev/agentry/runner/transcript"
)

// The web tools run here, in the gateway, not in the runner pod: the pod has
// no egress beyond the gateway, and the gateway decides which hosts may be
// reached (the namespace's AgentPolicies), resolves them itself and refuses
// internal addresses, so a model cannot use web_fetch to reach the cluster's
// services or the cloud's metadata endpoint.
const (
	// maxWebBody is the most of a response body that is ever read.
	maxWebBody = 5 << 20
	// defaultWebMaxBytes caps the text returned when no policy sets maxBytes.
	defaultWebMaxBytes = 100000
	// webTimeout bounds one fetch, redirects included.
	webTimeout = 20 * time.Second
	// maxWebRedirects is how many redirects web_fetch follows.
	maxWebRedirects = 5
	// maxWebURL and maxWebQuery bound what the model may send.
	maxWebURL   = 2048
	maxWebQuery = 1024
	// maxWebRequestBody bounds the request body of both endpoints.
	maxWebRequestBody = 16 << 10
)

const webUserAgent = "agentry-web-fetch/1"

// webRoutes registers the web tool endpoints.
func (s *Server) webRoutes(mux *http.ServeMux) {
	mux.Handle("POST "+contract.PathWebFetch, s.authenticated("web_fetch", s.handleWebFetch))
	mux.Handle("POST "+contract.PathWebSearch, s.authenticated("web_search", s.handleWebSearch))
}

// webError is a refusal or failure with the HTTP status to answer and the
// outcome label of agentry_gateway_web_requests_total.
type webError struct {
	status  int
	outcome string
	msg     string
}

func (e *webError) Error() string { return e.msg }

func webRefused(format string, a ...any) *webError {
	return &webError{http.StatusForbidden, "refused", fmt.Sprintf(format, a...)}
}

func webBadRequest(format string, a ...any) *webError {
	return &webError{http.StatusBadRequest, "bad_request", fmt.Sprintf(format, a...)}
}

func (s *Server) handleWebFetch(w http.ResponseWriter, r *http.Request, id identity) {
	var req contract.WebFetchRequest
	if !s.decodeWebRequest(w, r, "web_fetch", &req) {
		return
	}
	res, err := s.webFetch(r.Context(), id, req.URL)
	s.answerWeb(w, r, id, "web_fetch", req.URL, res, err)
}

func (s *Server) handleWebSearch(w http.ResponseWriter, r *http.Request, id identity) {
	var req contract.WebSearchRequest
	if !s.decodeWebRequest(w, r, "web_search", &req) {
		return
	}
	res, err := s.webSearch(r.Context(), id, req.Query)
	s.answerWeb(w, r, id, "web_search", req.Query, res, err)
}

func (s *Server) decodeWebRequest(w http.ResponseWriter, r *http.Request, tool string, v any) bool {
	if !decodeBody(w, r, tool, v) {
		webRequests.WithLabelValues(tool, "bad_request").Inc()
		return false
	}
	return true
}

// answerWeb records the call (log line and metric) and answers it. The text
// is redacted of the session's own token and well-known credential formats,
// as the runner's transcript would be.
func (s *Server) answerWeb(w http.ResponseWriter, r *http.Request, id identity, tool, asked string, res *contract.WebResult, err error) {
	logger := log.FromContext(r.Context()).WithValues("AgentSession", id.Session.String(), "tool", tool)
	redact := transcript.NewRedactor(bearer(r))
	if err != nil {
		we := &webError{}
		if !errors.As(err, &we) {
			we = &webError{http.StatusBadGateway, "error", err.Error()}
		}
		webRequests.WithLabelValues(tool, we.outcome).Inc()
		var rl *rateLimitError
		if errors.As(err, &rl) {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(rl.retryAfter.Seconds()))))
		}
		logger.Info("Refusing web request", "asked", display.Truncate(redact.String(asked), 300), "outcome", we.outcome, "reason", redact.String(we.msg))
		writeError(w, we.status, "%s: %s", tool, redact.String(we.msg))
		return
	}
	res.URL, res.Text = redact.String(res.URL), redact.String(res.Text)
	webRequests.WithLabelValues(tool, "ok").Inc()
	webBytes.WithLabelValues(tool).Add(float64(res.Bytes))
	logger.Info("Fetched web page", "url", display.Truncate(res.URL, 300), "status", res.Status, "contentType", res.ContentType, "bytes", res.Bytes, "truncated", res.Truncated)
	writeJSON(w, http.StatusOK, res)
}

// webFetch fetches rawURL for the session, within its namespace's policy.
func (s *Server) webFetch(ctx context.Context, id identity, rawURL string) (*contract.WebResult, error) {
	pol, err := s.webPolicyFor(ctx, id, v1.ToolWebFetch)
	if err != nil {
		return nil, err
	}
	u, err := checkFetchURL(rawURL, pol.domains)
	if err != nil {
		return nil, err
	}
	c := &http.Client{
		Transport: s.webTransport(false),
		CheckRedirect: func(next *http.Request, via []*http.Request) error {
			if len(via) > maxWebRedirects {
				return webRefused("%s redirects more than %d times", via[0].URL.Redacted(), maxWebRedirects)
			}
			// The same rules as the first URL: a redirect is the server's choice,
			// not the policy's.
			if _, err := checkFetchURL(next.URL.String(), pol.domains); err != nil {
				return webRefused("%s redirects to %s, which is refused: %v", via[len(via)-1].URL.Redacted(), next.URL.Redacted(), err)
			}
			return nil
		},
	}
	return s.webGet(ctx, c, u, pol.maxBytes)
}

// webSearch asks the policy's search endpoint. Its host is the platform's
// choice, so it need not be in allowedDomains and may be a cluster-internal
// address; never a link-local one.
func (s *Server) webSearch(ctx context.Context, id identity, query string) (*contract.WebResult, error) {
	pol, err := s.webPolicyFor(ctx, id, v1.ToolWebSearch)
	if err != nil {
		return nil, err
	}
	if pol.searchURL == "" {
		return nil, webRefused("no AgentPolicy of namespace %s sets spec.webFetch.searchURL, so web_search is not available", id.Session.Namespace)
	}
	query = strings.TrimSpace(query)
	if query == "" || len(query) > maxWebQuery {
		return nil, webBadRequest("query: want 1 to %d bytes of search terms", maxWebQuery)
	}
	u, err := url.Parse(pol.searchURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil || u.Host == "" {
		return nil, &webError{http.StatusInternalServerError, "error", fmt.Sprintf("spec.webFetch.searchURL %q of the namespace's AgentPolicy is not an http(s) URL without credentials", pol.searchURL)}
	}
	q := u.Query()
	q.Set("q", query)
	u.RawQuery = q.Encode()
	c := &http.Client{
		Transport: s.webTransport(true),
		// A redirect would lead away from the endpoint the platform chose.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return s.webGet(ctx, c, u, pol.maxBytes)
}

// webGet performs the GET and turns the answer into text.
func (s *Server) webGet(ctx context.Context, c *http.Client, u *url.URL, maxBytes int) (*contract.WebResult, error) {
	ctx, cancel := context.WithTimeout(ctx, webTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, webBadRequest("url: %v", err)
	}
	req.Header.Set("User-Agent", webUserAgent)
	req.Header.Set("Accept", "text/html, text/markdown, text/plain, application/json;q=0.9, */*;q=0.1")
	resp, err := c.Do(req)
	if err != nil {
		return nil, fetchError(u, err)
	}
	defer resp.Body.Close()
	final := resp.Request.URL
	mediaType, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mediaType != "" && textKind(mediaType) == kindOther {
		return nil, &webError{http.StatusUnsupportedMediaType, "unsupported_type",
			fmt.Sprintf("%s answered with content type %q: only HTML, plain text, Markdown and JSON can be read", final.Redacted(), mediaType)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxWebBody))
	if err != nil {
		return nil, fetchError(final, err)
	}
	if mediaType == "" {
		mediaType, params, _ = mime.ParseMediaType(http.DetectContentType(body))
		if textKind(mediaType) == kindOther {
			return nil, &webError{http.StatusUnsupportedMediaType, "unsupported_type",
				fmt.Sprintf("%s declared no content type and its body looks like %q: only HTML, plain text, Markdown and JSON can be read", final.Redacted(), mediaType)}
		}
	}
	text := pageText(body, mediaType, params["charset"], final)
	res := &contract.WebResult{URL: final.String(), Status: resp.StatusCode, ContentType: mediaType, Bytes: int64(len(body))}
	res.Text, res.Truncated = capText(text, maxBytes, len(body) == maxWebBody)
	return res, nil
}

// capText cuts text at max bytes (on a character boundary) and says so at the
// end, so the model knows it did not see everything.
func capText(text string, max int, bodyCut bool) (string, bool) {
	switch {
	case len(text) > max:
		return display.Truncate(text, max) + fmt.Sprintf("\n\n[truncated: the page's text is %d bytes; only the first %d are shown]", len(text), max), true
	case bodyCut:
		return text + fmt.Sprintf("\n\n[truncated: only the first %d bytes of the page were read]", maxWebBody), true
	}
	return text, false
}

// fetchError explains a failed request; a refusal from the dialer or the
// redirect check keeps its own message.
func fetchError(u *url.URL, err error) error {
	var we *webError
	if errors.As(err, &we) {
		return we
	}
	var be *blockedAddressError
	if errors.As(err, &be) {
		return webRefused("%v", be)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &webError{http.StatusGatewayTimeout, "timeout", fmt.Sprintf("fetching %s took longer than %s", u.Redacted(), webTimeout)}
	}
	return &webError{http.StatusBadGateway, "error", fmt.Sprintf("fetching %s: %v", u.Redacted(), unwrapURLError(err))}
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// webPolicy is the union of the namespace's AgentPolicies' spec.webFetch.
type webPolicy struct {
	domains   []domainRule
	searchURL string
	maxBytes  int
}

// webPolicyFor checks that the session lists the tool and returns the
// namespace's web policy.
func (s *Server) webPolicyFor(ctx context.Context, id identity, tool v1.ToolName) (webPolicy, error) {
	sess := &v1.AgentSession{}
	if err := s.auth.get(ctx, id.Session, sess); err != nil {
		return webPolicy{}, fmt.Errorf("reading session %s: %w", id.Session, err)
	}
	if !slices.Contains(sess.Spec.Tools, tool) {
		return webPolicy{}, webRefused("session %s does not list %s in spec.tools", id.Session.Name, tool)
	}
	if wait, ok := webLimits.take(id.UID, s.now()); !ok {
		return webPolicy{}, webRateLimited(wait)
	}
	var list v1.AgentPolicyList
	if err := s.client.List(ctx, &list, client.InNamespace(id.Session.Namespace)); err != nil {
		return webPolicy{}, fmt.Errorf("listing the AgentPolicies of namespace %s: %w", id.Session.Namespace, err)
	}
	pol := unionWebPolicy(list.Items)
	if tool == v1.ToolWebFetch && len(pol.domains) == 0 {
		return webPolicy{}, webRefused("no AgentPolicy of namespace %s allows a domain in spec.webFetch.allowedDomains, so web_fetch is not available", id.Session.Namespace)
	}
	return pol, nil
}

// unionWebPolicy merges the policies: every allowed domain of any of them, the
// search URL of the first by name that sets one, and the smallest maxBytes.
func unionWebPolicy(policies []v1.AgentPolicy) webPolicy {
	policies = slices.Clone(policies)
	slices.SortFunc(policies, func(a, b v1.AgentPolicy) int { return strings.Compare(a.Name, b.Name) })
	pol := webPolicy{maxBytes: defaultWebMaxBytes}
	capped := false
	for _, p := range policies {
		wf := p.Spec.WebFetch
		if wf == nil {
			continue
		}
		for _, d := range wf.AllowedDomains {
			if rule, ok := parseDomainRule(d); ok {
				pol.domains = append(pol.domains, rule)
			}
		}
		if pol.searchURL == "" {
			pol.searchURL = wf.SearchURL
		}
		if wf.MaxBytes != nil && (!capped || int(*wf.MaxBytes) < pol.maxBytes) {
			pol.maxBytes, capped = int(*wf.MaxBytes), true
		}
	}
	return pol
}

// domainRule is one allowedDomains entry: a domain (ASCII, lower case, no
// trailing dot) and the port it allows, "" for the scheme's default port.
type domainRule struct {
	domain, port string
}

// parseDomainRule reads "example.com" or "example.com:8443". Entries that are
// not a host name (a URL, a wildcard, credentials) match nothing.
func parseDomainRule(entry string) (domainRule, bool) {
	entry = strings.TrimSpace(entry)
	host, port := entry, ""
	if h, p, err := net.SplitHostPort(entry); err == nil {
		host, port = h, p
	} else if strings.HasPrefix(entry, "[") && strings.HasSuffix(entry, "]") {
		host = entry[1 : len(entry)-1] // an IPv6 address without a port
	}
	if strings.ContainsAny(host, "/@*?#[] ") {
		return domainRule{}, false
	}
	d, err := normalHost(host)
	if err != nil || d == "" {
		return domainRule{}, false
	}
	return domainRule{domain: d, port: port}, true
}

// normalHost is the form hosts are compared in: IDNA (punycode) ASCII, lower
// case, without a trailing dot.
func normalHost(h string) (string, error) {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if _, err := netip.ParseAddr(h); err == nil {
		return h, nil
	}
	a, err := idna.Lookup.ToASCII(h)
	if err != nil {
		return "", err
	}
	return strings.ToLower(a), nil
}

// matches says whether host (normalised) and port ("" for the default) fall
// under the rule: the domain itself or a subdomain, at a label boundary.
func (r domainRule) matches(host, port string) bool {
	if r.port != port {
		return false
	}
	_, hostIsAddr := netip.ParseAddr(host)
	_, ruleIsAddr := netip.ParseAddr(r.domain)
	if hostIsAddr == nil || ruleIsAddr == nil {
		return host == r.domain // an address matches only itself, and has no subdomains
	}
	return host == r.domain || strings.HasSuffix(host, "."+r.domain)
}

// checkFetchURL parses a URL the model (or a redirect) gave and refuses what
// the policy does not allow. The returned URL has the normalised host.
func checkFetchURL(raw string, rules []domainRule) (*url.URL, error) {
	if raw == "" || len(raw) > maxWebURL {
		return nil, webBadRequest("url: want an http(s) URL of 1 to %d bytes", maxWebURL)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, webBadRequest("url: %v", unwrapURLError(err))
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, webBadRequest("url %q: only http and https URLs can be fetched", display.Truncate(raw, 200))
	}
	if u.User != nil {
		return nil, webRefused("url: URLs with credentials (user:password@host) are refused")
	}
	host, err := normalHost(u.Hostname())
	if err != nil || host == "" {
		return nil, webBadRequest("url %q: the host is not a valid domain name", display.Truncate(raw, 200))
	}
	port := u.Port()
	if port == defaultPort(u.Scheme) {
		port = ""
	}
	if !slices.ContainsFunc(rules, func(r domainRule) bool { return r.matches(host, port) }) {
		shown := host
		if port != "" {
			shown = net.JoinHostPort(host, port)
		}
		return nil, webRefused("%s is not within the domains the namespace's AgentPolicies allow in spec.webFetch.allowedDomains (%s)", shown, rulesText(rules))
	}
	u.Host = host
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
		u.Host = "[" + host + "]"
	}
	if port != "" {
		u.Host = net.JoinHostPort(host, port)
	}
	u.Fragment, u.RawFragment = "", ""
	return u, nil
}

func defaultPort(scheme string) string {
	if scheme == "https" {
		return "443"
	}
	return "80"
}

func rulesText(rules []domainRule) string {
	if len(rules) == 0 {
		return "none"
	}
	out := make([]string, 0, len(rules))
	for _, r := range rules {
		if r.port != "" {
			out = append(out, net.JoinHostPort(r.domain, r.port))
		} else {
			out = append(out, r.domain)
		}
	}
	if len(out) > 10 {
		out = append(out[:10], fmt.Sprintf("and %d more", len(out)-10))
	}
	return strings.Join(out, ", ")
}
