package controllers

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/test/testutil"
)

// aheadClock is the real clock moved forward: a manager that comes back later.
type aheadClock struct{ by time.Duration }

func (c aheadClock) Now() time.Time                  { return time.Now().Add(c.by) }
func (c aheadClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// The timeout counts from the pod, as docs/sessions.md says: a session queued longer than
// its spec.limits.timeout still runs once it gets its slot. Before, the reconcile right
// after its pod was created (before the kubelet set startTime) timed it from the
// session's creation and ended it Failed/Timeout at once.
func TestTimeQueuedDoesNotCountAgainstTheTimeout(t *testing.T) {
	ctx := testContext(t, 3*time.Minute)
	ns := restrictedNamespace(t, ctx)
	slotPolicy(t, ctx, ns, "one", 1)
	startManager(t, ns)
	first := create(t, testutil.Session("first", ns).Obj())
	firstPod := waitForPod(t, ctx, first)
	queued := create(t, testutil.Session("queued", ns).Timeout(time.Minute).Obj())
	waitForPhase(t, ctx, queued, v1.PhaseQueued, v1.ReasonQueued)
	time.Sleep(65 * time.Second) // queued longer than its 1m timeout: the minimum the API takes
	kubelet{t}.exit(ctx, firstPod, 0, "Completed", "")
	pod := waitForPod(t, ctx, queued)
	// The reconciles after the pod's creation have run (its status records the pod) and
	// a few more seconds pass: still not timed out.
	eventually(t, ctx, "the queued session to record its pod", func() error {
		got, err := getSession(ctx, queued)
		if err != nil {
			return err
		}
		if got.Status.PodName != pod.Name {
			return fmt.Errorf("status.podName %q", got.Status.PodName)
		}
		return nil
	})
	time.Sleep(3 * time.Second)
	got, err := getSession(ctx, queued)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase.IsTerminal() {
		c := cond(got, v1.ConditionSucceeded)
		t.Fatalf("a session queued for 65 s with a 1m timeout ended %s/%s when it got its pod: %q", got.Status.Phase, c.Reason, c.Message)
	}
}

// A runner that finished before the deadline is not a timeout when the manager sees it
// only after the deadline (it was down, or its queue was backed up): the session ends
// Succeeded, so delivery still runs. Before, the timeout was decided before the pod's end
// was looked at.
func TestRunnerThatEndedInTimeIsNotATimeoutWhenSeenLate(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	ns := restrictedNamespace(t, ctx)
	m := startManager(t, ns)
	s := create(t, testutil.Session("done-in-time", ns).Timeout(time.Minute).Obj())
	pod := waitForPod(t, ctx, s)
	started := time.Now()
	kubelet{t}.run(ctx, pod, started)
	waitForPhase(t, ctx, s, v1.PhaseRunning, "")
	m.stop()
	kubelet{t}.update(ctx, pod, func(st *corev1.PodStatus) {
		st.Phase = corev1.PodSucceeded
		st.ContainerStatuses = []corev1.ContainerStatus{terminated(contract.ContainerRunner, 0, "Completed", "")}
		st.ContainerStatuses[0].State.Terminated.FinishedAt = metav1.NewTime(started.Add(52 * time.Second))
	})
	// The manager comes back 62 s after the start: past the 1m deadline.
	startManagerWith(t, ns, func(r *AgentSessionReconciler) { r.Clock = aheadClock{by: 62 * time.Second} })
	eventually(t, ctx, "the session to end", func() error {
		got, err := getSession(ctx, s)
		if err != nil {
			return err
		}
		if !got.Status.Phase.IsTerminal() {
			return fmt.Errorf("phase %s", got.Status.Phase)
		}
		if got.Status.Phase != v1.PhaseSucceeded {
			t.Fatalf("the runner ended 52 s into a 1m timeout; the session ended %s/%s", got.Status.Phase, cond(got, v1.ConditionSucceeded).Reason)
		}
		return nil
	})
}

// A session that failed pulling its image stops its pod: a pull that succeeds later would
// otherwise run the agent after the session ended, outside the namespace's slots.
func TestImagePullFailureStopsThePod(t *testing.T) {
	ctx := testContext(t, time.Minute)
	ns := restrictedNamespace(t, ctx)
	startManager(t, ns)
	s := create(t, testutil.Session("bad-image", ns).Obj())
	pod := waitForPod(t, ctx, s)
	kubelet{t}.update(ctx, pod, func(st *corev1.PodStatus) {
		st.Phase = corev1.PodPending
		st.ContainerStatuses = []corev1.ContainerStatus{waiting(contract.ContainerAgent, "InvalidImageName", "couldn't parse image name")}
	})
	waitForPhase(t, ctx, s, v1.PhaseFailed, v1.ReasonImagePullFailed)
	eventually(t, ctx, "the pod to be deleted", func() error {
		p := &corev1.Pod{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(pod), p); apierrors.IsNotFound(err) || (err == nil && p.DeletionTimestamp != nil) {
			return nil
		} else if err != nil {
			return err
		}
		return fmt.Errorf("pod %s still there, not deleting", pod.Name)
	})
}
