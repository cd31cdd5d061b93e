package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	"github.com/agentry-dev/agentry/contract"
)

// AgentPhaseSettle is how long after the controller narrowed a session's NetworkPolicy to the
// agent phase the gateway still holds its model calls: a network plugin enforces a policy
// change a moment after the API server has it (about 1.3 s with kube-router).
const AgentPhaseSettle = 2 * time.Second

// agentPhaseWait bounds how long one model call is held; the runner then retries the 503.
const agentPhaseWait = 30 * time.Second

var errEgressNotNarrowed = errors.New("the session's egress is not yet narrowed to the agent phase (checkout or setup egress is still open); retry shortly")

// awaitAgentPhase holds a runner's model call until its session's NetworkPolicy is in the
// agent phase, and has been for AgentPhaseSettle. Tools run only on a model answer, so no
// tool runs while the checkout phase's DNS and repository host, or the setup phase's
// egress, are still open. A policy that does not record a phase (none in the cache, or
// written before phases were recorded) holds nothing: there is no narrower phase to wait for.
func (s *Server) awaitAgentPhase(ctx context.Context, id identity) error {
	deadline := s.now().Add(agentPhaseWait)
	for {
		wait, err := s.agentPhaseWait(ctx, types.NamespacedName{Namespace: id.Session.Namespace, Name: id.Pod})
		if err != nil || wait <= 0 {
			return err
		}
		if !s.now().Add(wait).Before(deadline) {
			return errEgressNotNarrowed
		}
		t := time.NewTimer(min(wait, 250*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// agentPhaseWait is how much longer the policy named key needs before model calls may pass;
// 0 when they may.
func (s *Server) agentPhaseWait(ctx context.Context, key types.NamespacedName) (time.Duration, error) {
	np := &networkingv1.NetworkPolicy{}
	if err := s.client.Get(ctx, key, np); apierrors.IsNotFound(err) {
		return 0, nil
	} else if err != nil {
		return 0, fmt.Errorf("reading the session's NetworkPolicy: %w", err)
	}
	phase, recorded := np.Annotations[contract.AnnotationEgressPhase]
	if !recorded {
		return 0, nil
	}
	if phase != contract.EgressPhaseAgent {
		return 250 * time.Millisecond, nil
	}
	// Narrowed with the time unknown (unparsable): no wait; the settle is a courtesy to the
	// network plugin.
	if since, err := time.Parse(time.RFC3339Nano, np.Annotations[contract.AnnotationEgressPhaseSince]); err == nil {
		return max(since.Add(AgentPhaseSettle).Sub(s.now()), 0), nil
	}
	return 0, nil
}
