package controllers

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

// reconcileContinuation resolves spec.continueFrom once, just before the session's pod is
// created: the earlier session must be there, finished with an archived patch and a base
// commit, on the same repository. What it started from is recorded in
// status.continuedFrom, which the pod builder reads (the checkout's commit) and the
// gateway checks (the patch's sha256). A session whose earlier one is unusable fails at
// once: waiting would only hide a typo or a session that will never have a patch.
func (r *AgentSessionReconciler) reconcileContinuation(ctx context.Context, s *scope) error {
	ref := s.obj.Spec.ContinueFrom
	if ref == nil || s.settings == nil || s.obj.Status.ContinuedFrom != nil {
		return nil // not a follow-up, not about to get a pod, or resolved before
	}
	earlier, err := r.earlierSession(ctx, s.obj.Namespace, ref.Session)
	if err != nil {
		return err
	}
	cont, msg := continuationFrom(s.obj, earlier)
	if msg == "" {
		s.obj.Status.ContinuedFrom = cont
		return nil
	}
	r.admissionMu.Lock()
	delete(r.admitted, s.obj.UID) // it never gets a pod: free its slot
	r.admissionMu.Unlock()
	s.settings = nil
	finish(s.obj, v1.PhaseFailed, v1.ReasonContinuationUnavailable, msg, s.now)
	// The spec is immutable and the earlier session cannot become another one.
	return reconcile.TerminalError(errors.New(msg))
}

// earlierSession reads the session named by spec.continueFrom; nil when it does not exist.
// The cache may not have seen a session created a moment ago, so a miss is confirmed live.
func (r *AgentSessionReconciler) earlierSession(ctx context.Context, namespace, name string) (*v1.AgentSession, error) {
	key := client.ObjectKey{Namespace: namespace, Name: name}
	earlier := &v1.AgentSession{}
	err := r.Get(ctx, key, earlier)
	if apierrors.IsNotFound(err) && r.APIReader != nil {
		err = r.APIReader.Get(ctx, key, earlier)
	}
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading session %s (spec.continueFrom.session): %w", name, err)
	}
	return earlier, nil
}

// continuationFrom decides whether s may continue earlier (nil: it does not exist). It
// returns what s starts from, or a message naming spec.continueFrom.session and what is
// wrong. Succeeded and Failed sessions qualify when their runner archived a patch and
// reported its base commit; a Failed session's patch is its partial work, which a
// follow-up is often meant to finish. Cancelled sessions are refused, as the API says:
// whoever cancelled one did not want its work built on.
func continuationFrom(s, earlier *v1.AgentSession) (*v1.ContinuationStatus, string) {
	name := s.Spec.ContinueFrom.Session
	prefix := fmt.Sprintf("spec.continueFrom.session %q", name)
	switch {
	case earlier == nil:
		return nil, fmt.Sprintf("%s: no such session in namespace %s.", prefix, s.Namespace)
	case earlier.UID == s.UID:
		return nil, prefix + ": a session cannot continue itself."
	case !earlier.Status.Phase.IsTerminal():
		phase := earlier.Status.Phase
		if phase == "" {
			phase = v1.PhasePending
		}
		return nil, fmt.Sprintf("%s has not finished (phase %s); create the follow-up once it has.", prefix, phase)
	case earlier.Status.Phase == v1.PhaseCancelled:
		return nil, prefix + " was cancelled; only a Succeeded or Failed session can be continued."
	case earlier.Status.Patch == nil || earlier.Status.Patch.SHA256 == "":
		return nil, prefix + " has no archived patch (status.patch): its runner never finished archiving, so there is nothing to continue from."
	case earlier.Status.Resolved == nil || earlier.Status.Resolved.CommitSHA == "":
		return nil, prefix + " recorded no base commit (status.resolved.commitSHA), so its patch cannot be applied."
	case earlier.Spec.Repository.URL != s.Spec.Repository.URL:
		return nil, fmt.Sprintf("%s worked on repository %s, not spec.repository.url %s; a follow-up must use the same repository.",
			prefix, earlier.Spec.Repository.URL, s.Spec.Repository.URL)
	}
	return &v1.ContinuationStatus{
		Session:     earlier.Name,
		UID:         string(earlier.UID),
		Commit:      earlier.Status.Resolved.CommitSHA,
		PatchSHA256: earlier.Status.Patch.SHA256,
	}, ""
}
