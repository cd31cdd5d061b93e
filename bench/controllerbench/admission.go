package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	agentryv1alpha1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/controllers"
	"github.com/agentry-dev/agentry/test/testutil"
)

// slots is the namespace's maxConcurrentSessions in the admission benchmark; all are taken.
const slots = 10

// runAdmission measures what one admission costs the controller as a namespace's queue grows:
// for each queue length, a namespace with an AgentPolicy of 10 slots, 10 running sessions and
// that many queued ones, read through the manager's cache (with its indexes, no controller
// running). It times (median) the reconcile of the session at the head of the queue (the next to be
// admitted) and of the one at its tail, and, beside them, the whole-namespace list from the
// same cache that every such reconcile made before the admission index.
func runAdmission(o options) error {
	b, err := startBench(o)
	if err != nil {
		return err
	}
	defer b.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	if err := b.install(ctx); err != nil {
		return err
	}
	cfg := b.clientConfig(agentryUA)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: b.env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Cache: controllers.CacheOptions(),
	})
	if err != nil {
		return err
	}
	if err := controllers.AddIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
		return err
	}
	r := &controllers.AgentSessionReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Scheme: mgr.GetScheme(), Recorder: record.NewFakeRecorder(1 << 20),
		Runner: controllers.RunnerConfig{Image: "agentry/runner:bench", GatewayURL: "https://agentry-gateway.agentry-system.svc:8443", GatewayCAConfigMap: caName},
		Clock:  clock.RealClock{},
	}
	mctx, stopMgr := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	defer func() { stopMgr(); <-done }()

	fmt.Printf("# admission of one queued session, %d slots taken; %s\n\n", slots, time.Now().UTC().Format(time.RFC3339))
	fmt.Println("| queued | reconcile of the head of the queue | reconcile of its tail | whole-namespace list (before the index) |")
	fmt.Println("| --- | --- | --- | --- |")
	for _, q := range o.admission {
		head, tail, list, err := b.admissionRow(ctx, r, mgr.GetClient(), q)
		if err != nil {
			return err
		}
		fmt.Printf("| %d | %s | %s | %s |\n", q, ms(head), ms(tail), ms(list))
	}
	return nil
}

// admissionRow fills a namespace with a queue of q sessions behind 10 running ones and times
// the three reads.
func (b *bench) admissionRow(ctx context.Context, r *controllers.AgentSessionReconciler, cache client.Client, q int) (head, tail, list time.Duration, err error) {
	ns, err := b.env.CreateNamespace(ctx, fmt.Sprintf("bench-queue-%d", q), nil)
	if err != nil {
		return 0, 0, 0, err
	}
	if err := b.creator.Create(ctx, &agentryv1alpha1.AgentPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "slots"},
		Spec: agentryv1alpha1.AgentPolicySpec{MaxConcurrentSessions: ptr.To[int32](slots)}}); err != nil {
		return 0, 0, 0, err
	}
	if err := createAll(ctx, b.creator, ns, slots, func(c client.Client, ns string, i int) client.Object {
		return testutil.Session(fmt.Sprintf("run-%02d", i), ns).Obj()
	}); err != nil {
		return 0, 0, 0, err
	}
	for i := range slots {
		s := &agentryv1alpha1.AgentSession{}
		if err := b.creator.Get(ctx, client.ObjectKey{Namespace: ns, Name: fmt.Sprintf("run-%02d", i)}, s); err != nil {
			return 0, 0, 0, err
		}
		s.Status.Phase, s.Status.PodName = agentryv1alpha1.PhaseRunning, s.Name+"-runner"
		if err := b.creator.Status().Update(ctx, s); err != nil {
			return 0, 0, 0, err
		}
	}
	// Created oldest first, so q-00000 heads the queue (creation seconds, then names, order it).
	if err := createAll(ctx, b.creator, ns, q, func(c client.Client, ns string, i int) client.Object {
		return testutil.Session(fmt.Sprintf("q-%05d", i), ns).Obj()
	}); err != nil {
		return 0, 0, 0, err
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := testutil.Poll(wctx, func() error {
		var l agentryv1alpha1.AgentSessionList
		if err := cache.List(ctx, &l, client.InNamespace(ns), client.UnsafeDisableDeepCopy); err != nil {
			return err
		}
		if len(l.Items) != q+slots {
			return fmt.Errorf("%d of %d sessions in the cache", len(l.Items), q+slots)
		}
		return nil
	}); err != nil {
		return 0, 0, 0, fmt.Errorf("waiting for the cache: %w", err)
	}
	if head, err = b.timeReconcile(ctx, r, cache, ns, "q-00000", 500); err != nil {
		return 0, 0, 0, err
	}
	if tail, err = b.timeReconcile(ctx, r, cache, ns, fmt.Sprintf("q-%05d", q-1), 50); err != nil {
		return 0, 0, 0, err
	}
	list, err = timeIt(50, func() error {
		var l agentryv1alpha1.AgentSessionList
		return cache.List(ctx, &l, client.InNamespace(ns))
	})
	return head, tail, list, err
}

// timeReconcile reconciles one queued session until its status says Queued (its first
// reconcile writes that) and then times further reconciles, which read and decide only.
func (b *bench) timeReconcile(ctx context.Context, r *controllers.AgentSessionReconciler, cache client.Client, ns, name string, iterations int) (time.Duration, error) {
	req := reconcile.Request{NamespacedName: client.ObjectKey{Namespace: ns, Name: name}}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := testutil.Poll(wctx, func() error {
		if _, err := r.Reconcile(ctx, req); err != nil {
			return err
		}
		s := &agentryv1alpha1.AgentSession{}
		if err := cache.Get(ctx, req.NamespacedName, s); err != nil {
			return err
		}
		if s.Status.Phase != agentryv1alpha1.PhaseQueued {
			return fmt.Errorf("phase %q, message %q", s.Status.Phase, conditionMessage(s))
		}
		return nil
	}); err != nil {
		return 0, fmt.Errorf("queueing %s: %w", name, err)
	}
	before := &agentryv1alpha1.AgentSession{}
	if err := b.creator.Get(ctx, req.NamespacedName, before); err != nil {
		return 0, err
	}
	d, err := timeIt(iterations, func() error {
		_, err := r.Reconcile(ctx, req)
		return err
	})
	if err != nil {
		return 0, err
	}
	after := &agentryv1alpha1.AgentSession{}
	if err := b.creator.Get(ctx, req.NamespacedName, after); err != nil {
		return 0, err
	}
	if after.ResourceVersion != before.ResourceVersion || after.Status.PodName != "" {
		return 0, fmt.Errorf("%s changed while timed (phase %s): the timed reconciles must only read and decide", name, after.Status.Phase)
	}
	return d, nil
}

// timeIt returns the median time of one call of f.
func timeIt(iterations int, f func() error) (time.Duration, error) {
	times := make([]time.Duration, iterations)
	for i := range times {
		start := time.Now()
		if err := f(); err != nil {
			return 0, err
		}
		times[i] = time.Since(start)
	}
	slices.Sort(times)
	return times[iterations/2], nil
}

func conditionMessage(s *agentryv1alpha1.AgentSession) string {
	for _, c := range s.Status.Conditions {
		if c.Type == agentryv1alpha1.ConditionSucceeded {
			return c.Message
		}
	}
	return ""
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }
