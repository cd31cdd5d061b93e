package controllers

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/test/testutil"
)

// The buckets admission reads for a session created at second t hold every earlier second
// exactly once and no later one: a bucket too many would count a session queued behind as
// ahead (and hold the queue), a bucket too few would let a session jump the queue.
func TestWaitingBeforeHoldsExactlyTheEarlierSeconds(t *testing.T) {
	now := time.Date(2026, 11, 28, 15, 0, 0, 0, time.UTC).Unix()
	for _, t0 := range []int64{0, 1, 3, 4, 5, 63, 64, 1023, now, now + 1, now + 4095} {
		type span struct{ lo, hi int64 }
		var spans []span
		total := int64(0)
		for _, key := range waitingBefore(t0) {
			var level int
			var b int64
			if _, err := fmt.Sscanf(key, admissionWaiting+"/%d/%d", &level, &b); err != nil {
				t.Fatalf("key %q: %v", key, err)
			}
			size := int64(1) << (2 * level)
			sp := span{b * size, (b + 1) * size}
			if sp.lo < 0 || sp.hi > t0 {
				t.Errorf("t=%d: bucket %q holds seconds [%d, %d), not all before t", t0, key, sp.lo, sp.hi)
			}
			for _, o := range spans {
				if sp.lo < o.hi && o.lo < sp.hi {
					t.Errorf("t=%d: bucket %q overlaps [%d, %d)", t0, key, o.lo, o.hi)
				}
			}
			spans = append(spans, sp)
			total += size
		}
		// Disjoint, all within [0, t), and as long as it: exactly [0, t).
		if total != t0 {
			t.Errorf("t=%d: the buckets hold %d seconds, want %d", t0, total, t0)
		}
	}
}

// Sessions queue first in, first out by creation time, across seconds, whatever their names:
// the session created a second later waits behind the older one even though its name sorts
// first, and the older one takes the slot that frees up.
func TestQueueOrderAcrossSeconds(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	ns := restrictedNamespace(t, ctx)
	if err := env.Client.Create(ctx, &v1.AgentPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "one-at-a-time", Namespace: ns},
		Spec:       v1.AgentPolicySpec{MaxConcurrentSessions: ptr.To[int32](1)},
	}); err != nil {
		t.Fatal(err)
	}
	startManager(t, ns)
	nextSecond := func(after *v1.AgentSession) {
		t.Helper()
		if err := testutil.Poll(ctx, func() error {
			if time.Now().Unix() <= after.CreationTimestamp.Unix() {
				return errors.New("still the same second")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	running := create(t, testutil.Session("running", ns).Obj())
	pod := waitForPod(t, ctx, running)
	nextSecond(running)
	older := create(t, testutil.Session("z-older", ns).Obj())
	nextSecond(older)
	younger := create(t, testutil.Session("a-younger", ns).Obj())

	waitForPhase(t, ctx, older, v1.PhaseQueued, v1.ReasonQueued)
	eventually(t, ctx, "a-younger to be queued behind z-older", func() error {
		got, err := getSession(ctx, younger)
		if err != nil {
			return err
		}
		if c := cond(got, v1.ConditionSucceeded); c == nil || !strings.Contains(c.Message, "1 of 1 sessions running") || !strings.Contains(c.Message, " 1 queued ahead") {
			return fmt.Errorf("status %+v", got.Status)
		}
		return nil
	})

	kubelet{t}.exit(ctx, pod, 0, "Completed", "")
	waitForPod(t, ctx, older)
	waitForPhase(t, ctx, younger, v1.PhaseQueued, v1.ReasonQueued)
	eventually(t, ctx, "a-younger to count z-older as running, none ahead", func() error {
		got, err := getSession(ctx, younger)
		if err != nil {
			return err
		}
		if c := cond(got, v1.ConditionSucceeded); c == nil || !strings.Contains(c.Message, "1 of 1 sessions running") || !strings.Contains(c.Message, " 0 queued ahead") {
			return fmt.Errorf("status %+v", got.Status)
		}
		return nil
	})
}
