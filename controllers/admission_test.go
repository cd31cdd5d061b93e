package controllers

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/test/testutil"
)

func TestAdmitSession(t *testing.T) {
	provider := &v1.ModelProvider{ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Spec: v1.ModelProviderSpec{DefaultModel: "gpt-4.1", Models: []string{"gpt-4.1", "o4-mini"}}}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	session := func(name string, age time.Duration, podName string, phase v1.SessionPhase) v1.AgentSession {
		s := testutil.Session(name, "ns").UID("uid-" + name).Obj()
		s.CreationTimestamp = metav1.NewTime(base.Add(-age))
		s.Status.PodName, s.Status.Phase = podName, phase
		return *s
	}
	policy := func(mutate func(*v1.AgentPolicySpec)) []v1.AgentPolicy {
		p := v1.AgentPolicy{ObjectMeta: metav1.ObjectMeta{Name: "team"}}
		mutate(&p.Spec)
		return []v1.AgentPolicy{p}
	}

	secret := func(labels map[string]string) *metav1.PartialObjectMetadata {
		return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: "ns", Labels: labels}}
	}
	optedIn := secret(map[string]string{LabelGitCredentials: "true"})
	withRunner := func(mutate func(*v1.RunnerSpec)) *v1.AgentSession {
		s := testutil.Session("s", "ns").Obj()
		mutate(&s.Spec.Runner)
		return s
	}

	cases := map[string]struct {
		session     *v1.AgentSession
		provider    *v1.ModelProvider
		secret      *metav1.PartialObjectMetadata
		policies    []v1.AgentPolicy
		siblings    []v1.AgentSession
		want        verdict
		wantModel   string
		wantMessage string
	}{
		"no provider yet": {
			session: testutil.Session("s", "ns").Obj(), provider: nil,
			want: wait, wantMessage: `ModelProvider "default" does not exist`,
		},
		"provider default model": {
			session:  func() *v1.AgentSession { s := testutil.Session("s", "ns").Obj(); s.Spec.Model.Name = ""; return s }(),
			provider: provider, want: admit, wantModel: "gpt-4.1",
		},
		"model the provider does not offer": {
			session:  func() *v1.AgentSession { s := testutil.Session("s", "ns").Obj(); s.Spec.Model.Name = "gpt-9"; return s }(),
			provider: provider, want: reject, wantMessage: `does not offer model "gpt-9"`,
		},
		"image outside the allowed prefixes": {
			session: testutil.Session("s", "ns").Image("evil.example/miner:latest").Obj(), provider: provider,
			policies: policy(func(p *v1.AgentPolicySpec) { p.AllowedImages = []string{"registry.example/toolchains/"} }),
			want:     reject, wantMessage: `spec.runner.image "evil.example/miner:latest" is not allowed`,
		},
		// The attack: a repository beside the allowed one, sharing its name as a prefix.
		"image in a sibling of the allowed repository": {
			session: testutil.Session("s", "ns").Image("registry.example/team-evil/miner:1").Obj(), provider: provider,
			policies: policy(func(p *v1.AgentPolicySpec) { p.AllowedImages = []string{"registry.example/team"} }),
			want:     reject, wantMessage: `spec.runner.image "registry.example/team-evil/miner:1" is not allowed`,
		},
		"image under the allowed repository": {
			session: testutil.Session("s", "ns").Image("registry.example/team/go:1.26").Obj(), provider: provider,
			policies: policy(func(p *v1.AgentPolicySpec) { p.AllowedImages = []string{"registry.example/team"} }),
			want:     admit,
		},
		"image that is not a reference": {
			session: testutil.Session("s", "ns").Image("registry.example/team/../evil").Obj(), provider: provider,
			policies: policy(func(p *v1.AgentPolicySpec) { p.AllowedImages = []string{"registry.example/team"} }),
			want:     reject, wantMessage: `spec.runner.image "registry.example/team/../evil": not a valid image reference`,
		},
		"image inside the allowed prefixes": {
			session: testutil.Session("s", "ns").Image("registry.example/toolchains/go:1.26").Obj(), provider: provider,
			policies: policy(func(p *v1.AgentPolicySpec) { p.AllowedImages = []string{"registry.example/toolchains/"} }),
			want:     admit, wantModel: "gpt-4.1",
		},
		"runtime class required": {
			session: testutil.Session("s", "ns").Obj(), provider: provider,
			policies: policy(func(p *v1.AgentPolicySpec) { p.RequiredRuntimeClassName = "gvisor" }),
			want:     reject, wantMessage: `spec.runner.runtimeClassName must be "gvisor"`,
		},
		"turn cap": {
			session: testutil.Session("s", "ns").Obj(), provider: provider,
			policies: policy(func(p *v1.AgentPolicySpec) { p.MaxLimits = &v1.LimitCaps{MaxTurns: ptr.To[int32](10)} }),
			want:     reject, wantMessage: "spec.limits.maxTurns 60 exceeds the cap of 10",
		},
		"egress not in the policy": {
			session: testutil.Session("s", "ns").Egress(v1.EgressRule{Host: "pastebin.example"}).Obj(), provider: provider,
			policies: policy(func(p *v1.AgentPolicySpec) { p.Egress = []v1.EgressRule{{Host: "pkg.go.dev"}} }),
			want:     reject, wantMessage: "spec.network.egress[0] (pastebin.example)",
		},
		// The attack: a namespace nobody governs opens egress to the whole internet.
		"egress without any AgentPolicy": {
			session: testutil.Session("s", "ns").Egress(v1.EgressRule{CIDR: "0.0.0.0/0"}).Obj(), provider: provider,
			want: reject, wantMessage: "spec.network.egress is not allowed: no AgentPolicy in namespace ns allows extra egress",
		},
		"no egress and no AgentPolicy": {
			session: testutil.Session("s", "ns").Obj(), provider: provider, want: admit,
		},
		"nodeSelector under a policy that allows none": {
			session: withRunner(func(r *v1.RunnerSpec) {
				r.NodeSelector = map[string]string{"node-role.kubernetes.io/control-plane": ""}
			}),
			provider: provider, policies: policy(func(p *v1.AgentPolicySpec) {}),
			want: reject, wantMessage: `spec.runner.nodeSelector["node-role.kubernetes.io/control-plane"] is not allowed`,
		},
		"nodeSelector value not allowed": {
			session:  withRunner(func(r *v1.RunnerSpec) { r.NodeSelector = map[string]string{"pool": "gpu"} }),
			provider: provider, policies: policy(func(p *v1.AgentPolicySpec) { p.AllowedNodeSelectors = map[string]v1.AllowedValues{"pool": {"agents"}} }),
			want: reject, wantMessage: `spec.runner.nodeSelector["pool"] value "gpu" is not allowed (allowed: agents)`,
		},
		"nodeSelector allowed": {
			session:  withRunner(func(r *v1.RunnerSpec) { r.NodeSelector = map[string]string{"pool": "agents"} }),
			provider: provider, policies: policy(func(p *v1.AgentPolicySpec) { p.AllowedNodeSelectors = map[string]v1.AllowedValues{"pool": {"agents"}} }),
			want: admit,
		},
		// The attack: tolerate the control plane's taint to be scheduled beside it.
		"toleration under a policy that allows none": {
			session: withRunner(func(r *v1.RunnerSpec) {
				r.Tolerations = []corev1.Toleration{{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
			}),
			provider: provider, policies: policy(func(p *v1.AgentPolicySpec) {}),
			want: reject, wantMessage: `spec.runner.tolerations[0] (key "node-role.kubernetes.io/control-plane"`,
		},
		"a wildcard toleration is not covered by a keyed entry": {
			session:  withRunner(func(r *v1.RunnerSpec) { r.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}} }),
			provider: provider, policies: policy(func(p *v1.AgentPolicySpec) {
				p.AllowedTolerations = []v1.AllowedToleration{{Key: "agents", Operator: corev1.TolerationOpExists}}
			}),
			want: reject, wantMessage: "spec.runner.tolerations[0]",
		},
		"a toleration of every effect is not covered by one effect": {
			session: withRunner(func(r *v1.RunnerSpec) {
				r.Tolerations = []corev1.Toleration{{Key: "agents", Operator: corev1.TolerationOpExists}}
			}),
			provider: provider, policies: policy(func(p *v1.AgentPolicySpec) {
				p.AllowedTolerations = []v1.AllowedToleration{{Key: "agents", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
			}),
			want: reject, wantMessage: "spec.runner.tolerations[0]",
		},
		"an Equal toleration covered by an Exists entry": {
			session: withRunner(func(r *v1.RunnerSpec) {
				r.Tolerations = []corev1.Toleration{{Key: "agents", Value: "yes", Effect: corev1.TaintEffectNoSchedule}}
			}),
			provider: provider, policies: policy(func(p *v1.AgentPolicySpec) {
				p.AllowedTolerations = []v1.AllowedToleration{{Key: "agents", Operator: corev1.TolerationOpExists}}
			}),
			want: admit,
		},
		"an Exists toleration is not covered by an Equal entry": {
			session: withRunner(func(r *v1.RunnerSpec) {
				r.Tolerations = []corev1.Toleration{{Key: "agents", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
			}),
			provider: provider, policies: policy(func(p *v1.AgentPolicySpec) {
				p.AllowedTolerations = []v1.AllowedToleration{{Key: "agents", Operator: corev1.TolerationOpEqual, Value: "yes"}}
			}),
			want: reject, wantMessage: "spec.runner.tolerations[0]",
		},
		"memory limit over the policy maximum": {
			session: withRunner(func(r *v1.RunnerSpec) {
				r.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Gi")}
			}),
			provider: provider, policies: policy(func(p *v1.AgentPolicySpec) {
				p.AgentResources = &v1.ResourcePolicy{Max: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("8Gi")}}
			}),
			want: reject, wantMessage: "spec.runner.resources.limits.memory 64Gi exceeds the maximum of 8Gi (spec.agentResources.max)",
		},
		"cpu request over the policy maximum": {
			session: withRunner(func(r *v1.RunnerSpec) {
				r.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("16")}
			}),
			provider: provider, policies: policy(func(p *v1.AgentPolicySpec) {
				p.AgentResources = &v1.ResourcePolicy{Max: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4")}}
			}),
			want: reject, wantMessage: "spec.runner.resources.requests.cpu 16 exceeds the maximum of 4",
		},
		"request above the session's own limit": {
			session: withRunner(func(r *v1.RunnerSpec) {
				r.Resources.Requests = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("8Gi")}
				r.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}
			}),
			provider: provider,
			want:     reject, wantMessage: "spec.runner.resources.requests.memory 8Gi exceeds spec.runner.resources.limits.memory 1Gi",
		},
		// The attack: send a Secret the user may not read to a URL the user chose.
		"credentials Secret its owner did not opt in": {
			session: testutil.Session("s", "ns").Repo("https://attacker.example/x.git").Credentials("creds").Obj(),
			secret:  secret(nil), provider: provider,
			want: reject, wantMessage: `spec.repository.credentialsSecretRef: Secret "creds" is not labelled agentry.dev/git-credentials=true`,
		},
		"credentials Secret labelled with another value": {
			session: testutil.Session("s", "ns").Credentials("creds").Obj(),
			secret:  secret(map[string]string{LabelGitCredentials: "yes"}), provider: provider,
			want: reject, wantMessage: "kubectl label secret creds agentry.dev/git-credentials=true",
		},
		"credentials Secret that opted in": {
			session: testutil.Session("s", "ns").Credentials("creds").Obj(),
			secret:  optedIn, provider: provider, want: admit,
		},
		// The attack on an opted-in Secret: send it to another host than it is for.
		"credentials Secret scoped to another host": {
			session: testutil.Session("s", "ns").Repo("https://attacker.example/x.git").Credentials("creds").Obj(),
			secret: &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: "ns",
				Labels:      map[string]string{LabelGitCredentials: "true"},
				Annotations: map[string]string{AnnotationGitCredentialsHosts: "git.example.com, github.com"}}},
			provider: provider,
			want:     reject, wantMessage: `Secret "creds" may be sent only to git.example.com, github.com (its agentry.dev/git-credentials-hosts annotation), not to "attacker.example"`,
		},
		"credentials Secret scoped to the repository's host": {
			session: testutil.Session("s", "ns").Repo("git@GitHub.com:org/repo.git").Credentials("creds").Obj(),
			secret: &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: "ns",
				Labels:      map[string]string{LabelGitCredentials: "true"},
				Annotations: map[string]string{AnnotationGitCredentialsHosts: "git.example.com, github.com"}}},
			provider: provider, want: admit,
		},
		"credentials Secret that does not exist": {
			session: testutil.Session("s", "ns").Credentials("creds").Obj(), provider: provider,
			want: wait, wantMessage: `Secret "creds" named by spec.repository.credentialsSecretRef does not exist`,
		},
		// The attack: have the checkout send an opted-in Secret in clear text.
		"credentials over plain http": {
			session: testutil.Session("s", "ns").Repo("http://git.example.com/org/repo.git").Credentials("creds").Obj(),
			secret:  optedIn, provider: provider,
			want: reject, wantMessage: "spec.repository.credentialsSecretRef cannot be used with an http:// spec.repository.url",
		},
		"credentials over plain HTTP in capitals": {
			session: testutil.Session("s", "ns").Repo("HTTP://git.example.com/org/repo.git").Credentials("creds").Obj(),
			secret:  optedIn, provider: provider,
			want: reject, wantMessage: "cannot be used with an http:// spec.repository.url",
		},
		"plain http without credentials": {
			session: testutil.Session("s", "ns").Repo("http://git.example.com/org/repo.git").Obj(), provider: provider,
			want: admit,
		},
		"model not allowed by policy": {
			session: testutil.Session("s", "ns").Obj(), provider: provider,
			policies: policy(func(p *v1.AgentPolicySpec) { p.AllowedModels = []string{"o4-mini"} }),
			want:     reject, wantMessage: `model "gpt-4.1" is not allowed`,
		},
		"under the concurrency limit": {
			session: ptr.To(session("new", 0, "", "")), provider: provider,
			policies: policy(func(p *v1.AgentPolicySpec) { p.MaxConcurrentSessions = ptr.To[int32](2) }),
			siblings: []v1.AgentSession{session("a", time.Hour, "a-runner", v1.PhaseRunning), session("done", time.Hour, "done-runner", v1.PhaseSucceeded)},
			want:     admit, wantModel: "gpt-4.1",
		},
		"at the concurrency limit": {
			session: ptr.To(session("new", 0, "", "")), provider: provider,
			policies: policy(func(p *v1.AgentPolicySpec) { p.MaxConcurrentSessions = ptr.To[int32](2) }),
			siblings: []v1.AgentSession{session("a", time.Hour, "a-runner", v1.PhaseRunning), session("b", time.Hour, "b-runner", v1.PhasePending)},
			want:     queue, wantMessage: "2 of 2 sessions running",
		},
		"an older session is queued first": {
			session: ptr.To(session("young", time.Minute, "", v1.PhaseQueued)), provider: provider,
			policies: policy(func(p *v1.AgentPolicySpec) { p.MaxConcurrentSessions = ptr.To[int32](1) }),
			siblings: []v1.AgentSession{session("old", time.Hour, "", v1.PhaseQueued)},
			want:     queue, wantMessage: "1 queued ahead",
		},
		// One session naming a ModelProvider or Secret that does not exist waits; it must
		// not hold a free slot from the sessions created after it.
		"a session waiting for its provider does not queue ahead": {
			session: ptr.To(session("young", time.Minute, "", v1.PhaseQueued)), provider: provider,
			policies: policy(func(p *v1.AgentPolicySpec) { p.MaxConcurrentSessions = ptr.To[int32](1) }),
			siblings: []v1.AgentSession{func() v1.AgentSession {
				w := session("typo", time.Hour, "", v1.PhasePending)
				w.Status.Conditions = []metav1.Condition{{Type: v1.ConditionSucceeded, Status: metav1.ConditionUnknown, Reason: v1.ReasonPending,
					Message: `ModelProvider "missing" does not exist; the session starts once it is created.`}}
				return w
			}()},
			want: admit, wantModel: "gpt-4.1",
		},
		"the strictest policy wins": {
			session: ptr.To(session("new", 0, "", "")), provider: provider,
			policies: append(policy(func(p *v1.AgentPolicySpec) { p.MaxConcurrentSessions = ptr.To[int32](5) }),
				policy(func(p *v1.AgentPolicySpec) { p.MaxConcurrentSessions = ptr.To[int32](1) })...),
			siblings: []v1.AgentSession{session("a", time.Hour, "a-runner", v1.PhaseRunning)},
			want:     queue,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			a := admitSession(tc.session, tc.provider, tc.secret, tc.policies, tc.siblings, "agentry/runner:test")
			if a.verdict != tc.want {
				t.Fatalf("verdict = %d (%s), want %d", a.verdict, a.message, tc.want)
			}
			if tc.wantModel != "" && a.model != tc.wantModel {
				t.Errorf("model = %q, want %q", a.model, tc.wantModel)
			}
			if !strings.Contains(a.message, tc.wantMessage) {
				t.Errorf("message %q lacks %q", a.message, tc.wantMessage)
			}
		})
	}
}

func TestImageAllowed(t *testing.T) {
	cases := []struct {
		rule, image string
		want        bool
	}{
		{"registry.example/team", "registry.example/team", true},
		{"registry.example/team", "registry.example/team:1.0", true},
		{"registry.example/team", "registry.example/team@sha256:" + strings.Repeat("a", 64), true},
		{"registry.example/team", "registry.example/team/go:1.26", true},
		{"registry.example/team", "registry.example/team-evil", false},
		{"registry.example/team", "registry.example/team-evil/x:1", false},
		{"registry.example/team", "registry.example/teamx", false},
		{"registry.example/team", "registry.example:5000/team", false},
		{"registry.example/team/", "registry.example/team/go", true},
		{"registry.example/team/", "registry.example/team-evil", false},
		{"registry.example", "registry.example/anything/at:all", true},
		{"registry.example", "registry.example.evil.com/x", false},
		{"registry.example", "registry.example:5000/x", false},
		{"localhost:5000", "localhost:5000/x", true},
		{"golang", "golang:1.26", true},
		{"golang", "docker.io/library/golang:1.26", true},
		{"docker.io/library/golang", "golang", true},
		{"golang", "golangci/golangci-lint", false},
		{"golang:1.26", "golang:1.26", true},
		{"golang:1.26", "golang:1.27", false},
		{"team", "team/x", false}, // a one-word rule is a Docker Hub official image: library/team
		{"docker.io/team", "team/x", true},
		{"docker.io/team", "docker.io/team-evil/x", false},
	}
	for _, tc := range cases {
		ref, err := parseImage(tc.image)
		if err != nil {
			t.Errorf("parseImage(%q): %v", tc.image, err)
			continue
		}
		if got := imageAllowed(ref, tc.rule); got != tc.want {
			t.Errorf("rule %q, image %q: allowed = %v, want %v", tc.rule, tc.image, got, tc.want)
		}
	}
}

func TestResolvePodSettings(t *testing.T) {
	q := resource.MustParse
	rl := func(kv ...string) corev1.ResourceList {
		l := corev1.ResourceList{}
		for i := 0; i < len(kv); i += 2 {
			l[corev1.ResourceName(kv[i])] = q(kv[i+1])
		}
		return l
	}
	policy := func(name string, mutate func(*v1.AgentPolicySpec)) v1.AgentPolicy {
		p := v1.AgentPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
		mutate(&p.Spec)
		return p
	}
	type want struct {
		requests, limits     corev1.ResourceList
		workspace, home, tmp string
	}
	cases := map[string]struct {
		asked    corev1.ResourceRequirements
		policies []v1.AgentPolicy
		want     want
	}{
		"no policy: built-in defaults": {
			want: want{requests: rl("cpu", "250m", "memory", "512Mi"), limits: rl("memory", "4Gi"), workspace: "10Gi", home: "1Gi", tmp: "1Gi"},
		},
		"a request above the default limit raises it": {
			asked: corev1.ResourceRequirements{Requests: rl("memory", "8Gi")},
			want:  want{requests: rl("cpu", "250m", "memory", "8Gi"), limits: rl("memory", "8Gi"), workspace: "10Gi", home: "1Gi", tmp: "1Gi"},
		},
		"a session limit alone leaves the request to Kubernetes": {
			asked: corev1.ResourceRequirements{Limits: rl("cpu", "100m")},
			want:  want{requests: rl("memory", "512Mi"), limits: rl("cpu", "100m", "memory", "4Gi"), workspace: "10Gi", home: "1Gi", tmp: "1Gi"},
		},
		"policy defaults and maximum; the strictest wins": {
			policies: []v1.AgentPolicy{
				policy("a", func(p *v1.AgentPolicySpec) {
					p.AgentResources = &v1.ResourcePolicy{
						Default: &v1.DefaultResources{Requests: rl("cpu", "1", "memory", "2Gi"), Limits: rl("memory", "6Gi")},
						Max:     rl("cpu", "4", "memory", "16Gi"),
					}
					p.VolumeSizeLimits = &v1.VolumeSizeLimits{Workspace: ptr.To(q("50Gi")), Tmp: ptr.To(q("2Gi"))}
				}),
				policy("b", func(p *v1.AgentPolicySpec) {
					p.AgentResources = &v1.ResourcePolicy{Max: rl("memory", "4Gi")}
					p.VolumeSizeLimits = &v1.VolumeSizeLimits{Workspace: ptr.To(q("20Gi"))}
				}),
			},
			want: want{requests: rl("cpu", "1", "memory", "2Gi"), limits: rl("cpu", "4", "memory", "4Gi"), workspace: "20Gi", home: "1Gi", tmp: "2Gi"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := testutil.Session("s", "ns").Obj()
			s.Spec.Runner.Resources = tc.asked
			got, msg := resolvePodSettings(s, tc.policies)
			if msg != "" {
				t.Fatal(msg)
			}
			if diff := cmp.Diff(tc.want.requests, got.agentResources.Requests); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want.limits, got.agentResources.Limits); diff != "" {
				t.Errorf("limits (-want +got):\n%s", diff)
			}
			for _, v := range []struct {
				name      string
				got, want resource.Quantity
			}{{"workspace", got.workspace, q(tc.want.workspace)}, {"home", got.home, q(tc.want.home)}, {"tmp", got.tmp, q(tc.want.tmp)}} {
				if v.got.Cmp(v.want) != 0 {
					t.Errorf("%s sizeLimit = %s, want %s", v.name, v.got.String(), v.want.String())
				}
			}
		})
	}
}

// defaultSettings is what admission decides for a session in a namespace without policies.
func defaultSettings(t *testing.T, s *v1.AgentSession) podSettings {
	t.Helper()
	settings, msg := resolvePodSettings(s, nil)
	if msg != "" {
		t.Fatal(msg)
	}
	return settings
}
