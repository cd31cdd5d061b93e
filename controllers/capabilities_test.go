package controllers

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/test/testutil"
)

// Each capability needs a platform grant; a namespace user cannot reach an MCP server's
// credential, the web or a Secret they cannot read by writing a session.
func TestCapabilitiesNeedAnAgentPolicyGrant(t *testing.T) {
	policy := func(name string, spec v1.AgentPolicySpec) v1.AgentPolicy {
		return v1.AgentPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "team"}, Spec: spec}
	}
	grants := []v1.AgentPolicy{
		policy("budget", v1.AgentPolicySpec{}),
		policy("tools", v1.AgentPolicySpec{
			AllowedMCPServers: []string{"docs"},
			WebFetch:          &v1.WebFetchPolicy{AllowedDomains: []string{"go.dev"}},
			Setup:             &v1.SetupPolicy{AllowedSecrets: []string{"npm-token"}},
		}),
	}
	session := func(mutate func(*v1.AgentSessionSpec)) *v1.AgentSession {
		s := testutil.Session("s", "team").Obj()
		mutate(&s.Spec)
		return s
	}
	cases := []struct {
		name     string
		spec     func(*v1.AgentSessionSpec)
		policies []v1.AgentPolicy
		want     string // "" admits
	}{
		{"granted MCP server", func(s *v1.AgentSessionSpec) { s.MCPServers = []v1.MCPServerReference{{Name: "docs"}} }, grants, ""},
		{"MCP server not granted", func(s *v1.AgentSessionSpec) {
			s.MCPServers = []v1.MCPServerReference{{Name: "docs"}, {Name: "billing"}}
		}, grants,
			`spec.mcpServers[1] "billing" is not allowed: no AgentPolicy in namespace team lists it in spec.allowedMCPServers (allowed: docs)`},
		{"MCP without any policy", func(s *v1.AgentSessionSpec) { s.MCPServers = []v1.MCPServerReference{{Name: "docs"}} }, nil, "allowed: none"},
		{"web_fetch granted", func(s *v1.AgentSessionSpec) { s.Tools = append(s.Tools, v1.ToolWebFetch) }, grants, ""},
		{"web_fetch without domains", func(s *v1.AgentSessionSpec) { s.Tools = append(s.Tools, v1.ToolWebFetch) }, grants[:1], "spec.webFetch.allowedDomains"},
		{"web_search without endpoint", func(s *v1.AgentSessionSpec) { s.Tools = append(s.Tools, v1.ToolWebSearch) }, grants, "spec.webFetch.searchURL"},
		{"setup Secret granted", func(s *v1.AgentSessionSpec) {
			s.Setup = &v1.SetupSpec{Commands: []string{"npm ci"}, Env: []v1.SetupEnvVar{{Name: "NPM_TOKEN", SecretKeyRef: v1.SecretKeySelector{Name: "npm-token", Key: "token"}}}}
		}, grants, ""},
		{"setup Secret not granted", func(s *v1.AgentSessionSpec) {
			s.Setup = &v1.SetupSpec{Commands: []string{"env"}, Env: []v1.SetupEnvVar{{Name: "DB", SecretKeyRef: v1.SecretKeySelector{Name: "prod-db", Key: "password"}}}}
		}, grants, `spec.setup.env[0] (DB): Secret "prod-db" is not allowed`},
		{"setup without Secrets needs no grant", func(s *v1.AgentSessionSpec) { s.Setup = &v1.SetupSpec{Commands: []string{"go mod download"}} }, nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := capabilityViolation(session(c.spec), c.policies)
			if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

func runnerArg(pod *corev1.Pod, flag string) []string {
	var out []string
	args := pod.Spec.Containers[0].Args
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			out = append(out, args[i+1])
		}
	}
	return out
}

// The instructions reach the runner pod in the documented order: AgentPolicies by name,
// spec.instructions, then the instructionsFrom ConfigMap key (read once, at admission).
func TestInstructionsReachTheRunnerPod(t *testing.T) {
	ctx := testContext(t, time.Minute)
	ns := restrictedNamespace(t, ctx)
	for _, p := range []v1.AgentPolicy{
		{ObjectMeta: metav1.ObjectMeta{Name: "b-team", Namespace: ns}, Spec: v1.AgentPolicySpec{Instructions: "Team rule."}},
		{ObjectMeta: metav1.ObjectMeta{Name: "a-platform", Namespace: ns}, Spec: v1.AgentPolicySpec{Instructions: "Platform rule."}},
	} {
		if err := env.Client.Create(ctx, &p); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.Client.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "rules", Namespace: ns},
		Data: map[string]string{"review.md": "Review rule."}}); err != nil {
		t.Fatal(err)
	}
	startManager(t, ns)

	s := testutil.Session("instructed", ns).Obj()
	s.Spec.Instructions = "Session rule."
	s.Spec.InstructionsFrom = &v1.ConfigMapKeyReference{Name: "rules", Key: "review.md"}
	create(t, s)
	pod := waitForPod(t, ctx, s)
	var got []string
	for _, raw := range runnerArg(pod, "--instruction") {
		var in contract.Instruction
		if err := json.Unmarshal([]byte(raw), &in); err != nil {
			t.Fatalf("--instruction %q: %v", raw, err)
		}
		got = append(got, in.Source+": "+in.Text)
	}
	want := []string{"AgentPolicy a-platform: Platform rule.", "AgentPolicy b-team: Team rule.", "spec.instructions: Session rule.", "ConfigMap rules key review.md: Review rule."}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("instructions = %q\nwant %q", got, want)
	}

	missing := testutil.Session("missing-key", ns).Obj()
	missing.Spec.InstructionsFrom = &v1.ConfigMapKeyReference{Name: "rules", Key: "nope.md"}
	create(t, missing)
	failed := waitForPhase(t, ctx, missing, v1.PhaseFailed, v1.ReasonInstructionsNotFound)
	if msg := cond(failed, v1.ConditionSucceeded).Message; !strings.Contains(msg, `spec.instructionsFrom: ConfigMap "rules" has no key "nope.md" (keys: review.md)`) {
		t.Errorf("message = %q", msg)
	}
	if err := podGone(ctx, missing); err != nil {
		t.Error(err)
	}

	noMap := testutil.Session("missing-map", ns).Obj()
	noMap.Spec.InstructionsFrom = &v1.ConfigMapKeyReference{Name: "absent", Key: "x"}
	create(t, noMap)
	failed = waitForPhase(t, ctx, noMap, v1.PhaseFailed, v1.ReasonInstructionsNotFound)
	if msg := cond(failed, v1.ConditionSucceeded).Message; !strings.Contains(msg, `ConfigMap "absent" does not exist`) {
		t.Errorf("message = %q", msg)
	}
}

// Admission refuses the session before it spends a token or gets a pod.
func TestMCPServerNotGrantedIsRefused(t *testing.T) {
	ctx := testContext(t, time.Minute)
	ns := restrictedNamespace(t, ctx)
	startManager(t, ns)
	s := testutil.Session("mcp", ns).Obj()
	s.Spec.MCPServers = []v1.MCPServerReference{{Name: "billing"}}
	create(t, s)
	got := waitForPhase(t, ctx, s, v1.PhaseFailed, v1.ReasonPolicyViolation)
	if msg := cond(got, v1.ConditionSucceeded).Message; !strings.Contains(msg, "spec.mcpServers[0]") || !strings.Contains(msg, "spec.allowedMCPServers") {
		t.Errorf("message = %q", msg)
	}
	if err := podGone(ctx, s); err != nil {
		t.Error(err)
	}
}

// The admission record of a session deleted before anything else in its namespace was
// admitted must not stay in the reconciler's memory for the life of the process.
func TestDeletedSessionLeavesNoAdmissionRecord(t *testing.T) {
	ctx := testContext(t, time.Minute)
	ns := restrictedNamespace(t, ctx)
	var rec *AgentSessionReconciler
	startManagerWith(t, ns, func(r *AgentSessionReconciler) { rec = r })
	s := create(t, testutil.Session("short-lived", ns).Obj())
	waitForPod(t, ctx, s)
	records := func() int {
		rec.admissionMu.Lock()
		defer rec.admissionMu.Unlock()
		n := 0
		for _, name := range rec.admitted {
			if name.Namespace == ns {
				n++
			}
		}
		return n
	}
	if records() != 1 {
		t.Fatalf("%d admission records before the delete, want 1 (the test would prove nothing)", records())
	}
	if err := env.Client.Delete(ctx, s); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "the admission record dropped", func() error {
		if n := records(); n != 0 {
			return fmt.Errorf("%d records left", n)
		}
		return nil
	})
}

// A pod already holding the runner pod's name, owned by someone else, ends the session with
// a clear reason (not an endless retry), and the manager never deletes that pod: a session
// name must not be a way to delete another user's pod.
func TestForeignPodWithTheRunnerNameIsNeitherAdoptedNorDeleted(t *testing.T) {
	ctx := testContext(t, time.Minute)
	ns := restrictedNamespace(t, ctx)
	foreign := &corev1.Pod{
		// Labelled like a runner pod, so the manager's cache holds it too.
		ObjectMeta: metav1.ObjectMeta{Name: "taken-runner", Namespace: ns, Labels: map[string]string{contract.LabelSessionUID: "someone-else"}},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](1000),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1", SecurityContext: restrictedContainerSecurity()}},
		},
	}
	if err := env.Client.Create(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	m := startManager(t, ns)
	s := create(t, testutil.Session("taken", ns).Obj())
	got := waitForPhase(t, ctx, s, v1.PhaseFailed, v1.ReasonPodNameInUse)
	if msg := cond(got, v1.ConditionSucceeded).Message; !strings.Contains(msg, "Pod taken-runner already exists and is not controlled by this session") {
		t.Errorf("message = %q", msg)
	}
	expectEvent(t, m, v1.ReasonPodNameInUse)
	time.Sleep(time.Second) // give a wrong deletion the chance to happen
	still := &corev1.Pod{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(foreign), still); err != nil || still.UID != foreign.UID || !still.DeletionTimestamp.IsZero() {
		t.Fatalf("the foreign pod was touched: %v, deletion %v", err, still.DeletionTimestamp)
	}
}

// A NetworkPolicy already holding the runner pod's name that the session does not control
// (unlabelled, so the manager's cache cannot see it; or labelled like a session's) ends
// the session with a clear reason, and no runner pod is created: before, the create's
// AlreadyExists was taken for a stale cache and the pod ran without its own policy, with
// nothing holding its model calls, or ran under the foreign policy's recorded addresses.
func TestForeignNetworkPolicyWithTheRunnerNameStopsTheSession(t *testing.T) {
	for name, labels := range map[string]map[string]string{
		"unlabelled": nil,
		"labelled":   {contract.LabelSessionUID: "someone-else"},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := testContext(t, time.Minute)
			ns := restrictedNamespace(t, ctx)
			foreign := &networkingv1.NetworkPolicy{
				ObjectMeta: metav1.ObjectMeta{Name: "clash-runner", Namespace: ns, Labels: labels},
				Spec:       networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"nothing": "x"}}},
			}
			if err := env.Client.Create(ctx, foreign); err != nil {
				t.Fatal(err)
			}
			m := startManager(t, ns)
			s := create(t, testutil.Session("clash", ns).Obj())
			got := waitForPhase(t, ctx, s, v1.PhaseFailed, v1.ReasonNetworkPolicyNameInUse)
			if msg := cond(got, v1.ConditionSucceeded).Message; !strings.Contains(msg, "NetworkPolicy clash-runner already exists and is not controlled by this session") {
				t.Errorf("message = %q", msg)
			}
			expectEvent(t, m, v1.ReasonNetworkPolicyNameInUse)
			var pods corev1.PodList
			if err := env.Client.List(ctx, &pods, client.InNamespace(ns)); err != nil {
				t.Fatal(err)
			}
			if len(pods.Items) != 0 {
				t.Errorf("a runner pod was created without the session's own NetworkPolicy: %s", pods.Items[0].Name)
			}
		})
	}
}
