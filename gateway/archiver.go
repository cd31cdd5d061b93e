package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
	"github.com/agentry-dev/agentry/display"
)

// Archiver archives sessions whose runner never finished (killed, evicted,
// OOM, cancelled): once the reconciler marks the session terminal, it
// consolidates the acknowledged segments into transcript.jsonl and a
// summary.json, and records them in status like a normal finish. What the
// runner's termination message says that the gateway never heard (a runner
// that could not reach /finish: its final message, diff stats, usage) goes
// into status too, under the gateway's field manager: those fields are the
// gateway's alone. It runs on
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
	runnerSum, err := a.runnerSummary(ctx, sess)
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
	if runnerSum != nil {
		if err := s.raiseToRunner(ctx, ss, runnerSum.Usage); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
	}
	ss.mu.Lock()
	if runnerSum != nil {
		fillFromSummary(ss, runnerSum)
	}
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

// runnerSummary reads the summary the runner left as its termination message, when the
// session's own pod (the UID the reconciler recorded, never another pod of that name) is
// still there and has one.
func (a *Archiver) runnerSummary(ctx context.Context, sess *v1.AgentSession) (*contract.Summary, error) {
	if sess.Status.PodName == "" || sess.Status.PodUID == "" {
		return nil, nil
	}
	pod := &corev1.Pod{}
	key := client.ObjectKey{Namespace: sess.Namespace, Name: sess.Status.PodName}
	if err := a.Gateway.client.Get(ctx, key, pod); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading the runner pod %s for its termination message: %w", key, err)
	}
	if string(pod.UID) != sess.Status.PodUID {
		return nil, nil
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name != contract.ContainerRunner || cs.State.Terminated == nil {
			continue
		}
		var sum contract.Summary
		if err := json.Unmarshal([]byte(cs.State.Terminated.Message), &sum); err != nil || sum.Outcome == "" {
			return nil, nil //nolint:nilerr // no summary (the runner died before writing one) is no error
		}
		return &sum, nil
	}
	return nil, nil
}

// fillFromSummary fills the result the gateway has not recorded from the runner's own
// summary. Its usage was taken in before, by raiseToRunner: the session is terminal and
// past the archiver's grace, so every live replica has written what it charged, and tokens
// are raised to the runner's count only where it is higher (calls that never went through
// the proxy, or whose charge died with a replica), as at /finish. Callers hold ss.mu.
func fillFromSummary(ss *session, sum *contract.Summary) {
	st := &ss.status
	if st.Result == nil {
		st.Result = &v1.SessionResult{}
	}
	r := st.Result
	if r.Summary == "" {
		r.Summary = display.Truncate(sum.Message, 4000)
	}
	if r.FilesChanged == 0 && r.Additions == 0 && r.Deletions == 0 {
		r.FilesChanged, r.Additions, r.Deletions = int32(sum.Diff.FilesChanged), int32(sum.Diff.Additions), int32(sum.Diff.Deletions)
		r.OmittedFiles = v1.OmittedFilesFrom(sum.Diff.Omitted)
	}
	if r.Summary == "" && r.FilesChanged == 0 && r.Additions == 0 && r.Deletions == 0 && len(r.OmittedFiles) == 0 {
		st.Result = nil // never apply an empty object (see applyBody)
	}
	if st.Usage != nil && st.Usage.ToolCalls == 0 {
		st.Usage.ToolCalls = int32(sum.ToolCalls)
	}
}
