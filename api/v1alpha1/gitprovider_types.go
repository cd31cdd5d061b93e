package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// GitProviderType is the kind of host a GitProvider pushes to.
// +kubebuilder:validation:Enum=GitHub;Gitea;Git
type GitProviderType string

// Git provider types.
const (
	// GitProviderGitHub is github.com or GitHub Enterprise Server: push and pull requests.
	GitProviderGitHub GitProviderType = "GitHub"
	// GitProviderGitea is Gitea or Forgejo: push and pull requests.
	GitProviderGitea GitProviderType = "Gitea"
	// GitProviderGit is any git remote over smart HTTP: push only, no pull requests.
	GitProviderGit GitProviderType = "Git"
)

// GitProviderSpec says how Agentry pushes to and opens pull requests on one git host.
// +kubebuilder:validation:XValidation:rule="!has(self.githubApp) || self.type == 'GitHub'",message="githubApp is only for type GitHub"
// +kubebuilder:validation:XValidation:rule="!self.url.startsWith('http://') || (has(self.allowPlainHTTP) && self.allowPlainHTTP)",message="url must be https:// unless allowPlainHTTP is true"
// +kubebuilder:validation:XValidation:rule="!self.url.startsWith('ssh://') || self.type == 'Git'",message="an ssh:// url is only for type Git"
type GitProviderSpec struct {
	// type is GitHub, Gitea (also Forgejo) or Git (push only).
	// +required
	Type GitProviderType `json:"type"`

	// url is the host's web root, for example https://github.com or
	// https://gitea.example.com, or for type Git over SSH ssh://git.example.com (port 22
	// unless given). Sessions whose spec.repository.url is on this host (same scheme, host and
	// port; an scp-like git@host:path is ssh on port 22) may deliver through this provider.
	// +required
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^(https?|ssh)://[^/@]+/?$')",message="url must be an http(s) or ssh URL of a host, without credentials or path"
	URL string `json:"url"`

	// apiURL is the REST API root when it is not the default (https://api.github.com for
	// github.com, <url>/api/v3 for GitHub Enterprise Server, <url>/api/v1 for Gitea).
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^https?://[^/@]+(/.*)?$')",message="apiURL must be an http(s) URL without credentials"
	APIURL string `json:"apiURL,omitempty"`

	// secretRef names a Secret in the operator's namespace holding the credential. Keys:
	// token (GitHub personal or fine-grained token, Gitea access token), or username and
	// password (type Git over http(s)), or ssh-privatekey and known_hosts (type Git over ssh;
	// the host key must be listed, it is never trusted on first use), or private-key.pem (the
	// GitHub App's private key, with githubApp).
	// Only the manager reads it; runner pods never see it.
	// +required
	SecretRef SecretReference `json:"secretRef"`

	// githubApp authenticates as a GitHub App: each delivery mints an installation token
	// scoped to the one repository it pushes to, valid for an hour at most.
	// +optional
	GitHubApp *GitHubApp `json:"githubApp,omitempty"`

	// allowPlainHTTP permits an http:// url. The credential then crosses the network in
	// clear text: meant for test and development forges only.
	// +optional
	AllowPlainHTTP bool `json:"allowPlainHTTP,omitempty"`
}

// SecretReference names a Secret in the operator's namespace.
type SecretReference struct {
	// name is the Secret's name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// GitHubApp identifies a GitHub App installation.
type GitHubApp struct {
	// appID is the App's numeric id.
	// +required
	// +kubebuilder:validation:Minimum=1
	AppID int64 `json:"appID"`

	// installationID is the installation's numeric id. Empty looks it up per repository.
	// +optional
	// +kubebuilder:validation:Minimum=1
	InstallationID int64 `json:"installationID,omitempty"`
}

// GitProviderStatus is what Agentry observed about a provider.
type GitProviderStatus struct {
	// conditions: Ready says whether the credential Secret was found with the keys the
	// type needs.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the spec generation the conditions describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// GitProvider is a platform-owned, cluster-scoped git host that sessions deliver their
// result to (spec.delivery): a branch pushed and, for GitHub and Gitea, a pull request.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=gp,categories=agentry
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.spec.url`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type GitProvider struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec describes the host and the credential.
	// +required
	Spec GitProviderSpec `json:"spec"`

	// status is what Agentry observed.
	// +optional
	Status GitProviderStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// GitProviderList contains a list of GitProvider.
type GitProviderList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GitProvider `json:"items"`
}

func init() {
	SchemeBuilder.Register(&GitProvider{}, &GitProviderList{})
}
