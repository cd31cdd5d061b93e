package controllers

import (
	"context"
	"fmt"
	"slices"
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

// policyEgress reads the session's NetworkPolicy: its recorded phase and flattened egress.
func policyEgress(ctx context.Context, s *v1.AgentSession) (string, []string, error) {
	np := &networkingv1.NetworkPolicy{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: s.Namespace, Name: podName(s)}, np); err != nil {
		return "", nil, err
	}
	var out []string
	for _, r := range np.Spec.Egress {
		for _, to := range r.To {
			peer := "pods"
			if to.IPBlock != nil {
				peer = to.IPBlock.CIDR
			}
			for _, p := range r.Ports {
				out = append(out, fmt.Sprintf("%s %s", peer, p.Port.String()))
			}
		}
	}
	return np.Annotations[contract.AnnotationEgressPhase], out, nil
}

func waitForEgressPhase(t *testing.T, ctx context.Context, s *v1.AgentSession, phase string) []string {
	t.Helper()
	var egress []string
	eventually(t, ctx, "the NetworkPolicy in the "+phase+" phase", func() error {
		got, e, err := policyEgress(ctx, s)
		if err != nil {
			return err
		}
		if got != phase {
			return fmt.Errorf("phase %q, egress %v", got, e)
		}
		egress = e
		return nil
	})
	return egress
}

// A session with spec.setup goes through three egress phases as its pod does (the kubelet is
// played by writing pod status), and a failing setup command ends it Failed/SetupFailed with
// the command's output tail in the message.
func TestSetupPhaseEgressAndFailure(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	ns := restrictedNamespace(t, ctx)
	if err := env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "proxy", Namespace: ns}, StringData: map[string]string{"token": "s3cr3t-proxy-token"}}); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(ctx, &v1.AgentPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "setup", Namespace: ns},
		Spec: v1.AgentPolicySpec{Setup: &v1.SetupPolicy{
			Egress:         []v1.EgressRule{{Host: "pkg.go.dev"}, {CIDR: "203.0.113.0/24", Ports: []int32{3128}}},
			AllowedSecrets: []string{"proxy"},
		}},
	}); err != nil {
		t.Fatal(err)
	}
	startManager(t, ns)
	s := testutil.Session("with-setup", ns).Obj()
	s.Spec.Setup = &v1.SetupSpec{
		Commands: []string{"npm ci"},
		Env:      []v1.SetupEnvVar{{Name: "NPM_TOKEN", SecretKeyRef: v1.SecretKeySelector{Name: "proxy", Key: "token"}}},
	}
	s = create(t, s)
	pod := waitForPod(t, ctx, s)
	if got := initContainerNames(pod); !slices.Contains(got, contract.ContainerSetup) {
		t.Fatalf("init containers %v lack setup", got)
	}

	checkout := waitForEgressPhase(t, ctx, s, "checkout")
	for _, want := range []string{"192.0.2.10/32 443", "192.0.2.20/32 443", "203.0.113.0/24 3128", "pods 53"} {
		if !slices.Contains(checkout, want) {
			t.Errorf("checkout egress %v lacks %s", checkout, want)
		}
	}

	now := metav1.Now()
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}
	k := kubelet{t}
	k.update(ctx, pod, func(st *corev1.PodStatus) {
		st.Phase = corev1.PodPending
		st.InitContainerStatuses = []corev1.ContainerStatus{
			terminated(contract.ContainerInstall, 0, "Completed", ""), terminated(contract.ContainerCheckout, 0, "Completed", ""),
			{Name: contract.ContainerSetup, State: running},
		}
	})
	setup := waitForEgressPhase(t, ctx, s, "setup")
	for _, want := range []string{"192.0.2.20/32 443", "203.0.113.0/24 3128", "pods 53"} {
		if !slices.Contains(setup, want) {
			t.Errorf("setup egress %v lacks %s", setup, want)
		}
	}
	if slices.Contains(setup, "192.0.2.10/32 443") {
		t.Errorf("setup egress %v still reaches the repository host", setup)
	}

	k.update(ctx, pod, func(st *corev1.PodStatus) {
		st.Phase = corev1.PodRunning
		st.StartTime = &now
		st.InitContainerStatuses = []corev1.ContainerStatus{
			terminated(contract.ContainerInstall, 0, "Completed", ""), terminated(contract.ContainerCheckout, 0, "Completed", ""),
			terminated(contract.ContainerSetup, 0, "Completed", ""),
			{Name: contract.ContainerAgent, Ready: true, Started: ptr.To(true), State: running},
		}
		st.ContainerStatuses = []corev1.ContainerStatus{{Name: contract.ContainerRunner, Ready: true, State: running}}
	})
	agent := waitForEgressPhase(t, ctx, s, contract.EgressPhaseAgent)
	for _, e := range agent {
		if e != "pods 8080" && !strings.HasPrefix(e, "pods ") {
			t.Errorf("agent egress %v: %s is open (want the gateway only)", agent, e)
		}
		if e == "pods 53" {
			t.Errorf("agent egress %v still allows DNS", agent)
		}
	}

	// The runner found the failed setup command in the result and ended the session.
	tail := "npm ERR! code E401\nnpm ERR! Unable to authenticate, your authentication token seems to be invalid."
	sum, err := contract.Summary{Outcome: contract.OutcomeSetupFailed, ExitCode: contract.ExitSetupFailed,
		Message: "setup failed: `npm ci` exited 1: " + tail}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	k.exit(ctx, pod, int32(contract.ExitSetupFailed), "Error", string(sum))
	got := waitForPhase(t, ctx, s, v1.PhaseFailed, v1.ReasonSetupFailed)
	c := cond(got, v1.ConditionSucceeded)
	if !strings.Contains(c.Message, "`npm ci` exited 1") || !strings.Contains(c.Message, "your authentication token seems to be invalid") {
		t.Errorf("Succeeded message %q lacks the command and its output tail", c.Message)
	}
	// Once narrowed, a stale or rewound pod status never widens the policy again.
	if phase, _, err := policyEgress(ctx, s); err != nil || phase != contract.EgressPhaseAgent {
		t.Errorf("after the end the policy is in phase %q (%v), want agent", phase, err)
	}
}
