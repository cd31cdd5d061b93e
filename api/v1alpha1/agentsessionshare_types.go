package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ShareArtifact is an archived artifact a share exposes.
// +kubebuilder:validation:Enum=Transcript;Patch;Summary
type ShareArtifact string

// Shareable artifacts.
const (
	ShareTranscript ShareArtifact = "Transcript"
	SharePatch      ShareArtifact = "Patch"
	ShareSummary    ShareArtifact = "Summary"
)

// ShareVisibility says who may open a share's link.
// +kubebuilder:validation:Enum=Private;Link
type ShareVisibility string

// Share visibilities.
const (
	// SharePrivate: the link works only with a Kubernetes identity (a bearer token) that may
	// get the share, for example through `kubectl agentry console`.
	SharePrivate ShareVisibility = "Private"
	// ShareLink: anyone with the link, until it expires or the share is deleted.
	ShareLinkVisibility ShareVisibility = "Link"
)

// AgentSessionShareSpec asks for a link to a session's archived artifacts.
type AgentSessionShareSpec struct {
	// session is the name of the AgentSession, in this namespace, to share. Immutable.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="session is immutable"
	Session string `json:"session"`

	// artifacts are what the link opens. Defaults to all three.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=3
	// +kubebuilder:default={Transcript,Patch,Summary}
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="artifacts is immutable"
	Artifacts []ShareArtifact `json:"artifacts,omitempty"`

	// expiresIn is how long the link works, from the share's creation (at most the
	// namespace's AgentPolicy maxShareExpiry, else 720h). Immutable.
	// +optional
	// +kubebuilder:default="24h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('720h')",message="expiresIn must be between 1m and 720h"
	// +kubebuilder:validation:XValidation:rule="duration(self) == duration(oldSelf)",message="expiresIn is immutable"
	ExpiresIn *metav1.Duration `json:"expiresIn,omitempty"`

	// visibility is Private (the link needs a Kubernetes identity that may get this share)
	// or Link (anyone with the link). Immutable.
	// +optional
	// +kubebuilder:default=Private
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="visibility is immutable"
	Visibility ShareVisibility `json:"visibility,omitempty"`
}

// AgentSessionShareStatus is the link.
type AgentSessionShareStatus struct {
	// url opens the session's page (and its artifacts under it) until expiresAt.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	URL string `json:"url,omitempty"`

	// expiresAt is when the link stops working.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// conditions: Ready says whether the link works, and why not.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// AgentSessionShare is an expiring link to one session's transcript, patch and summary, for
// people without object-storage credentials. Deleting it revokes the link.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ashare,categories=agentry
// +kubebuilder:printcolumn:name="Session",type=string,JSONPath=`.spec.session`
// +kubebuilder:printcolumn:name="Visibility",type=string,JSONPath=`.spec.visibility`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="URL",type=string,priority=1,JSONPath=`.status.url`
type AgentSessionShare struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says what to share, for how long, with whom.
	// +required
	Spec AgentSessionShareSpec `json:"spec"`

	// status holds the link.
	// +optional
	Status AgentSessionShareStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// AgentSessionShareList contains a list of AgentSessionShare.
type AgentSessionShareList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AgentSessionShare `json:"items"`
}

func init() {
	SchemeBuilder.Register(&AgentSessionShare{}, &AgentSessionShareList{})
}
