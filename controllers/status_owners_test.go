package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/test/testutil"
)

// gatewayOwner is the session gateway's field manager (gateway.FieldOwner; the gateway
// package imports this one, so the name is spelled out).
const gatewayOwner = client.FieldOwner("agentry-gateway")

// applyAsGateway writes status as the session gateway does: its whole view, by server-side
// apply under its own field manager, without a resourceVersion. It returns the new
// resourceVersion.
func applyAsGateway(t *testing.T, ctx context.Context, s *v1.AgentSession, status map[string]any) string {
	t.Helper()
	body, err := json.Marshal(map[string]any{
		"apiVersion": v1.GroupVersion.String(), "kind": "AgentSession",
		"metadata": map[string]any{"name": s.Name, "namespace": s.Namespace, "uid": string(s.UID)},
		"status":   status,
	})
	if err != nil {
		t.Fatal(err)
	}
	obj := &v1.AgentSession{}
	obj.Name, obj.Namespace = s.Name, s.Namespace
	if err := env.Client.Status().Patch(ctx, obj, client.RawPatch(types.ApplyPatchType, body), gatewayOwner, client.ForceOwnership); err != nil {
		t.Fatalf("applying status as the gateway: %v", err)
	}
	return obj.ResourceVersion
}

// sessionReads records the resourceVersions the reconciler read one session at.
type sessionReads struct {
	client.Client
	name string

	mu  sync.Mutex
	rvs []string
}

func (c *sessionReads) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	err := c.Client.Get(ctx, key, obj, opts...)
	if _, ok := obj.(*v1.AgentSession); ok && err == nil && key.Name == c.name {
		c.mu.Lock()
		c.rvs = append(c.rvs, obj.GetResourceVersion())
		c.mu.Unlock()
	}
	return err
}

func (c *sessionReads) seen() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.rvs)
}

// TestGatewayStatusWritesDoNotWakeTheReconciler: the gateway writes progress and usage
// about once a second per running session; the reconciler acts on none of it and must not
// be woken (at a thousand sessions those wakes were most of its work, and each ended in a
// conflicting write). A spec change, and the gateway's pendingApprovals, still wake it.
func TestGatewayStatusWritesDoNotWakeTheReconciler(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	ns := restrictedNamespace(t, ctx)
	reads := &sessionReads{name: "watched"}
	startManagerWith(t, ns, func(r *AgentSessionReconciler) {
		reads.Client = r.Client
		r.Client = reads
		// One worker: the queue is first in, first out, so once the barrier session is
		// reconciled every wake queued before it has been handled.
		r.MaxConcurrentReconciles = 1
	})
	s := create(t, testutil.Session("watched", ns).Obj())
	barrier := create(t, testutil.Session("barrier", ns).Obj())
	pod := waitForPod(t, ctx, s)
	kubelet{t}.run(ctx, pod, time.Now())
	waitForPhase(t, ctx, s, v1.PhaseRunning, v1.ReasonRunning)
	waitForPod(t, ctx, barrier)
	ttl := int32(0)
	// passBarrier changes the barrier session's spec and waits until the reconciler has
	// recorded it: every event the informer delivered before is handled by then.
	passBarrier := func() {
		t.Helper()
		ttl++
		b := &v1.AgentSession{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(barrier), b); err != nil {
			t.Fatal(err)
		}
		patch := client.MergeFrom(b.DeepCopy())
		b.Spec.TTLSecondsAfterFinished = &ttl
		if err := env.Client.Patch(ctx, b, patch); err != nil {
			t.Fatal(err)
		}
		eventually(t, ctx, "the reconciler to observe the barrier's new generation", func() error {
			got, err := getSession(ctx, barrier)
			if err != nil {
				return err
			}
			if got.Status.ObservedGeneration != got.Generation {
				return fmt.Errorf("observedGeneration %d, generation %d", got.Status.ObservedGeneration, got.Generation)
			}
			return nil
		})
	}
	passBarrier()
	before := len(reads.seen())

	var written []string
	for turn := 1; turn <= 3; turn++ {
		written = append(written, applyAsGateway(t, ctx, s, map[string]any{
			"progress": map[string]any{"turn": turn, "message": fmt.Sprintf("turn %d", turn)},
			"usage":    map[string]any{"promptTokens": 1000 * turn, "totalTokens": 1000 * turn},
		}))
	}
	passBarrier()
	if after := reads.seen(); len(after) != before {
		t.Fatalf("the gateway's progress and usage writes (resourceVersions %v) woke the reconciler: it read the session at %v", written, after[before:])
	}

	// A pending approval is the reconciler's business: the session is WaitingForApproval.
	applyAsGateway(t, ctx, s, map[string]any{
		"progress":         map[string]any{"turn": 3, "message": "turn 3"},
		"usage":            map[string]any{"promptTokens": 3000, "totalTokens": 3000},
		"pendingApprovals": []map[string]any{{"id": "call-1", "tool": "bash", "summary": "rm -rf build"}},
	})
	waitForPhase(t, ctx, s, v1.PhaseWaitingForApproval, v1.ReasonWaitingForApproval)

	// So is a spec change.
	got, err := getSession(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(got.DeepCopy())
	got.Spec.TTLSecondsAfterFinished = &ttl
	if err := env.Client.Patch(ctx, got, patch); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "the reconciler to read the session's new spec", testutil.Holds(func() bool {
		return slices.Contains(reads.seen(), got.ResourceVersion)
	}))
}

// TestReconcilerApplyKeepsGatewayFields is the stale read: the reconciler works from a copy
// read before the gateway recorded usage. Its apply carries no resourceVersion and only its
// own fields, so it neither conflicts nor removes the gateway's; nor does the gateway's
// whole-view apply remove the reconciler's.
func TestReconcilerApplyKeepsGatewayFields(t *testing.T) {
	ctx := testContext(t, time.Minute)
	ns := restrictedNamespace(t, ctx)
	s := create(t, testutil.Session("stale", ns).Obj())
	r := &AgentSessionReconciler{Client: env.Client, Clock: clock.RealClock{}}
	old, err := getSession(ctx, s)
	if err != nil {
		t.Fatal(err)
	}

	applyAsGateway(t, ctx, s, map[string]any{"usage": map[string]any{"promptTokens": 900, "completionTokens": 100, "totalTokens": 1000}})

	sc := &scope{obj: old.DeepCopy(), base: old}
	sc.obj.Status.PodName, sc.obj.Status.Phase = "stale-runner", v1.PhasePending
	setSucceeded(sc.obj, v1.PhasePending, v1.ReasonPending, "Waiting for the runner pod to start.")
	if err := r.applyStatus(ctx, sc); err != nil {
		t.Fatalf("the reconciler's write from a copy older than the gateway's: %v", err)
	}
	got, err := getSession(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Usage == nil || got.Status.Usage.TotalTokens != 1000 {
		t.Errorf("usage after the reconciler's write = %+v, want the gateway's 1000 tokens", got.Status.Usage)
	}
	if got.Status.Phase != v1.PhasePending || got.Status.PodName != "stale-runner" {
		t.Errorf("the reconciler's write did not land: %+v", got.Status)
	}

	// The gateway's next write is its whole view, without the reconciler's fields.
	applyAsGateway(t, ctx, s, map[string]any{
		"usage":    map[string]any{"promptTokens": 1800, "completionTokens": 200, "totalTokens": 2000},
		"progress": map[string]any{"turn": 2},
	})
	got, err = getSession(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != v1.PhasePending || got.Status.PodName != "stale-runner" || cond(got, v1.ConditionSucceeded) == nil {
		t.Errorf("the gateway's write removed the reconciler's fields: %+v", got.Status)
	}
	if got.Status.Usage.TotalTokens != 2000 {
		t.Errorf("usage = %+v, want 2000 tokens", got.Status.Usage)
	}
}

// TestReconcilerWaitsForItsOwnWrite: a reconcile must never work from a cached copy older
// than the reconciler's own last status write, or it would apply older values (an earlier
// phase, no pod name) over newer ones, now that no resourceVersion guards the write.
func TestReconcilerWaitsForItsOwnWrite(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clk := &stepClock{now: now}
	r := &AgentSessionReconciler{Clock: clk}
	s := testutil.Session("s", "ns").UID("u1").Obj()
	stale := s.DeepCopy()
	s.Status.Phase, s.Status.PodName = v1.PhaseRunning, "s-runner"
	r.remember(s, ownedByController(s.Status))

	if !r.cacheBehind(stale) {
		t.Fatal("a copy without the reconciler's last write was taken as current")
	}
	// The gateway's fields do not matter: only the reconciler's own.
	fresh := s.DeepCopy()
	fresh.Status.Usage = &v1.Usage{TotalTokens: 5}
	if r.cacheBehind(fresh) {
		t.Fatal("a copy with the reconciler's last write was taken as stale")
	}
	if r.cacheBehind(stale) {
		t.Fatal("the record of the write outlived the cache catching up")
	}
	// A write that never shows (someone else changed these fields since) is not waited
	// for forever.
	r.remember(s, ownedByController(s.Status))
	clk.now = now.Add(staleAfter + time.Second)
	if r.cacheBehind(stale) {
		t.Fatal("still waiting for a write after staleAfter")
	}
}

type stepClock struct{ now time.Time }

func (c *stepClock) Now() time.Time                  { return c.now }
func (c *stepClock) Since(t time.Time) time.Duration { return c.now.Sub(t) }

// TestDeliveryOwnsOnlyItsStatus: the delivery controller applies status.delivery and the
// Delivered condition under its own field manager, and nothing else.
func TestDeliveryOwnsOnlyItsStatus(t *testing.T) {
	ctx := testContext(t, 90*time.Second)
	f := startDelivery(t, ctx)
	s := f.session(t, ctx, "owned", &v1.DeliverySpec{Push: &v1.PushDelivery{}})
	f.finish(t, ctx, s, v1.PhaseSucceeded, f.fixPatch(t), nil)
	got, _ := waitDelivered(t, ctx, s)

	owners := testutil.StatusOwners(t, got.ManagedFields)
	delivery := owners[string(DeliveryFieldOwner)+"/Apply"]
	if !delivery["conditions[Delivered]"] || !delivery["delivery.branch"] || !delivery["delivery.commitSHA"] {
		t.Fatalf("agentry-delivery owns %v, want status.delivery and the Delivered condition", testutil.SortedKeys(delivery))
	}
	for f := range delivery {
		if f != "conditions[Delivered]" && !strings.HasPrefix(f, "delivery.") {
			t.Errorf("agentry-delivery owns status.%s", f)
		}
	}
	testutil.AssertDisjoint(t, owners)
}

// TestReconcilerOwnsItsStatusFields: a finished session's status as the reconciler left
// it: one apply entry of agentry-controller with exactly its fields.
func TestReconcilerOwnsItsStatusFields(t *testing.T) {
	ctx := testContext(t, time.Minute)
	ns := restrictedNamespace(t, ctx)
	startManager(t, ns)
	s := create(t, testutil.Session("owned", ns).Obj())
	pod := waitForPod(t, ctx, s)
	kubelet{t}.run(ctx, pod, time.Now())
	waitForPhase(t, ctx, s, v1.PhaseRunning, v1.ReasonRunning)
	kubelet{t}.exit(ctx, pod, 0, "Completed", `{"outcome":"Completed","message":"Done.","baseCommit":"abc123","model":"gpt-4.1"}`)
	got := waitForPhase(t, ctx, s, v1.PhaseSucceeded, v1.ReasonCompleted)

	owners := testutil.StatusOwners(t, got.ManagedFields)
	if len(owners) != 1 {
		t.Fatalf("status written by %v, want agentry-controller's apply only", testutil.SortedKeys(owners))
	}
	want := []string{"completionTime", "conditions[PodReady]", "conditions[Succeeded]", "observedGeneration", "phase", "podName", "podUID",
		"resolved.commitSHA", "resolved.image", "resolved.model", "result.exitCode", "startTime"}
	if have := testutil.SortedKeys(owners[string(FieldOwner)+"/Apply"]); !slices.Equal(have, want) {
		t.Errorf("agentry-controller owns %v, want %v", have, want)
	}
}
