package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/agentry-dev/agentry/contract"
)

// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get
// +kubebuilder:rbac:groups="",namespace=agentry-system,resources=secrets,verbs=create;update

// GatewayCAReconciler keeps every session namespace's copy of the gateway CA bundle equal to
// the bundle the manager publishes in its own namespace: when the CA rotates, running pods
// see the new bundle (the kubelet refreshes the mounted ConfigMap); when someone edits a
// copy, it is put back.
type GatewayCAReconciler struct {
	Client client.Client
	// APIReader reads around the cache (default: the manager's).
	APIReader client.Reader
	// OperatorNamespace holds the published bundle; Name is the ConfigMap's name there and
	// in every session namespace.
	OperatorNamespace, Name string
}

// SetupWithManager watches the bundle ConfigMaps (the cache holds only those).
func (r *GatewayCAReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	ours := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetName() == r.Name && o.GetLabels()[contract.LabelGatewayCA] != ""
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("gatewayca").
		Watches(&corev1.ConfigMap{}, &handler.EnqueueRequestForObject{}, builder.WithPredicates(ours)).
		Complete(r)
}

// Reconcile brings one copy, or every copy when the source changed, to the source's bundle.
func (r *GatewayCAReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	src := &corev1.ConfigMap{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: r.OperatorNamespace, Name: r.Name}, src); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err) // the manager publishes it; its creation enqueues us
	}
	if req.Namespace != r.OperatorNamespace {
		return ctrl.Result{}, r.sync(ctx, src, req.Namespace)
	}
	var copies corev1.ConfigMapList
	if err := r.Client.List(ctx, &copies, client.MatchingLabels{contract.LabelGatewayCA: contract.GatewayCACopy}); err != nil {
		return ctrl.Result{}, err
	}
	for _, c := range copies.Items {
		if c.Name == r.Name && c.Namespace != r.OperatorNamespace {
			if err := r.sync(ctx, src, c.Namespace); err != nil {
				return ctrl.Result{}, err
			}
		}
	}
	return ctrl.Result{}, nil
}

func (r *GatewayCAReconciler) sync(ctx context.Context, src *corev1.ConfigMap, ns string) error {
	_, err := ensureGatewayCACopy(ctx, r.Client, r.APIReader, src, ns)
	return err
}

// errForeignConfigMap: the session namespace has a ConfigMap of the bundle's name that
// Agentry did not create. It is left alone, and runner pods there cannot be started.
type errForeignConfigMap struct{ key client.ObjectKey }

func (e errForeignConfigMap) Error() string {
	return fmt.Sprintf("ConfigMap %s exists and is not Agentry's (it lacks the label %s=%s): Agentry keeps the gateway CA bundle runner pods trust under that name, so it will not start runner pods in this namespace until that ConfigMap is renamed or removed",
		e.key, contract.LabelGatewayCA, contract.GatewayCACopy)
}

// ensureGatewayCACopy makes namespace ns hold an Agentry-labelled copy of src's bundle; it
// reports whether it wrote. A same-named ConfigMap without the label is errForeignConfigMap.
// live reads around the cache.
func ensureGatewayCACopy(ctx context.Context, c client.Client, live client.Reader, src *corev1.ConfigMap, ns string) (bool, error) {
	want := src.Data[contract.GatewayCAKey]
	key := client.ObjectKey{Namespace: ns, Name: src.Name}
	cur := &corev1.ConfigMap{}
	err := c.Get(ctx, key, cur)
	if apierrors.IsNotFound(err) {
		cur = &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: src.Name, Labels: map[string]string{
				contract.LabelGatewayCA: contract.GatewayCACopy, labelManagedBy: managedBy,
			}},
			Data: map[string]string{contract.GatewayCAKey: want},
		}
		if err := c.Create(ctx, cur, FieldOwner); err != nil {
			if !apierrors.IsAlreadyExists(err) {
				return false, fmt.Errorf("creating the gateway CA bundle %s: %w", key, err)
			}
			// Our own copy the cache has not seen yet (many sessions start at once), or
			// someone else's ConfigMap the label-filtered cache never holds: ask the apiserver.
			cur = &corev1.ConfigMap{}
			if err := live.Get(ctx, key, cur); err != nil {
				return false, err
			}
			return updateGatewayCACopy(ctx, c, cur, want)
		}
		log.FromContext(ctx).Info("Copied the gateway CA bundle", "ConfigMap", klog.KObj(cur))
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return updateGatewayCACopy(ctx, c, cur, want)
}

// updateGatewayCACopy makes an existing copy hold exactly want.
func updateGatewayCACopy(ctx context.Context, c client.Client, cur *corev1.ConfigMap, want string) (bool, error) {
	key := client.ObjectKeyFromObject(cur)
	if cur.Labels[contract.LabelGatewayCA] != contract.GatewayCACopy {
		return false, errForeignConfigMap{key}
	}
	if cur.Data[contract.GatewayCAKey] == want && len(cur.Data) == 1 && len(cur.BinaryData) == 0 {
		return false, nil
	}
	cur.Data, cur.BinaryData = map[string]string{contract.GatewayCAKey: want}, nil
	if err := c.Update(ctx, cur, FieldOwner); err != nil {
		return false, fmt.Errorf("updating the gateway CA bundle %s: %w", key, err)
	}
	log.FromContext(ctx).Info("Updated the gateway CA bundle", "ConfigMap", klog.KObj(cur))
	return true, nil
}

var _ reconcile.Reconciler = &GatewayCAReconciler{}
