package controllers

import (
	"encoding/json"

	networkingv1 "k8s.io/api/networking/v1"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
)

// AnnotationSetupEgress on a session's NetworkPolicy records, as JSON, the AgentPolicies'
// spec.setup.egress rules as they were when the session started, so the setup-phase policy
// is rebuilt from what the checkout phase allowed, never from a policy edited since.
const AnnotationSetupEgress = "agentry.dev/setup-egress"

// AnnotationEgressPhase on a session's NetworkPolicy names the phase its rules are written
// for; the gateway holds the runner's model calls until it reads "agent" there.
const AnnotationEgressPhase = contract.AnnotationEgressPhase

// AnnotationEgressPhaseSince records when the agent phase was written.
const AnnotationEgressPhaseSince = contract.AnnotationEgressPhaseSince

// setupEgressFromPolicy returns the setup egress recorded on a policy; nil when there is none
// or it is unreadable (the rebuilt setup phase then lacks it: narrower, never wider).
func setupEgressFromPolicy(np *networkingv1.NetworkPolicy) []v1.EgressRule {
	var rules []v1.EgressRule
	if err := json.Unmarshal([]byte(np.Annotations[AnnotationSetupEgress]), &rules); err != nil {
		return nil
	}
	return rules
}

// setupEgress is the union of the namespace's AgentPolicies' spec.setup.egress, for a session
// with spec.setup (nil otherwise).
func setupEgress(s *v1.AgentSession, policies []v1.AgentPolicy) []v1.EgressRule {
	if s.Spec.Setup == nil {
		return nil
	}
	var rules []v1.EgressRule
	for _, p := range policies {
		if p.Spec.Setup != nil {
			rules = append(rules, p.Spec.Setup.Egress...)
		}
	}
	return rules
}

// phaseOrder ranks the phases from widest to narrowest; a policy without a recorded phase
// was written for checkout.
var phaseOrder = map[networkPhase]int{"": 0, phaseCheckout: 0, phaseSetup: 1, phaseAgent: 2}

// widerPhase reports whether want is wider than the phase a policy has: a policy only ever
// moves forward, whatever a stale pod status says.
func widerPhase(want, have networkPhase) bool {
	return phaseOrder[want] < phaseOrder[have] // an unknown recorded value counts as checkout
}

// narrowedMessage is the EgressNarrowed event's text for a phase.
func narrowedMessage(phase networkPhase) string {
	if phase == phaseSetup {
		return "Checkout finished: egress is now cluster DNS, the session gateway, the AgentPolicy's setup egress and spec.network.egress (no repository host)"
	}
	return "Egress is now the session gateway and spec.network.egress only (no DNS, no repository host, no setup egress)"
}
