package controllers

import (
	"context"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

// +kubebuilder:rbac:groups=agentry.dev,resources=agentpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=agentry.dev,resources=agentpolicies/status,verbs=get;patch

// AgentPolicyStatusReconciler writes status.activeSessions and queuedSessions of
// every AgentPolicy from the sessions of its namespace, counted as admission
// counts them. The gateway owns tokensUsed and windowStart (another field
// manager), so neither overwrites the other.
type AgentPolicyStatusReconciler struct {
	Client client.Client
}

// policySessionCounts counts sessions holding a slot (a pod, not finished) and
// sessions waiting for one, the figures admitSession compares with
// maxConcurrentSessions.
func policySessionCounts(sessions []v1.AgentSession) (active, queued int32) {
	for i := range sessions {
		s := &sessions[i]
		switch {
		case s.Status.Phase.IsTerminal():
		case s.Status.PodName != "":
			active++
		case s.Status.Phase == v1.PhaseQueued:
			queued++
		}
	}
	return active, queued
}

// Reconcile applies the counts when they changed.
func (r *AgentPolicyStatusReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	p := &v1.AgentPolicy{}
	if err := r.Client.Get(ctx, req.NamespacedName, p); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	var sessions v1.AgentSessionList
	if err := r.Client.List(ctx, &sessions, client.InNamespace(p.Namespace)); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing AgentSessions in %s: %w", p.Namespace, err)
	}
	active, queued := policySessionCounts(sessions.Items)
	if p.Status.ActiveSessions == active && p.Status.QueuedSessions == queued {
		return ctrl.Result{}, nil
	}
	body, err := json.Marshal(map[string]any{
		"apiVersion": v1.GroupVersion.String(), "kind": "AgentPolicy",
		"metadata": map[string]any{"name": p.Name, "namespace": p.Namespace, "uid": string(p.UID)},
		"status":   map[string]any{"activeSessions": active, "queuedSessions": queued},
	})
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.Client.Status().Patch(ctx, p, client.RawPatch(types.ApplyPatchType, body), FieldOwner, client.ForceOwnership); err != nil {
		return ctrl.Result{}, fmt.Errorf("applying status of AgentPolicy %s: %w", client.ObjectKeyFromObject(p), err)
	}
	return ctrl.Result{}, nil
}

// SetupWithManager recounts a namespace's policies whenever one of its sessions changes.
func (r *AgentPolicyStatusReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.AgentPolicy{}).
		Named("agentpolicy-status").
		// The counts change only with a session's phase or pod, not with the progress and
		// usage the gateway writes about once a second per running session.
		Watches(&v1.AgentSession{}, handler.EnqueueRequestsFromMapFunc(r.policiesOf), builder.WithPredicates(predicate.Funcs{
			UpdateFunc: func(e event.UpdateEvent) bool {
				o, okOld := e.ObjectOld.(*v1.AgentSession)
				n, okNew := e.ObjectNew.(*v1.AgentSession)
				return !okOld || !okNew || o.Status.Phase != n.Status.Phase || o.Status.PodName != n.Status.PodName
			},
		})).
		Complete(r)
}

func (r *AgentPolicyStatusReconciler) policiesOf(ctx context.Context, s client.Object) []reconcile.Request {
	var list v1.AgentPolicyList
	if err := r.Client.List(ctx, &list, client.InNamespace(s.GetNamespace())); err != nil {
		log.FromContext(ctx).Error(err, "Listing policies for a session", "AgentSession", s.GetNamespace()+"/"+s.GetName())
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for _, p := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&p)})
	}
	return out
}
