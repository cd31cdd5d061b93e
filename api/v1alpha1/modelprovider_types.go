package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ProviderAPI is the wire protocol a provider speaks.
// +kubebuilder:validation:Enum=OpenAI
type ProviderAPI string

// Provider APIs.
const (
	// ProviderAPIOpenAI is the OpenAI chat-completions protocol, spoken by OpenAI and by
	// most other providers and local servers.
	ProviderAPIOpenAI ProviderAPI = "OpenAI"
)

// SecretKeyRef names one key of a Secret in the operator's namespace.
type SecretKeyRef struct {
	// name is the Secret's name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// key is the key within the Secret.
	// +optional
	// +kubebuilder:default=apiKey
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key,omitempty"`
}

// ModelProviderSpec describes an LLM endpoint and how sessions may use it.
type ModelProviderSpec struct {
	// api is the protocol the provider speaks.
	// +optional
	// +kubebuilder:default=OpenAI
	API ProviderAPI `json:"api,omitempty"`

	// baseURL is the provider's API root, for example https://api.openai.com/v1.
	// +required
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^https?://[^/@]+(/.*)?$')",message="baseURL must be an http(s) URL without credentials"
	BaseURL string `json:"baseURL"`

	// apiKeySecretRef names the Secret, in the operator's namespace, holding the API key.
	// Only the session gateway reads it; runner pods never see it.
	// +optional
	APIKeySecretRef *SecretKeyRef `json:"apiKeySecretRef,omitempty"`

	// models lists the model names sessions may use. Empty allows any.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=128
	// +kubebuilder:validation:items:MaxLength=256
	Models []string `json:"models,omitempty"`

	// defaultModel is used by sessions that name no model.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	DefaultModel string `json:"defaultModel,omitempty"`

	// contextWindow is the context window, in tokens, of the provider's models (prompt and
	// completion together). Sessions compact their history when a prompt approaches it.
	// Empty: no compaction.
	// +optional
	// +kubebuilder:validation:Minimum=1024
	ContextWindow *int64 `json:"contextWindow,omitempty"`

	// modelContextWindows overrides contextWindow for the named models.
	// +optional
	// +kubebuilder:validation:MaxProperties=128
	ModelContextWindows map[string]int64 `json:"modelContextWindows,omitempty"`

	// rateLimits caps this provider's use across all sessions.
	// +optional
	RateLimits *RateLimits `json:"rateLimits,omitempty"`
}

// RateLimits caps request and token rates.
type RateLimits struct {
	// requestsPerMinute caps chat-completion requests per minute.
	// +optional
	// +kubebuilder:validation:Minimum=1
	RequestsPerMinute *int32 `json:"requestsPerMinute,omitempty"`

	// tokensPerMinute caps prompt plus completion tokens per minute.
	// +optional
	// +kubebuilder:validation:Minimum=1
	TokensPerMinute *int64 `json:"tokensPerMinute,omitempty"`
}

// ModelProviderStatus is what Agentry observed about a provider.
type ModelProviderStatus struct {
	// conditions: Ready says whether the key Secret was found.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ModelProvider is a platform-owned, cluster-scoped LLM endpoint that sessions name in
// spec.model.provider.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=mp,categories=agentry
// +kubebuilder:printcolumn:name="API",type=string,JSONPath=`.spec.api`
// +kubebuilder:printcolumn:name="Base-URL",type=string,JSONPath=`.spec.baseURL`
// +kubebuilder:printcolumn:name="Default-Model",type=string,JSONPath=`.spec.defaultModel`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ModelProvider struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec describes the provider.
	// +required
	Spec ModelProviderSpec `json:"spec"`

	// status is what Agentry observed.
	// +optional
	Status ModelProviderStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// ModelProviderList contains a list of ModelProvider.
type ModelProviderList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ModelProvider `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ModelProvider{}, &ModelProviderList{})
}
