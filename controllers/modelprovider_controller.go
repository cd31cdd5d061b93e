package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

// +kubebuilder:rbac:groups=agentry.dev,resources=modelproviders,verbs=get;list;watch
// +kubebuilder:rbac:groups=agentry.dev,resources=modelproviders/status,verbs=get;patch
// +kubebuilder:rbac:groups="",namespace=agentry-system,resources=secrets,verbs=get;list;watch

// ModelProvider's Ready condition and its reasons.
const (
	// ConditionReady is True when the provider's key Secret holds its key.
	ConditionReady = "Ready"
	// ReasonKeyFound: the Secret holds a non-empty key.
	ReasonKeyFound = "KeyFound"
	// ReasonNoKeyRequired: the provider names no key Secret.
	ReasonNoKeyRequired = "NoKeyRequired"
	// ReasonSecretNotFound: the key Secret does not exist.
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonKeyMissing: the Secret has no such key, or it is empty.
	ReasonKeyMissing = "KeyMissing"
)

// ModelProviderReconciler sets a ModelProvider's Ready condition from its key
// Secret in the operator's namespace. It only reads Secrets' metadata through
// a cache confined to that namespace, and their data uncached, one at a time.
type ModelProviderReconciler struct {
	Client client.Client
	// APIReader reads the key Secret without caching Secrets.
	APIReader client.Reader
	// OperatorNamespace holds the key Secrets.
	OperatorNamespace string
}

// Reconcile computes Ready and applies it if it changed.
func (r *ModelProviderReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	p := &v1.ModelProvider{}
	if err := r.Client.Get(ctx, req.NamespacedName, p); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	var sec *corev1.Secret
	if ref := p.Spec.APIKeySecretRef; ref != nil {
		sec = &corev1.Secret{}
		if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: r.OperatorNamespace, Name: ref.Name}, sec); apierrors.IsNotFound(err) {
			sec = nil
		} else if err != nil {
			return ctrl.Result{}, fmt.Errorf("reading Secret %s/%s: %w", r.OperatorNamespace, ref.Name, err)
		}
	}
	cond := providerReady(p, r.OperatorNamespace, sec)
	cond.ObservedGeneration = p.Generation
	if old := meta.FindStatusCondition(p.Status.Conditions, cond.Type); old != nil &&
		old.Status == cond.Status && old.Reason == cond.Reason && old.Message == cond.Message && old.ObservedGeneration == cond.ObservedGeneration {
		return ctrl.Result{}, nil
	}
	patch := client.MergeFrom(p.DeepCopy())
	meta.SetStatusCondition(&p.Status.Conditions, cond)
	if err := r.Client.Status().Patch(ctx, p, patch, FieldOwner); err != nil {
		return ctrl.Result{}, fmt.Errorf("patching status of ModelProvider %s: %w", p.Name, err)
	}
	return ctrl.Result{}, nil
}

// providerReady is the Ready condition for p given its key Secret (nil when
// it does not exist). It never quotes the key.
func providerReady(p *v1.ModelProvider, ns string, sec *corev1.Secret) metav1.Condition {
	ref := p.Spec.APIKeySecretRef
	if ref == nil {
		return metav1.Condition{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonNoKeyRequired,
			Message: "spec.apiKeySecretRef is not set: calls are sent without a key"}
	}
	key := ref.Key
	if key == "" {
		key = "apiKey"
	}
	switch {
	case sec == nil:
		return metav1.Condition{Type: ConditionReady, Status: metav1.ConditionFalse, Reason: ReasonSecretNotFound,
			Message: fmt.Sprintf("Secret %s/%s (spec.apiKeySecretRef) does not exist", ns, ref.Name)}
	case len(strings.TrimSpace(string(sec.Data[key]))) == 0:
		return metav1.Condition{Type: ConditionReady, Status: metav1.ConditionFalse, Reason: ReasonKeyMissing,
			Message: fmt.Sprintf("Secret %s/%s has no non-empty key %q", ns, ref.Name, key)}
	}
	return metav1.Condition{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonKeyFound,
		Message: fmt.Sprintf("key %q found in Secret %s/%s", key, ns, ref.Name)}
}

// SetupWithManager watches ModelProviders and the Secrets of the operator's
// namespace (metadata only, through a cache confined to that namespace).
func (r *ModelProviderReconciler) SetupWithManager(mgr ctrl.Manager) error {
	secrets, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(),
		DefaultNamespaces: map[string]cache.Config{r.OperatorNamespace: {}},
		DefaultTransform:  cache.TransformStripManagedFields(),
	})
	if err != nil {
		return fmt.Errorf("creating the Secret cache: %w", err)
	}
	if err := mgr.Add(secrets); err != nil {
		return err
	}
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.ModelProvider{}).
		Named("modelprovider").
		WatchesRawSource(source.Kind(secrets, client.Object(meta), handler.EnqueueRequestsFromMapFunc(r.providersOf))).
		Complete(r)
}

// providersOf maps a Secret to the ModelProviders that name it.
func (r *ModelProviderReconciler) providersOf(ctx context.Context, sec client.Object) []reconcile.Request {
	var list v1.ModelProviderList
	if err := r.Client.List(ctx, &list); err != nil {
		log.FromContext(ctx).Error(err, "Listing ModelProviders for a Secret", "Secret", sec.GetNamespace()+"/"+sec.GetName())
		return nil
	}
	var out []reconcile.Request
	for _, p := range list.Items {
		if ref := p.Spec.APIKeySecretRef; ref != nil && ref.Name == sec.GetName() {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: p.Name}})
		}
	}
	return out
}
