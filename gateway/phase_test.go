package gateway_test

import (
	"context"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/gateway"
	"github.com/agentry-dev/agentry/test/scriptedllm"
)

// netpol writes a session's NetworkPolicy (named as its pod) in phase, as the controller does.
func (f *fixture) netpol(name, phase string, since time.Time) *networkingv1.NetworkPolicy {
	f.t.Helper()
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns}}
	ctx := context.Background()
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(np), np); err != nil {
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
		np.Annotations = map[string]string{contract.AnnotationEgressPhase: phase}
		if err := env.Client.Create(ctx, np); err != nil {
			f.t.Fatal(err)
		}
		return np
	}
	np.Annotations = map[string]string{contract.AnnotationEgressPhase: phase, contract.AnnotationEgressPhaseSince: since.UTC().Format(time.RFC3339Nano)}
	if err := env.Client.Update(ctx, np); err != nil {
		f.t.Fatal(err)
	}
	return np
}

// While a session's NetworkPolicy still allows the setup (or checkout) egress, the gateway
// holds the runner's model calls, so no tool can run with that egress open; once the policy
// is in the agent phase and the network plugin has had its moment, the call goes through.
// Another session's narrowed policy does not release this one.
func TestModelCallsWaitForTheAgentEgressPhase(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	f := newFixture(t, scriptedllm.Text("Nothing to do."))
	g := startGateway(t)
	s := f.session("held")
	pod := f.runnerPod(s)
	f.netpol(pod.Name, "setup", time.Time{})
	other := f.session("other")
	f.runnerPod(other)
	f.netpol(other.Name+"-runner", "setup", time.Time{})
	f.netpol(other.Name+"-runner", contract.EgressPhaseAgent, time.Now().Add(-time.Minute))

	r := runnerFor(t, s, g, f.tokenFile(pod))
	done := make(chan int, 1)
	go func() { done <- r.run(context.Background()) }()

	eventually(t, 20*time.Second, "the runner to start (its sessionStart event at the gateway)", func() bool {
		return f.get(s).Status.Progress != nil
	})
	// The call is in the gateway now; give it time it would need to reach the model.
	time.Sleep(1500 * time.Millisecond)
	if n := len(f.llm.Requests()); n != 0 {
		t.Fatalf("the model was called %d times while the setup egress was open", n)
	}

	narrowed := time.Now()
	f.netpol(pod.Name, contract.EgressPhaseAgent, narrowed)
	if code := <-done; code != 0 {
		t.Fatalf("runner exited %d:\n%s", code, r.stderr.String())
	}
	if n := len(f.llm.Requests()); n != 1 {
		t.Fatalf("model requests = %d, want 1", n)
	}
	if took := time.Since(narrowed); took < gateway.AgentPhaseSettle {
		t.Errorf("the call went through %s after the agent phase was written, before the %s settle", took, gateway.AgentPhaseSettle)
	}
}
