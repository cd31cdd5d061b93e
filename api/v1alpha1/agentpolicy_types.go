package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AgentPolicySpec governs the sessions of one namespace. When several policies exist in a
// namespace, every one of them applies (the strictest value wins).
type AgentPolicySpec struct {
	// maxConcurrentSessions caps sessions running at once; excess sessions wait in Queued,
	// oldest first.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10000
	MaxConcurrentSessions *int32 `json:"maxConcurrentSessions,omitempty"`

	// tokenBudget caps the namespace's token use per time window.
	// +optional
	TokenBudget *TokenBudget `json:"tokenBudget,omitempty"`

	// allowedProviders lists the ModelProviders sessions may name. Empty allows any.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	AllowedProviders []string `json:"allowedProviders,omitempty"`

	// allowedModels lists the model names sessions may use. Empty allows any the provider allows.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=128
	// +kubebuilder:validation:items:MaxLength=256
	AllowedModels []string `json:"allowedModels,omitempty"`

	// allowedImages lists image reference prefixes sessions may use as spec.runner.image
	// (for example registry.example/toolchains/). Empty allows only the default runner image.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=512
	AllowedImages []string `json:"allowedImages,omitempty"`

	// requiredRuntimeClassName forces every session's pod onto this RuntimeClass.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	RequiredRuntimeClassName string `json:"requiredRuntimeClassName,omitempty"`

	// egress lists the only destinations sessions may add in spec.network.egress.
	// Empty forbids extra egress.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Egress []EgressRule `json:"egress,omitempty"`

	// maxLimits caps what sessions may ask for in spec.limits.
	// +optional
	MaxLimits *LimitCaps `json:"maxLimits,omitempty"`
}

// TokenBudget caps token use per window.
type TokenBudget struct {
	// tokens is the prompt plus completion tokens allowed per window.
	// +required
	// +kubebuilder:validation:Minimum=1
	Tokens int64 `json:"tokens"`

	// window is the budget's period; use resets at the start of each window.
	// +optional
	// +kubebuilder:default="24h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="window must be at least 1m"
	Window *metav1.Duration `json:"window,omitempty"`
}

// LimitCaps caps per-session limits.
type LimitCaps struct {
	// maxTurns caps spec.limits.maxTurns.
	// +optional
	// +kubebuilder:validation:Minimum=1
	MaxTurns *int32 `json:"maxTurns,omitempty"`

	// maxTokens caps spec.limits.maxTokens.
	// +optional
	// +kubebuilder:validation:Minimum=1
	MaxTokens *int64 `json:"maxTokens,omitempty"`

	// timeout caps spec.limits.timeout.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="timeout must be at least 1m"
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// AgentPolicyStatus is what Agentry observed about the namespace.
type AgentPolicyStatus struct {
	// activeSessions is the number of sessions running now.
	// +optional
	ActiveSessions int32 `json:"activeSessions,omitempty"`

	// queuedSessions is the number of sessions waiting for a slot.
	// +optional
	QueuedSessions int32 `json:"queuedSessions,omitempty"`

	// tokensUsed is the tokens used in the current budget window.
	// +optional
	TokensUsed int64 `json:"tokensUsed,omitempty"`

	// windowStart is when the current budget window began.
	// +optional
	WindowStart *metav1.Time `json:"windowStart,omitempty"`

	// conditions describe the policy's state.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// AgentPolicy is a platform-owned policy that governs the AgentSessions of its namespace:
// concurrency, token budget, allowed providers, models and images, isolation and egress.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=apol,categories=agentry
// +kubebuilder:printcolumn:name="Max-Concurrent",type=integer,JSONPath=`.spec.maxConcurrentSessions`
// +kubebuilder:printcolumn:name="Active",type=integer,JSONPath=`.status.activeSessions`
// +kubebuilder:printcolumn:name="Budget",type=integer,JSONPath=`.spec.tokenBudget.tokens`
// +kubebuilder:printcolumn:name="Used",type=integer,JSONPath=`.status.tokensUsed`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AgentPolicy struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the policy.
	// +required
	Spec AgentPolicySpec `json:"spec"`

	// status is what Agentry observed.
	// +optional
	Status AgentPolicyStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// AgentPolicyList contains a list of AgentPolicy.
type AgentPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AgentPolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&AgentPolicy{}, &AgentPolicyList{})
}
