//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/test/testutil"
)

// applySession creates a session whose task carries marker, so the scripted model knows how
// to answer it.
func applySession(t *testing.T, name, marker, extraLimits string) time.Time {
	t.Helper()
	m := manifest(`
apiVersion: agentry.dev/v1alpha1
kind: AgentSession
metadata: {name: %s, namespace: %s}
spec:
  task: "%s List the workspace and write NOTES.md."
  repository: {url: "%s", ref: main}
  model: {provider: %s, name: scripted}
  tools: [list_dir, read_file, write_file]
  limits: {maxTurns: 10%s}`, name, namespace, marker, env.repoURL, providerName, extraLimits)
	created := time.Now()
	if _, err := kubectlIn(m, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kubectl("-n", namespace, "delete", "agentsession", name, "--ignore-not-found", "--wait=false") }) //nolint:errcheck
	return created
}

func getSession(t *testing.T, name string) *v1.AgentSession {
	t.Helper()
	out, err := kubectl("-n", namespace, "get", "agentsession", name, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	s := &v1.AgentSession{}
	if err := json.Unmarshal([]byte(out), s); err != nil {
		t.Fatal(err)
	}
	return s
}

// getPod returns the pod, or nil once it is gone.
func getPod(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	out, err := kubectl("-n", namespace, "get", "pod", name, "-o", "json", "--ignore-not-found")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) == "" {
		return nil
	}
	p := &corev1.Pod{}
	if err := json.Unmarshal([]byte(out), p); err != nil {
		t.Fatal(err)
	}
	return p
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// Conditions here run kubectl: look again every 200 ms, not at the unit tests' pace.
	if testutil.PollEvery(ctx, 200*time.Millisecond, testutil.Holds(cond)) != nil {
		out, _ := kubectl("-n", namespace, "get", "agentsessions,pods", "-o", "wide")
		t.Fatalf("timed out after %s waiting for %s; now:\n%s", timeout, what, out)
	}
}

// watchPhases records every distinct phase the session's status shows, in order.
func watchPhases(name string) (stop func() []string) {
	var (
		mu     sync.Mutex
		phases []string
		done   = make(chan struct{})
		ended  = make(chan struct{})
	)
	go func() {
		defer close(ended)
		for {
			out, err := kubectl("-n", namespace, "get", "agentsession", name, "-o", "jsonpath={.status.phase}")
			if err == nil && out != "" {
				mu.Lock()
				if len(phases) == 0 || phases[len(phases)-1] != out {
					phases = append(phases, out)
				}
				mu.Unlock()
			}
			select {
			case <-done:
				return
			case <-time.After(150 * time.Millisecond):
			}
		}
	}()
	return func() []string {
		close(done)
		<-ended
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), phases...)
	}
}

func podRunningSince(p *corev1.Pod) (time.Time, bool) {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Running != nil {
			return cs.State.Running.StartedAt.Time, true
		}
		if cs.State.Terminated != nil {
			return cs.State.Terminated.StartedAt.Time, true
		}
	}
	return time.Time{}, false
}

func TestSessionRunsToCompletion(t *testing.T) {
	const name = "complete"
	stop := watchPhases(name)
	created := applySession(t, name, "[e2e:success]", ", timeout: 5m")
	pod := podName(t, name)

	// CR created -> pod Running -> first model request: the start-up path a user waits through.
	var running time.Time
	eventually(t, 2*time.Minute, "the runner pod to run", func() bool {
		p := getPod(t, pod)
		if p == nil {
			return false
		}
		var ok bool
		running, ok = podRunningSince(p)
		return ok
	})
	var first time.Time
	eventually(t, 2*time.Minute, "the first model request", func() bool {
		v, ok := env.firstCall.Load("[e2e:success]")
		if ok {
			first = v.(time.Time)
		}
		return ok
	})
	reportTiming(t, "created→pod running", running.Sub(created))
	reportTiming(t, "created→first LLM request", first.Sub(created))

	eventually(t, 3*time.Minute, "the session to end", func() bool {
		p := getSession(t, name).Status.Phase
		return p == v1.PhaseSucceeded || p == v1.PhaseFailed || p == v1.PhaseCancelled
	})
	reportTiming(t, "created→finished", time.Since(created))
	phases := stop()
	s := getSession(t, name)
	p := getPod(t, pod)
	if p == nil {
		t.Fatalf("pod %s is gone after the session ended", pod)
	}

	t.Run("restricted security context", func(t *testing.T) { checkRestricted(t, p) })
	t.Run("provider key absent from the pod", func(t *testing.T) {
		raw, _ := json.Marshal(p)
		if strings.Contains(string(raw), env.providerKey) {
			t.Errorf("the provider key appears in pod %s", pod)
		}
		for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					t.Errorf("container %s reads Secret %s into %s", c.Name, e.ValueFrom.SecretKeyRef.Name, e.Name)
				}
			}
			if len(c.EnvFrom) > 0 {
				t.Errorf("container %s has envFrom %v", c.Name, c.EnvFrom)
			}
		}
		for _, r := range env.llm.Requests() {
			auth := r.Header.Get("Authorization")
			if auth != "Bearer "+env.providerKey {
				t.Errorf("the gateway did not inject the provider key: Authorization %q", auth)
			}
		}
	})
	t.Run("checkout over http", func(t *testing.T) {
		for _, cs := range p.Status.InitContainerStatuses {
			if cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 {
				t.Errorf("init container %s: %+v", cs.Name, cs.State)
			}
		}
		if s.Status.Resolved == nil || len(s.Status.Resolved.CommitSHA) != 40 {
			t.Errorf("status.resolved.commitSHA not recorded: %+v", s.Status.Resolved)
		}
	})
	t.Run("status progressed", func(t *testing.T) {
		t.Logf("phases observed: %v", phases)
		if !contains(phases, string(v1.PhaseRunning)) {
			t.Errorf("never saw phase Running: %v", phases)
		}
		if s.Status.StartTime == nil || s.Status.CompletionTime == nil {
			t.Errorf("start/completion time missing: %+v", s.Status)
		}
		if s.Status.Result == nil || s.Status.Result.FilesChanged != 1 || !strings.Contains(s.Status.Result.Summary, "NOTES.md") {
			t.Errorf("status.result does not describe the model's work: %+v", s.Status.Result)
		}
	})
	t.Run("succeeded", func(t *testing.T) {
		c := meta.FindStatusCondition(s.Status.Conditions, v1.ConditionSucceeded)
		if _, err := kubectl("-n", namespace, "wait", "--for=condition=Succeeded", "agentsession/"+name, "--timeout=10s"); err != nil {
			t.Errorf("%v; condition %+v", err, c)
		}
		if s.Status.Transcript == nil || s.Status.Transcript.URI == "" || s.Status.Transcript.SHA256 == "" {
			t.Errorf("status.transcript not recorded: %+v", s.Status.Transcript)
		}
	})
	t.Run("deleting the session deletes the pod", func(t *testing.T) {
		if _, err := kubectl("-n", namespace, "delete", "agentsession", name, "--wait=false"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 2*time.Minute, "the garbage collector to delete pod "+pod, func() bool { return getPod(t, pod) == nil })
	})
}

func TestCancelStopsTheRunnerPod(t *testing.T) {
	const name = "cancel"
	applySession(t, name, "[e2e:hang-cancel]", ", timeout: 5m")
	eventually(t, 2*time.Minute, "the model request that hangs", func() bool {
		_, ok := env.firstCall.Load("[e2e:hang-cancel]")
		return ok
	})
	if _, err := kubectl("-n", namespace, "patch", "agentsession", name, "--type=merge", "-p", `{"spec":{"cancel":true}}`); err != nil {
		t.Fatal(err)
	}
	if _, err := kubectl("-n", namespace, "wait", "--for=jsonpath={.status.phase}=Cancelled", "agentsession/"+name, "--timeout=2m"); err != nil {
		t.Fatalf("%v; status %+v", err, getSession(t, name).Status)
	}
	c := meta.FindStatusCondition(getSession(t, name).Status.Conditions, v1.ConditionSucceeded)
	if c == nil || c.Status != "False" || c.Reason != v1.ReasonCancelled {
		t.Errorf("Succeeded condition = %+v, want False/Cancelled", c)
	}
	pod := podName(t, name)
	eventually(t, 2*time.Minute, "the runner pod to stop", func() bool {
		p := getPod(t, pod)
		return p == nil || p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded
	})
}

func TestTimeoutEndsTheSession(t *testing.T) {
	const name = "timeout"
	applySession(t, name, "[e2e:hang-timeout]", ", timeout: 1m")
	if _, err := kubectl("-n", namespace, "wait", "--for=jsonpath={.status.phase}=Failed", "agentsession/"+name, "--timeout=3m"); err != nil {
		t.Fatalf("%v; status %+v", err, getSession(t, name).Status)
	}
	c := meta.FindStatusCondition(getSession(t, name).Status.Conditions, v1.ConditionSucceeded)
	if c == nil || c.Status != "False" || c.Reason != v1.ReasonTimeout {
		t.Errorf("Succeeded condition = %+v, want False/Timeout", c)
	}
	pod := podName(t, name)
	eventually(t, 2*time.Minute, "the runner pod to stop", func() bool {
		p := getPod(t, pod)
		return p == nil || p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded
	})
}

// podName waits for the session to name its pod.
func podName(t *testing.T, session string) string {
	t.Helper()
	var pod string
	eventually(t, time.Minute, "status.podName of "+session, func() bool {
		pod = getSession(t, session).Status.PodName
		return pod != ""
	})
	return pod
}

func checkRestricted(t *testing.T, p *corev1.Pod) {
	sc := p.Spec.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context not restricted: %+v", sc)
	}
	if p.Spec.AutomountServiceAccountToken == nil || *p.Spec.AutomountServiceAccountToken {
		t.Errorf("the pod mounts a Kubernetes API token")
	}
	if p.Spec.HostNetwork || p.Spec.HostPID || p.Spec.HostIPC {
		t.Errorf("the pod shares host namespaces")
	}
	for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
		s := c.SecurityContext
		if s == nil || s.AllowPrivilegeEscalation == nil || *s.AllowPrivilegeEscalation || s.ReadOnlyRootFilesystem == nil ||
			!*s.ReadOnlyRootFilesystem || s.Capabilities == nil || len(s.Capabilities.Drop) != 1 || s.Capabilities.Drop[0] != "ALL" ||
			(s.Privileged != nil && *s.Privileged) {
			t.Errorf("container %s security context not restricted: %+v", c.Name, s)
		}
	}
	// The namespace enforces the restricted profile, so the apiserver admitted it as such;
	// a server-side dry run of the same spec proves the label is really enforced here.
	out, err := kubectl("get", "namespace", namespace, "-o", "jsonpath={.metadata.labels.pod-security\\.kubernetes\\.io/enforce}")
	if err != nil || out != "restricted" {
		t.Errorf("namespace %s does not enforce restricted: %q %v", namespace, out, err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// reportTiming logs a start-up duration and appends it to $E2E_TIMINGS_FILE for
// docs/development.md.
func reportTiming(t *testing.T, what string, d time.Duration) {
	t.Logf("timing: %s %s", what, d.Round(10*time.Millisecond))
	if f := os.Getenv("E2E_TIMINGS_FILE"); f != "" {
		fh, err := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintf(fh, "%s\t%s\n", what, d.Round(10*time.Millisecond))
			fh.Close()
		}
	}
}
