package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ToolName names one tool the agent may call.
// +kubebuilder:validation:Enum=read_file;write_file;edit_file;list_dir;glob;grep;bash;git_status;git_diff;web_fetch;web_search
type ToolName string

// The tools a runner offers the model.
const (
	ToolReadFile  ToolName = "read_file"
	ToolWriteFile ToolName = "write_file"
	ToolEditFile  ToolName = "edit_file"
	ToolListDir   ToolName = "list_dir"
	ToolGlob      ToolName = "glob"
	ToolGrep      ToolName = "grep"
	ToolBash      ToolName = "bash"
	ToolGitStatus ToolName = "git_status"
	ToolGitDiff   ToolName = "git_diff"
	// ToolWebFetch fetches a web page as text, in the session gateway (not the pod), from
	// the domains the namespace's AgentPolicy allows in spec.webFetch.allowedDomains.
	// Offered only when listed in spec.tools.
	ToolWebFetch ToolName = "web_fetch"
	// ToolWebSearch queries the documentation-search endpoint the namespace's AgentPolicy
	// configures in spec.webFetch.searchURL, in the session gateway. Offered only when listed.
	ToolWebSearch ToolName = "web_search"
)

// AllTools lists every tool, in the order they are offered to the model.
var AllTools = []ToolName{
	ToolReadFile, ToolWriteFile, ToolEditFile, ToolListDir, ToolGlob, ToolGrep, ToolBash, ToolGitStatus, ToolGitDiff,
}

// ApprovalMode says what happens when the agent wants to use a class of tools.
// +kubebuilder:validation:Enum=Allow;Ask;Deny
type ApprovalMode string

// Approval modes.
const (
	// ApprovalAllow runs the tool without asking.
	ApprovalAllow ApprovalMode = "Allow"
	// ApprovalAsk pauses the session until a user decides in spec.approvals.
	ApprovalAsk ApprovalMode = "Ask"
	// ApprovalDeny refuses the call; the model is told why.
	ApprovalDeny ApprovalMode = "Deny"
)

// Decision is a user's answer to a pending approval.
// +kubebuilder:validation:Enum=Allow;Deny
type Decision string

// Decisions.
const (
	DecisionAllow Decision = "Allow"
	DecisionDeny  Decision = "Deny"
)

// DecisionSource says where a decision came from.
// +kubebuilder:validation:Enum=User;Timeout
type DecisionSource string

// Decision sources.
const (
	DecidedByUser    DecisionSource = "User"
	DecidedByTimeout DecisionSource = "Timeout"
)

// SessionPhase is a one-word summary of where a session is in its life.
// +kubebuilder:validation:Enum=Pending;Queued;Running;WaitingForApproval;Succeeded;Failed;Cancelled
type SessionPhase string

// Session phases. Succeeded, Failed and Cancelled are terminal: a session never leaves them.
const (
	PhasePending            SessionPhase = "Pending"
	PhaseQueued             SessionPhase = "Queued"
	PhaseRunning            SessionPhase = "Running"
	PhaseWaitingForApproval SessionPhase = "WaitingForApproval"
	PhaseSucceeded          SessionPhase = "Succeeded"
	PhaseFailed             SessionPhase = "Failed"
	PhaseCancelled          SessionPhase = "Cancelled"
)

// IsTerminal reports whether the phase is final.
func (p SessionPhase) IsTerminal() bool {
	return p == PhaseSucceeded || p == PhaseFailed || p == PhaseCancelled
}

// AgentSessionSpec is what the user asks for. Everything but approvals, cancel and
// ttlSecondsAfterFinished is fixed at creation: a running agent's instructions never change
// under it.
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.cancel) || !oldSelf.cancel || (has(self.cancel) && self.cancel)",message="cancel cannot be undone once set to true"
// +kubebuilder:validation:XValidation:rule="has(self.delivery) == has(oldSelf.delivery)",message="delivery is immutable"
// +kubebuilder:validation:XValidation:rule="has(self.setup) == has(oldSelf.setup)",message="setup is immutable"
// +kubebuilder:validation:XValidation:rule="has(self.mcpServers) == has(oldSelf.mcpServers)",message="mcpServers is immutable"
// +kubebuilder:validation:XValidation:rule="has(self.continueFrom) == has(oldSelf.continueFrom)",message="continueFrom is immutable"
// +kubebuilder:validation:XValidation:rule="has(self.instructions) == has(oldSelf.instructions)",message="instructions is immutable"
// +kubebuilder:validation:XValidation:rule="has(self.instructionsFrom) == has(oldSelf.instructionsFrom)",message="instructionsFrom is immutable"
type AgentSessionSpec struct {
	// task is the instruction given to the agent, in plain language. Immutable.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=65536
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="task is immutable"
	// +kubebuilder:validation:XValidation:rule="self.trim().size() > 0",message="task must not be blank"
	Task string `json:"task"`

	// repository is the git repository the agent works in. Immutable.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="repository is immutable"
	Repository RepositorySpec `json:"repository"`

	// model selects the LLM. Immutable.
	// +optional
	// +kubebuilder:default={}
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="model is immutable"
	Model ModelSpec `json:"model,omitempty"`

	// tools lists the tools the agent may call. Defaults to all of them.
	// Immutable.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=11
	// +kubebuilder:default={read_file,write_file,edit_file,list_dir,glob,grep,bash,git_status,git_diff}
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="tools is immutable"
	Tools []ToolName `json:"tools,omitempty"`

	// approval says which tool calls need a person's go-ahead. Immutable (each field).
	// +optional
	// +kubebuilder:default={}
	Approval ApprovalPolicy `json:"approval,omitempty"`

	// limits bound the session's turns, tokens and wall-clock time. Immutable (each field).
	// +optional
	// +kubebuilder:default={}
	Limits Limits `json:"limits,omitempty"`

	// runner shapes the pod the agent runs in. Immutable.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="runner is immutable"
	Runner RunnerSpec `json:"runner,omitempty"`

	// network widens the runner pod's egress. By default the pod may reach only the
	// Agentry gateway, cluster DNS and the repository host. Immutable: it cannot be added
	// after creation either (it defaults to empty, so an update always compares it).
	// +optional
	// +kubebuilder:default={}
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="network is immutable"
	Network NetworkSpec `json:"network,omitempty"`

	// approvals holds users' decisions on the calls listed in status.pendingApprovals.
	// Append an entry to decide; a decision cannot be changed or withdrawn once made.
	// +optional
	// +listType=map
	// +listMapKey=id
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:XValidation:rule="oldSelf.all(o, self.exists(n, n.id == o.id && n.decision == o.decision && (!has(o.digest) || (has(n.digest) && n.digest == o.digest)) && (!has(o.decidedBy) || (has(n.decidedBy) && n.decidedBy == o.decidedBy))))",message="approvals cannot be changed or removed once made"
	Approvals []ApprovalDecision `json:"approvals,omitempty"`

	// cancel stops the session when set to true. The pod is deleted, what was
	// acknowledged is archived, and the session ends Cancelled. Cannot be undone.
	// +optional
	Cancel bool `json:"cancel,omitempty"`

	// ttlSecondsAfterFinished deletes the session (and with it its pod) this many seconds
	// after it finished. Archived transcripts in object storage are kept.
	// +optional
	// +kubebuilder:default=86400
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=31536000
	TTLSecondsAfterFinished *int32 `json:"ttlSecondsAfterFinished,omitempty"`

	// delivery pushes the agent's result to a branch of the session's repository and, with
	// pullRequest, opens (or updates) a pull request, once the session Succeeded. The manager
	// does it with a GitProvider's credential, from the patch archived in object storage; the
	// runner pod never holds a push credential. Empty keeps the result in object storage
	// only. Immutable.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="delivery is immutable"
	Delivery *DeliverySpec `json:"delivery,omitempty"`

	// instructions are added to the agent's system prompt, after the namespace's AgentPolicy
	// instructions and the repository's AGENTS.md files, as the session's own instructions.
	// Immutable.
	// +optional
	// +kubebuilder:validation:MaxLength=65536
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="instructions is immutable"
	Instructions string `json:"instructions,omitempty"`

	// instructionsFrom reads more session instructions from a key of a ConfigMap in the
	// session's namespace, once, when the session starts (after spec.instructions). A
	// missing ConfigMap or key fails the session with InstructionsNotFound. Immutable.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="instructionsFrom is immutable"
	InstructionsFrom *ConfigMapKeyReference `json:"instructionsFrom,omitempty"`

	// setup prepares the environment before the agent starts: its commands run in the
	// agent's image, in the workspace, with the egress the namespace's AgentPolicy allows
	// for setup (spec.setup.egress there) and the Secrets listed in env. Then the agent
	// phase starts without those Secrets and with the setup egress closed. A failing
	// command ends the session Failed with reason SetupFailed. Immutable.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="setup is immutable"
	Setup *SetupSpec `json:"setup,omitempty"`

	// mcpServers names cluster-scoped MCPServers whose tools the agent may call. The runner
	// reaches them through the session gateway, which adds their credentials; each must be
	// allowed by the namespace's AgentPolicy (spec.allowedMCPServers). Immutable.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="mcpServers is immutable"
	MCPServers []MCPServerReference `json:"mcpServers,omitempty"`

	// continueFrom starts this session as a follow-up of an earlier, finished session in the
	// same namespace: on the same repository, at the earlier session's base commit with its
	// archived patch applied, and with its history before this session's task. The
	// repository must be the earlier session's. Immutable.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="continueFrom is immutable"
	ContinueFrom *ContinueFrom `json:"continueFrom,omitempty"`
}

// ConfigMapKeyReference names one key of a ConfigMap in the session's namespace.
type ConfigMapKeyReference struct {
	// name is the ConfigMap's name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// key is the key within the ConfigMap.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key"`
}

// SetupSpec is the setup phase: commands run before the agent starts.
type SetupSpec struct {
	// commands run one after another, each with sh -c in the workspace, in the agent's image.
	// The first one that exits non-zero ends setup (and the session).
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=8192
	// +listType=atomic
	Commands []string `json:"commands"`

	// env passes Secret keys of the session's namespace to the setup commands only, as
	// environment variables. Each Secret must be listed in the namespace's AgentPolicy
	// spec.setup.allowedSecrets. Their values are redacted from the setup output.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Env []SetupEnvVar `json:"env,omitempty"`

	// timeout bounds the whole setup phase. Defaults to 10m.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('2h')",message="timeout must be between 1s and 2h"
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// SetupEnvVar is one environment variable of the setup commands, read from a Secret.
type SetupEnvVar struct {
	// name is the variable's name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_]*$`
	Name string `json:"name"`

	// secretKeyRef is the Secret key, in the session's namespace, the value comes from.
	// +required
	SecretKeyRef SecretKeySelector `json:"secretKeyRef"`
}

// MCPServerReference names a cluster-scoped MCPServer.
type MCPServerReference struct {
	// name is the MCPServer's name. Its tools are offered to the model as
	// mcp__<name>__<tool>.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
}

// ContinueFrom names the session a follow-up continues.
type ContinueFrom struct {
	// session is the earlier session's name, in this namespace. It must have finished
	// (Succeeded, or Failed with an archived patch).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Session string `json:"session"`
}

// DeliverySpec says where a session's result goes.
// +kubebuilder:validation:XValidation:rule="has(self.push) != has(self.pullRequest)",message="exactly one of push or pullRequest must be set"
type DeliverySpec struct {
	// gitProvider names the GitProvider to deliver through. Empty picks the GitProvider whose
	// url is the repository's host.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	GitProvider string `json:"gitProvider,omitempty"`

	// push pushes a branch and opens no pull request.
	// +optional
	Push *PushDelivery `json:"push,omitempty"`

	// pullRequest pushes a branch and opens a pull request from it (GitHub and Gitea
	// providers).
	// +optional
	PullRequest *PullRequestDelivery `json:"pullRequest,omitempty"`

	// author is the author and committer of the delivered commit. Defaults to
	// Agentry <agentry@users.noreply.agentry.dev>. The commit message ends with an
	// Agentry-Session trailer naming the session (namespace/name/uid).
	// +optional
	Author *CommitAuthor `json:"author,omitempty"`
}

// PushDelivery pushes a branch.
type PushDelivery struct {
	// branch is the branch to push. Defaults to agentry/<session name>.
	// +optional
	// +kubebuilder:validation:MaxLength=200
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9._][A-Za-z0-9._/-]*$`
	// +kubebuilder:validation:XValidation:rule="!self.contains('..') && !self.contains('//') && !self.endsWith('/') && !self.endsWith('.lock')",message="branch must be a valid git branch name"
	Branch string `json:"branch,omitempty"`
}

// PullRequestDelivery pushes a branch and opens a pull request from it.
type PullRequestDelivery struct {
	// branch is the pull request's head branch. Defaults to agentry/<session name>.
	// +optional
	// +kubebuilder:validation:MaxLength=200
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9._][A-Za-z0-9._/-]*$`
	// +kubebuilder:validation:XValidation:rule="!self.contains('..') && !self.contains('//') && !self.endsWith('/') && !self.endsWith('.lock')",message="branch must be a valid git branch name"
	Branch string `json:"branch,omitempty"`

	// base is the branch the pull request targets. Defaults to spec.repository.ref when it
	// is a branch, else the repository's default branch. The agent's change is applied on
	// the base's current head; if it does not apply there, delivery fails with reason Conflict.
	// +optional
	// +kubebuilder:validation:MaxLength=200
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9._][A-Za-z0-9._/-]*$`
	// +kubebuilder:validation:XValidation:rule="!self.contains('..') && !self.contains('//') && !self.endsWith('/') && !self.endsWith('.lock')",message="base must be a valid git branch name"
	Base string `json:"base,omitempty"`

	// title is a Go text/template for the pull request's title (its first line is used).
	// Defaults to the first line of the agent's summary. See docs/delivery.md for the fields.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Title string `json:"title,omitempty"`

	// body is a Go text/template for the pull request's description. Defaults to the
	// agent's summary, the files changed, lines added and removed, tokens used and where
	// the transcript is.
	// +optional
	// +kubebuilder:validation:MaxLength=16384
	Body string `json:"body,omitempty"`

	// draft opens the pull request as a draft.
	// +optional
	Draft bool `json:"draft,omitempty"`

	// labels are added to the pull request. They must exist on the repository.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=128
	Labels []string `json:"labels,omitempty"`
}

// CommitAuthor is a git identity.
type CommitAuthor struct {
	// name is the author's name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[^<>\x00-\x1f]+$`
	Name string `json:"name"`

	// email is the author's email address.
	// +required
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[^<>\s@]+@[^<>\s@]+$`
	Email string `json:"email"`
}

// RepositorySpec points at a git repository.
type RepositorySpec struct {
	// url is the repository's clone URL: https://, http://, ssh://, git://, or scp-like
	// git@host:org/repo.git. Credentials must not be embedded in it; use credentialsSecretRef.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^(https?|ssh|git)://[^/]+(/.*)?$') || self.matches('^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^/].*$')",message="url must be an https://, http://, ssh://, git:// or scp-like (git@host:path) repository URL"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^https?://[^/]*@')",message="url must not embed credentials; put them in a Secret and set credentialsSecretRef"
	URL string `json:"url"`

	// ref is the branch, tag or commit to check out. Defaults to the remote's default branch.
	// +optional
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('-') && !self.contains('..') && !self.contains(' ')",message="ref must be a branch, tag or commit name"
	Ref string `json:"ref,omitempty"`

	// credentialsSecretRef names a Secret in the session's namespace holding git credentials:
	// keys username and password (a token) for http(s), or ssh-privatekey and optionally
	// known_hosts for ssh. It is mounted only into the checkout init container, never into
	// the container the agent runs in.
	// +optional
	CredentialsSecretRef *corev1.LocalObjectReference `json:"credentialsSecretRef,omitempty"`
}

// ModelSpec selects the LLM a session talks to.
type ModelSpec struct {
	// provider is the name of a cluster-scoped ModelProvider.
	// +optional
	// +kubebuilder:default=default
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	Provider string `json:"provider,omitempty"`

	// name is the model's name at the provider (for example gpt-4.1). Empty means the
	// provider's defaultModel.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Name string `json:"name,omitempty"`

	// temperature is the sampling temperature, a decimal from 0 to 2 written as a string
	// (for example "0.2"). Empty leaves it to the provider.
	// +optional
	// +kubebuilder:validation:MaxLength=5
	// +kubebuilder:validation:Pattern=`^([01](\.[0-9]{1,3})?|2(\.0{1,3})?)$`
	Temperature string `json:"temperature,omitempty"`

	// maxOutputTokens caps the tokens the model may produce in one response.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1048576
	MaxOutputTokens *int32 `json:"maxOutputTokens,omitempty"`
}

// ApprovalPolicy says which tool calls need a person's go-ahead.
// +kubebuilder:validation:XValidation:rule="!has(self.allowCommands) || !has(self.denyCommands) || !self.allowCommands.exists(c, c in self.denyCommands)",message="a command pattern cannot be in both allowCommands and denyCommands"
type ApprovalPolicy struct {
	// bash governs shell commands.
	// +optional
	// +kubebuilder:default=Ask
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="approval.bash is immutable"
	Bash ApprovalMode `json:"bash,omitempty"`

	// writes governs write_file and edit_file.
	// +optional
	// +kubebuilder:default=Allow
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="approval.writes is immutable"
	Writes ApprovalMode `json:"writes,omitempty"`

	// allowCommands are shell command patterns (glob syntax, matched against the whole
	// command line, for example "go test *") that run without asking even when bash is Ask.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="approval.allowCommands is immutable"
	AllowCommands []string `json:"allowCommands,omitempty"`

	// denyCommands are shell command patterns that are always refused, whatever bash says.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="approval.denyCommands is immutable"
	DenyCommands []string `json:"denyCommands,omitempty"`

	// timeout is how long a pending approval waits for a decision.
	// +optional
	// +kubebuilder:default="10m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s') && duration(self) <= duration('168h')",message="timeout must be between 10s and 168h"
	// +kubebuilder:validation:XValidation:rule="duration(self) == duration(oldSelf)",message="approval.timeout is immutable"
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// onTimeout is the decision taken when nobody answers in time.
	// +optional
	// +kubebuilder:default=Deny
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="approval.onTimeout is immutable"
	OnTimeout Decision `json:"onTimeout,omitempty"`
}

// Limits bound a session.
type Limits struct {
	// maxTurns caps the model round trips; the session ends Failed with reason
	// LimitReached when it is hit.
	// +optional
	// +kubebuilder:default=60
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="limits.maxTurns is immutable"
	MaxTurns int32 `json:"maxTurns,omitempty"`

	// maxTokens caps prompt plus completion tokens across the whole session, as counted
	// from the provider's usage reports.
	// +optional
	// +kubebuilder:default=2000000
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000000
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="limits.maxTokens is immutable"
	MaxTokens int64 `json:"maxTokens,omitempty"`

	// timeout caps the session's wall-clock time from pod start; the session ends Failed
	// with reason Timeout.
	// +optional
	// +kubebuilder:default="30m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('168h')",message="timeout must be between 1m and 168h"
	// +kubebuilder:validation:XValidation:rule="duration(self) == duration(oldSelf)",message="limits.timeout is immutable"
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// RunnerSpec shapes the runner pod.
type RunnerSpec struct {
	// image is the toolchain image the agent's tools run in (any Linux image: the runner
	// binary is copied in at start). Empty uses the operator's default runner image.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="!self.contains(' ')",message="image must be an image reference without spaces"
	Image string `json:"image,omitempty"`

	// resources are the runner container's requests and limits.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// runtimeClassName runs the pod under a RuntimeClass (for example gvisor or kata) for
	// stronger isolation.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	RuntimeClassName *string `json:"runtimeClassName,omitempty"`

	// nodeSelector constrains the nodes the pod may run on.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// tolerations let the pod run on tainted nodes.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
}

// NetworkSpec widens the runner pod's egress.
type NetworkSpec struct {
	// egress lists extra destinations the pod may reach.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	Egress []EgressRule `json:"egress,omitempty"`
}

// EgressRule allows traffic to one host name or CIDR.
// +kubebuilder:validation:XValidation:rule="has(self.host) != has(self.cidr)",message="exactly one of host or cidr must be set"
type EgressRule struct {
	// host is a DNS name (for example github.com). The controller resolves it when it
	// writes the session's NetworkPolicy.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Host string `json:"host,omitempty"`

	// cidr is an IP block, for example 10.0.0.0/8.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="isCIDR(self)",message="cidr must be a valid CIDR such as 10.0.0.0/8"
	CIDR string `json:"cidr,omitempty"`

	// ports limits the rule to these TCP ports. Empty allows 443 only.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Minimum=1
	// +kubebuilder:validation:items:Maximum=65535
	Ports []int32 `json:"ports,omitempty"`
}

// ApprovalDecision is a user's decision on one pending approval.
type ApprovalDecision struct {
	// id is the id of the entry in status.pendingApprovals being decided.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	ID string `json:"id"`

	// digest is the digest of the pending approval being decided (status.pendingApprovals[].digest):
	// the decision applies only to the exact action with this id and digest, never to another
	// action that reuses the id.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=71
	Digest string `json:"digest"`

	// decision is Allow or Deny.
	// +required
	Decision Decision `json:"decision"`

	// decidedBy is the username of who decided. Admission (the agentry-approvals
	// ValidatingAdmissionPolicy) accepts a new decision only when it equals the requesting
	// user's name and that user may "approve" agentsessions in the namespace; kubectl agentry
	// fills it in.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	DecidedBy string `json:"decidedBy"`

	// reason is shown to the model with a denial, and recorded in the transcript.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason,omitempty"`
}

// AgentSessionStatus is what Agentry observed. Every field has one writer, each writing by
// server-side apply under its own field manager, with disjoint field sets:
//   - the reconciler (agentry-controller): phase, the Succeeded and PodReady conditions,
//     observedGeneration, podName, podUID, startTime, completionTime, resolved (model and
//     image at admission, commitSHA from the runner's termination message), result.exitCode
//     and continuedFrom;
//   - the session gateway (agentry-gateway): progress, usage, pendingApprovals,
//     decidedApprovals, result but
//     its exitCode, transcript, patch and the Archived condition (its archiver fills result
//     and usage from the termination message of a runner that never reached the gateway);
//   - the delivery controller (agentry-delivery): delivery and the Delivered condition;
//   - the notification controller (agentry-notify): notifications.
//
// docs/sessions.md ("Who writes status") says when each is written.
type AgentSessionStatus struct {
	// phase is a one-word summary of the session's state.
	// +optional
	Phase SessionPhase `json:"phase,omitempty"`

	// conditions are the detailed state: Succeeded (the run-to-completion summary),
	// PodReady and Archived.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// podName is the runner pod's name.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	PodName string `json:"podName,omitempty"`

	// podUID is the UID of the runner pod the controller created. The session gateway accepts
	// a runner's token only from this pod: a pod someone else made with matching labels and
	// owner reference is refused.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	PodUID string `json:"podUID,omitempty"`

	// startTime is when the runner pod started.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`

	// completionTime is when the session reached a terminal phase.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`

	// progress is the latest activity reported by the runner.
	// +optional
	Progress *Progress `json:"progress,omitempty"`

	// usage counts tokens and tool calls, from the provider's own usage reports.
	// +optional
	Usage *Usage `json:"usage,omitempty"`

	// pendingApprovals are tool calls waiting for a decision in spec.approvals.
	// +optional
	// +listType=map
	// +listMapKey=id
	// +kubebuilder:validation:MaxItems=16
	PendingApprovals []PendingApproval `json:"pendingApprovals,omitempty"`

	// decidedApprovals records the approvals the runner got an answer for, oldest first:
	// the decision, who decided and when. The most recent 50 are kept here; the
	// transcript's approval events hold every one.
	// +optional
	// +listType=map
	// +listMapKey=id
	// +kubebuilder:validation:MaxItems=50
	DecidedApprovals []DecidedApproval `json:"decidedApprovals,omitempty"`

	// result is the outcome of a finished session.
	// +optional
	Result *SessionResult `json:"result,omitempty"`

	// transcript points at the archived transcript.
	// +optional
	Transcript *ArtifactRef `json:"transcript,omitempty"`

	// patch points at the archived result.patch (git diff of the workspace).
	// +optional
	Patch *ArtifactRef `json:"patch,omitempty"`

	// resolved records what the session actually ran with.
	// +optional
	Resolved *Resolved `json:"resolved,omitempty"`

	// delivery is where spec.delivery put the result (written by the manager's delivery
	// controller; the Delivered condition says whether it succeeded and why not).
	// +optional
	Delivery *DeliveryStatus `json:"delivery,omitempty"`

	// notifications records the notifications sent about this session (written by the
	// manager's notification controller).
	// +optional
	// +listType=map
	// +listMapKey=target
	// +listMapKey=event
	// +kubebuilder:validation:MaxItems=32
	Notifications []NotificationRecord `json:"notifications,omitempty"`

	// continuedFrom is the earlier session this one continues (spec.continueFrom), as
	// resolved when the runner pod was created (written by the reconciler).
	// +optional
	ContinuedFrom *ContinuationStatus `json:"continuedFrom,omitempty"`
}

// ContinuationStatus records what a follow-up session started from.
type ContinuationStatus struct {
	// session is the earlier session's name.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Session string `json:"session,omitempty"`

	// uid is the earlier session's UID.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	UID string `json:"uid,omitempty"`

	// commit is the commit the earlier session started from; this session's checkout is
	// at it.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Commit string `json:"commit,omitempty"`

	// patchSHA256 is the sha256 of the earlier session's archived patch, applied before
	// the agent starts.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	PatchSHA256 string `json:"patchSHA256,omitempty"`
}

// DeliveryStatus is where a session's result was delivered.
type DeliveryStatus struct {
	// gitProvider is the GitProvider used.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	GitProvider string `json:"gitProvider,omitempty"`
	// branch is the branch pushed.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Branch string `json:"branch,omitempty"`
	// baseCommitSHA is the commit the change was applied on.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	BaseCommitSHA string `json:"baseCommitSHA,omitempty"`
	// commitSHA is the delivered commit, the head of branch.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	CommitSHA string `json:"commitSHA,omitempty"`
	// pullRequestURL is the pull request's web address.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	PullRequestURL string `json:"pullRequestURL,omitempty"`
	// pullRequestNumber is the pull request's number.
	// +optional
	PullRequestNumber int64 `json:"pullRequestNumber,omitempty"`
	// attempts counts delivery attempts.
	// +optional
	Attempts int32 `json:"attempts,omitempty"`
	// lastAttemptTime is when delivery was last tried.
	// +optional
	LastAttemptTime *metav1.Time `json:"lastAttemptTime,omitempty"`
}

// NotificationRecord is one notification about a session to one target.
type NotificationRecord struct {
	// target is the name of the notification target in the AgentPolicy.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Target string `json:"target"`
	// event is Finished or WaitingForApproval/<approval id>.
	// +required
	// +kubebuilder:validation:MaxLength=128
	Event string `json:"event"`
	// sent is true once the target accepted it.
	// +optional
	Sent bool `json:"sent,omitempty"`
	// attempts counts the tries.
	// +optional
	Attempts int32 `json:"attempts,omitempty"`
	// lastAttemptTime is when it was last tried.
	// +optional
	LastAttemptTime *metav1.Time `json:"lastAttemptTime,omitempty"`
	// message is the last error, when it was not sent.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// Progress is the latest activity reported by the runner.
type Progress struct {
	// turn is the number of model round trips so far.
	// +optional
	Turn int32 `json:"turn,omitempty"`

	// lastTool is the most recent tool called.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	LastTool string `json:"lastTool,omitempty"`

	// lastActivityTime is when the runner last reported anything.
	// +optional
	LastActivityTime *metav1.Time `json:"lastActivityTime,omitempty"`

	// message is a short, human-readable line about what the agent is doing.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// Usage counts tokens and tool calls.
type Usage struct {
	// promptTokens is the sum of prompt tokens over all model calls.
	// +optional
	PromptTokens int64 `json:"promptTokens,omitempty"`
	// completionTokens is the sum of completion tokens over all model calls.
	// +optional
	CompletionTokens int64 `json:"completionTokens,omitempty"`
	// cachedTokens is the part of promptTokens served from the provider's prompt cache.
	// +optional
	CachedTokens int64 `json:"cachedTokens,omitempty"`
	// totalTokens is promptTokens plus completionTokens; limits.maxTokens is checked against it.
	// +optional
	TotalTokens int64 `json:"totalTokens,omitempty"`
	// toolCalls is the number of tool calls executed.
	// +optional
	ToolCalls int32 `json:"toolCalls,omitempty"`
}

// PendingApproval is a tool call waiting for a decision.
type PendingApproval struct {
	// id identifies the request; decide it with an entry in spec.approvals with this id.
	// +required
	// +kubebuilder:validation:MaxLength=64
	ID string `json:"id"`
	// tool is the tool the agent wants to call.
	// +required
	// +kubebuilder:validation:MaxLength=64
	Tool string `json:"tool"`
	// summary shows the exact action, for example the command line.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Summary string `json:"summary,omitempty"`
	// digest is the sha256 of the exact action; a decision applies to this action only.
	// +optional
	// +kubebuilder:validation:MaxLength=71
	Digest string `json:"digest,omitempty"`
	// requestedAt is when the agent asked.
	// +optional
	RequestedAt *metav1.Time `json:"requestedAt,omitempty"`
	// expiresAt is when approval.onTimeout applies if nobody decided.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
}

// DecidedApproval is an approval the runner got an answer for.
type DecidedApproval struct {
	// id is the request's id, as in spec.approvals and pendingApprovals.
	// +required
	// +kubebuilder:validation:MaxLength=64
	ID string `json:"id"`
	// tool is the tool the call was for.
	// +required
	// +kubebuilder:validation:MaxLength=64
	Tool string `json:"tool"`
	// digest is the sha256 of the exact action decided.
	// +optional
	// +kubebuilder:validation:MaxLength=71
	Digest string `json:"digest,omitempty"`
	// decision is Allow or Deny.
	// +required
	Decision Decision `json:"decision"`
	// by is User when a person decided in spec.approvals, Timeout when nobody decided in
	// time and approval.onTimeout applied.
	// +required
	By DecisionSource `json:"by"`
	// decidedBy is the username of the person who decided (by User), as the admission
	// policy checked it in spec.approvals.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	DecidedBy string `json:"decidedBy,omitempty"`
	// decidedAt is when the gateway answered the runner with the decision.
	// +optional
	DecidedAt *metav1.Time `json:"decidedAt,omitempty"`
}

// SessionResult is the outcome of a finished session.
type SessionResult struct {
	// summary is the agent's final message, truncated to 4 KiB.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Summary string `json:"summary,omitempty"`
	// filesChanged is the number of files the patch touches.
	// +optional
	FilesChanged int32 `json:"filesChanged,omitempty"`
	// additions is the number of added lines in the patch.
	// +optional
	Additions int32 `json:"additions,omitempty"`
	// deletions is the number of deleted lines in the patch.
	// +optional
	Deletions int32 `json:"deletions,omitempty"`
	// exitCode is the runner's exit code (see docs/runner.md).
	// +optional
	ExitCode *int32 `json:"exitCode,omitempty"`
	// omittedFiles lists changed files the patch leaves out, with the reason (a file
	// larger than the per-file limit, or a patch that would pass its total limit). They
	// count in filesChanged; summary.json in object storage has the full list.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	OmittedFiles []OmittedFile `json:"omittedFiles,omitempty"`
}

// OmittedFile is a changed file the patch does not carry.
type OmittedFile struct {
	// path is the file's path in the workspace.
	// +required
	// +kubebuilder:validation:MaxLength=4096
	Path string `json:"path"`
	// sizeBytes is the file's size.
	// +optional
	SizeBytes int64 `json:"sizeBytes,omitempty"`
	// reason says why it was left out.
	// +required
	// +kubebuilder:validation:MaxLength=256
	Reason string `json:"reason"`
}

// ArtifactRef points at an object in object storage.
type ArtifactRef struct {
	// uri is the object's location, for example s3://bucket/ns/name/uid/transcript.jsonl.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	URI string `json:"uri,omitempty"`
	// sizeBytes is the object's size.
	// +optional
	SizeBytes int64 `json:"sizeBytes,omitempty"`
	// sha256 is the hex sha256 of the object's content.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	SHA256 string `json:"sha256,omitempty"`
	// events is the number of transcript events, for transcripts.
	// +optional
	Events int64 `json:"events,omitempty"`
}

// Resolved records what a session actually ran with.
type Resolved struct {
	// commitSHA is the commit checked out.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	CommitSHA string `json:"commitSHA,omitempty"`
	// image is the runner image used.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image,omitempty"`
	// model is the model name sent to the provider.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Model string `json:"model,omitempty"`
}

// AgentSession runs one AI coding-agent session against a git repository in an isolated pod.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=as;asess,categories=agentry
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Turn",type=integer,JSONPath=`.status.progress.turn`
// +kubebuilder:printcolumn:name="Tokens",type=integer,JSONPath=`.status.usage.totalTokens`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Reason",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Succeeded")].reason`
// +kubebuilder:printcolumn:name="Model",type=string,priority=1,JSONPath=`.status.resolved.model`
// +kubebuilder:printcolumn:name="Pod",type=string,priority=1,JSONPath=`.status.podName`
// +kubebuilder:printcolumn:name="Last-Tool",type=string,priority=1,JSONPath=`.status.progress.lastTool`
// +kubebuilder:printcolumn:name="Repository",type=string,priority=1,JSONPath=`.spec.repository.url`
// +kubebuilder:printcolumn:name="Delivered",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Delivered")].reason`
// +kubebuilder:printcolumn:name="Pull-Request",type=string,priority=1,JSONPath=`.status.delivery.pullRequestURL`
// +kubebuilder:validation:XValidation:rule="!has(self.spec.approvals) || self.spec.approvals.all(a, (has(oldSelf.spec.approvals) && oldSelf.spec.approvals.exists(o, o.id == a.id)) || (has(self.status) && has(self.status.pendingApprovals) && self.status.pendingApprovals.exists(p, p.id == a.id && p.digest == a.digest)))",message="each new decision must name the id and digest of an entry in status.pendingApprovals",reason=FieldValueInvalid,fieldPath=".spec.approvals"
// +kubebuilder:validation:XValidation:rule="oldSelf.hasValue() || !has(self.spec.approvals)",message="a new session cannot carry decisions: each must name the id of an entry in status.pendingApprovals",reason=FieldValueInvalid,fieldPath=".spec.approvals",optionalOldSelf=true
type AgentSession struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what the user asks for.
	// +required
	Spec AgentSessionSpec `json:"spec"`

	// status is what Agentry observed.
	// +optional
	Status AgentSessionStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// AgentSessionList contains a list of AgentSession.
type AgentSessionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AgentSession `json:"items"`
}

func init() {
	SchemeBuilder.Register(&AgentSession{}, &AgentSessionList{})
}
