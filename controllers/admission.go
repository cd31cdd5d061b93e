package controllers

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

// admission is the decision on a session that has no pod yet.
type admission struct {
	// verdict is one of admit, wait, queue, reject.
	verdict verdict
	reason  string
	message string
	// model is the model name the session will use (the provider's default when the
	// session names none).
	model string
}

type verdict int

const (
	admit verdict = iota
	// wait: something the session needs does not exist yet (its ModelProvider); check again later.
	wait
	// queue: the namespace is at its concurrency limit.
	queue
	// reject: the spec can never run as written.
	reject
)

// admitSession decides whether a session may start, from its ModelProvider (nil when it
// does not exist), the AgentPolicies of its namespace, and the namespace's sessions. A pure
// function: the reconciler gathers the inputs, this decides.
func admitSession(s *v1.AgentSession, provider *v1.ModelProvider, policies []v1.AgentPolicy, siblings []v1.AgentSession, defaultImage string) admission {
	spec := s.Spec
	if provider == nil {
		return admission{verdict: wait, reason: v1.ReasonPending,
			message: fmt.Sprintf("ModelProvider %q does not exist; the session starts once it is created.", spec.Model.Provider)}
	}
	model := spec.Model.Name
	if model == "" {
		model = provider.Spec.DefaultModel
	}
	if model == "" {
		return admission{verdict: reject, reason: v1.ReasonInvalidSpec,
			message: fmt.Sprintf("spec.model.name is empty and ModelProvider %q has no defaultModel.", provider.Name)}
	}
	if len(provider.Spec.Models) > 0 && !slices.Contains(provider.Spec.Models, model) {
		return admission{verdict: reject, reason: v1.ReasonInvalidSpec,
			message: fmt.Sprintf("spec.model.name: ModelProvider %q does not offer model %q (it offers %s).", provider.Name, model, strings.Join(provider.Spec.Models, ", "))}
	}
	for _, p := range policies {
		if msg := policyViolation(s, model, &p, defaultImage); msg != "" {
			return admission{verdict: reject, reason: v1.ReasonPolicyViolation, message: fmt.Sprintf("AgentPolicy %s: %s", p.Name, msg)}
		}
	}
	if limit, ok := concurrencyLimit(policies); ok {
		active, ahead := 0, 0
		for i := range siblings {
			o := &siblings[i]
			if o.UID == s.UID || o.Status.Phase.IsTerminal() {
				continue
			}
			if o.Status.PodName != "" {
				active++
			} else if queuedBefore(o, s) {
				ahead++
			}
		}
		if active+ahead >= limit {
			return admission{verdict: queue, reason: v1.ReasonQueued, model: model,
				message: fmt.Sprintf("Waiting for a slot: %d of %d sessions running in this namespace, %d queued ahead.", active, limit, ahead)}
		}
	}
	return admission{verdict: admit, model: model}
}

// queuedBefore orders waiting sessions oldest first, by name on ties.
func queuedBefore(a, b *v1.AgentSession) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

// concurrencyLimit is the smallest maxConcurrentSessions of the policies.
func concurrencyLimit(policies []v1.AgentPolicy) (int, bool) {
	limit, ok := 0, false
	for _, p := range policies {
		if m := p.Spec.MaxConcurrentSessions; m != nil && (!ok || int(*m) < limit) {
			limit, ok = int(*m), true
		}
	}
	return limit, ok
}

// policyViolation says what in the session a policy forbids, naming the field; "" when nothing.
func policyViolation(s *v1.AgentSession, model string, p *v1.AgentPolicy, defaultImage string) string {
	spec, ps := s.Spec, p.Spec
	if len(ps.AllowedProviders) > 0 && !slices.Contains(ps.AllowedProviders, spec.Model.Provider) {
		return fmt.Sprintf("spec.model.provider %q is not allowed (allowed: %s)", spec.Model.Provider, strings.Join(ps.AllowedProviders, ", "))
	}
	if len(ps.AllowedModels) > 0 && !slices.Contains(ps.AllowedModels, model) {
		return fmt.Sprintf("model %q is not allowed (allowed: %s)", model, strings.Join(ps.AllowedModels, ", "))
	}
	if img := spec.Runner.Image; img != "" && img != defaultImage {
		allowed := false
		for _, prefix := range ps.AllowedImages {
			allowed = allowed || strings.HasPrefix(img, prefix)
		}
		if !allowed {
			return fmt.Sprintf("spec.runner.image %q is not allowed (allowed prefixes: %s)", img, orNone(ps.AllowedImages))
		}
	}
	if rc := ps.RequiredRuntimeClassName; rc != "" && (spec.Runner.RuntimeClassName == nil || *spec.Runner.RuntimeClassName != rc) {
		return fmt.Sprintf("spec.runner.runtimeClassName must be %q", rc)
	}
	for i, e := range spec.Network.Egress {
		if !egressAllowed(e, ps.Egress) {
			return fmt.Sprintf("spec.network.egress[%d] (%s) is not in the policy's egress list", i, e.Host+e.CIDR)
		}
	}
	if c := ps.MaxLimits; c != nil {
		if c.MaxTurns != nil && spec.Limits.MaxTurns > *c.MaxTurns {
			return fmt.Sprintf("spec.limits.maxTurns %d exceeds the cap of %d", spec.Limits.MaxTurns, *c.MaxTurns)
		}
		if c.MaxTokens != nil && spec.Limits.MaxTokens > *c.MaxTokens {
			return fmt.Sprintf("spec.limits.maxTokens %d exceeds the cap of %d", spec.Limits.MaxTokens, *c.MaxTokens)
		}
		if c.Timeout != nil && spec.Limits.Timeout != nil && spec.Limits.Timeout.Duration > c.Timeout.Duration {
			return fmt.Sprintf("spec.limits.timeout %s exceeds the cap of %s", spec.Limits.Timeout.Duration, c.Timeout.Duration)
		}
	}
	return ""
}

func egressAllowed(e v1.EgressRule, allowed []v1.EgressRule) bool {
	for _, a := range allowed {
		if a.Host == e.Host && a.CIDR == e.CIDR {
			if len(a.Ports) == 0 {
				return true
			}
			ok := true
			for _, p := range portsOrDefault(e.Ports) {
				ok = ok && slices.Contains(a.Ports, p)
			}
			if ok {
				return true
			}
		}
	}
	return false
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	sorted := slices.Clone(s)
	sort.Strings(sorted)
	return strings.Join(sorted, ", ")
}
