package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

// GitProviderReconciler sets a GitProvider's Ready condition from its Secret in the
// operator's namespace: present, with the keys its type needs. It reads the Secret
// uncached and looks again every minute while it is not Ready.
type GitProviderReconciler struct {
	Client            client.Client
	APIReader         client.Reader
	OperatorNamespace string
}

// Reconcile computes Ready and writes it if it changed.
func (r *GitProviderReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	p := &v1.GitProvider{}
	if err := r.Client.Get(ctx, req.NamespacedName, p); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	sec := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: r.OperatorNamespace, Name: p.Spec.SecretRef.Name}, sec); apierrors.IsNotFound(err) {
		sec = nil
	} else if err != nil {
		return ctrl.Result{}, fmt.Errorf("reading Secret %s/%s: %w", r.OperatorNamespace, p.Spec.SecretRef.Name, err)
	}
	cond := gitProviderReady(p, r.OperatorNamespace, sec)
	cond.ObservedGeneration = p.Generation
	var res ctrl.Result
	if cond.Status != metav1.ConditionTrue {
		res.RequeueAfter = time.Minute
	}
	if old := meta.FindStatusCondition(p.Status.Conditions, cond.Type); old != nil && old.Status == cond.Status &&
		old.Reason == cond.Reason && old.Message == cond.Message && p.Status.ObservedGeneration == p.Generation {
		return res, nil
	}
	patch := client.MergeFrom(p.DeepCopy())
	meta.SetStatusCondition(&p.Status.Conditions, cond)
	p.Status.ObservedGeneration = p.Generation
	if err := r.Client.Status().Patch(ctx, p, patch, FieldOwner); err != nil {
		return ctrl.Result{}, fmt.Errorf("patching status of GitProvider %s: %w", p.Name, err)
	}
	return res, nil
}

// gitProviderReady is the Ready condition for p given its Secret (nil when absent). It
// names keys, never values.
func gitProviderReady(p *v1.GitProvider, ns string, sec *corev1.Secret) metav1.Condition {
	if sec == nil {
		return metav1.Condition{Type: ConditionReady, Status: metav1.ConditionFalse, Reason: ReasonSecretNotFound,
			Message: fmt.Sprintf("Secret %s/%s (spec.secretRef) does not exist", ns, p.Spec.SecretRef.Name)}
	}
	var need []string
	switch {
	case p.Spec.GitHubApp != nil:
		need = []string{"private-key.pem"}
	case p.Spec.Type == v1.GitProviderGit && strings.HasPrefix(p.Spec.URL, "ssh://"):
		need = []string{"ssh-privatekey", "known_hosts"}
	case p.Spec.Type == v1.GitProviderGit:
		need = []string{"password"}
	default:
		need = []string{"token"}
	}
	var missing []string
	for _, k := range need {
		if len(strings.TrimSpace(string(sec.Data[k]))) == 0 {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return metav1.Condition{Type: ConditionReady, Status: metav1.ConditionFalse, Reason: ReasonKeyMissing,
			Message: fmt.Sprintf("Secret %s/%s has no non-empty %s for a %s provider", ns, sec.Name, strings.Join(missing, ", "), p.Spec.Type)}
	}
	return metav1.Condition{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonKeyFound,
		Message: fmt.Sprintf("Secret %s/%s holds %s", ns, sec.Name, strings.Join(need, ", "))}
}

// SetupWithManager watches GitProviders.
func (r *GitProviderReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).For(&v1.GitProvider{}).Named("gitprovider").Complete(r)
}
