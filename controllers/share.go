package controllers

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/console"
)

// +kubebuilder:rbac:groups=agentry.dev,resources=agentsessionshares,verbs=get;list;watch
// +kubebuilder:rbac:groups=agentry.dev,resources=agentsessionshares/status,verbs=get;patch
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create
// +kubebuilder:rbac:groups="",namespace=agentry-system,resources=secrets,verbs=create

// Share Ready reasons.
const (
	// ReasonLinkReady: the link works until status.expiresAt.
	ReasonLinkReady = "LinkReady"
	// ReasonLinkExpired: status.expiresAt has passed.
	ReasonLinkExpired = "Expired"
	// ReasonSessionNotFound: spec.session names no session in the namespace.
	ReasonSessionNotFound = "SessionNotFound"
)

// maxShareExpiry is the longest a share lives when no policy says less.
const maxShareExpiry = 720 * time.Hour

// ShareReconciler gives each AgentSessionShare its link: expiry (capped by the namespace's
// AgentPolicy maxShareExpiry) and a URL signed with the console key. The console server
// checks the share on every request, so deleting it revokes the link.
type ShareReconciler struct {
	Client client.Client
	// BaseURL is the console's external URL, the links' prefix.
	BaseURL string
	Key     []byte
	Now     func() time.Time
}

func (r *ShareReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Reconcile writes the link and the Ready condition.
func (r *ShareReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	sh := &v1.AgentSessionShare{}
	if err := r.Client.Get(ctx, req.NamespacedName, sh); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := sh.DeepCopy()
	var res ctrl.Result
	if sh.Status.ExpiresAt == nil {
		// Fixed once: the link's signature covers it.
		d := 24 * time.Hour
		if sh.Spec.ExpiresIn != nil {
			d = sh.Spec.ExpiresIn.Duration
		}
		var pols v1.AgentPolicyList
		if err := r.Client.List(ctx, &pols, client.InNamespace(sh.Namespace)); err != nil {
			return ctrl.Result{}, fmt.Errorf("listing AgentPolicies of %s: %w", sh.Namespace, err)
		}
		d = min(d, maxShareExpiry)
		for _, p := range pols.Items {
			if m := p.Spec.MaxShareExpiry; m != nil {
				d = min(d, m.Duration)
			}
		}
		exp := metav1.NewTime(sh.CreationTimestamp.Add(d).Truncate(time.Second))
		sh.Status.ExpiresAt = &exp
	}
	cond := metav1.Condition{Type: ConditionReady, ObservedGeneration: sh.Generation}
	sess := &v1.AgentSession{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: sh.Namespace, Name: sh.Spec.Session}, sess)
	switch {
	case !r.now().Before(sh.Status.ExpiresAt.Time):
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, ReasonLinkExpired, "the link expired at "+sh.Status.ExpiresAt.UTC().Format(time.RFC3339)
		sh.Status.URL = ""
	case apierrors.IsNotFound(err):
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, ReasonSessionNotFound, fmt.Sprintf("AgentSession %s (spec.session) does not exist in %s", sh.Spec.Session, sh.Namespace)
		res.RequeueAfter = 30 * time.Second
	case err != nil:
		return ctrl.Result{}, fmt.Errorf("reading AgentSession %s/%s: %w", sh.Namespace, sh.Spec.Session, err)
	default:
		sh.Status.URL = console.Link(r.BaseURL, r.Key, sh, sh.Status.ExpiresAt.Time)
		cond.Status, cond.Reason = metav1.ConditionTrue, ReasonLinkReady
		cond.Message = "the link works until " + sh.Status.ExpiresAt.UTC().Format(time.RFC3339) + "; delete this share to revoke it"
		res.RequeueAfter = sh.Status.ExpiresAt.Sub(r.now()) + time.Second
	}
	meta.SetStatusCondition(&sh.Status.Conditions, cond)
	sh.Status.ObservedGeneration = sh.Generation
	if err := r.Client.Status().Patch(ctx, sh, client.MergeFrom(before), FieldOwner); err != nil {
		return ctrl.Result{}, fmt.Errorf("patching status of AgentSessionShare %s/%s: %w", sh.Namespace, sh.Name, err)
	}
	return res, nil
}

// SetupWithManager watches shares, and sessions (a share waiting for its session).
func (r *ShareReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.AgentSessionShare{}).
		Named("share").
		Watches(&v1.AgentSession{}, handler.EnqueueRequestsFromMapFunc(r.sharesOf)).
		Complete(r)
}

func (r *ShareReconciler) sharesOf(ctx context.Context, o client.Object) []reconcile.Request {
	var list v1.AgentSessionShareList
	if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing shares of a session", "AgentSession", o.GetNamespace()+"/"+o.GetName())
		return nil
	}
	var out []reconcile.Request
	for _, s := range list.Items {
		if s.Spec.Session == o.GetName() && s.Status.URL == "" {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: s.Namespace, Name: s.Name}})
		}
	}
	return out
}
