package gateway

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
)

// Archiver archives sessions whose runner never finished (killed, evicted,
// OOM, cancelled): once the reconciler marks the session terminal, it
// consolidates the acknowledged segments into transcript.jsonl and a
// summary.json, and records them in status like a normal finish. It runs on
// the leader only; a replica's gateway finishing the same session concurrently
// writes the same objects.
type Archiver struct {
	Gateway *Server
	// Grace leaves a runner that is still finishing time to do it itself
	// (default 5s after completionTime).
	Grace time.Duration
}

// SetupWithManager registers the archiver.
func (a *Archiver) SetupWithManager(mgr ctrl.Manager) error {
	if a.Grace == 0 {
		a.Grace = 5 * time.Second
	}
	unarchivedTerminal := predicate.NewPredicateFuncs(func(o client.Object) bool {
		s, ok := o.(*v1.AgentSession)
		return ok && s.Status.Phase.IsTerminal() && !meta.IsStatusConditionTrue(s.Status.Conditions, v1.ConditionArchived)
	})
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.AgentSession{}, builder.WithPredicates(unarchivedTerminal, predicate.Funcs{DeleteFunc: func(event.DeleteEvent) bool { return false }})).
		Named("gateway-archiver").
		Complete(a)
}

// Reconcile archives one terminal session that is not archived yet.
func (a *Archiver) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	s := a.Gateway
	sess := &v1.AgentSession{}
	if err := s.client.Get(ctx, req.NamespacedName, sess); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !sess.Status.Phase.IsTerminal() || meta.IsStatusConditionTrue(sess.Status.Conditions, v1.ConditionArchived) {
		return ctrl.Result{}, nil
	}
	if end := sess.Status.CompletionTime; end != nil {
		if wait := end.Add(a.Grace).Sub(s.now()); wait > 0 {
			return ctrl.Result{RequeueAfter: wait}, nil
		}
	}
	id := identity{Session: req.NamespacedName, UID: sess.UID}
	ss, err := s.session(ctx, id)
	if err != nil {
		return ctrl.Result{}, err
	}
	transcript, events, err := s.store.consolidate(ctx, id)
	if err != nil {
		return ctrl.Result{}, err
	}
	log.FromContext(ctx).Info("Archiving the acknowledged transcript of a session whose runner did not finish", "AgentSession", req.NamespacedName, "events", events)
	tKey, sKey := s.store.sessionKey(id, transcriptFile), s.store.sessionKey(id, summaryFile)
	if err := s.store.put(ctx, tKey, transcript, "application/x-ndjson"); err != nil {
		return ctrl.Result{}, err
	}
	tRef := objectRef(s.store.uri(tKey), transcript)
	sum := contract.Summary{Outcome: contract.OutcomeError, Events: events, Transcript: tRef}
	if r := sess.Status.Result; r != nil && r.ExitCode != nil {
		sum.ExitCode = contract.ExitCode(*r.ExitCode)
		if o, ok := contract.OutcomeForExitCode(sum.ExitCode); ok {
			sum.Outcome = o
		}
	}
	if c := meta.FindStatusCondition(sess.Status.Conditions, v1.ConditionSucceeded); c != nil {
		sum.Message = c.Message
	}
	b, err := sum.Encode()
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := s.store.put(ctx, sKey, b, "application/json"); err != nil {
		return ctrl.Result{}, err
	}
	ss.mu.Lock()
	ss.status.Transcript = &v1.ArtifactRef{URI: tRef.URI, SizeBytes: tRef.SizeBytes, SHA256: tRef.SHA256, Events: events}
	ss.status.PendingApprovals = nil
	setArchived(&ss.status, metav1.ConditionTrue, v1.ReasonUploaded,
		fmt.Sprintf("The runner did not finish; the %d acknowledged events are archived (no patch).", events), s.now())
	s.changed(ss)
	ss.mu.Unlock()
	if err := s.flush(ctx, ss); err != nil {
		return ctrl.Result{}, err
	}
	s.forget(id.UID)
	return ctrl.Result{}, nil
}
