package controllers

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/test/testutil"
)

var testRunnerConfig = RunnerConfig{
	Image:                  "agentry/runner:test",
	ImagePullPolicy:        corev1.PullIfNotPresent,
	GatewayURL:             "https://agentry-gateway.agentry-system.svc:8443",
	TokenExpirationSeconds: 3600,
	GatewayCAConfigMap:     testCAConfigMap,
}

func containerByName(p *corev1.Pod, name string) *corev1.Container {
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range cs {
			if cs[i].Name == name {
				return &cs[i]
			}
		}
	}
	return nil
}

func TestRunnerPodIsRestrictedAndHoldsNoSecret(t *testing.T) {
	s := testutil.Session("fix", "team-a").UID("uid-1").Credentials("git-creds").Obj()
	pod := buildRunnerPod(s, testRunnerConfig, defaultSettings(t, s))

	if got := ptr.Deref(pod.Spec.AutomountServiceAccountToken, true); got {
		t.Error("automountServiceAccountToken is not false: the pod would get a Kubernetes API token")
	}
	if pod.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("restartPolicy = %s, want Never", pod.Spec.RestartPolicy)
	}
	psc := pod.Spec.SecurityContext
	if !ptr.Deref(psc.RunAsNonRoot, false) || ptr.Deref(psc.RunAsUser, 0) == 0 || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context not restricted: %+v", psc)
	}
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		sc := c.SecurityContext
		if sc == nil || ptr.Deref(sc.AllowPrivilegeEscalation, true) || !ptr.Deref(sc.ReadOnlyRootFilesystem, false) ||
			sc.Capabilities == nil || !cmp.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("container %s security context not restricted: %+v", c.Name, sc)
		}
		if c.TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError {
			t.Errorf("container %s terminationMessagePolicy = %s", c.Name, c.TerminationMessagePolicy)
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil {
				t.Errorf("container %s reads env %s from %+v: no secret may reach the pod's environment", c.Name, e.Name, e.ValueFrom)
			}
		}
		for _, m := range c.VolumeMounts {
			if m.Name == "git-credentials" && c.Name != contract.ContainerCheckout {
				t.Errorf("git credentials mounted into %s; only the checkout container may see them", c.Name)
			}
		}
	}
	if m := containerByName(pod, contract.ContainerCheckout).VolumeMounts; !hasMount(m, "git-credentials") {
		t.Error("checkout container lacks the git credentials it needs")
	}

	var token *corev1.ServiceAccountTokenProjection
	for _, v := range pod.Spec.Volumes {
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.ServiceAccountToken != nil {
					token = src.ServiceAccountToken
				}
			}
		}
		if v.Secret != nil && v.Secret.SecretName != "git-creds" {
			t.Errorf("unexpected secret volume %s", v.Secret.SecretName)
		}
	}
	if token == nil || token.Audience != contract.GatewayAudience || ptr.Deref(token.ExpirationSeconds, 0) != 3600 {
		t.Errorf("projected gateway token = %+v, want audience %s and 3600s expiry", token, contract.GatewayAudience)
	}
	if !hasMount(containerByName(pod, contract.ContainerRunner).VolumeMounts, "gateway-token") {
		t.Error("runner container cannot read its gateway token")
	}
}

// The agent's code runs in the agent container: it must get no credential, no view of the
// runner's processes, another UID than the runner, and the workspace must be read-only for
// the runner (what the agent plants there is read, never written back).
func TestAgentContainerHoldsNothingOfTheRunner(t *testing.T) {
	s := testutil.Session("fix", "team-a").UID("uid-1").Obj()
	s.Spec.Repository.CredentialsSecretRef = &corev1.LocalObjectReference{Name: "git-creds"}
	pod := buildRunnerPod(s, testRunnerConfig, defaultSettings(t, s))

	agent, runner := containerByName(pod, contract.ContainerAgent), containerByName(pod, contract.ContainerRunner)
	for _, m := range agent.VolumeMounts {
		if m.Name == "gateway-token" || m.Name == "git-credentials" || m.Name == "runner-tmp" {
			t.Errorf("agent container mounts %s", m.Name)
		}
	}
	if len(agent.Env) != 2 || len(agent.EnvFrom) != 0 {
		t.Errorf("agent env = %+v, want only HOME and TMPDIR", agent.Env)
	}
	if ptr.Deref(pod.Spec.ShareProcessNamespace, true) {
		t.Error("containers share a process namespace: agent code could read the runner's /proc")
	}
	agentUser := ptr.Deref(pod.Spec.SecurityContext.RunAsUser, -1)
	if agent.SecurityContext.RunAsUser != nil {
		agentUser = *agent.SecurityContext.RunAsUser
	}
	if runnerUser := ptr.Deref(runner.SecurityContext.RunAsUser, -1); runnerUser == agentUser || runnerUser == -1 {
		t.Errorf("runner UID %d, agent UID %d: want two different UIDs", runnerUser, agentUser)
	}
	for _, m := range runner.VolumeMounts {
		if m.Name == "workspace" && !m.ReadOnly {
			t.Error("the runner mounts the workspace writable")
		}
	}
	if ptr.Deref(agent.RestartPolicy, "") != corev1.ContainerRestartPolicyAlways {
		t.Error("the agent container must be a sidecar so the pod completes when the runner does")
	}
	if got := strings.Join(agent.Args, " "); got != "executor --socket /agentry/ipc/executor.sock --workspace /workspace" {
		t.Errorf("agent args = %q", got)
	}
	if !slices.Contains(runner.Args, "--executor") {
		t.Errorf("runner args %v lack --executor", runner.Args)
	}
}

func hasMount(ms []corev1.VolumeMount, name string) bool {
	for _, m := range ms {
		if m.Name == name {
			return true
		}
	}
	return false
}

func TestRunnerPodCarriesTheSessionSettings(t *testing.T) {
	s := testutil.Session("fix", "team-a").UID("uid-1").Image("golang:1.26").Timeout(45*time.Minute).
		Tools(v1.ToolReadFile, v1.ToolGrep, v1.ToolBash).Obj()
	s.Spec.Model.Temperature = "0.2"
	s.Spec.Approval.AllowCommands = []string{"go test *"}
	s.Spec.Approval.Timeout = &metav1.Duration{Duration: 5 * time.Minute}
	s.Spec.Approval.OnTimeout = v1.DecisionAllow
	s.Spec.Runner.RuntimeClassName = ptr.To("gvisor")
	s.Spec.Runner.NodeSelector = map[string]string{"pool": "agents"}
	s.Spec.Runner.Tolerations = []corev1.Toleration{{Key: "agents", Operator: corev1.TolerationOpExists}}
	s.Spec.Runner.Resources = corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("4Gi")}}

	pod := buildRunnerPod(s, testRunnerConfig, defaultSettings(t, s))

	if pod.Name != "fix-runner" || pod.Namespace != "team-a" {
		t.Errorf("pod = %s/%s, want team-a/fix-runner", pod.Namespace, pod.Name)
	}
	if diff := cmp.Diff(map[string]string{
		"app.kubernetes.io/managed-by": "agentry", "app.kubernetes.io/name": "agentry-runner",
		contract.LabelSession: "fix", contract.LabelSessionUID: "uid-1",
	}, pod.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	if got := ptr.Deref(pod.Spec.ActiveDeadlineSeconds, 0); got != 2700 {
		t.Errorf("activeDeadlineSeconds = %d, want 2700", got)
	}
	if ptr.Deref(pod.Spec.RuntimeClassName, "") != "gvisor" || pod.Spec.NodeSelector["pool"] != "agents" || len(pod.Spec.Tolerations) != 1 {
		t.Errorf("scheduling settings not copied: %+v", pod.Spec)
	}

	agent := containerByName(pod, contract.ContainerAgent)
	if agent.Image != "golang:1.26" {
		t.Errorf("agent image = %s, want the toolchain image", agent.Image)
	}
	if agent.Command[0] != "/agentry/bin/runner" {
		t.Errorf("agent command = %v, want the runner copied into the shared volume", agent.Command)
	}
	if !agent.Resources.Limits.Memory().Equal(resource.MustParse("4Gi")) {
		t.Errorf("agent resources = %+v", agent.Resources)
	}
	args := strings.Join(containerByName(pod, contract.ContainerRunner).Args, " ")
	for _, want := range []string{
		"--task Make TestFoo deterministic.", "--tools read_file,grep,bash", "--max-turns 60", "--max-tokens 2000000",
		"--timeout 45m0s", "--temperature 0.2", "--model gpt-4.1", "--approval-bash Ask", "--allow-command go test *",
		"--base-url https://agentry-gateway.agentry-system.svc:8443/v1", "--api-key-file /var/run/secrets/agentry.dev/gateway/token",
		"--gateway https://agentry-gateway.agentry-system.svc:8443 ", "--gateway-spool-dir /tmp/agentry-gateway-spool",
		"--approval-timeout 5m0s", "--approval-on-timeout Allow",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("runner args lack %q: %s", want, args)
		}
	}
	install := containerByName(pod, contract.ContainerInstall)
	checkout := containerByName(pod, contract.ContainerCheckout)
	if install.Image != testRunnerConfig.Image || checkout.Image != testRunnerConfig.Image {
		t.Errorf("init containers must use the runner image, got %s and %s", install.Image, checkout.Image)
	}
	if got := strings.Join(checkout.Args, " "); got != "checkout --repo https://git.example.com/org/repo.git --dir /workspace --ref main" {
		t.Errorf("checkout args = %q", got)
	}
}

func TestPodNameIsDeterministicAndFits(t *testing.T) {
	long := strings.Repeat("a", 200)
	a := testutil.Session(long, "ns").Obj()
	b := testutil.Session(long+"b", "ns").Obj()
	if podName(a) != podName(a.DeepCopy()) {
		t.Error("pod name is not deterministic")
	}
	if len(podName(a)) > 63 || podName(a) == podName(b) {
		t.Errorf("long names: %q and %q (want distinct, at most 63 characters)", podName(a), podName(b))
	}
	if _, ok := sessionLabels(a)[contract.LabelSession]; ok {
		t.Error("a 200-character name cannot be a label value")
	}
}

// Agent code can write without bound to every volume it mounts: each emptyDir must carry a
// sizeLimit, so the kubelet evicts the pod before the node's disk fills.
func TestRunnerPodVolumesAreBounded(t *testing.T) {
	s := testutil.Session("fix", "team-a").UID("uid-1").Obj()
	pod := buildRunnerPod(s, testRunnerConfig, defaultSettings(t, s))
	want := map[string]string{"workspace": "10Gi", "home": "1Gi", "tmp": "1Gi"}
	for _, v := range pod.Spec.Volumes {
		if v.EmptyDir == nil {
			continue
		}
		if v.EmptyDir.SizeLimit == nil {
			t.Errorf("emptyDir %s has no sizeLimit", v.Name)
			continue
		}
		if w, ok := want[v.Name]; ok && v.EmptyDir.SizeLimit.Cmp(resource.MustParse(w)) != 0 {
			t.Errorf("emptyDir %s sizeLimit = %s, want %s", v.Name, v.EmptyDir.SizeLimit.String(), w)
		}
	}
	agent := containerByName(pod, contract.ContainerAgent)
	if agent.Resources.Limits.Memory().IsZero() || agent.Resources.Requests.Cpu().IsZero() {
		t.Errorf("agent container has no default resources: %+v", agent.Resources)
	}
}

func TestContextWindowComesFromTheModelProvider(t *testing.T) {
	provider := func(window *int64, perModel map[string]int64) *v1.ModelProvider {
		p := &v1.ModelProvider{}
		p.Spec.ContextWindow, p.Spec.ModelContextWindows = window, perModel
		return p
	}
	cases := map[string]struct {
		provider *v1.ModelProvider
		want     int64
	}{
		"the model's own entry":           {provider(ptr.To[int64](128_000), map[string]int64{"gpt-4.1": 1_047_576}), 1_047_576},
		"the provider's window otherwise": {provider(ptr.To[int64](128_000), map[string]int64{"other": 8_192}), 128_000},
		"unknown: no compaction":          {provider(nil, nil), 0},
		// The runner refuses a window under 1,024 tokens; passing one would fail every session.
		"an entry too small is ignored": {provider(ptr.To[int64](32_000), map[string]int64{"gpt-4.1": 100}), 32_000},
		"no provider":                   {nil, 0},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := modelContextWindow(tc.provider, "gpt-4.1"); got != tc.want {
				t.Errorf("context window = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestRunnerGetsTheContextWindowWhenKnown(t *testing.T) {
	s := testutil.Session("fix", "team-a").UID("uid-1").Obj()
	settings := defaultSettings(t, s)
	args := containerByName(buildRunnerPod(s, testRunnerConfig, settings), contract.ContainerRunner).Args
	if slices.Contains(args, "--context-window") {
		t.Errorf("runner args carry --context-window without a known window: %v", args)
	}
	settings.contextWindow = 200_000
	args = containerByName(buildRunnerPod(s, testRunnerConfig, settings), contract.ContainerRunner).Args
	if i := slices.Index(args, "--context-window"); i < 0 || args[i+1] != "200000" {
		t.Errorf("runner args lack --context-window 200000: %v", args)
	}
}
