package controllers

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
)

// maxInstructionsBytes bounds the instructions the controller puts on the runner's command
// line (AgentPolicy, spec.instructions and the instructionsFrom ConfigMap key together):
// they travel in the pod object, which the apiserver caps at about 1.5 MiB.
const maxInstructionsBytes = 128 << 10

// capabilityViolation refuses what only a platform grant makes safe: MCP servers (their
// credential is the platform's), the gateway's web tools (they reach the internet from the
// manager) and Secrets for setup commands (a session creator who may not read a Secret must
// not be able to hand it to commands they wrote). Each is allowed when some AgentPolicy of
// the namespace grants it; no AgentPolicy grants nothing. A pure function.
func capabilityViolation(s *v1.AgentSession, policies []v1.AgentPolicy) string {
	spec := s.Spec
	grants := func(get func(p *v1.AgentPolicy) []string) []string {
		var out []string
		for i := range policies {
			out = append(out, get(&policies[i])...)
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	mcp := grants(func(p *v1.AgentPolicy) []string { return p.Spec.AllowedMCPServers })
	for i, m := range spec.MCPServers {
		if !slices.Contains(mcp, m.Name) {
			return fmt.Sprintf("spec.mcpServers[%d] %q is not allowed: no AgentPolicy in namespace %s lists it in spec.allowedMCPServers (allowed: %s)",
				i, m.Name, s.Namespace, orNone(mcp))
		}
	}
	if slices.Contains(spec.Tools, v1.ToolWebFetch) {
		domains := grants(func(p *v1.AgentPolicy) []string {
			if p.Spec.WebFetch == nil {
				return nil
			}
			return p.Spec.WebFetch.AllowedDomains
		})
		if len(domains) == 0 {
			return fmt.Sprintf("spec.tools lists web_fetch, but no AgentPolicy in namespace %s allows any domain (spec.webFetch.allowedDomains)", s.Namespace)
		}
	}
	if slices.Contains(spec.Tools, v1.ToolWebSearch) {
		search := grants(func(p *v1.AgentPolicy) []string {
			if p.Spec.WebFetch == nil || p.Spec.WebFetch.SearchURL == "" {
				return nil
			}
			return []string{p.Spec.WebFetch.SearchURL}
		})
		if len(search) == 0 {
			return fmt.Sprintf("spec.tools lists web_search, but no AgentPolicy in namespace %s configures a search endpoint (spec.webFetch.searchURL)", s.Namespace)
		}
	}
	if spec.Setup != nil {
		secrets := grants(func(p *v1.AgentPolicy) []string {
			if p.Spec.Setup == nil {
				return nil
			}
			return p.Spec.Setup.AllowedSecrets
		})
		for i, e := range spec.Setup.Env {
			if !slices.Contains(secrets, e.SecretKeyRef.Name) {
				return fmt.Sprintf("spec.setup.env[%d] (%s): Secret %q is not allowed: no AgentPolicy in namespace %s lists it in spec.setup.allowedSecrets (allowed: %s)",
					i, e.Name, e.SecretKeyRef.Name, s.Namespace, orNone(secrets))
			}
		}
	}
	return ""
}

// policyInstructions are the namespace's AgentPolicy instructions, in policy-name order.
func policyInstructions(policies []v1.AgentPolicy) []contract.Instruction {
	sorted := slices.Clone(policies)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	var out []contract.Instruction
	for _, p := range sorted {
		if t := strings.TrimSpace(p.Spec.Instructions); t != "" {
			out = append(out, contract.Instruction{Source: "AgentPolicy " + p.Name, Text: t})
		}
	}
	return out
}

// errInstructionsNotFound is a spec.instructionsFrom that names a ConfigMap or key that does
// not exist: the session cannot start as written.
type errInstructionsNotFound struct{ msg string }

func (e errInstructionsNotFound) Error() string { return e.msg }

// resolveInstructions gathers the instructions the runner is given on its command line, in
// the order they appear in the system prompt before the repository's own: the namespace's
// AgentPolicies, then spec.instructions, then spec.instructionsFrom (read once, now, around
// the cache: the manager does not watch every ConfigMap of the cluster). The repository's
// AGENTS.md files are read by the runner from the checkout.
func resolveInstructions(ctx context.Context, r client.Reader, s *v1.AgentSession, policies []v1.AgentPolicy) ([]contract.Instruction, error) {
	out := policyInstructions(policies)
	if t := strings.TrimSpace(s.Spec.Instructions); t != "" {
		out = append(out, contract.Instruction{Source: "spec.instructions", Text: t})
	}
	if ref := s.Spec.InstructionsFrom; ref != nil {
		cm := &corev1.ConfigMap{}
		if err := r.Get(ctx, client.ObjectKey{Namespace: s.Namespace, Name: ref.Name}, cm); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, errInstructionsNotFound{fmt.Sprintf("spec.instructionsFrom: ConfigMap %q does not exist in namespace %s", ref.Name, s.Namespace)}
			}
			return nil, fmt.Errorf("reading ConfigMap %s for spec.instructionsFrom: %w", ref.Name, err)
		}
		text, ok := cm.Data[ref.Key]
		if !ok {
			return nil, errInstructionsNotFound{fmt.Sprintf("spec.instructionsFrom: ConfigMap %q has no key %q (keys: %s)", ref.Name, ref.Key, orNone(slices.Sorted(maps.Keys(cm.Data))))}
		}
		if t := strings.TrimSpace(text); t != "" {
			out = append(out, contract.Instruction{Source: fmt.Sprintf("ConfigMap %s key %s", ref.Name, ref.Key), Text: t})
		}
	}
	total := 0
	for _, in := range out {
		total += len(in.Text)
	}
	if total > maxInstructionsBytes {
		return nil, errInstructionsNotFound{fmt.Sprintf("the instructions (AgentPolicy, spec.instructions and spec.instructionsFrom) are %d bytes; at most %d fit in the runner pod", total, maxInstructionsBytes)}
	}
	return out, nil
}
