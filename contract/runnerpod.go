package contract

// The runner pod's labels and container names: the controller builds the pod, the gateway
// authenticates it by its label and reads its containers' states, and kubectl agentry
// streams the runner container's log.
const (
	// LabelSession carries the session's name (when it fits in a label value).
	LabelSession = "agentry.dev/session"
	// LabelSessionUID carries the session's UID: the link from pod to session the gateway
	// and the manager's cache rely on.
	LabelSessionUID = "agentry.dev/session-uid"

	// ContainerInstall copies the runner binary into a volume the other containers share.
	ContainerInstall = "install-runner"
	// ContainerCheckout clones the repository into the workspace.
	ContainerCheckout = "checkout"
	// ContainerSetup runs spec.setup.commands (an init container between checkout and the
	// agent), the only container that gets the spec.setup.env Secrets.
	ContainerSetup = "setup"
	// ContainerAgent runs the agent's tools (the executor) in the session's image: the
	// untrusted side, holding no credential. It is a sidecar (an init container that keeps
	// running), so it is up before the runner starts and is stopped when the runner ends.
	ContainerAgent = "agent"
	// ContainerRunner runs the loop: the trusted side, holding the gateway token. Its exit
	// code and termination message are the session's result.
	ContainerRunner = "runner"
)
