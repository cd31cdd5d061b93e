package plugin

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

// The docs print the exit-code table CI scripts rely on: they must say what the code does.
func TestDocsCarryTheExitCodeTable(t *testing.T) {
	table := ExitCodeTable()
	for _, f := range []string{"../README.md", "../docs/ci.md"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), table) {
			t.Errorf("%s does not carry the exit-code table as the code defines it:\n%s", f, table)
		}
	}
}

func TestOutcomeExit(t *testing.T) {
	session := func(phase v1.SessionPhase, reason string, delivery bool, delivered ...string) *v1.AgentSession {
		s := &v1.AgentSession{}
		s.Status.Phase = phase
		meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: v1.ConditionSucceeded, Status: metav1.ConditionFalse, Reason: reason})
		if delivery {
			s.Spec.Delivery = &v1.DeliverySpec{PullRequest: &v1.PullRequestDelivery{}}
		}
		if len(delivered) == 2 {
			meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: v1.ConditionDelivered, Status: metav1.ConditionStatus(delivered[0]), Reason: delivered[1]})
		}
		return s
	}
	cases := map[string]struct {
		s        *v1.AgentSession
		finished bool
		code     int
	}{
		"running":                     {session(v1.PhaseRunning, v1.ReasonRunning, false), false, ExitFailed},
		"succeeded":                   {session(v1.PhaseSucceeded, v1.ReasonCompleted, false), true, ExitSucceeded},
		"succeeded, delivery pending": {session(v1.PhaseSucceeded, v1.ReasonCompleted, true), false, ExitSucceeded},
		"succeeded, delivering":       {session(v1.PhaseSucceeded, v1.ReasonCompleted, true, "Unknown", v1.ReasonDelivering), false, ExitSucceeded},
		"delivered":                   {session(v1.PhaseSucceeded, v1.ReasonCompleted, true, "True", v1.ReasonDelivered), true, ExitSucceeded},
		"no changes":                  {session(v1.PhaseSucceeded, v1.ReasonCompleted, true, "False", v1.ReasonNoChanges), true, ExitSucceeded},
		"auth failed":                 {session(v1.PhaseSucceeded, v1.ReasonCompleted, true, "False", v1.ReasonAuthFailed), true, ExitDeliveryFailed},
		"failed, delivery requested":  {session(v1.PhaseFailed, v1.ReasonLimitReached, true), true, ExitLimitReached},
		"budget":                      {session(v1.PhaseFailed, v1.ReasonBudgetExceeded, false), true, ExitBudgetExceeded},
		"cancelled":                   {session(v1.PhaseCancelled, v1.ReasonCancelled, false), true, ExitCancelled},
		"timeout":                     {session(v1.PhaseFailed, v1.ReasonTimeout, false), true, ExitTimeout},
		"provider":                    {session(v1.PhaseFailed, v1.ReasonProviderError, false), true, ExitProviderError},
		"policy":                      {session(v1.PhaseFailed, v1.ReasonPolicyViolation, false), true, ExitFailed},
		"checkout":                    {session(v1.PhaseFailed, v1.ReasonCheckoutFailed, false), true, ExitFailed},
	}
	for name, tc := range cases {
		if got := finished(tc.s); got != tc.finished {
			t.Errorf("%s: finished = %v, want %v", name, got, tc.finished)
		}
		if !tc.finished {
			continue
		}
		if got := outcomeExit(tc.s); got != tc.code {
			t.Errorf("%s: exit %d, want %d", name, got, tc.code)
		}
	}
}

// expiringWatch ends the first watch the way an expired resourceVersion does (an Error event,
// 410 Gone) and hands later watches to the test.
type expiringWatch struct {
	client.WithWatch
	watches chan *watch.FakeWatcher
	n       int
}

func (e *expiringWatch) Watch(context.Context, client.ObjectList, ...client.ListOption) (watch.Interface, error) {
	e.n++
	w := watch.NewFakeWithChanSize(1, false)
	if e.n == 1 {
		gone := apierrors.NewResourceExpired("too old resource version")
		w.Error(&gone.ErrStatus)
		return w, nil
	}
	e.watches <- w
	return w, nil
}

func TestWaitReadsAgainWhenTheWatchExpires(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	scheme, err := pluginScheme()
	if err != nil {
		t.Fatal(err)
	}
	s := &v1.AgentSession{}
	s.Name, s.Namespace = "s", "ns"
	s.Status.Phase = v1.PhaseRunning
	c := &expiringWatch{
		WithWatch: fake.NewClientBuilder().WithScheme(scheme).WithObjects(s).WithStatusSubresource(s).Build(),
		watches:   make(chan *watch.FakeWatcher, 1),
	}
	w := &waiter{c: c, key: client.ObjectKeyFromObject(s), out: io.Discard, errOut: io.Discard}
	done := make(chan error, 1)
	go func() { done <- w.wait(ctx, 0) }()

	var second *watch.FakeWatcher
	select {
	case second = <-c.watches:
	case <-ctx.Done():
		t.Fatal("no new watch after the first expired")
	}
	end := s.DeepCopy()
	end.Status.Phase = v1.PhaseCancelled
	second.Modify(end)
	select {
	case err := <-done:
		if code, _ := exitCode(err); code != ExitCancelled {
			t.Errorf("exit %d (%v), want %d", code, err, ExitCancelled)
		}
	case <-ctx.Done():
		t.Fatal("wait did not return")
	}
}
