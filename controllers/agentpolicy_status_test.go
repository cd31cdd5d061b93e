package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/test/testutil"
)

func TestAgentPolicyStatusCountsSessions(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	ns, err := env.CreateNamespace(ctx, "policy", nil)
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Cache: cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}}, Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := (&AgentPolicyStatusReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() { cancel(); <-done })

	policy := &v1.AgentPolicy{ObjectMeta: metav1.ObjectMeta{Name: "limits", Namespace: ns}, Spec: v1.AgentPolicySpec{MaxConcurrentSessions: ptr.To[int32](1)}}
	if err := env.Client.Create(ctx, policy); err != nil {
		t.Fatal(err)
	}
	// Sessions whose status says as the reconciler would: one running, two queued, one done.
	for name, st := range map[string]v1.AgentSessionStatus{
		"running": {Phase: v1.PhaseRunning, PodName: "running-runner"},
		"queued1": {Phase: v1.PhaseQueued}, "queued2": {Phase: v1.PhaseQueued},
		"done": {Phase: v1.PhaseSucceeded, PodName: "done-runner"},
	} {
		s := testutil.Session(name, ns).Obj()
		if err := env.Client.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		s.Status = st
		if err := env.Client.Status().Update(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, ctx, "activeSessions=1 queuedSessions=2", func() error {
		got := &v1.AgentPolicy{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(policy), got); err != nil {
			return err
		}
		if got.Status.ActiveSessions != 1 || got.Status.QueuedSessions != 2 {
			return fmt.Errorf("status = %+v", got.Status)
		}
		return nil
	})
}
