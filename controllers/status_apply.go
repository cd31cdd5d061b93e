package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

// controllerStatus is exactly the part of AgentSession status the reconciler writes. It is
// applied whole (server-side apply removes what a manager owned and no longer sends), under
// FieldOwner, beside the gateway's, delivery's and notification's own applies: the field
// sets are disjoint, so no apply ever conflicts with another and none carries a
// resourceVersion.
type controllerStatus struct {
	Phase              v1.SessionPhase        `json:"phase,omitempty"`
	Conditions         []metav1.Condition     `json:"conditions,omitempty"`
	ObservedGeneration int64                  `json:"observedGeneration,omitempty"`
	PodName            string                 `json:"podName,omitempty"`
	PodUID             string                 `json:"podUID,omitempty"`
	StartTime          *metav1.Time           `json:"startTime,omitempty"`
	CompletionTime     *metav1.Time           `json:"completionTime,omitempty"`
	Result             *controllerResult      `json:"result,omitempty"`
	Resolved           *v1.Resolved           `json:"resolved,omitempty"`
	ContinuedFrom      *v1.ContinuationStatus `json:"continuedFrom,omitempty"`
}

// controllerResult is the one leaf of status.result the reconciler owns: the runner's exit
// code, from the pod. The gateway owns the rest of result (summary and diff stats);
// server-side apply tracks ownership per leaf, so the two never remove each other's.
type controllerResult struct {
	ExitCode *int32 `json:"exitCode,omitempty"`
}

// controllerConditions are the condition types the reconciler owns; Archived is the
// gateway's, Delivered the delivery controller's.
var controllerConditions = []string{v1.ConditionSucceeded, v1.ConditionPodReady}

// ownedByController picks the reconciler's fields out of a status.
func ownedByController(st v1.AgentSessionStatus) controllerStatus {
	out := controllerStatus{
		Phase: st.Phase, ObservedGeneration: st.ObservedGeneration, PodName: st.PodName, PodUID: st.PodUID,
		StartTime: st.StartTime, CompletionTime: st.CompletionTime, Resolved: st.Resolved, ContinuedFrom: st.ContinuedFrom,
	}
	for _, c := range st.Conditions {
		for _, typ := range controllerConditions {
			if c.Type == typ {
				out.Conditions = append(out.Conditions, c)
			}
		}
	}
	if st.Result != nil && st.Result.ExitCode != nil {
		out.Result = &controllerResult{ExitCode: st.Result.ExitCode}
	}
	return out
}

// staleAfter bounds how long the reconciler waits for its cache to show its own last status
// write before trusting the cache again (a write by someone else, such as a person editing
// status, would otherwise hold the session forever).
const staleAfter = 10 * time.Second

// written is the reconciler's last status write to one session, until the cache shows it.
type written struct {
	name   types.NamespacedName
	status controllerStatus
	at     time.Time
}

// applyStatus writes the reconciler's fields, if this reconcile changed them, in one
// server-side apply. Without a resourceVersion a concurrent gateway write is no conflict;
// what the optimistic lock protected against, a reconcile working from a copy older than
// the reconciler's own last write, cacheBehind prevents.
func (r *AgentSessionReconciler) applyStatus(ctx context.Context, s *scope) error {
	want := ownedByController(s.obj.Status)
	if apiequality.Semantic.DeepEqual(ownedByController(s.base.Status), want) {
		return nil
	}
	body, err := json.Marshal(map[string]any{
		"apiVersion": v1.GroupVersion.String(),
		"kind":       "AgentSession",
		"metadata":   map[string]any{"name": s.obj.Name, "namespace": s.obj.Namespace, "uid": string(s.obj.UID)},
		"status":     want,
	})
	if err != nil {
		return fmt.Errorf("encoding the status of %s/%s: %w", s.obj.Namespace, s.obj.Name, err)
	}
	obj := &v1.AgentSession{}
	obj.Name, obj.Namespace = s.obj.Name, s.obj.Namespace
	// ForceOwnership takes these fields over from the merge patches of earlier versions,
	// recorded under the same name with operation Update; no other manager sends them.
	if err := r.Status().Patch(ctx, obj, client.RawPatch(types.ApplyPatchType, body), FieldOwner, client.ForceOwnership); apierrors.IsNotFound(err) {
		return nil // deleted meanwhile: nothing to record, nothing to retry
	} else if err != nil {
		return fmt.Errorf("applying status: %w", err)
	}
	r.remember(obj, ownedByController(obj.Status))
	return nil
}

// remember records the reconciler's fields as its last apply left them.
func (r *AgentSessionReconciler) remember(obj *v1.AgentSession, st controllerStatus) {
	r.writtenMu.Lock()
	defer r.writtenMu.Unlock()
	if r.lastWritten == nil {
		r.lastWritten = map[types.UID]written{}
	}
	r.lastWritten[obj.UID] = written{name: client.ObjectKeyFromObject(obj), status: st, at: r.Clock.Now()}
}

// cacheBehind reports whether the cached session does not show the reconciler's last status
// write yet. Only the reconciler writes these fields, so a difference means the cache lags;
// the watch event of that write is on its way and wakes the reconciler again. Working from
// the older copy would apply older values (an earlier phase, a missing pod name) over newer.
func (r *AgentSessionReconciler) cacheBehind(obj *v1.AgentSession) bool {
	r.writtenMu.Lock()
	defer r.writtenMu.Unlock()
	w, ok := r.lastWritten[obj.UID]
	if !ok {
		return false
	}
	if apiequality.Semantic.DeepEqual(w.status, ownedByController(obj.Status)) || r.Clock.Since(w.at) > staleAfter {
		delete(r.lastWritten, obj.UID)
		return false
	}
	return true
}

// sessionChangePredicate lets through the session changes the reconciler acts on: spec
// (generation), metadata it or the garbage collector uses, its own status fields, and the
// number of pending approvals (a running session with any is WaitingForApproval). The
// gateway's writes of progress, usage, transcript and result every second or so per session
// change none of these, and do not wake the reconciler.
func sessionChangePredicate() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		old, oldOK := e.ObjectOld.(*v1.AgentSession)
		cur, curOK := e.ObjectNew.(*v1.AgentSession)
		if !oldOK || !curOK {
			return true
		}
		return sessionChangeMatters(old, cur)
	}}
}

func sessionChangeMatters(old, cur *v1.AgentSession) bool {
	if old.ResourceVersion == cur.ResourceVersion {
		return true // a periodic resync: the safety net stays
	}
	return old.Generation != cur.Generation ||
		!old.DeletionTimestamp.Equal(cur.DeletionTimestamp) ||
		!apiequality.Semantic.DeepEqual(old.Labels, cur.Labels) ||
		!apiequality.Semantic.DeepEqual(old.Annotations, cur.Annotations) ||
		!apiequality.Semantic.DeepEqual(old.Finalizers, cur.Finalizers) ||
		len(old.Status.PendingApprovals) != len(cur.Status.PendingApprovals) ||
		!apiequality.Semantic.DeepEqual(ownedByController(old.Status), ownedByController(cur.Status))
}

// phaseChanged lets through the session updates that change its phase: the queued
// siblings of a session need waking only when it finishes.
func phaseChanged() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		old, oldOK := e.ObjectOld.(*v1.AgentSession)
		cur, curOK := e.ObjectNew.(*v1.AgentSession)
		return !oldOK || !curOK || old.Status.Phase != cur.Status.Phase
	}}
}
