package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
)

// Labels, paths and users of the runner pod (its shared labels and container names are in
// contract).
const (
	labelManagedBy = "app.kubernetes.io/managed-by"
	labelName      = "app.kubernetes.io/name"
	managedBy      = "agentry"
	runnerName     = "agentry-runner"

	// The trusted runner and the agent's code run under different UIDs; they share the
	// fsGroup, so the runner can read the workspace (mounted read-only there) and the agent
	// cannot read what only the runner mounts.
	runnerUID        = 65532
	agentUID         = 65533
	ipcPath          = "/agentry/ipc"
	executorSocket   = ipcPath + "/executor.sock"
	workspacePath    = "/workspace"
	homePath         = "/home/agentry"
	tmpPath          = "/tmp"
	agentryBinPath   = "/agentry/bin"
	tokenDir         = "/var/run/secrets/agentry.dev/gateway"
	tokenFile        = "token"
	gatewayCAFile    = "ca.crt"
	gitCredsPath     = "/var/run/secrets/agentry.dev/git"
	runnerBinInImage = "/usr/local/bin/runner"
)

// RunnerConfig is what the operator, not the session, decides about runner pods.
type RunnerConfig struct {
	// Image is the runner image: the runner binary at /usr/local/bin/runner, a shell and
	// CA certificates. It runs the init containers, and the agent when the session names
	// no toolchain image.
	Image string
	// ImagePullPolicy applies to the runner image.
	ImagePullPolicy corev1.PullPolicy
	// GatewayURL is how runner pods reach the session gateway.
	GatewayURL string
	// TokenExpirationSeconds is the lifetime of the projected gateway token; the kubelet
	// refreshes it well before it expires.
	TokenExpirationSeconds int64
	// GatewayCAConfigMap names the ConfigMap holding the CA bundle the runner verifies the
	// gateway's certificate with (copied into the session's namespace and projected next to
	// the token); empty when the gateway serves plain HTTP.
	GatewayCAConfigMap string
	// GatewayClusterIP is the gateway Service's ClusterIP, written into runner pods'
	// /etc/hosts for the gateway URL's host name (the agent phase closes DNS). Empty: looked
	// up from the Service the URL names (NAME.NAMESPACE.svc...), or none for an IP URL.
	GatewayClusterIP string
}

// podName is the runner pod's deterministic name: a stale cache can never create a second one.
func podName(s *v1.AgentSession) string {
	const suffix = "-runner"
	if len(s.Name)+len(suffix) <= 63 {
		return s.Name + suffix
	}
	// Long names: keep a readable prefix and make it unique with a hash of the full name.
	sum := sha256.Sum256([]byte(s.Name))
	return strings.TrimRight(s.Name[:63-len(suffix)-9], "-.") + "-" + hex.EncodeToString(sum[:])[:8] + suffix
}

// sessionLabels link a child object to its session.
func sessionLabels(s *v1.AgentSession) map[string]string {
	l := map[string]string{
		labelManagedBy:           managedBy,
		labelName:                runnerName,
		contract.LabelSessionUID: string(s.UID),
	}
	if len(s.Name) <= 63 {
		l[contract.LabelSession] = s.Name
	}
	return l
}

// agentImage is the image the agent's tools run in.
func agentImage(s *v1.AgentSession, cfg RunnerConfig) string {
	if s.Spec.Runner.Image != "" {
		return s.Spec.Runner.Image
	}
	return cfg.Image
}

// buildRunnerPod returns the pod that runs a session. It is a pure function of the session,
// the operator's configuration and what admission decided (the agent container's
// resources, the volumes' size limits); the reconciler sets the owner reference.
//
// The pod meets the Pod Security Standards "restricted" profile. It holds no long-lived
// secret: it mounts no ServiceAccount token for the Kubernetes API, only a short-lived
// projected token whose audience is the gateway; git credentials, when the session has
// them, are mounted into the checkout init container alone.
func buildRunnerPod(s *v1.AgentSession, cfg RunnerConfig, settings podSettings) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:      podName(s),
			Namespace: s.Namespace,
			Labels:    sessionLabels(s),
			Annotations: map[string]string{
				// Tells cluster autoscalers not to evict a half-done agent run.
				"cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
			},
		},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			// The projected gateway token needs a ServiceAccount to be issued for. The token's
			// audience is the gateway alone, so the apiserver refuses it whatever RBAC the
			// namespace's default ServiceAccount has; no API token is mounted.
			ServiceAccountName:            "default",
			AutomountServiceAccountToken:  ptr.To(false),
			EnableServiceLinks:            ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](30),
			RuntimeClassName:              s.Spec.Runner.RuntimeClassName,
			NodeSelector:                  s.Spec.Runner.NodeSelector,
			Tolerations:                   s.Spec.Runner.Tolerations,
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   ptr.To(true),
				RunAsUser:      ptr.To[int64](agentUID),
				RunAsGroup:     ptr.To[int64](agentUID),
				FSGroup:        ptr.To[int64](agentUID),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			// Each container has its own process namespace (the default, said explicitly):
			// agent code cannot see the runner's processes, their memory or their /proc.
			ShareProcessNamespace: ptr.To(false),
			Volumes:               runnerVolumes(s, cfg, settings),
			InitContainers:        []corev1.Container{installContainer(cfg), checkoutContainer(s, cfg, settings), agentContainer(s, cfg, settings)},
			Containers:            []corev1.Container{runnerContainer(s, cfg, settings)},
		},
	}
	if s.Spec.Limits.Timeout != nil {
		// The kubelet's own backstop; the reconciler ends the session at the same deadline.
		pod.Spec.ActiveDeadlineSeconds = ptr.To(int64(s.Spec.Limits.Timeout.Seconds()))
	}
	withSetup(pod, s, cfg, settings)
	return pod
}

func restrictedContainerSecurity() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		RunAsNonRoot:             ptr.To(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// smallResources bounds the init containers, which only copy a binary and clone a repo.
func smallResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
	}
}

// Size limits of the volumes only Agentry writes to.
var (
	agentryBinSize = resource.MustParse("512Mi")
	ipcSize        = resource.MustParse("16Mi")
	runnerTmpSize  = resource.MustParse("1Gi")
)

// runnerVolumes are the pod's volumes. Every emptyDir has a sizeLimit: the kubelet evicts
// a pod that writes past it, so agent code cannot fill the node's disk.
func runnerVolumes(s *v1.AgentSession, cfg RunnerConfig, settings podSettings) []corev1.Volume {
	emptyDir := func(name string, size resource.Quantity) corev1.Volume {
		if size.IsZero() {
			size = defaultTmpSize // never unbounded, never a zero limit that evicts at once
		}
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(size)}}}
	}
	vols := []corev1.Volume{
		emptyDir("workspace", settings.workspace),
		emptyDir("home", settings.home),
		emptyDir("tmp", settings.tmp),
		emptyDir("agentry-bin", agentryBinSize),
		emptyDir("agentry-ipc", ipcSize),
		emptyDir("runner-tmp", runnerTmpSize),
		{
			Name: "gateway-token",
			VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				DefaultMode: ptr.To[int32](0o440),
				Sources:     gatewaySources(cfg),
			}},
		},
	}
	if ref := s.Spec.Repository.CredentialsSecretRef; ref != nil {
		vols = append(vols, corev1.Volume{Name: "git-credentials", VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{SecretName: ref.Name, DefaultMode: ptr.To[int32](0o440)},
		}})
	}
	return vols
}

// gatewaySources are what the runner needs to reach the gateway: its projected token and,
// when the gateway serves HTTPS, the CA bundle to verify it with.
func gatewaySources(cfg RunnerConfig) []corev1.VolumeProjection {
	sources := []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
		Audience:          contract.GatewayAudience,
		ExpirationSeconds: ptr.To(cfg.TokenExpirationSeconds),
		Path:              tokenFile,
	}}}
	if cfg.GatewayCAConfigMap != "" {
		sources = append(sources, corev1.VolumeProjection{ConfigMap: &corev1.ConfigMapProjection{
			LocalObjectReference: corev1.LocalObjectReference{Name: cfg.GatewayCAConfigMap},
			Items:                []corev1.KeyToPath{{Key: contract.GatewayCAKey, Path: gatewayCAFile}},
		}})
	}
	return sources
}

// installContainer copies the runner binary into a shared volume, so the agent container
// can run any Linux image the user picks (the pattern Tekton uses for its entrypoint).
func installContainer(cfg RunnerConfig) corev1.Container {
	return corev1.Container{
		Name:                     contract.ContainerInstall,
		Image:                    cfg.Image,
		ImagePullPolicy:          cfg.ImagePullPolicy,
		Command:                  []string{"cp", runnerBinInImage, agentryBinPath + "/runner"},
		SecurityContext:          restrictedContainerSecurity(),
		Resources:                smallResources(),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		VolumeMounts:             []corev1.VolumeMount{{Name: "agentry-bin", MountPath: agentryBinPath}},
	}
}

func checkoutContainer(s *v1.AgentSession, cfg RunnerConfig, settings podSettings) corev1.Container {
	args := []string{contract.RunnerCmdCheckout, flagArg(contract.FlagCheckoutRepo), s.Spec.Repository.URL, flagArg(contract.FlagCheckoutDir), workspacePath}
	mounts := []corev1.VolumeMount{
		{Name: "workspace", MountPath: workspacePath},
		{Name: "home", MountPath: homePath},
		{Name: "tmp", MountPath: tmpPath},
	}
	if c := s.Status.ContinuedFrom; c != nil {
		// A follow-up starts at the earlier session's base commit with its patch applied
		// here, before setup and the agent: checkout runs no repository code, so it may
		// hold the gateway token for the one request that fetches the patch.
		args = append(args, flagArg(contract.FlagRef), c.Commit, flagArg(contract.FlagCheckoutFromGateway), strings.TrimSuffix(cfg.GatewayURL, "/"),
			flagArg(contract.FlagCheckoutGatewayTokenFile), tokenDir+"/"+tokenFile)
		args = append(args, gatewayTrustArgs(cfg, settings)...)
		mounts = append(mounts, corev1.VolumeMount{Name: "gateway-token", MountPath: tokenDir, ReadOnly: true})
	} else if s.Spec.Repository.Ref != "" {
		args = append(args, flagArg(contract.FlagRef), s.Spec.Repository.Ref)
	}
	if s.Spec.Repository.CredentialsSecretRef != nil {
		args = append(args, flagArg(contract.FlagCheckoutCredentialsDir), gitCredsPath)
		mounts = append(mounts, corev1.VolumeMount{Name: "git-credentials", MountPath: gitCredsPath, ReadOnly: true})
	}
	return corev1.Container{
		Name:                     contract.ContainerCheckout,
		Image:                    cfg.Image,
		ImagePullPolicy:          cfg.ImagePullPolicy,
		Command:                  []string{runnerBinInImage},
		Args:                     args,
		Env:                      []corev1.EnvVar{{Name: "HOME", Value: homePath}},
		SecurityContext:          restrictedContainerSecurity(),
		Resources:                smallResources(),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		VolumeMounts:             mounts,
	}
}

// toolchainMounts are what a container running code in the session's image mounts (the
// setup commands, the agent's tools): the workspace, a home and a tmp, and the runner binary
// read-only. No credential.
func toolchainMounts() []corev1.VolumeMount {
	return []corev1.VolumeMount{
		{Name: "workspace", MountPath: workspacePath},
		{Name: "home", MountPath: homePath},
		{Name: "tmp", MountPath: tmpPath},
		{Name: "agentry-bin", MountPath: agentryBinPath, ReadOnly: true},
	}
}

// agentContainer runs the executor in the session's image: every tool call, and so every
// command and every piece of repository code the agent runs, happens here. It mounts the
// workspace, a home and a tmp, the runner binary and the executor's socket directory, and
// no credential.
func agentContainer(s *v1.AgentSession, cfg RunnerConfig, settings podSettings) corev1.Container {
	image := agentImage(s, cfg)
	pull := corev1.PullIfNotPresent
	if image == cfg.Image {
		pull = cfg.ImagePullPolicy
	}
	args := []string{contract.RunnerCmdExecutor, flagArg(contract.FlagExecutorSocket), executorSocket, flagArg(contract.FlagWorkspace), workspacePath}
	return corev1.Container{
		Name:            contract.ContainerAgent,
		Image:           image,
		ImagePullPolicy: pull,
		// A sidecar: started before the runner, stopped by the kubelet once the runner has
		// ended. If agent code kills it, the kubelet starts it again.
		RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
		Command:       []string{agentryBinPath + "/runner"},
		Args:          args,
		WorkingDir:    workspacePath,
		Env: []corev1.EnvVar{
			{Name: "HOME", Value: homePath},
			{Name: "TMPDIR", Value: tmpPath},
		},
		// spec.runner.resources with the AgentPolicy's (or the built-in) defaults filled in.
		Resources:                settings.agentResources,
		SecurityContext:          restrictedContainerSecurity(),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		VolumeMounts:             append(toolchainMounts(), corev1.VolumeMount{Name: "agentry-ipc", MountPath: ipcPath}),
	}
}

// runnerContainer runs the loop in the runner image, under its own UID: it holds the
// projected gateway token, reads the workspace read-only (to build the patch) and runs
// every tool through the executor in the agent container.
func runnerContainer(s *v1.AgentSession, cfg RunnerConfig, settings podSettings) corev1.Container {
	spec := s.Spec
	tools := make([]string, 0, len(spec.Tools))
	for _, t := range spec.Tools {
		tools = append(tools, string(t))
	}
	args := []string{
		contract.RunnerCmdRun,
		flagArg(contract.FlagWorkspace), workspacePath,
		flagArg(contract.FlagRunExecutor), executorSocket,
		flagArg(contract.FlagRunTask), spec.Task,
		flagArg(contract.FlagRunSession), s.Namespace + "/" + s.Name,
		flagArg(contract.FlagRunTools), strings.Join(tools, ","),
		flagArg(contract.FlagRunApprovalBash), string(spec.Approval.Bash),
		flagArg(contract.FlagRunApprovalWrites), string(spec.Approval.Writes),
		flagArg(contract.FlagRunMaxTurns), strconv.Itoa(int(spec.Limits.MaxTurns)),
		flagArg(contract.FlagRunMaxTokens), strconv.FormatInt(spec.Limits.MaxTokens, 10),
		// The gateway is the runner's model endpoint; the projected token is its key. The
		// kubelet rotates the token file, and the runner re-reads it before every request.
		flagArg(contract.FlagRunBaseURL), strings.TrimSuffix(cfg.GatewayURL, "/") + "/v1",
		flagArg(contract.FlagRunAPIKeyFile), tokenDir + "/" + tokenFile,
		// The same token authenticates the transcript stream and approval requests.
		flagArg(contract.FlagRunGateway), strings.TrimSuffix(cfg.GatewayURL, "/"),
		flagArg(contract.FlagRunGatewaySpoolDir), tmpPath + "/agentry-gateway-spool",
	}
	// Only the mounted bundle is trusted for the gateway; the kubelet refreshes it on
	// rotation and the runner re-reads it for every new connection.
	args = append(args, gatewayTrustArgs(cfg, settings)...)
	if t := spec.Approval.Timeout; t != nil {
		// The gateway applies onTimeout at the expiry; the runner falls back to the same
		// decision only if the gateway stays unreachable that long.
		args = append(args, flagArg(contract.FlagRunApprovalTimeout), t.Duration.String())
	}
	if spec.Approval.OnTimeout != "" {
		args = append(args, flagArg(contract.FlagRunApprovalOnTimeout), string(spec.Approval.OnTimeout))
	}
	if spec.Model.Name != "" {
		args = append(args, flagArg(contract.FlagRunModel), spec.Model.Name)
	}
	if spec.Model.Temperature != "" {
		args = append(args, flagArg(contract.FlagRunTemperature), spec.Model.Temperature)
	}
	if spec.Model.MaxOutputTokens != nil {
		args = append(args, flagArg(contract.FlagRunMaxOutputTokens), strconv.Itoa(int(*spec.Model.MaxOutputTokens)))
	}
	if spec.Limits.Timeout != nil {
		args = append(args, flagArg(contract.FlagTimeout), spec.Limits.Timeout.Duration.String())
	}
	if settings.contextWindow > 0 {
		args = append(args, flagArg(contract.FlagRunContextWindow), strconv.FormatInt(settings.contextWindow, 10))
	}
	for _, in := range settings.instructions {
		b, _ := json.Marshal(in) // two strings always marshal
		args = append(args, flagArg(contract.FlagRunInstruction), string(b))
	}
	if s.Status.ContinuedFrom != nil {
		// The earlier session's history, fetched from the gateway with the same token.
		args = append(args, flagArg(contract.FlagRunContinuation))
	}
	for _, p := range spec.Approval.AllowCommands {
		args = append(args, flagArg(contract.FlagRunAllowCommand), p)
	}
	for _, p := range spec.Approval.DenyCommands {
		args = append(args, flagArg(contract.FlagRunDenyCommand), p)
	}
	// The runner lists and calls these servers' tools through the gateway, which holds
	// their credentials; the pod gets only the names.
	for _, m := range spec.MCPServers {
		args = append(args, flagArg(contract.FlagRunMCPServer), m.Name)
	}
	sc := restrictedContainerSecurity()
	sc.RunAsUser, sc.RunAsGroup = ptr.To[int64](runnerUID), ptr.To[int64](runnerUID)
	return corev1.Container{
		Name:            contract.ContainerRunner,
		Image:           cfg.Image,
		ImagePullPolicy: cfg.ImagePullPolicy,
		Command:         []string{runnerBinInImage},
		Args:            args,
		Env:             []corev1.EnvVar{{Name: "TMPDIR", Value: tmpPath}},
		// The loop streams the transcript and builds a size-capped patch: its memory is
		// bounded whatever the agent does.
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
		},
		SecurityContext:          sc,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		VolumeMounts: []corev1.VolumeMount{
			{Name: "workspace", MountPath: workspacePath, ReadOnly: true},
			{Name: "runner-tmp", MountPath: tmpPath},
			{Name: "agentry-ipc", MountPath: ipcPath},
			{Name: "gateway-token", MountPath: tokenDir, ReadOnly: true},
		},
	}
}

// gatewayTrustArgs tell a runner command how to trust the gateway: only the mounted CA
// bundle, or plain HTTP where the namespace allows it.
func gatewayTrustArgs(cfg RunnerConfig, settings podSettings) []string {
	if cfg.GatewayCAConfigMap != "" {
		return []string{flagArg(contract.FlagGatewayCAFile), tokenDir + "/" + gatewayCAFile}
	}
	if settings.plainHTTPGateway {
		return []string{flagArg(contract.FlagAllowPlainHTTPGateway)}
	}
	return nil
}

// flagArg is a runner flag on its command line.
func flagArg(name string) string { return "--" + name }

// modelContextWindow is the model's context window from its ModelProvider: the per-model
// entry, else the provider's; 0 when unknown. An entry under 1,024 tokens is ignored, as
// the runner would refuse it and fail every session: the map's values have no schema
// minimum, unlike spec.contextWindow.
func modelContextWindow(p *v1.ModelProvider, model string) int64 {
	if p == nil {
		return 0
	}
	if w, ok := p.Spec.ModelContextWindows[model]; ok && w >= minContextWindow {
		return w
	}
	if w := p.Spec.ContextWindow; w != nil && *w >= minContextWindow {
		return *w
	}
	return 0
}

// minContextWindow is the smallest window the runner's --context-window accepts.
const minContextWindow = 1024
