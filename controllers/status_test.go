package controllers

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/display"
)

func terminated(name string, code int32, reason, msg string) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: code, Reason: reason, Message: msg, FinishedAt: metav1.NewTime(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)),
	}}}
}

func waiting(name, reason, msg string) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}}
}

func summaryJSON(t *testing.T, s contract.Summary) string {
	t.Helper()
	b, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestOutcomeFromPod(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	created := metav1.NewTime(now.Add(-time.Minute))
	longAgo := metav1.NewTime(now.Add(-time.Hour))
	okSummary := summaryJSON(t, contract.Summary{Outcome: contract.OutcomeCompleted, Message: "Fixed the race in watch.go.\nDetails follow."})

	cases := map[string]struct {
		pod        corev1.PodStatus
		created    metav1.Time
		wantPhase  v1.SessionPhase
		wantReason string
		wantInMsg  string
	}{
		"scheduled, init running": {
			pod:       corev1.PodStatus{Phase: corev1.PodPending},
			wantPhase: v1.PhasePending, wantReason: v1.ReasonPending,
		},
		"running": {
			pod:       corev1.PodStatus{Phase: corev1.PodRunning},
			wantPhase: v1.PhaseRunning, wantReason: v1.ReasonRunning,
		},
		"succeeded with summary": {
			pod: corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: []corev1.ContainerStatus{
				terminated(contract.ContainerRunner, 0, "Completed", okSummary)}},
			wantPhase: v1.PhaseSucceeded, wantReason: v1.ReasonCompleted, wantInMsg: "Fixed the race in watch.go.",
		},
		"turn limit": {
			pod: corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{
				terminated(contract.ContainerRunner, int32(contract.ExitLimitReached), "Error", "")}},
			wantPhase: v1.PhaseFailed, wantReason: v1.ReasonLimitReached, wantInMsg: "maxTurns",
		},
		"budget": {
			pod: corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{
				terminated(contract.ContainerRunner, int32(contract.ExitBudgetExceeded), "Error", "")}},
			wantPhase: v1.PhaseFailed, wantReason: v1.ReasonBudgetExceeded,
		},
		"provider refused": {
			pod: corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{
				terminated(contract.ContainerRunner, int32(contract.ExitModelError), "Error",
					summaryJSON(t, contract.Summary{Outcome: contract.OutcomeModelError, Message: "401 Unauthorized: invalid api key"}))}},
			wantPhase: v1.PhaseFailed, wantReason: v1.ReasonProviderError, wantInMsg: "invalid api key",
		},
		"oom": {
			pod: corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{
				terminated(contract.ContainerRunner, 137, "OOMKilled", "")}},
			wantPhase: v1.PhaseFailed, wantReason: v1.ReasonOOMKilled, wantInMsg: "resources.limits.memory",
		},
		"evicted": {
			pod:       corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: "The node was low on resource: ephemeral-storage."},
			wantPhase: v1.PhaseFailed, wantReason: v1.ReasonPodEvicted, wantInMsg: "ephemeral-storage",
		},
		"active deadline": {
			pod:       corev1.PodStatus{Phase: corev1.PodFailed, Reason: "DeadlineExceeded"},
			wantPhase: v1.PhaseFailed, wantReason: v1.ReasonTimeout,
		},
		"clone failed, pod not yet failed": {
			pod: corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: []corev1.ContainerStatus{
				terminated(contract.ContainerInstall, 0, "Completed", ""),
				terminated(contract.ContainerCheckout, 128, "Error", "authentication required for https://git.example.com/org/repo.git")}},
			wantPhase: v1.PhaseFailed, wantReason: v1.ReasonCheckoutFailed, wantInMsg: "authentication required",
		},
		"follow-up patch refused, pod not yet failed": {
			pod: corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: []corev1.ContainerStatus{
				terminated(contract.ContainerInstall, 0, "Completed", ""),
				terminated(contract.ContainerCheckout, 9, "Error", `applying the patch of session first: .git/hooks/pre-commit: writing inside .git is not allowed`)}},
			wantPhase: v1.PhaseFailed, wantReason: v1.ReasonContinuationUnavailable, wantInMsg: "spec.continueFrom",
		},
		"follow-up patch refused, pod failed": {
			pod: corev1.PodStatus{Phase: corev1.PodFailed, InitContainerStatuses: []corev1.ContainerStatus{
				terminated(contract.ContainerCheckout, 9, "Error", "the patch does not apply")}},
			wantPhase: v1.PhaseFailed, wantReason: v1.ReasonContinuationUnavailable, wantInMsg: "does not apply",
		},
		"invalid image": {
			pod: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{
				waiting(contract.ContainerAgent, "InvalidImageName", `couldn't parse image name "Golang:1.26"`)}},
			wantPhase: v1.PhaseFailed, wantReason: v1.ReasonImagePullFailed, wantInMsg: "Golang:1.26",
		},
		"image pull back-off, within grace": {
			pod: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{
				waiting(contract.ContainerAgent, "ImagePullBackOff", "Back-off pulling image")}},
			wantPhase: v1.PhasePending, wantReason: v1.ReasonPending,
		},
		"image pull back-off, past grace": {
			created: longAgo,
			pod: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{
				waiting(contract.ContainerAgent, "ImagePullBackOff", "Back-off pulling image")}},
			wantPhase: v1.PhaseFailed, wantReason: v1.ReasonImagePullFailed,
		},
		"unknown exit code": {
			pod: corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{
				terminated(contract.ContainerRunner, 42, "Error", "panic: boom")}},
			wantPhase: v1.PhaseFailed, wantReason: v1.ReasonRunnerError, wantInMsg: "42",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			pod := &corev1.Pod{Status: tc.pod}
			pod.CreationTimestamp = created
			if !tc.created.IsZero() {
				pod.CreationTimestamp = tc.created
			}
			o := outcomeFromPod(pod, now)
			if o.phase != tc.wantPhase || o.reason != tc.wantReason {
				t.Fatalf("outcome = %s/%s (%q), want %s/%s", o.phase, o.reason, o.message, tc.wantPhase, tc.wantReason)
			}
			if tc.wantInMsg != "" && !strings.Contains(o.message, tc.wantInMsg) {
				t.Fatalf("message %q lacks %q", o.message, tc.wantInMsg)
			}
		})
	}
}

// TestTerminalConditions checks the summary condition a user's `kubectl wait` relies on.
func TestTerminalConditions(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	s := &v1.AgentSession{}
	applyOutcome(s, podOutcome{phase: v1.PhaseRunning, reason: v1.ReasonRunning, podReady: metav1.ConditionTrue, podReadyReason: "ContainersRunning"}, now)
	if c := cond(s, v1.ConditionSucceeded); c == nil || c.Status != metav1.ConditionUnknown {
		t.Fatalf("running: Succeeded = %+v, want Unknown", c)
	}
	if c := cond(s, v1.ConditionPodReady); c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("running: PodReady = %+v, want True", c)
	}
	finish(s, v1.PhaseFailed, v1.ReasonTimeout, "too slow", now)
	if c := cond(s, v1.ConditionSucceeded); c.Status != metav1.ConditionFalse || c.Reason != v1.ReasonTimeout {
		t.Fatalf("after timeout: Succeeded = %+v", c)
	}
	if s.Status.CompletionTime == nil || !s.Status.CompletionTime.Time.Equal(now) {
		t.Fatalf("completionTime = %v", s.Status.CompletionTime)
	}
}

func TestWaitingForApprovalFollowsPendingApprovals(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	running := podOutcome{phase: v1.PhaseRunning, reason: v1.ReasonRunning, podReady: metav1.ConditionTrue, podReadyReason: "ContainersRunning"}
	s := &v1.AgentSession{}
	s.Name = "fix"
	s.Status.PendingApprovals = []v1.PendingApproval{{ID: "ap-1", Tool: "bash"}}
	applyOutcome(s, running, now)
	if c := cond(s, v1.ConditionSucceeded); s.Status.Phase != v1.PhaseWaitingForApproval || c.Reason != v1.ReasonWaitingForApproval ||
		!strings.Contains(c.Message, "kubectl agentry pending fix") {
		t.Fatalf("with a pending approval: phase %s, condition %+v", s.Status.Phase, c)
	}
	s.Status.PendingApprovals = nil
	applyOutcome(s, running, now)
	if s.Status.Phase != v1.PhaseRunning {
		t.Fatalf("after the decision: phase %s, want Running", s.Status.Phase)
	}
}

// TestMessagesAreCutOnACharacterBoundary: a runner message in a multi-byte script, cut for a
// condition or a status field, stays valid UTF-8 and within the field's bound (a message
// cut in the middle of a character, or one past its maxLength, is refused by the apiserver
// and the status write is lost).
func TestMessagesAreCutOnACharacterBoundary(t *testing.T) {
	msg := "a" + strings.Repeat("é", 600) // 1,201 bytes; byte 512 falls inside a character
	for name, got := range map[string]string{
		"first line":       firstLine(msg),
		"termination":      terminationText(&corev1.ContainerStateTerminated{ExitCode: 1, Message: msg}),
		"notification err": display.Truncate(strings.Repeat("ü", 700), 1024),
	} {
		if !utf8.ValidString(got) {
			t.Errorf("%s: %q is not valid UTF-8", name, got[len(got)-8:])
		}
		if !strings.HasSuffix(got, "…") {
			t.Errorf("%s: no ellipsis marks the cut", name)
		}
	}
	if n := len(display.Truncate(strings.Repeat("x", 2000), 1024)); n > 1024 {
		t.Errorf("a 1,024-byte bound gave %d bytes", n)
	}
}
