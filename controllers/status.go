package controllers

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/display"
)

// imagePullGrace is how long a pod may sit in ImagePullBackOff before the session fails:
// long enough for a registry hiccup, short enough that a typo is reported promptly.
const imagePullGrace = 3 * time.Minute

// podOutcome is what the runner pod tells us about the session.
type podOutcome struct {
	phase   v1.SessionPhase
	reason  string
	message string
	// podReady is the PodReady condition's status and reason.
	podReady       metav1.ConditionStatus
	podReadyReason string
	startTime      *metav1.Time
	finishTime     *metav1.Time
	exitCode       *int32
	summary        *contract.Summary
}

// outcomeFromPod derives the session's phase from its pod, as observed. A pure function:
// the same pod always yields the same outcome, so a restarted manager converges on the
// same status.
func outcomeFromPod(pod *corev1.Pod, now time.Time) podOutcome {
	o := podOutcome{startTime: pod.Status.StartTime}
	switch pod.Status.Phase {
	case corev1.PodSucceeded:
		o.phase, o.reason = v1.PhaseSucceeded, v1.ReasonCompleted
		o.podReady, o.podReadyReason = metav1.ConditionFalse, "PodCompleted"
		o.exitCode, o.finishTime, o.summary = agentTermination(pod)
		o.message = "The agent finished its task."
		if o.summary != nil && o.summary.Message != "" {
			o.message = firstLine(o.summary.Message)
		}
		return o
	case corev1.PodFailed:
		o.phase = v1.PhaseFailed
		o.podReady, o.podReadyReason = metav1.ConditionFalse, "PodFailed"
		o.exitCode, o.finishTime, o.summary = agentTermination(pod)
		o.reason, o.message = failureReason(pod, o.exitCode, o.summary)
		return o
	case corev1.PodRunning:
		o.phase, o.reason = v1.PhaseRunning, v1.ReasonRunning
		o.podReady, o.podReadyReason = metav1.ConditionTrue, "ContainersRunning"
		o.message = "The agent is working."
		return o
	}
	// Pending (or Unknown): image pulls, checkout, scheduling.
	o.phase, o.reason = v1.PhasePending, v1.ReasonPending
	o.podReady, o.podReadyReason = metav1.ConditionFalse, "PodPending"
	o.message = "Waiting for the runner pod to start."
	for _, cs := range allStatuses(pod) {
		if t := cs.State.Terminated; t != nil && cs.Name == contract.ContainerCheckout && t.ExitCode == int32(contract.ExitContinuationFailed) {
			o.phase, o.reason = v1.PhaseFailed, v1.ReasonContinuationUnavailable
			o.message = "Applying the earlier session's patch (spec.continueFrom) failed: " + terminationText(t)
			return o
		}
		if cs.State.Terminated != nil && cs.State.Terminated.ExitCode != 0 && cs.Name == contract.ContainerCheckout {
			// The kubelet marks the pod Failed right after; say why now.
			o.phase, o.reason = v1.PhaseFailed, v1.ReasonCheckoutFailed
			o.message = "Cloning the repository failed: " + terminationText(cs.State.Terminated)
			return o
		}
		if cs.State.Terminated != nil && cs.State.Terminated.ExitCode != 0 && cs.Name == contract.ContainerSetup {
			o.phase, o.reason = v1.PhaseFailed, v1.ReasonSetupFailed
			o.message = "The setup phase could not run: " + terminationText(cs.State.Terminated)
			return o
		}
		if cs.Name == contract.ContainerSetup && cs.State.Running != nil {
			o.message = "Running the setup commands."
		}
		w := cs.State.Waiting
		if w == nil {
			continue
		}
		switch w.Reason {
		case "InvalidImageName", "ErrImageNeverPull":
			o.phase, o.reason = v1.PhaseFailed, v1.ReasonImagePullFailed
			o.message = fmt.Sprintf("Container %s cannot start: %s: %s", cs.Name, w.Reason, w.Message)
			return o
		case "ErrImagePull", "ImagePullBackOff":
			o.podReadyReason = v1.ReasonImagePullFailed
			o.message = fmt.Sprintf("Pulling the image for container %s fails: %s", cs.Name, w.Message)
			if pod.CreationTimestamp.Add(imagePullGrace).Before(now) {
				o.phase, o.reason = v1.PhaseFailed, v1.ReasonImagePullFailed
				return o
			}
		case "CreateContainerConfigError", "CreateContainerError":
			o.podReadyReason = w.Reason
			o.message = fmt.Sprintf("Container %s cannot be created: %s", cs.Name, w.Message)
		}
	}
	return o
}

func allStatuses(pod *corev1.Pod) []corev1.ContainerStatus {
	return append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
}

// agentTermination reads the runner container's exit code, finish time and the summary the
// runner wrote as its termination message.
func agentTermination(pod *corev1.Pod) (*int32, *metav1.Time, *contract.Summary) {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name != contract.ContainerRunner || cs.State.Terminated == nil {
			continue
		}
		t := cs.State.Terminated
		code := t.ExitCode
		var sum *contract.Summary
		var s contract.Summary
		if t.Message != "" && json.Unmarshal([]byte(t.Message), &s) == nil && s.Outcome != "" {
			sum = &s
		}
		finished := t.FinishedAt
		return &code, &finished, sum
	}
	return nil, nil, nil
}

// failureReason names why a pod failed, most specific first.
func failureReason(pod *corev1.Pod, exitCode *int32, sum *contract.Summary) (string, string) {
	switch pod.Status.Reason {
	case "Evicted":
		return v1.ReasonPodEvicted, "The node evicted the runner pod: " + pod.Status.Message
	case "DeadlineExceeded":
		return v1.ReasonTimeout, "The session ran past spec.limits.timeout."
	}
	for _, cs := range allStatuses(pod) {
		t := cs.State.Terminated
		if t == nil {
			continue
		}
		if t.Reason == "OOMKilled" {
			return v1.ReasonOOMKilled, fmt.Sprintf("Container %s ran out of memory; raise spec.runner.resources.limits.memory.", cs.Name)
		}
		if cs.Name == contract.ContainerCheckout && t.ExitCode == int32(contract.ExitContinuationFailed) {
			return v1.ReasonContinuationUnavailable, "Applying the earlier session's patch (spec.continueFrom) failed: " + terminationText(t)
		}
		if cs.Name == contract.ContainerCheckout && t.ExitCode != 0 {
			return v1.ReasonCheckoutFailed, "Cloning the repository failed: " + terminationText(t)
		}
		if cs.Name == contract.ContainerSetup && t.ExitCode != 0 {
			// runner setup exits 0 when a command fails (the runner reports it); non-zero is
			// setup itself failing.
			return v1.ReasonSetupFailed, "The setup phase could not run: " + terminationText(t)
		}
		if cs.Name == contract.ContainerInstall && t.ExitCode != 0 {
			return v1.ReasonPodFailed, "Installing the runner into the pod failed: " + terminationText(t)
		}
	}
	if exitCode == nil {
		return v1.ReasonPodFailed, "The runner pod failed: " + pod.Status.Message
	}
	msg := ""
	if sum != nil {
		msg = firstLine(sum.Message)
	}
	switch contract.ExitCode(*exitCode) {
	case contract.ExitLimitReached:
		return v1.ReasonLimitReached, orDefault(msg, "The session reached spec.limits.maxTurns.")
	case contract.ExitBudgetExceeded:
		return v1.ReasonBudgetExceeded, orDefault(msg, "The session's token budget is spent.")
	case contract.ExitTimeout:
		return v1.ReasonTimeout, orDefault(msg, "The session ran past spec.limits.timeout.")
	case contract.ExitCancelled:
		return v1.ReasonCancelled, orDefault(msg, "The runner was stopped.")
	case contract.ExitModelError:
		return v1.ReasonProviderError, orDefault(msg, "The model provider refused the session's requests.")
	case contract.ExitSetupFailed:
		// The whole summary, not its first line: the failed command's output tail is the point.
		return v1.ReasonSetupFailed, orDefault(setupMessage(sum), "A spec.setup command failed.")
	}
	return v1.ReasonRunnerError, fmt.Sprintf("The runner exited with code %s: %s", contract.ExitCode(*exitCode), msg)
}

func terminationText(t *corev1.ContainerStateTerminated) string {
	msg := strings.TrimSpace(t.Message)
	if msg == "" {
		msg = t.Reason
	}
	return fmt.Sprintf("exit code %d: %s", t.ExitCode, display.Truncate(msg, 512))
}

func firstLine(s string) string { return display.Truncate(display.Headline(s), 512) }

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// setSucceeded sets the run-to-completion summary condition from a phase and reason.
func setSucceeded(s *v1.AgentSession, phase v1.SessionPhase, reason, message string) {
	status := metav1.ConditionUnknown
	switch phase {
	case v1.PhaseSucceeded:
		status = metav1.ConditionTrue
	case v1.PhaseFailed, v1.PhaseCancelled:
		status = metav1.ConditionFalse
	}
	meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{
		Type: v1.ConditionSucceeded, Status: status, Reason: reason, Message: message,
		ObservedGeneration: s.Generation,
	})
}

// finish moves the session to a terminal phase. Terminal phases never change again.
func finish(s *v1.AgentSession, phase v1.SessionPhase, reason, message string, now time.Time) {
	s.Status.Phase = phase
	setSucceeded(s, phase, reason, message)
	if s.Status.CompletionTime == nil {
		t := metav1.NewTime(now)
		s.Status.CompletionTime = &t
	}
	meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{
		Type: v1.ConditionPodReady, Status: metav1.ConditionFalse, Reason: reason, Message: "The session has ended.",
		ObservedGeneration: s.Generation,
	})
}

// applyOutcome writes what the pod says into the session's status.
func applyOutcome(s *v1.AgentSession, o podOutcome, now time.Time) {
	if o.startTime != nil && s.Status.StartTime == nil {
		s.Status.StartTime = o.startTime
	}
	if o.summary != nil {
		applySummary(s, o.summary)
	}
	if o.exitCode != nil {
		if s.Status.Result == nil {
			s.Status.Result = &v1.SessionResult{}
		}
		s.Status.Result.ExitCode = o.exitCode
	}
	if o.phase.IsTerminal() {
		end := now
		if o.finishTime != nil && !o.finishTime.IsZero() {
			end = o.finishTime.Time
		}
		finish(s, o.phase, o.reason, o.message, end)
		return
	}
	// The gateway lists the tool calls waiting for a person in pendingApprovals; a running
	// session with any is waiting for approval.
	s.Status.Phase = o.phase
	if o.phase == v1.PhaseRunning && len(s.Status.PendingApprovals) > 0 {
		s.Status.Phase, o.reason = v1.PhaseWaitingForApproval, v1.ReasonWaitingForApproval
		o.message = fmt.Sprintf("Waiting for a decision on %d tool call(s): kubectl agentry pending %s", len(s.Status.PendingApprovals), s.Name)
	}
	setSucceeded(s, s.Status.Phase, o.reason, o.message)
	meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{
		Type: v1.ConditionPodReady, Status: o.podReady, Reason: o.podReadyReason, Message: o.message,
		ObservedGeneration: s.Generation,
	})
}

// applySummary records what the runner's termination message says the session ran with:
// the commit it checked out (which spec.continueFrom builds on), and the model when
// admission did not record one. The rest of the summary (result summary and diff stats,
// usage) is the gateway's: it has it from /finish, or its archiver reads it from the pod of
// a runner that never got there.
func applySummary(s *v1.AgentSession, sum *contract.Summary) {
	if s.Status.Resolved == nil {
		s.Status.Resolved = &v1.Resolved{}
	}
	if s.Status.Resolved.CommitSHA == "" {
		s.Status.Resolved.CommitSHA = sum.BaseCommit
	}
	if s.Status.Resolved.Model == "" {
		s.Status.Resolved.Model = sum.Model
	}
}

// cond returns the session's condition of type typ, or nil.
func cond(s *v1.AgentSession, typ string) *metav1.Condition {
	return meta.FindStatusCondition(s.Status.Conditions, typ)
}
