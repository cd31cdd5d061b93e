package controllers

import (
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/test/testutil"
)

var setupTestEgress = []v1.EgressRule{{Host: "proxy.golang.org"}, {CIDR: "203.0.113.0/24", Ports: []int32{3128}}}

func setupNetworkSession() *v1.AgentSession {
	s := testutil.Session("s", "ns").UID("u").Repo("https://git.example.com/org/repo.git").
		Egress(v1.EgressRule{Host: "pkg.go.dev"}).Obj()
	s.Spec.Setup = &v1.SetupSpec{Commands: []string{"go mod download"}}
	return s
}

var setupTestResolved = map[string][]net.IP{
	"git.example.com":  {net.ParseIP("192.0.2.10")},
	"pkg.go.dev":       {net.ParseIP("192.0.2.20")},
	"proxy.golang.org": {net.ParseIP("192.0.2.30")},
}

func TestSetupEgressPhases(t *testing.T) {
	dns := []string{"ns=kube-system 53/UDP", "ns=kube-system 53/TCP"}
	gw := "ns=agentry-system 8080/TCP"
	cases := map[networkPhase][]string{
		phaseCheckout: append(dns, gw, "192.0.2.10/32 443/TCP", "192.0.2.20/32 443/TCP", "192.0.2.30/32 443/TCP", "203.0.113.0/24 3128/TCP"),
		phaseSetup:    append(dns, gw, "192.0.2.20/32 443/TCP", "192.0.2.30/32 443/TCP", "203.0.113.0/24 3128/TCP"),
		phaseAgent:    {gw, "192.0.2.20/32 443/TCP"},
	}
	s := setupNetworkSession()
	for phase, want := range cases {
		t.Run(string(phase), func(t *testing.T) {
			np := buildSessionNetworkPolicy(s, phaseTestNetwork, setupTestResolved, setupTestEgress, phase)
			if diff := cmp.Diff(want, egressSummary(np)); diff != "" {
				t.Errorf("egress (-want +got):\n%s", diff)
			}
			if got := np.Annotations[contract.AnnotationEgressPhase]; got != string(phase) {
				t.Errorf("recorded phase %q, want %q", got, phase)
			}
		})
	}
}

// Each phase allows a subset of the one before: narrowing never opens anything.
func TestSetupPhasesOnlyNarrow(t *testing.T) {
	s := setupNetworkSession()
	prev := map[string]bool{}
	for i, phase := range []networkPhase{phaseCheckout, phaseSetup, phaseAgent} {
		cur := map[string]bool{}
		for _, e := range egressSummary(buildSessionNetworkPolicy(s, phaseTestNetwork, setupTestResolved, setupTestEgress, phase)) {
			cur[e] = true
			if i > 0 && !prev[e] {
				t.Errorf("phase %s opens %s, which the phase before did not allow", phase, e)
			}
		}
		prev = cur
	}
}

func TestSetupEgressNeedsSpecSetup(t *testing.T) {
	s := setupNetworkSession()
	s.Spec.Setup = nil
	for _, phase := range []networkPhase{phaseCheckout, phaseSetup} {
		for _, e := range egressSummary(buildSessionNetworkPolicy(s, phaseTestNetwork, setupTestResolved, setupTestEgress, phase)) {
			if e == "192.0.2.30/32 443/TCP" || e == "203.0.113.0/24 3128/TCP" {
				t.Errorf("phase %s: a session without spec.setup gets the setup egress %s", phase, e)
			}
		}
	}
	policies := []v1.AgentPolicy{{Spec: v1.AgentPolicySpec{Setup: &v1.SetupPolicy{Egress: setupTestEgress}}}}
	if got := setupEgress(s, policies); got != nil {
		t.Errorf("setupEgress without spec.setup = %v", got)
	}
}

func TestSetupEgressIsTheUnionOfThePolicies(t *testing.T) {
	s := setupNetworkSession()
	policies := []v1.AgentPolicy{
		{Spec: v1.AgentPolicySpec{Setup: &v1.SetupPolicy{Egress: setupTestEgress[:1]}}},
		{Spec: v1.AgentPolicySpec{}},
		{Spec: v1.AgentPolicySpec{Setup: &v1.SetupPolicy{Egress: setupTestEgress[1:]}}},
	}
	if diff := cmp.Diff(setupTestEgress, setupEgress(s, policies)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// The setup and agent phases are rebuilt from what the checkout policy recorded (the setup
// egress and its pinned addresses), never from a new lookup or an AgentPolicy edited since.
func TestSetupPhaseIsRebuiltFromTheRecordedPolicy(t *testing.T) {
	s := setupNetworkSession()
	checkout := buildSessionNetworkPolicy(s, phaseTestNetwork, setupTestResolved, setupTestEgress, phaseCheckout)
	for _, phase := range []networkPhase{phaseSetup, phaseAgent} {
		direct := buildSessionNetworkPolicy(s, phaseTestNetwork, setupTestResolved, setupTestEgress, phase)
		rebuilt := buildSessionNetworkPolicy(s, phaseTestNetwork, resolvedFromPolicy(checkout), setupEgressFromPolicy(checkout), phase)
		if diff := cmp.Diff(direct, rebuilt); diff != "" {
			t.Errorf("%s rebuilt from the checkout policy differs (-direct +rebuilt):\n%s", phase, diff)
		}
	}
	checkout.Annotations[AnnotationSetupEgress] = "{not json"
	for _, e := range egressSummary(buildSessionNetworkPolicy(s, phaseTestNetwork, resolvedFromPolicy(checkout), setupEgressFromPolicy(checkout), phaseSetup)) {
		if e == "203.0.113.0/24 3128/TCP" {
			t.Error("an unreadable record must drop the setup egress, not keep or widen it")
		}
	}
}

func TestSetupNetworkPhaseFromPod(t *testing.T) {
	term := func(name string, code int32) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code}}}
	}
	run := func(name string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
	}
	withSetup := corev1.PodSpec{InitContainers: []corev1.Container{{Name: contract.ContainerInstall}, {Name: contract.ContainerCheckout}, {Name: contract.ContainerSetup}, {Name: contract.ContainerAgent}}}
	cases := map[string]struct {
		statuses []corev1.ContainerStatus
		want     networkPhase
	}{
		"checkout running":                   {[]corev1.ContainerStatus{run(contract.ContainerCheckout)}, phaseCheckout},
		"checkout done, setup not started":   {[]corev1.ContainerStatus{term(contract.ContainerCheckout, 0)}, phaseSetup},
		"setup running":                      {[]corev1.ContainerStatus{term(contract.ContainerCheckout, 0), run(contract.ContainerSetup)}, phaseSetup},
		"setup done":                         {[]corev1.ContainerStatus{term(contract.ContainerCheckout, 0), term(contract.ContainerSetup, 0)}, phaseAgent},
		"setup could not run: closed anyway": {[]corev1.ContainerStatus{term(contract.ContainerCheckout, 0), term(contract.ContainerSetup, 1)}, phaseAgent},
		"setup done, checkout status lost":   {[]corev1.ContainerStatus{term(contract.ContainerSetup, 0)}, phaseCheckout},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			pod := &corev1.Pod{Spec: withSetup, Status: corev1.PodStatus{InitContainerStatuses: tc.statuses}}
			if got := networkPolicyPhase(pod); got != tc.want {
				t.Errorf("networkPolicyPhase = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestAStalePodNeverWidensThePolicy(t *testing.T) {
	cases := []struct {
		want, have networkPhase
		wider      bool
	}{
		{phaseSetup, phaseAgent, true},
		{phaseCheckout, phaseSetup, true},
		{phaseSetup, phaseSetup, false},
		{phaseAgent, phaseSetup, false},
		{phaseAgent, "", false},
		{phaseSetup, "garbage", false},
	}
	for _, tc := range cases {
		if got := widerPhase(tc.want, tc.have); got != tc.wider {
			t.Errorf("widerPhase(%q, %q) = %v, want %v", tc.want, tc.have, got, tc.wider)
		}
	}
}
