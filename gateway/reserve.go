package gateway

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
)

// DefaultMaxOutputTokens caps max_tokens for a session whose
// spec.model.maxOutputTokens is unset: every call's output is bounded, so its
// reservation is.
const DefaultMaxOutputTokens = 8192

// drainTimeout bounds how long the proxy keeps reading a stream whose client
// has gone, so the provider's usage chunk still arrives and is charged.
const drainTimeout = 30 * time.Second

// ledger is one replica's outstanding token reservations: tokens promised to
// calls in flight, counted against the budgets until the call settles.
type ledger struct {
	mu        sync.Mutex
	session   map[types.UID]int64
	namespace map[string]int64

	// policy status writes, coalesced per namespace
	polMu     sync.Mutex
	polTimer  map[string]*time.Timer
	polLast   map[string]time.Time
	providers map[string]*providerLimiter
}

func newLedger() *ledger {
	return &ledger{
		session: map[types.UID]int64{}, namespace: map[string]int64{},
		polTimer: map[string]*time.Timer{}, polLast: map[string]time.Time{},
		providers: map[string]*providerLimiter{},
	}
}

func (s *Server) ledger() *ledger { return s.reservations }

// reservation is the bound of one call, held against the budgets from before
// the call is forwarded until settle.
type reservation struct {
	s       *Server
	ss      *session
	ns      string
	prompt  int64 // the prompt estimate
	output  int64 // max_tokens as forwarded
	settled bool
}

func (r *reservation) amount() int64 { return r.prompt + r.output }

// estimatePrompt bounds the prompt's tokens from the request body: about four
// bytes per token over everything the provider tokenises as input.
func estimatePrompt(body chatRequest) int64 {
	n := body.size("messages", "tools", "functions", "tool_choice", "response_format")
	return int64(n+3)/4 + 1
}

// outputCap is the most a session may ask for in one response.
func outputCap(sess *v1.AgentSession) int64 {
	if m := sess.Spec.Model.MaxOutputTokens; m != nil && *m > 0 {
		return int64(*m)
	}
	return DefaultMaxOutputTokens
}

// requestedOutput reads max_tokens / max_completion_tokens (the smaller if both).
func requestedOutput(body chatRequest) (int64, bool, error) {
	var out int64 = math.MaxInt64
	found := false
	for _, k := range []string{"max_tokens", "max_completion_tokens"} {
		if !body.present(k) {
			continue
		}
		f, ok := body.number(k)
		if !ok || f < 1 || f != math.Trunc(f) {
			return 0, false, fmt.Errorf("%s must be a positive integer", k)
		}
		found = true
		out = min(out, int64(min(f, math.MaxInt32)))
	}
	return out, found, nil
}

// boundRequest refuses n > 1 and returns the prompt estimate and the most
// output the call may ask for, before the budgets are consulted.
func boundRequest(sess *v1.AgentSession, body chatRequest) (prompt, output int64, err error) {
	if body.present("n") {
		if f, ok := body.number("n"); !ok || f != 1 {
			return 0, 0, fmt.Errorf("n must be 1: the gateway budgets one choice per call")
		}
	}
	if err := body.textOnly(); err != nil {
		return 0, 0, err
	}
	req, found, err := requestedOutput(body)
	if err != nil {
		return 0, 0, err
	}
	output = outputCap(sess)
	if found {
		output = min(output, req)
	}
	return estimatePrompt(body), output, nil
}

// setOutput writes the clamped output bound into the forwarded body, in the
// field the client used (max_completion_tokens, as the runner sends it, when
// it used none).
func setOutput(body chatRequest, output int64) {
	set := false
	for _, k := range []string{"max_tokens", "max_completion_tokens"} {
		if body.present(k) {
			body.set(k, output)
			set = true
		}
	}
	if !set {
		body.set("max_completion_tokens", output)
	}
}

// reserve holds prompt + output tokens against the session's
// spec.limits.maxTokens and every AgentPolicy tokenBudget of its namespace,
// lowering output to what remains. It returns why the call is refused ("")
// when not even the prompt fits. Check and hold are one step under the
// ledger's lock, so concurrent calls on this replica cannot together pass a
// budget by more than the provider's usage exceeds a reservation.
func (s *Server) reserve(ctx context.Context, sess *v1.AgentSession, ss *session, prompt, output int64) (*reservation, string, error) {
	if err := s.refreshUsage(ctx, sess.Namespace); err != nil {
		return nil, "", err
	}
	l := s.ledger()
	l.mu.Lock()
	defer l.mu.Unlock()
	ss.mu.Lock()
	used := ss.tokens().Total() + l.session[ss.id.UID]
	ss.mu.Unlock()
	if maxT := sess.Spec.Limits.MaxTokens; maxT > 0 {
		if left := maxT - used; left <= prompt {
			return nil, fmt.Sprintf("session %s has used or reserved %d of its %d tokens (spec.limits.maxTokens); this call needs about %d for its prompt", sess.Name, used, maxT, prompt), nil
		} else {
			output = min(output, left-prompt)
		}
	}
	var refused string
	s.usage.check(sess.Namespace, s.now(), func(budgets []budgetUse) {
		for _, b := range budgets {
			nsUsed := b.used + l.namespace[sess.Namespace]
			left := b.tokens - nsUsed
			if left <= prompt {
				refused = fmt.Sprintf("namespace %s has used or reserved %d of its %d-token budget for this %s window (AgentPolicy %s)", sess.Namespace, nsUsed, b.tokens, b.window, b.name)
				return
			}
			output = min(output, left-prompt)
		}
	})
	if refused != "" {
		return nil, refused, nil
	}
	r := &reservation{s: s, ss: ss, ns: sess.Namespace, prompt: prompt, output: output}
	l.session[ss.id.UID] += r.amount()
	l.namespace[r.ns] += r.amount()
	return r, "", nil
}

// settle releases the reservation and charges the provider's usage, or, when
// the provider reported none for a call it answered (an aborted stream), the
// whole reservation. charge=false releases without charging (the provider
// refused the call or was never reached).
func (r *reservation) settle(usage *contract.Usage, charge bool) contract.Usage {
	if r == nil || r.settled {
		return contract.Usage{}
	}
	r.settled = true
	l := r.s.ledger()
	var charged contract.Usage
	switch {
	case usage != nil:
		charged = *usage
	case charge:
		charged = contract.Usage{PromptTokens: r.prompt, CompletionTokens: r.output}
	}
	l.mu.Lock()
	if l.session[r.ss.id.UID] -= r.amount(); l.session[r.ss.id.UID] <= 0 {
		delete(l.session, r.ss.id.UID)
	}
	if l.namespace[r.ns] -= r.amount(); l.namespace[r.ns] <= 0 {
		delete(l.namespace, r.ns)
	}
	if charged.Total() > 0 {
		r.ss.mu.Lock()
		r.ss.addTokens(charged)
		r.s.changed(r.ss)
		total := r.ss.tokens().Total()
		r.ss.mu.Unlock()
		r.s.usage.countedLocally(r.ns, r.ss.id.UID, total)
	}
	l.mu.Unlock()
	if charged.Total() > 0 {
		r.s.policyChanged(r.ns)
	}
	return charged
}

func budgetWindow(b *v1.TokenBudget) time.Duration {
	if b.Window != nil && b.Window.Duration > 0 {
		return b.Window.Duration
	}
	return 24 * time.Hour
}
