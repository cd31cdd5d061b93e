package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
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

	// allowedImages lists the registries and repositories sessions may use as
	// spec.runner.image. An entry matches at a path boundary, never as a bare string prefix:
	// registry.example/team admits registry.example/team, registry.example/team:1.0,
	// registry.example/team@sha256:... and registry.example/team/go, but not
	// registry.example/team-evil; a registry host alone (registry.example) admits every
	// repository on it. Docker Hub short names are normalised on both sides (golang is
	// docker.io/library/golang). Empty allows only the default runner image.
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

	// allowedNodeSelectors lists the node labels sessions may select in
	// spec.runner.nodeSelector: each key maps to the values allowed for it. A session
	// selecting a key that is not listed, or a value not listed for its key, is refused.
	// Empty forbids spec.runner.nodeSelector.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	AllowedNodeSelectors map[string]AllowedValues `json:"allowedNodeSelectors,omitempty"`

	// allowedTolerations lists the tolerations sessions may set in spec.runner.tolerations.
	// A session's toleration is allowed when an entry covers it: same key (an empty key
	// with operator Exists covers every key), operator Exists covering any value of the
	// key or Equal with the same value, and the same effect (an empty effect covers every
	// effect). Empty forbids spec.runner.tolerations.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	AllowedTolerations []AllowedToleration `json:"allowedTolerations,omitempty"`

	// agentResources governs spec.runner.resources, the requests and limits of the agent
	// container (where the agent's tools and commands run).
	// +optional
	AgentResources *ResourcePolicy `json:"agentResources,omitempty"`

	// volumeSizeLimits caps the runner pod's scratch volumes (emptyDir sizeLimit). Without
	// a policy the limits are workspace 10Gi, home 1Gi and tmp 1Gi.
	// +optional
	VolumeSizeLimits *VolumeSizeLimits `json:"volumeSizeLimits,omitempty"`

	// delivery restricts where sessions may deliver their result (spec.delivery).
	// +optional
	Delivery *DeliveryPolicy `json:"delivery,omitempty"`

	// maxShareExpiry caps spec.expiresIn of the namespace's AgentSessionShares (a share
	// asking for longer gets this).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="maxShareExpiry must be at least 1m"
	MaxShareExpiry *metav1.Duration `json:"maxShareExpiry,omitempty"`

	// notifications are sent when the namespace's sessions finish or wait for an approval.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=8
	Notifications []NotificationTarget `json:"notifications,omitempty"`

	// instructions are the namespace's rules for every agent: the first part of each
	// session's instructions, before the repository's AGENTS.md files and the session's own.
	// +optional
	// +kubebuilder:validation:MaxLength=65536
	Instructions string `json:"instructions,omitempty"`

	// setup governs spec.setup: the egress setup commands get and the Secrets they may read.
	// Without it, setup commands run with no egress beyond the gateway and cluster DNS, and
	// spec.setup.env is refused.
	// +optional
	Setup *SetupPolicy `json:"setup,omitempty"`

	// allowedMCPServers lists the MCPServers sessions may name in spec.mcpServers. Empty
	// (or no AgentPolicy) forbids spec.mcpServers: an MCP server's credential belongs to
	// the platform, and each namespace is granted its servers explicitly.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	AllowedMCPServers []string `json:"allowedMCPServers,omitempty"`

	// webFetch governs the web_fetch and web_search tools. Without it (or without an
	// AgentPolicy) sessions listing those tools are refused.
	// +optional
	WebFetch *WebFetchPolicy `json:"webFetch,omitempty"`
}

// SetupPolicy governs the setup phase of the namespace's sessions.
type SetupPolicy struct {
	// egress lists the destinations setup commands may reach (a module proxy, a package
	// mirror), in addition to the gateway and cluster DNS. They are closed again before the
	// agent starts.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Egress []EgressRule `json:"egress,omitempty"`

	// allowedSecrets lists the Secrets of the namespace sessions may pass to setup commands
	// in spec.setup.env. Empty forbids spec.setup.env.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	AllowedSecrets []string `json:"allowedSecrets,omitempty"`
}

// WebFetchPolicy governs the gateway-side web tools.
type WebFetchPolicy struct {
	// allowedDomains lists the domains web_fetch may fetch from: an entry matches the domain
	// and its subdomains (example.com matches docs.example.com, not badexample.com) on the
	// default ports (80, 443); an entry host:port allows that port only; an IP address entry
	// matches only itself. Empty allows none. Redirects are followed only within allowed
	// domains.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=128
	// +kubebuilder:validation:items:MaxLength=253
	AllowedDomains []string `json:"allowedDomains,omitempty"`

	// searchURL is an HTTP documentation-search endpoint for the web_search tool; the query
	// is sent as the q parameter. Empty: web_search is not available.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self == '' || self.matches('^https?://[^/@]+(/.*)?$')",message="searchURL must be an http(s) URL without credentials"
	SearchURL string `json:"searchURL,omitempty"`

	// maxBytes caps the text one fetch returns to the model. Defaults to 100000.
	// +optional
	// +kubebuilder:validation:Minimum=1024
	// +kubebuilder:validation:Maximum=1048576
	MaxBytes *int32 `json:"maxBytes,omitempty"`
}

// DeliveryPolicy restricts spec.delivery.
type DeliveryPolicy struct {
	// allowedGitProviders lists the GitProviders sessions may deliver through. Empty allows any.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	AllowedGitProviders []string `json:"allowedGitProviders,omitempty"`

	// allowedRepositories lists the repositories sessions may deliver to, as host/path
	// patterns in glob syntax without scheme or .git suffix (for example
	// github.com/acme/* or gitea.example.com/team/service). * does not cross a /.
	// Empty allows any.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=512
	AllowedRepositories []string `json:"allowedRepositories,omitempty"`
}

// NotificationEvent is a moment in a session's life a target is told about.
// +kubebuilder:validation:Enum=Finished;WaitingForApproval
type NotificationEvent string

// Notification events.
const (
	// NotifyFinished: the session reached Succeeded, Failed or Cancelled.
	NotifyFinished NotificationEvent = "Finished"
	// NotifyWaitingForApproval: the agent waits for a decision on a tool call.
	NotifyWaitingForApproval NotificationEvent = "WaitingForApproval"
)

// NotificationTarget is where notifications go: a CloudEvents webhook or a Slack incoming
// webhook. Secrets it names live in the operator's namespace and must carry the label
// agentry.dev/notification-secret=true, so a policy cannot make the manager use any other
// Secret of its namespace.
// +kubebuilder:validation:XValidation:rule="has(self.webhook) != has(self.slack)",message="exactly one of webhook or slack must be set"
type NotificationTarget struct {
	// name identifies the target in status.notifications of sessions.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// events are the moments to notify about. Defaults to Finished.
	// +optional
	// +listType=set
	// +kubebuilder:default={Finished}
	// +kubebuilder:validation:MaxItems=2
	Events []NotificationEvent `json:"events,omitempty"`

	// webhook posts a CloudEvents 1.0 JSON event (see docs/notifications.md).
	// +optional
	Webhook *WebhookTarget `json:"webhook,omitempty"`

	// slack posts a message to a Slack incoming webhook.
	// +optional
	Slack *SlackTarget `json:"slack,omitempty"`
}

// WebhookTarget is a generic JSON webhook.
type WebhookTarget struct {
	// url receives the events (POST).
	// +required
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^https?://[^/@]+(/.*)?$')",message="url must be an http(s) URL without credentials"
	URL string `json:"url"`

	// signingSecretRef names the key, in a Secret in the operator's namespace, whose value
	// signs each request body (HMAC-SHA256, header X-Agentry-Signature).
	// +optional
	SigningSecretRef *SecretKeySelector `json:"signingSecretRef,omitempty"`
}

// SlackTarget is a Slack incoming webhook.
type SlackTarget struct {
	// webhookURLSecretRef names the key, in a Secret in the operator's namespace, holding
	// the incoming webhook's URL (the URL is itself the credential).
	// +required
	WebhookURLSecretRef SecretKeySelector `json:"webhookURLSecretRef"`
}

// SecretKeySelector names one key of a Secret in the operator's namespace.
type SecretKeySelector struct {
	// name is the Secret's name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// key is the key within the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key"`
}

// AllowedValues lists the values allowed for one node label.
// +kubebuilder:validation:MinItems=1
// +kubebuilder:validation:MaxItems=64
// +kubebuilder:validation:items:MaxLength=63
type AllowedValues []string

// AllowedToleration is a toleration sessions may set.
// +kubebuilder:validation:XValidation:rule="!has(self.operator) || self.operator != 'Exists' || !has(self.value) || size(self.value) == 0",message="value must be empty when operator is Exists"
// +kubebuilder:validation:XValidation:rule="(has(self.operator) && self.operator == 'Exists') || (has(self.key) && size(self.key) > 0)",message="key is required when operator is Equal"
type AllowedToleration struct {
	// key is the taint key the toleration applies to. Empty, with operator Exists, covers
	// every taint.
	// +optional
	// +kubebuilder:validation:MaxLength=317
	Key string `json:"key,omitempty"`

	// operator is Equal (the session's toleration must carry this value) or Exists (any
	// value of the key).
	// +optional
	// +kubebuilder:default=Equal
	// +kubebuilder:validation:Enum=Equal;Exists
	Operator corev1.TolerationOperator `json:"operator,omitempty"`

	// value is the taint value, for operator Equal.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Value string `json:"value,omitempty"`

	// effect is the taint effect the toleration may name; empty covers every effect.
	// +optional
	// +kubebuilder:validation:Enum=NoSchedule;PreferNoSchedule;NoExecute
	Effect corev1.TaintEffect `json:"effect,omitempty"`
}

// ResourcePolicy defaults and caps a container's requests and limits.
type ResourcePolicy struct {
	// default fills in the requests and limits a session leaves out of
	// spec.runner.resources, resource by resource.
	// +optional
	Default *DefaultResources `json:"default,omitempty"`

	// max caps every request and limit in spec.runner.resources. A session asking for more
	// is refused; a resource capped here and given no limit by the session or the default
	// gets this value as its limit.
	// +optional
	// +kubebuilder:validation:MaxProperties=16
	Max corev1.ResourceList `json:"max,omitempty"`
}

// DefaultResources are default requests and limits.
type DefaultResources struct {
	// requests are the default requests.
	// +optional
	// +kubebuilder:validation:MaxProperties=16
	Requests corev1.ResourceList `json:"requests,omitempty"`

	// limits are the default limits.
	// +optional
	// +kubebuilder:validation:MaxProperties=16
	Limits corev1.ResourceList `json:"limits,omitempty"`
}

// VolumeSizeLimits are the sizeLimits of the runner pod's emptyDir volumes.
type VolumeSizeLimits struct {
	// workspace caps /workspace, the repository checkout (default 10Gi).
	// +optional
	Workspace *resource.Quantity `json:"workspace,omitempty"`

	// home caps $HOME, shared by checkout and the agent (default 1Gi).
	// +optional
	Home *resource.Quantity `json:"home,omitempty"`

	// tmp caps the agent's /tmp (default 1Gi).
	// +optional
	Tmp *resource.Quantity `json:"tmp,omitempty"`
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
