package gateway

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
)

// handleChat proxies one chat-completions call to the session's provider,
// injecting the provider key and counting the usage the provider reports. Every
// refusal comes before the provider is reached; the reservation taken on the way
// is settled once, whatever happens after it.
func (s *Server) handleChat(w http.ResponseWriter, r *http.Request, id identity) {
	ctx := r.Context()
	c, ok := s.prepareChat(w, r, id)
	if !ok {
		return
	}
	if !s.reserveChat(ctx, w, c) {
		return
	}
	defer s.settleChat(ctx, c)
	if !s.admitChat(ctx, w, c) {
		return
	}
	s.forwardChat(ctx, w, c)
}

// chatCall is one proxied model call as handleChat takes it through its steps.
type chatCall struct {
	id       identity
	sess     *v1.AgentSession
	ss       *session
	prov     *v1.ModelProvider
	provider string // the ModelProvider's name
	model    string
	key      string
	body     chatRequest
	res      *reservation
	// admitted: the provider's rate limiter let the call through; usage and charge say
	// what the provider reported and whether the call is charged without it.
	admitted bool
	usage    *contract.Usage
	charge   bool
}

// prepareChat reads the request and everything the call needs: the session and its
// state, the provider, the model and the key.
func (s *Server) prepareChat(w http.ResponseWriter, r *http.Request, id identity) (*chatCall, bool) {
	ctx := r.Context()
	body, err := decodeChatRequest(http.MaxBytesReader(w, r.Body, MaxRequestBody))
	if err != nil {
		if isBodyTooLarge(err) { // a chunked body announces no length: found while reading
			refusedTotal.WithLabelValues(refusedBodyTooLarge).Inc()
			writeOpenAIError(w, http.StatusRequestEntityTooLarge, tooLargeMessage("chat", MaxRequestBody), "invalid_request_error", "")
			return nil, false
		}
		writeOpenAIError(w, http.StatusBadRequest, "decoding request body: "+err.Error(), "invalid_request_error", "")
		return nil, false
	}
	sess, ok := admittedSession(ctx)
	if !ok {
		writeOpenAIError(w, http.StatusInternalServerError, "the request was not admitted", "server_error", "")
		return nil, false
	}
	ss, err := s.session(ctx, id)
	if err != nil {
		writeOpenAIError(w, http.StatusServiceUnavailable, "loading session state: "+err.Error(), "server_error", "")
		return nil, false
	}
	// What other replicas charged and wrote counts against the budgets here too.
	ss.mu.Lock()
	ss.observeStored(sess.Status.Usage)
	ss.mu.Unlock()
	if err := s.writeOverdueCharges(ctx, ss); err != nil {
		writeOpenAIError(w, http.StatusServiceUnavailable, err.Error(), "server_error", "")
		return nil, false
	}
	c := &chatCall{id: id, sess: sess, ss: ss, body: body, provider: cmp.Or(sess.Spec.Model.Provider, "default"), prov: &v1.ModelProvider{}}
	if err := s.client.Get(ctx, types.NamespacedName{Name: c.provider}, c.prov); err != nil {
		writeOpenAIError(w, http.StatusNotFound, fmt.Sprintf("ModelProvider %q: %v", c.provider, client.IgnoreNotFound(err)), "invalid_request_error", "model_not_found")
		return nil, false
	}
	if c.model, err = chatModel(sess, c.prov, body.text("model")); err != nil {
		writeOpenAIError(w, http.StatusBadRequest, err.Error(), "invalid_request_error", "model_not_found")
		return nil, false
	}
	body.set("model", c.model)
	if c.key, err = s.providerKey(ctx, c.prov); err != nil {
		writeOpenAIError(w, http.StatusServiceUnavailable, err.Error(), "server_error", "")
		return nil, false
	}
	return c, true
}

// chatModel is the model the call goes to: the session's, else the one it was resolved
// to, else the provider's default; it must be one the provider offers.
func chatModel(sess *v1.AgentSession, prov *v1.ModelProvider, asked string) (string, error) {
	model := asked
	switch {
	case sess.Spec.Model.Name != "":
		if model != sess.Spec.Model.Name {
			return "", fmt.Errorf("model %q is not this session's model %q", model, sess.Spec.Model.Name)
		}
	case sess.Status.Resolved != nil && sess.Status.Resolved.Model != "":
		// The session left the model to the provider; the runner does not know which it is.
		model = sess.Status.Resolved.Model
	case prov.Spec.DefaultModel != "":
		model = prov.Spec.DefaultModel
	}
	if len(prov.Spec.Models) > 0 && !slices.Contains(prov.Spec.Models, model) {
		return "", fmt.Errorf("model %q is not offered by ModelProvider %s", model, prov.Name)
	}
	return model, nil
}

// reserveChat bounds the call and holds its tokens against the session's and the
// namespace's budgets.
func (s *Server) reserveChat(ctx context.Context, w http.ResponseWriter, c *chatCall) bool {
	prompt, output, err := boundRequest(c.sess, c.body)
	if err != nil {
		writeOpenAIError(w, http.StatusBadRequest, err.Error(), "invalid_request_error", "")
		return false
	}
	res, msg, err := s.reserve(ctx, c.sess, c.ss, prompt, output)
	switch {
	case err != nil:
		writeOpenAIError(w, http.StatusServiceUnavailable, "checking token budgets: "+err.Error(), "server_error", "")
		return false
	case msg != "":
		llmErrors.WithLabelValues(c.provider, "budget").Inc()
		writeOpenAIError(w, http.StatusTooManyRequests, msg, "insufficient_quota", contract.ErrorCodeBudgetExceeded)
		return false
	}
	c.res = res
	return true
}

// settleChat settles the reservation once: released when the provider was not reached
// or refused, else charged what it reported (or the whole reservation without a report).
func (s *Server) settleChat(ctx context.Context, c *chatCall) {
	if c.res.settled { // settled before the answer's end (relayAnswer); the deferred call is a no-op
		return
	}
	charged := c.res.settle(c.usage, c.charge)
	if c.admitted {
		s.limiter(c.provider).adjust(c.prov.Spec.RateLimits, c.res.amount(), charged.Total())
	}
	if charged.Total() > 0 {
		ns := c.id.Session.Namespace
		llmTokens.WithLabelValues(ns, "prompt").Add(float64(charged.PromptTokens))
		llmTokens.WithLabelValues(ns, "completion").Add(float64(charged.CompletionTokens))
		llmTokens.WithLabelValues(ns, "cached").Add(float64(charged.CachedTokens))
	}
	if c.usage == nil && c.charge {
		log.FromContext(ctx).Info("Provider reported no usage; charging the call's reservation", "AgentSession", c.id.Session, "ModelProvider", c.provider, "tokens", charged.Total())
	}
}

// admitChat waits for the agent phase's network policy and takes the provider's rate
// limit, last before the provider: every refusal above answers at once.
func (s *Server) admitChat(ctx context.Context, w http.ResponseWriter, c *chatCall) bool {
	if err := s.awaitAgentPhase(ctx, c.id); err != nil {
		w.Header().Set("Retry-After", "1")
		writeOpenAIError(w, http.StatusServiceUnavailable, err.Error(), "server_error", "")
		return false
	}
	if wait, ok := s.limiter(c.provider).admit(c.prov.Spec.RateLimits, s.now(), c.res.amount()); !ok {
		llmErrors.WithLabelValues(c.provider, "rate_limit").Inc()
		w.Header().Set("Retry-After", strconv.FormatInt(retryAfterSeconds(wait), 10))
		writeOpenAIError(w, http.StatusTooManyRequests, fmt.Sprintf("ModelProvider %s is at its spec.rateLimits; retry after %ds", c.provider, retryAfterSeconds(wait)), "rate_limit_error", "rate_limit_exceeded")
		return false
	}
	c.admitted = true
	return true
}

// forwardChat sends the call to the provider with the key and relays the answer,
// recording the usage the provider reports and whether the call is charged.
func (s *Server) forwardChat(ctx context.Context, w http.ResponseWriter, c *chatCall) {
	setOutput(c.body, c.res.output)
	if c.body.flag("stream") {
		// Trusted accounting needs the provider's usage, also on streams.
		c.body.includeUsage()
	}
	// The upstream call outlives the client: a client that hangs up is still
	// charged what the provider reports, read for up to drainTimeout more.
	upCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.UpstreamTimeout)
	defer cancel()
	stopDrain := context.AfterFunc(ctx, func() { time.AfterFunc(drainTimeout, cancel) })
	defer stopDrain()
	req, err := http.NewRequestWithContext(upCtx, http.MethodPost, strings.TrimSuffix(c.prov.Spec.BaseURL, "/")+"/chat/completions", bytes.NewReader(c.body.encode()))
	if err != nil {
		writeOpenAIError(w, http.StatusInternalServerError, err.Error(), "server_error", "")
		return
	}
	req.Header.Set("Content-Type", "application/json")
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	start := s.now()
	resp, err := s.http.Do(req)
	if err != nil {
		// A timed-out call may have been worked on in full.
		c.charge = errors.Is(err, context.DeadlineExceeded)
		llmErrors.WithLabelValues(c.provider, "transport").Inc()
		llmDuration.WithLabelValues(c.provider, c.model, "0").Observe(s.now().Sub(start).Seconds())
		writeOpenAIError(w, http.StatusBadGateway, "reaching the model provider failed", "server_error", "")
		return
	}
	defer resp.Body.Close()
	defer func() {
		llmDuration.WithLabelValues(c.provider, c.model, strconv.Itoa(resp.StatusCode)).Observe(s.now().Sub(start).Seconds())
	}()
	s.relayAnswer(ctx, w, c, resp)
}

// relayAnswer copies the provider's answer to the runner, never its complaint about the
// key, and takes the usage out of it.
func (s *Server) relayAnswer(ctx context.Context, w http.ResponseWriter, c *chatCall, resp *http.Response) {
	if resp.StatusCode >= 300 {
		llmErrors.WithLabelValues(c.provider, strconv.Itoa(resp.StatusCode)).Inc()
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		// The provider's message may quote part of the key; the runner gets ours.
		writeOpenAIError(w, http.StatusBadGateway, fmt.Sprintf("ModelProvider %s refused the gateway's credentials (%d)", c.provider, resp.StatusCode), "server_error", "provider_auth")
		return
	}
	for _, h := range []string{"Content-Type", "Retry-After", "X-Request-Id", "Openai-Processing-Ms"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	c.charge = resp.StatusCode < 300
	// The call is settled before the runner can have the whole answer: a runner sends its
	// next call as soon as it has this one's, and that call must find this one charged,
	// not still holding its reservation (which may be all the budget left).
	if resp.StatusCode < 300 && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		c.usage = relayStreamUntilEnd(ctx, w, resp.Body, func(u *contract.Usage) {
			c.usage = u
			s.settleChat(ctx, c)
		})
		return
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, MaxRequestBody))
	if resp.StatusCode < 300 {
		c.usage = usageFromJSON(b)
	}
	s.settleChat(ctx, c)
	_, _ = w.Write(b)
}

type usageJSON struct {
	Usage *struct {
		PromptTokens        int64 `json:"prompt_tokens"`
		CompletionTokens    int64 `json:"completion_tokens"`
		PromptTokensDetails *struct {
			CachedTokens int64 `json:"cached_tokens"`
		} `json:"prompt_tokens_details"`
	} `json:"usage"`
}

func usageFromJSON(b []byte) *contract.Usage {
	var u usageJSON
	if json.Unmarshal(b, &u) != nil || u.Usage == nil {
		return nil
	}
	out := contract.Usage{PromptTokens: u.Usage.PromptTokens, CompletionTokens: u.Usage.CompletionTokens}
	if d := u.Usage.PromptTokensDetails; d != nil {
		out.CachedTokens = d.CachedTokens
	}
	out = out.Bounded()
	return &out
}

// relayStream copies SSE lines as they come, flushing each event, and picks
// the usage out of the chunk that carries it. When the client is gone it keeps
// reading to the end (the caller bounds how long), so the usage still arrives.
func relayStream(w http.ResponseWriter, body io.Reader) *contract.Usage {
	return relayStreamUntilEnd(context.Background(), w, body, nil)
}

// relayStreamUntilEnd is relayStream that stops writing once ctx (the
// client's request) is done, and calls beforeDone (when not nil) with the usage
// seen so far just before it relays the stream's "data: [DONE]".
func relayStreamUntilEnd(ctx context.Context, w http.ResponseWriter, body io.Reader, beforeDone func(*contract.Usage)) *contract.Usage {
	fl, _ := w.(http.Flusher)
	rd := bufio.NewReaderSize(body, 64<<10)
	var usage *contract.Usage
	gone := false
	for {
		line, err := rd.ReadBytes('\n')
		gone = gone || ctx.Err() != nil
		if len(line) > 0 {
			data, isData := bytes.CutPrefix(bytes.TrimSpace(line), []byte("data:"))
			data = bytes.TrimSpace(data)
			if isData && beforeDone != nil && string(data) == "[DONE]" {
				beforeDone(usage)
				beforeDone = nil
			}
			if !gone {
				if _, werr := w.Write(line); werr != nil {
					gone = true
				}
			}
			if isData {
				if u := usageFromJSON(data); u != nil {
					usage = u
				}
			}
			if len(bytes.TrimSpace(line)) == 0 && fl != nil && !gone {
				fl.Flush()
			}
		}
		if err != nil {
			if fl != nil && !gone {
				fl.Flush()
			}
			return usage
		}
	}
}

func writeOpenAIError(w http.ResponseWriter, status int, msg, typ, code string) {
	var c any
	if code != "" {
		c = code
	}
	writeJSON(w, status, map[string]any{"error": map[string]any{"message": msg, "type": typ, "code": c, "param": nil}})
}

// providerKey reads the provider's API key from its Secret in the operator's
// namespace. An empty key is allowed for providers without authentication.
func (s *Server) providerKey(ctx context.Context, p *v1.ModelProvider) (string, error) {
	ref := p.Spec.APIKeySecretRef
	if ref == nil {
		return "", nil
	}
	data, err := s.keys.get(ctx, types.NamespacedName{Namespace: s.cfg.OperatorNamespace, Name: ref.Name})
	if err != nil {
		return "", fmt.Errorf("reading the key Secret of ModelProvider %s: %w", p.Name, err)
	}
	k := ref.Key
	if k == "" {
		k = "apiKey"
	}
	v, ok := data[k]
	if !ok {
		return "", fmt.Errorf("secret %s/%s of ModelProvider %s has no key %q", s.cfg.OperatorNamespace, ref.Name, p.Name, k)
	}
	return strings.TrimSpace(string(v)), nil
}
