package gateway

import (
	"bufio"
	"bytes"
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
// injecting the provider key and counting the usage the provider reports.
func (s *Server) handleChat(w http.ResponseWriter, r *http.Request, id identity) {
	ctx := r.Context()
	body, err := decodeChatRequest(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeOpenAIError(w, http.StatusBadRequest, "decoding request body: "+err.Error(), "invalid_request_error", "")
		return
	}
	sess, ok := admittedSession(ctx)
	if !ok {
		writeOpenAIError(w, http.StatusInternalServerError, "the request was not admitted", "server_error", "")
		return
	}
	ss, err := s.session(ctx, id)
	if err != nil {
		writeOpenAIError(w, http.StatusServiceUnavailable, "loading session state: "+err.Error(), "server_error", "")
		return
	}
	// What other replicas charged and wrote counts against the budgets here too.
	ss.mu.Lock()
	ss.observeStored(sess.Status.Usage)
	ss.mu.Unlock()
	if err := s.writeOverdueCharges(ctx, ss); err != nil {
		writeOpenAIError(w, http.StatusServiceUnavailable, err.Error(), "server_error", "")
		return
	}
	providerName := sess.Spec.Model.Provider
	if providerName == "" {
		providerName = "default"
	}
	prov := &v1.ModelProvider{}
	if err := s.client.Get(ctx, types.NamespacedName{Name: providerName}, prov); err != nil {
		writeOpenAIError(w, http.StatusNotFound, fmt.Sprintf("ModelProvider %q: %v", providerName, client.IgnoreNotFound(err)), "invalid_request_error", "model_not_found")
		return
	}
	model := body.text("model")
	switch {
	case sess.Spec.Model.Name != "":
		if model != sess.Spec.Model.Name {
			writeOpenAIError(w, http.StatusBadRequest, fmt.Sprintf("model %q is not this session's model %q", model, sess.Spec.Model.Name), "invalid_request_error", "model_not_found")
			return
		}
	case sess.Status.Resolved != nil && sess.Status.Resolved.Model != "":
		// The session left the model to the provider; the runner does not know which it is.
		model = sess.Status.Resolved.Model
	case prov.Spec.DefaultModel != "":
		model = prov.Spec.DefaultModel
	}
	body.set("model", model)
	if len(prov.Spec.Models) > 0 && !slices.Contains(prov.Spec.Models, model) {
		writeOpenAIError(w, http.StatusBadRequest, fmt.Sprintf("model %q is not offered by ModelProvider %s", model, providerName), "invalid_request_error", "model_not_found")
		return
	}
	key, err := s.providerKey(ctx, prov)
	if err != nil {
		writeOpenAIError(w, http.StatusServiceUnavailable, err.Error(), "server_error", "")
		return
	}
	prompt, output, err := boundRequest(sess, body)
	if err != nil {
		writeOpenAIError(w, http.StatusBadRequest, err.Error(), "invalid_request_error", "")
		return
	}
	res, msg, err := s.reserve(ctx, sess, ss, prompt, output)
	if err != nil {
		writeOpenAIError(w, http.StatusServiceUnavailable, "checking token budgets: "+err.Error(), "server_error", "")
		return
	} else if msg != "" {
		llmErrors.WithLabelValues(providerName, "budget").Inc()
		writeOpenAIError(w, http.StatusTooManyRequests, msg, "insufficient_quota", contract.ErrorCodeBudgetExceeded)
		return
	}
	// Whatever happens below, the reservation is settled once: released when
	// the provider was not reached or refused, else charged.
	var usage *contract.Usage
	charge, admitted := false, false
	defer func() {
		c := res.settle(usage, charge)
		if admitted {
			s.limiter(providerName).adjust(prov.Spec.RateLimits, res.amount(), c.Total())
		}
		if c.Total() > 0 {
			ns := id.Session.Namespace
			llmTokens.WithLabelValues(ns, "prompt").Add(float64(c.PromptTokens))
			llmTokens.WithLabelValues(ns, "completion").Add(float64(c.CompletionTokens))
			llmTokens.WithLabelValues(ns, "cached").Add(float64(c.CachedTokens))
		}
		if usage == nil && charge {
			log.FromContext(ctx).Info("Provider reported no usage; charging the call's reservation", "AgentSession", id.Session, "ModelProvider", providerName, "tokens", c.Total())
		}
	}()
	// Last before the provider: every refusal above answers at once; the reservation is
	// released if the wait ends in a 503.
	if err := s.awaitAgentPhase(ctx, id); err != nil {
		w.Header().Set("Retry-After", "1")
		writeOpenAIError(w, http.StatusServiceUnavailable, err.Error(), "server_error", "")
		return
	}
	if wait, ok := s.limiter(providerName).admit(prov.Spec.RateLimits, s.now(), res.amount()); !ok {
		llmErrors.WithLabelValues(providerName, "rate_limit").Inc()
		w.Header().Set("Retry-After", strconv.FormatInt(retryAfterSeconds(wait), 10))
		writeOpenAIError(w, http.StatusTooManyRequests, fmt.Sprintf("ModelProvider %s is at its spec.rateLimits; retry after %ds", providerName, retryAfterSeconds(wait)), "rate_limit_error", "rate_limit_exceeded")
		return
	}
	admitted = true
	setOutput(body, res.output)
	if body.flag("stream") {
		// Trusted accounting needs the provider's usage, also on streams.
		body.includeUsage()
	}
	out := body.encode()
	// The upstream call outlives the client: a client that hangs up is still
	// charged what the provider reports, read for up to drainTimeout more.
	upCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.UpstreamTimeout)
	defer cancel()
	stopDrain := context.AfterFunc(ctx, func() { time.AfterFunc(drainTimeout, cancel) })
	defer stopDrain()
	req, err := http.NewRequestWithContext(upCtx, http.MethodPost, strings.TrimSuffix(prov.Spec.BaseURL, "/")+"/chat/completions", bytes.NewReader(out))
	if err != nil {
		writeOpenAIError(w, http.StatusInternalServerError, err.Error(), "server_error", "")
		return
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	start := s.now()
	resp, err := s.http.Do(req)
	if err != nil {
		// A timed-out call may have been worked on in full.
		charge = errors.Is(err, context.DeadlineExceeded)
		llmErrors.WithLabelValues(providerName, "transport").Inc()
		llmDuration.WithLabelValues(providerName, model, "0").Observe(s.now().Sub(start).Seconds())
		writeOpenAIError(w, http.StatusBadGateway, "reaching the model provider failed", "server_error", "")
		return
	}
	defer resp.Body.Close()
	defer func() {
		llmDuration.WithLabelValues(providerName, model, strconv.Itoa(resp.StatusCode)).Observe(s.now().Sub(start).Seconds())
	}()
	if resp.StatusCode >= 300 {
		llmErrors.WithLabelValues(providerName, strconv.Itoa(resp.StatusCode)).Inc()
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		// The provider's message may quote part of the key; the runner gets ours.
		writeOpenAIError(w, http.StatusBadGateway, fmt.Sprintf("ModelProvider %s refused the gateway's credentials (%d)", providerName, resp.StatusCode), "server_error", "provider_auth")
		return
	}
	for _, h := range []string{"Content-Type", "Retry-After", "X-Request-Id", "Openai-Processing-Ms"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	charge = resp.StatusCode < 300
	if resp.StatusCode < 300 && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		usage = relayStreamUntilEnd(ctx, w, resp.Body)
	} else {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		_, _ = w.Write(b)
		if resp.StatusCode < 300 {
			usage = usageFromJSON(b)
		}
	}
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
	out := &contract.Usage{PromptTokens: u.Usage.PromptTokens, CompletionTokens: u.Usage.CompletionTokens}
	if d := u.Usage.PromptTokensDetails; d != nil {
		out.CachedTokens = d.CachedTokens
	}
	return out
}

// relayStream copies SSE lines as they come, flushing each event, and picks
// the usage out of the chunk that carries it. When the client is gone it keeps
// reading to the end (the caller bounds how long), so the usage still arrives.
func relayStream(w http.ResponseWriter, body io.Reader) *contract.Usage {
	return relayStreamUntilEnd(context.Background(), w, body)
}

// relayStreamUntilEnd is relayStream that stops writing once ctx (the
// client's request) is done.
func relayStreamUntilEnd(ctx context.Context, w http.ResponseWriter, body io.Reader) *contract.Usage {
	fl, _ := w.(http.Flusher)
	rd := bufio.NewReaderSize(body, 64<<10)
	var usage *contract.Usage
	gone := false
	for {
		line, err := rd.ReadBytes('\n')
		gone = gone || ctx.Err() != nil
		if len(line) > 0 {
			if !gone {
				if _, werr := w.Write(line); werr != nil {
					gone = true
				}
			}
			if data, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("data:")); ok {
				if u := usageFromJSON(bytes.TrimSpace(data)); u != nil {
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
