package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

// +kubebuilder:rbac:groups=agentry.dev,resources=agentpolicies/status,verbs=get;patch

// policyChanged schedules a write of the namespace's AgentPolicy
// status.tokensUsed and windowStart, at most once per StatusInterval.
func (s *Server) policyChanged(ns string) {
	l := s.ledger()
	l.polMu.Lock()
	defer l.polMu.Unlock()
	if l.polTimer[ns] != nil {
		return
	}
	delay := max(l.polLast[ns].Add(s.cfg.StatusInterval).Sub(s.now()), 0)
	l.polTimer[ns] = time.AfterFunc(delay, func() {
		l.polMu.Lock()
		delete(l.polTimer, ns)
		l.polLast[ns] = s.now()
		l.polMu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.writePolicyStatus(ctx, ns); err != nil {
			log.Log.WithName("gateway").Error(err, "Writing AgentPolicy status", "Namespace", ns)
		}
	})
}

// writePolicyStatus applies tokensUsed and windowStart to every AgentPolicy of
// ns with a tokenBudget, under the gateway's field manager: the same figure the
// proxy checks (sessions' status, or this replica's larger count). Every
// replica writes what it sees; the last write is the freshest.
func (s *Server) writePolicyStatus(ctx context.Context, ns string) error {
	if err := s.refreshUsage(ctx, ns); err != nil {
		return err
	}
	var budgets []budgetUse
	s.usage.check(ns, s.now(), func(b []budgetUse) { budgets = b })
	for _, b := range budgets {
		body, err := json.Marshal(map[string]any{
			"apiVersion": v1.GroupVersion.String(),
			"kind":       "AgentPolicy",
			"metadata":   map[string]any{"name": b.name, "namespace": ns, "uid": string(b.uid)},
			"status": map[string]any{
				"tokensUsed":  b.used,
				"windowStart": metav1.NewTime(b.start),
			},
		})
		if err != nil {
			return err
		}
		obj := &v1.AgentPolicy{}
		obj.Name, obj.Namespace = b.name, ns
		if err := s.client.Status().Patch(ctx, obj, client.RawPatch(types.ApplyPatchType, body), FieldOwner, client.ForceOwnership); err != nil {
			return fmt.Errorf("applying status of AgentPolicy %s/%s: %w", ns, b.name, err)
		}
	}
	return nil
}
