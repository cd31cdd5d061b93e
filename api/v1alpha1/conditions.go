package v1alpha1

// Condition types on AgentSession.
const (
	// ConditionSucceeded summarises a run to completion, like Tekton's Succeeded:
	// Unknown while the session is pending or running, True when it completed, False
	// (with one of the failure reasons below) when it did not.
	ConditionSucceeded = "Succeeded"

	// ConditionPodReady is True while the runner pod's containers are running.
	ConditionPodReady = "PodReady"

	// ConditionArchived is True once the transcript, patch and summary are in object storage.
	ConditionArchived = "Archived"

	// ConditionDelivered says whether spec.delivery put the result on a branch (and a pull
	// request): Unknown while delivering or retrying, True when done, False with a reason
	// below when it cannot be done. It never changes Succeeded: that stays what the agent
	// achieved.
	ConditionDelivered = "Delivered"
)

// Condition reasons. PascalCase, stable: tooling may match on them.
const (
	// ReasonPending: the session is accepted and its pod is being created.
	ReasonPending = "Pending"
	// ReasonQueued: the namespace's AgentPolicy concurrency limit is reached.
	ReasonQueued = "Queued"
	// ReasonRunning: the runner is working.
	ReasonRunning = "Running"
	// ReasonWaitingForApproval: the runner waits for a decision in spec.approvals.
	ReasonWaitingForApproval = "WaitingForApproval"
	// ReasonCompleted: the agent finished its task.
	ReasonCompleted = "Completed"

	// ReasonPodFailed: the runner pod failed for a reason not listed below.
	ReasonPodFailed = "PodFailed"
	// ReasonPodEvicted: the node evicted the pod.
	ReasonPodEvicted = "PodEvicted"
	// ReasonPodNameInUse: a pod with the runner pod's name exists and belongs to something
	// else; the session cannot get its pod.
	ReasonPodNameInUse = "PodNameInUse"
	// ReasonNetworkPolicyNameInUse: a NetworkPolicy with the runner pod's name exists and
	// belongs to something else; the pod is not created without its own policy.
	ReasonNetworkPolicyNameInUse = "NetworkPolicyNameInUse"
	// ReasonUnrecordedPod (an Event, not a condition): a pod with the runner pod's name and
	// the session's controller reference that the manager never recorded creating was
	// deleted, and the runner pod is created anew.
	ReasonUnrecordedPod = "UnrecordedPod"
	// ReasonPodDeleted: the pod disappeared before the session finished.
	ReasonPodDeleted = "PodDeleted"
	// ReasonOOMKilled: a container exceeded its memory limit.
	ReasonOOMKilled = "OOMKilled"
	// ReasonImagePullFailed: an image could not be pulled.
	ReasonImagePullFailed = "ImagePullFailed"
	// ReasonCheckoutFailed: the repository could not be cloned.
	ReasonCheckoutFailed = "CheckoutFailed"
	// ReasonSetupFailed: a spec.setup command exited non-zero or setup timed out.
	ReasonSetupFailed = "SetupFailed"
	// ReasonInstructionsNotFound: the ConfigMap or key in spec.instructionsFrom does not exist.
	ReasonInstructionsNotFound = "InstructionsNotFound"
	// ReasonContinuationUnavailable: the session named in spec.continueFrom does not exist,
	// has not finished, is on another repository, or its patch is not archived.
	ReasonContinuationUnavailable = "ContinuationUnavailable"
	// ReasonTimeout: spec.limits.timeout elapsed.
	ReasonTimeout = "Timeout"
	// ReasonCancelled: a user set spec.cancel.
	ReasonCancelled = "Cancelled"
	// ReasonLimitReached: spec.limits.maxTurns or maxTokens was hit.
	ReasonLimitReached = "LimitReached"
	// ReasonBudgetExceeded: a namespace token budget was spent.
	ReasonBudgetExceeded = "BudgetExceeded"
	// ReasonProviderError: the LLM provider refused the session's requests.
	ReasonProviderError = "ProviderError"
	// ReasonRunnerError: the runner stopped on an internal error.
	ReasonRunnerError = "RunnerError"
	// ReasonInvalidSpec: the spec cannot be run (for example an unknown ModelProvider or
	// a model the policy forbids). Fix the spec by creating a new session.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonPolicyViolation: the namespace's AgentPolicy forbids what the spec asks for.
	ReasonPolicyViolation = "PolicyViolation"
	// ReasonGatewayUntrusted: the runner pod could not be given a safe way to reach the
	// session gateway (it serves plain HTTP and the namespace does not allow that, or the
	// namespace holds a ConfigMap of the CA bundle's name that is not Agentry's).
	ReasonGatewayUntrusted = "GatewayUntrusted"

	// ReasonUploaded: all artifacts were written to object storage.
	ReasonUploaded = "Uploaded"
	// ReasonUploadFailed: writing artifacts to object storage failed; it is retried.
	ReasonUploadFailed = "UploadFailed"

	// Delivered condition reasons.

	// ReasonDelivering: the branch or pull request is being made, or a retryable failure
	// (rate limit, unreachable host) is being retried.
	ReasonDelivering = "Delivering"
	// ReasonDelivered: the branch was pushed and the pull request, if asked for, is open.
	ReasonDelivered = "Delivered"
	// ReasonNoChanges: the agent changed nothing, so there was nothing to push.
	ReasonNoChanges = "NoChanges"
	// ReasonSessionNotSucceeded: the session did not succeed, so nothing is delivered.
	ReasonSessionNotSucceeded = "SessionNotSucceeded"
	// ReasonGitProviderNotFound: no GitProvider is named or matches the repository's host,
	// or its Secret lacks the keys its type needs.
	ReasonGitProviderNotFound = "GitProviderNotFound"
	// ReasonDeliveryNotAllowed: the namespace's AgentPolicy forbids the GitProvider or the
	// repository.
	ReasonDeliveryNotAllowed = "DeliveryNotAllowed"
	// ReasonPatchUnavailable: the archived patch is missing or its sha256 does not match status.
	ReasonPatchUnavailable = "PatchUnavailable"
	// ReasonPatchIncomplete: the patch leaves files out (too large or binary), so pushing it
	// would deliver part of the change.
	ReasonPatchIncomplete = "PatchIncomplete"
	// ReasonConflict: the change does not apply on the base branch's current head.
	ReasonConflict = "Conflict"
	// ReasonBranchExists: the branch exists and its head is not a commit Agentry made for
	// this session, so it is not overwritten.
	ReasonBranchExists = "BranchExists"
	// ReasonAuthFailed: the host refused the GitProvider's credential.
	ReasonAuthFailed = "AuthFailed"
	// ReasonPushRejected: the host refused the push (for example a protected branch).
	ReasonPushRejected = "PushRejected"
	// ReasonRateLimited: the host's rate limit was still hit after the retries.
	ReasonRateLimited = "RateLimited"
	// ReasonInvalidTemplate: the pull request's title or body template does not parse or run.
	ReasonInvalidTemplate = "InvalidTemplate"
	// ReasonForgeError: the host failed in another way; the message has its answer.
	ReasonForgeError = "ForgeError"
)
