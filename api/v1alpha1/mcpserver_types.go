package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MCPServerSpec describes a Model Context Protocol tool server and how sessions use it.
type MCPServerSpec struct {
	// url is the server's streamable-HTTP MCP endpoint. Only the session gateway connects
	// to it; runner pods reach its tools through the gateway.
	// +required
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^https?://[^/@]+(/.*)?$')",message="url must be an http(s) URL without credentials"
	URL string `json:"url"`

	// headers are sent with every request to the server, their values read from Secrets in
	// the operator's namespace (an API key, a bearer token). They never reach a runner pod.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=8
	Headers []MCPHeader `json:"headers,omitempty"`

	// tools is the allow-list of the server's tools offered to agents. Empty offers all of
	// them.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=128
	// +kubebuilder:validation:items:MaxLength=128
	Tools []string `json:"tools,omitempty"`

	// approval says whether calls to the server's tools need a person's go-ahead, like
	// spec.approval.bash does for commands.
	// +optional
	// +kubebuilder:default={}
	Approval MCPApproval `json:"approval,omitempty"`
}

// MCPHeader is one HTTP header sent to an MCP server, its value from a Secret.
type MCPHeader struct {
	// name is the header's name, for example Authorization.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9-]+$`
	Name string `json:"name"`

	// valueFrom is the Secret key, in the operator's namespace, holding the value.
	// +required
	ValueFrom SecretKeySelector `json:"valueFrom"`
}

// MCPApproval is the approval policy of an MCP server's tools.
type MCPApproval struct {
	// default applies to every tool not listed in tools.
	// +optional
	// +kubebuilder:default=Ask
	Default ApprovalMode `json:"default,omitempty"`

	// tools overrides default for the named tools.
	// +optional
	// +kubebuilder:validation:MaxProperties=128
	Tools map[string]ApprovalMode `json:"tools,omitempty"`
}

// MCPToolStatus is one tool the server offers (after the allow-list).
type MCPToolStatus struct {
	// name is the tool's name at the server.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Name string `json:"name,omitempty"`

	// description is the first line of the tool's description.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Description string `json:"description,omitempty"`
}

// MCPServerStatus is what Agentry observed about a server.
type MCPServerStatus struct {
	// conditions: Ready says whether the gateway could connect, read the header Secrets and
	// list the tools.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// tools are the tools offered, as last listed.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=128
	Tools []MCPToolStatus `json:"tools,omitempty"`

	// observedGeneration is the spec generation the conditions describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// MCPServer is a platform-owned, cluster-scoped Model Context Protocol tool server whose
// tools sessions may use (spec.mcpServers), through the session gateway.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=mcps,categories=agentry
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.spec.url`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MCPServer struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec describes the server, its credential and its approval policy.
	// +required
	Spec MCPServerSpec `json:"spec"`

	// status is what Agentry observed.
	// +optional
	Status MCPServerStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// MCPServerList contains a list of MCPServer.
type MCPServerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MCPServer `json:"items"`
}

func init() {
	SchemeBuilder.Register(&MCPServer{}, &MCPServerList{})
}
