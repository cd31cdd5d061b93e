package main

import (
	"context"
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/agentry-dev/agentry/console"
	"github.com/agentry-dev/agentry/console/viewer"
	"github.com/agentry-dev/agentry/controllers"
)

// setupConsole adds the share-link server (every replica) and the share controller
// (leader): links are signed with a key kept in a Secret of the operator namespace.
func setupConsole(ctx context.Context, mgr ctrl.Manager, store console.Store, addr, url, keySecret, ns string) error {
	if url == "" {
		url = fmt.Sprintf("http://agentry-console.%s.svc:8090", ns)
	}
	// The manager's cache does not run yet, and is not allowed to list Secrets cluster-wide.
	direct, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme()})
	if err != nil {
		return err
	}
	key, err := console.LoadOrCreateKey(ctx, direct, ns, keySecret)
	if err != nil {
		return err
	}
	if err := mgr.Add(&console.Server{Addr: addr, Client: mgr.GetClient(), Shares: mgr.GetAPIReader(), Store: store, Key: key, Viewer: viewer.Handler()}); err != nil {
		return err
	}
	return (&controllers.ShareReconciler{Client: mgr.GetClient(), BaseURL: url, Key: key}).SetupWithManager(mgr)
}
