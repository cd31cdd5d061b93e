package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/display"
	"github.com/agentry-dev/agentry/notify"
)

// NotifyFieldOwner is the field manager of the notification controller's status writes: it
// owns status.notifications only.
const NotifyFieldOwner = client.FieldOwner("agentry-notify")

// LabelNotificationSecret marks the Secrets (in the operator namespace) an AgentPolicy's
// notification targets may name; any other Secret is refused.
const LabelNotificationSecret = "agentry.dev/notification-secret"

// notifyRounds bounds the reconciles spent on one notification; each makes up to three
// attempts with backoff.
const notifyRounds = 4

// deliveryGrace is how long a Finished notification waits for the session's delivery, so
// the message can carry the pull request.
const deliveryGrace = 10 * time.Minute

// staleNotification: events older than this are not notified.
const staleNotification = time.Hour

// NotificationReconciler tells the targets in a namespace's AgentPolicies when its sessions
// finish or wait for an approval, at least once per target and event, and records each in
// status.notifications.
type NotificationReconciler struct {
	Client            client.Client
	APIReader         client.Reader
	Recorder          record.EventRecorder
	OperatorNamespace string
	// Backoff is the retry policy within one reconcile (a small default when zero).
	Backoff notify.Backoff
	Now     func() time.Time
}

// pendingNotification is one event due to one target.
type pendingNotification struct {
	target v1.NotificationTarget
	key    string // status.notifications[].event
	event  notify.Event
	prev   v1.NotificationRecord
}

// Reconcile sends what is due and records it.
func (r *NotificationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	s := &v1.AgentSession{}
	if err := r.Client.Get(ctx, req.NamespacedName, s); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	var pols v1.AgentPolicyList
	if err := r.Client.List(ctx, &pols, client.InNamespace(s.Namespace)); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing AgentPolicies of %s: %w", s.Namespace, err)
	}
	due, wait := r.due(s, pols.Items)
	var res ctrl.Result
	if wait > 0 {
		res.RequeueAfter = wait
	}
	if len(due) == 0 {
		return res, nil
	}
	var records []v1.NotificationRecord
	for _, n := range due {
		rec := v1.NotificationRecord{Target: n.target.Name, Event: n.key, Attempts: n.prev.Attempts}
		sender, err := r.sender(ctx, n.target)
		attempts := 0
		if err == nil {
			attempts, err = notify.Deliver(ctx, sender, n.event, r.backoff())
		}
		now := metav1.NewTime(r.now())
		rec.Attempts += int32(max(attempts, 1))
		rec.LastAttemptTime = &now
		if err == nil {
			rec.Sent = true
			r.Recorder.Eventf(s, corev1.EventTypeNormal, "Notified", "Notified %s of %s", n.target.Name, n.key)
		} else {
			rec.Message = display.Truncate(err.Error(), 1024)
			r.Recorder.Eventf(s, corev1.EventTypeWarning, "NotificationFailed", "Notifying %s of %s: %s", n.target.Name, n.key, rec.Message)
			if n.prev.Attempts/3 < notifyRounds-1 {
				res.RequeueAfter = time.Duration(rec.Attempts) * 10 * time.Second
			}
		}
		records = append(records, rec)
	}
	return res, r.applyRecords(ctx, s, records)
}

func (r *NotificationReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *NotificationReconciler) backoff() notify.Backoff {
	if r.Backoff.Attempts > 0 {
		return r.Backoff
	}
	return notify.Backoff{Initial: time.Second, Max: 10 * time.Second, Attempts: 3}
}

// due lists the notifications s owes, and how long to wait before looking again for one
// held back until delivery finishes.
func (r *NotificationReconciler) due(s *v1.AgentSession, pols []v1.AgentPolicy) ([]pendingNotification, time.Duration) {
	done := map[string]v1.NotificationRecord{}
	for _, rec := range s.Status.Notifications {
		done[rec.Target+"\x00"+rec.Event] = rec
	}
	var wait time.Duration
	var out []pendingNotification
	var since time.Time
	add := func(t v1.NotificationTarget, key string, ev notify.Event) {
		// Only what happened while the policy asked for it, and recently: a policy added
		// later, or a manager upgraded to one that notifies, does not replay history.
		if ev.Session.Time.Before(since) || r.now().Sub(ev.Session.Time) > staleNotification {
			return
		}
		prev := done[t.Name+"\x00"+key]
		if prev.Sent || prev.Attempts >= 3*notifyRounds || len(s.Status.Notifications)+len(out) >= 32 && prev.Attempts == 0 {
			return
		}
		out = append(out, pendingNotification{target: t, key: key, event: ev, prev: prev})
	}
	for _, pol := range pols {
		since = pol.CreationTimestamp.Time
		for _, t := range pol.Spec.Notifications {
			events := t.Events
			if len(events) == 0 {
				events = []v1.NotificationEvent{v1.NotifyFinished}
			}
			for _, e := range events {
				switch e {
				case v1.NotifyFinished:
					if !s.Status.Phase.IsTerminal() {
						continue
					}
					if d := deliveryPending(s); d > 0 {
						wait = d
						continue
					}
					add(t, string(v1.NotifyFinished), notify.Event{Kind: notify.KindFinished, Session: notifySession(s, nil)})
				case v1.NotifyWaitingForApproval:
					for i := range s.Status.PendingApprovals {
						a := &s.Status.PendingApprovals[i]
						add(t, string(v1.NotifyWaitingForApproval)+"/"+a.ID, notify.Event{Kind: notify.KindWaitingForApproval, Session: notifySession(s, a)})
					}
				}
			}
		}
	}
	return out, wait
}

// deliveryPending is how long to hold a Finished notification for a delivery still under
// way (0 when there is none, or it waited long enough).
func deliveryPending(s *v1.AgentSession) time.Duration {
	if s.Spec.Delivery == nil || s.Status.Phase != v1.PhaseSucceeded {
		return 0
	}
	if c := meta.FindStatusCondition(s.Status.Conditions, v1.ConditionDelivered); c != nil && c.Status != metav1.ConditionUnknown {
		return 0
	}
	if s.Status.CompletionTime == nil {
		return time.Minute
	}
	if left := time.Until(s.Status.CompletionTime.Add(deliveryGrace)); left > 0 {
		return left
	}
	return 0
}

func notifySession(s *v1.AgentSession, a *v1.PendingApproval) notify.Session {
	n := notify.Session{Namespace: s.Namespace, Name: s.Name, UID: string(s.UID), Phase: string(s.Status.Phase),
		Repository: s.Spec.Repository.URL, Time: time.Now()}
	if c := meta.FindStatusCondition(s.Status.Conditions, v1.ConditionSucceeded); c != nil {
		n.Reason, n.Message = c.Reason, c.Message
	}
	if s.Status.CompletionTime != nil {
		n.Time = s.Status.CompletionTime.Time
	}
	if res := s.Status.Result; res != nil {
		n.Summary, n.FilesChanged, n.Additions, n.Deletions = res.Summary, res.FilesChanged, res.Additions, res.Deletions
	}
	if u := s.Status.Usage; u != nil {
		n.TotalTokens = u.TotalTokens
	}
	if d := s.Status.Delivery; d != nil {
		n.PullRequestURL, n.Branch = d.PullRequestURL, d.Branch
	}
	if t := s.Status.Transcript; t != nil {
		n.TranscriptURI = t.URI
	}
	if a != nil {
		n.Phase = string(v1.PhaseWaitingForApproval)
		n.Approval = &notify.Approval{ID: a.ID, Tool: a.Tool, Summary: a.Summary, Digest: a.Digest}
		if a.ExpiresAt != nil {
			n.Approval.ExpiresAt = a.ExpiresAt.Time
		}
		if a.RequestedAt != nil {
			n.Time = a.RequestedAt.Time
		}
	}
	return n
}

// sender builds the target's sender from its Secret, which must carry LabelNotificationSecret.
func (r *NotificationReconciler) sender(ctx context.Context, t v1.NotificationTarget) (notify.Sender, error) {
	switch {
	case t.Webhook != nil:
		w := notify.Webhook{URL: t.Webhook.URL}
		if ref := t.Webhook.SigningSecretRef; ref != nil {
			key, err := r.secretValue(ctx, *ref)
			if err != nil {
				return nil, err
			}
			w.Secret = key
		}
		return w, nil
	case t.Slack != nil:
		u, err := r.secretValue(ctx, t.Slack.WebhookURLSecretRef)
		if err != nil {
			return nil, err
		}
		parsed, err := url.Parse(strings.TrimSpace(string(u)))
		if err != nil || (parsed.Scheme != "https" && parsed.Scheme != "http") || parsed.Host == "" {
			return nil, fmt.Errorf("the Secret %s key %s does not hold an http(s) URL", t.Slack.WebhookURLSecretRef.Name, t.Slack.WebhookURLSecretRef.Key)
		}
		return notify.Slack{URL: parsed.String()}, nil
	}
	return nil, fmt.Errorf("target %s has neither webhook nor slack", t.Name)
}

func (r *NotificationReconciler) secretValue(ctx context.Context, ref v1.SecretKeySelector) ([]byte, error) {
	sec := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: r.OperatorNamespace, Name: ref.Name}, sec); apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("the Secret %s/%s does not exist", r.OperatorNamespace, ref.Name)
	} else if err != nil {
		return nil, fmt.Errorf("reading Secret %s/%s: %w", r.OperatorNamespace, ref.Name, err)
	}
	if sec.Labels[LabelNotificationSecret] != "true" {
		return nil, fmt.Errorf("the Secret %s/%s lacks the label %s=true that notification targets require", r.OperatorNamespace, ref.Name, LabelNotificationSecret)
	}
	v := sec.Data[ref.Key]
	if len(v) == 0 {
		return nil, fmt.Errorf("the Secret %s/%s has no non-empty key %s", r.OperatorNamespace, ref.Name, ref.Key)
	}
	return v, nil
}

func (r *NotificationReconciler) applyRecords(ctx context.Context, s *v1.AgentSession, records []v1.NotificationRecord) error {
	// Apply every record this manager owns: a server-side apply removes the owned entries
	// it leaves out.
	byKey := map[string]v1.NotificationRecord{}
	for _, rec := range s.Status.Notifications {
		byKey[rec.Target+"\x00"+rec.Event] = rec
	}
	for _, rec := range records {
		byKey[rec.Target+"\x00"+rec.Event] = rec
	}
	all := make([]v1.NotificationRecord, 0, len(byKey))
	for _, rec := range s.Status.Notifications {
		all = append(all, byKey[rec.Target+"\x00"+rec.Event])
		delete(byKey, rec.Target+"\x00"+rec.Event)
	}
	for _, rec := range records {
		if _, ok := byKey[rec.Target+"\x00"+rec.Event]; ok {
			all = append(all, rec)
		}
	}
	body, err := json.Marshal(map[string]any{
		"apiVersion": v1.GroupVersion.String(),
		"kind":       "AgentSession",
		"metadata":   map[string]any{"name": s.Name, "namespace": s.Namespace, "uid": string(s.UID)},
		"status":     map[string]any{"notifications": all},
	})
	if err != nil {
		return err
	}
	obj := &v1.AgentSession{}
	obj.Name, obj.Namespace = s.Name, s.Namespace
	if err := r.Client.Status().Patch(ctx, obj, client.RawPatch(types.ApplyPatchType, body), NotifyFieldOwner, client.ForceOwnership); err != nil {
		return fmt.Errorf("recording notifications of %s/%s: %w", s.Namespace, s.Name, err)
	}
	log.FromContext(ctx).V(1).Info("Recording notifications", "AgentSession", klog.KObj(s), "count", len(records))
	return nil
}

// SetupWithManager watches sessions, and policies (a target added to a policy applies to
// the namespace's sessions from then on).
func (r *NotificationReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.AgentSession{}).
		Named("notification").
		Watches(&v1.AgentPolicy{}, handler.EnqueueRequestsFromMapFunc(r.sessionsOf)).
		Complete(r)
}

func (r *NotificationReconciler) sessionsOf(ctx context.Context, pol client.Object) []reconcile.Request {
	p, ok := pol.(*v1.AgentPolicy)
	if !ok || len(p.Spec.Notifications) == 0 {
		return nil
	}
	var list v1.AgentSessionList
	if err := r.Client.List(ctx, &list, client.InNamespace(p.Namespace)); err != nil {
		log.FromContext(ctx).Error(err, "Listing sessions for a notification policy", "AgentPolicy", p.Namespace+"/"+p.Name)
		return nil
	}
	var out []reconcile.Request
	for _, s := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: s.Namespace, Name: s.Name}})
	}
	return out
}
