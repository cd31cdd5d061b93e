package controllers

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/agentry-dev/agentry/contract"
)

// CacheOptions keeps the manager's memory proportional to Agentry's own objects: pods and
// NetworkPolicies are cached only when they carry a session label, and managedFields (often
// the larger part of an object) are dropped from everything cached.
func CacheOptions() cache.Options {
	req, err := labels.NewRequirement(contract.LabelSessionUID, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant label key: cannot fail
	}
	sessionOwned := labels.NewSelector().Add(*req)
	caReq, err := labels.NewRequirement(contract.LabelGatewayCA, selection.Exists, nil)
	if err != nil {
		panic(err)
	}
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}:                 {Label: sessionOwned},
			&networkingv1.NetworkPolicy{}: {Label: sessionOwned},
			// Only the gateway CA bundle and its copies, never every ConfigMap in the cluster.
			&corev1.ConfigMap{}: {Label: labels.NewSelector().Add(*caReq)},
		},
	}
}
