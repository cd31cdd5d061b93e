package controllers

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/test/testutil"
)

func create(t *testing.T, s *v1.AgentSession) *v1.AgentSession {
	t.Helper()
	ctx := testContext(t, 30*time.Second)
	if err := env.Client.Create(ctx, s); err != nil {
		t.Fatalf("creating session: %v", err)
	}
	return s
}

// TestSessionRunsToCompletion follows one session from creation to success, as a user
// watching `kubectl get agentsessions` would see it.
func TestSessionRunsToCompletion(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	ns := restrictedNamespace(t, ctx)
	createGitCredentials(t, ctx, ns, "git-creds", map[string]string{LabelGitCredentials: "true"})
	if err := env.Client.Create(ctx, &v1.AgentPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "egress", Namespace: ns},
		Spec:       v1.AgentPolicySpec{Egress: []v1.EgressRule{{Host: "pkg.go.dev"}, {Host: "nowhere.invalid"}}},
	}); err != nil {
		t.Fatal(err)
	}
	m := startManager(t, ns)
	s := create(t, testutil.Session("fix-flaky", ns).Credentials("git-creds").
		Egress(v1.EgressRule{Host: "pkg.go.dev"}).Egress(v1.EgressRule{Host: "nowhere.invalid"}).Obj())

	pod := waitForPod(t, ctx, s)
	if !metav1.IsControlledBy(pod, s) {
		t.Fatalf("pod owner references = %+v, want the session as controller", pod.OwnerReferences)
	}
	got := waitForPhase(t, ctx, s, v1.PhasePending, v1.ReasonPending)
	if got.Status.PodName != pod.Name || got.Status.ObservedGeneration != got.Generation {
		t.Fatalf("status = %+v", got.Status)
	}
	// The gateway accepts the runner's token only from this pod.
	if got.Status.PodUID != string(pod.UID) {
		t.Fatalf("status.podUID = %q, want the pod's UID %q", got.Status.PodUID, pod.UID)
	}

	np := &networkingv1.NetworkPolicy{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: podName(s)}, np); err != nil {
		t.Fatalf("session NetworkPolicy: %v", err)
	}
	if !metav1.IsControlledBy(np, s) || len(np.Spec.Ingress) != 0 || len(np.Spec.PolicyTypes) != 2 {
		t.Fatalf("NetworkPolicy must deny all ingress and be owned by the session: %+v", np)
	}
	var cidrs []string
	for _, r := range np.Spec.Egress {
		for _, p := range r.To {
			if p.IPBlock != nil {
				cidrs = append(cidrs, p.IPBlock.CIDR)
			}
		}
	}
	if strings.Join(cidrs, ",") != "192.0.2.10/32,192.0.2.20/32" {
		t.Fatalf("egress CIDRs = %v, want the repository host and pkg.go.dev only", cidrs)
	}
	expectEvent(t, m, "EgressHostUnresolved")

	started := time.Now().Add(-5 * time.Second).Truncate(time.Second)
	kubelet{t}.run(ctx, pod, started)
	got = waitForPhase(t, ctx, s, v1.PhaseRunning, v1.ReasonRunning)
	if c := cond(got, v1.ConditionPodReady); c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("PodReady = %+v, want True", c)
	}
	if got.Status.StartTime == nil || !got.Status.StartTime.Time.Equal(started) {
		t.Fatalf("startTime = %v, want %v", got.Status.StartTime, started)
	}

	// Checkout has finished: egress narrows to the agent phase — no DNS, no repository host,
	// the AgentPolicy-allowed destination still reachable (and resolvable from /etc/hosts).
	eventually(t, ctx, "the NetworkPolicy to narrow", func() error {
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: podName(s)}, np); err != nil {
			return err
		}
		for _, r := range np.Spec.Egress {
			for _, p := range r.Ports {
				if p.Port != nil && p.Port.IntValue() == 53 {
					return fmt.Errorf("DNS still allowed: %+v", r)
				}
			}
		}
		return nil
	})
	cidrs = nil
	for _, r := range np.Spec.Egress {
		for _, p := range r.Ports {
			if p.Port != nil && p.Port.IntValue() == 53 {
				t.Errorf("the agent-phase policy still allows DNS: %+v", r)
			}
		}
		for _, p := range r.To {
			if p.IPBlock != nil {
				cidrs = append(cidrs, p.IPBlock.CIDR)
			}
		}
	}
	if strings.Join(cidrs, ",") != "192.0.2.20/32" {
		t.Errorf("agent-phase egress CIDRs = %v, want pkg.go.dev only (the repository host closed)", cidrs)
	}
	if len(pod.Spec.HostAliases) != 1 || pod.Spec.HostAliases[0].IP != "192.0.2.20" || pod.Spec.HostAliases[0].Hostnames[0] != "pkg.go.dev" {
		t.Errorf("hostAliases = %+v, want pkg.go.dev → 192.0.2.20", pod.Spec.HostAliases)
	}

	sum, err := contract.Summary{
		Outcome: contract.OutcomeCompleted, Message: "Made TestFoo deterministic by waiting on the channel.",
		Turns: 7, ToolCalls: 12, Usage: contract.Usage{PromptTokens: 9000, CompletionTokens: 1000},
		Diff: contract.DiffStats{FilesChanged: 2, Additions: 10, Deletions: 3}, BaseCommit: "abc123", Model: "gpt-4.1",
	}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	kubelet{t}.exit(ctx, pod, 0, "Completed", string(sum))
	got = waitForPhase(t, ctx, s, v1.PhaseSucceeded, v1.ReasonCompleted)
	if got.Status.CompletionTime == nil || got.Status.Result == nil || got.Status.Result.ExitCode == nil || *got.Status.Result.ExitCode != 0 ||
		got.Status.Resolved == nil || got.Status.Resolved.CommitSHA != "abc123" {
		t.Fatalf("final status incomplete: %+v", got.Status)
	}
	if c := cond(got, v1.ConditionSucceeded); !strings.Contains(c.Message, "waiting on the channel") {
		t.Fatalf("Succeeded message = %q, want the runner's final message", c.Message)
	}
	// The result's summary and diff stats and the usage are the gateway's fields (its
	// archiver copies them from the termination message when the runner never reached it).
	if got.Status.Usage != nil || got.Status.Result.Summary != "" || got.Status.Result.Additions != 0 {
		t.Fatalf("the reconciler wrote the gateway's fields: usage %+v, result %+v", got.Status.Usage, got.Status.Result)
	}
	expectEvent(t, m, "PodCreated")
	expectEvent(t, m, "EgressNarrowed")
	expectEvent(t, m, "Completed")
}

func expectEvent(t *testing.T, m *manager, reason string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-m.recorder.Events:
			if strings.Contains(e, " "+reason+" ") {
				return
			}
		case <-timeout:
			t.Fatalf("no %s event recorded", reason)
		}
	}
}

// TestFailureReasons checks that why a pod failed reaches the session's condition.
func TestFailureReasons(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	ns := restrictedNamespace(t, ctx)
	startManager(t, ns)
	cases := map[string]struct {
		code           int32
		reason, msg    string
		wantReason     string
		wantMsgContain string
	}{
		"turn-limit": {code: int32(contract.ExitLimitReached), reason: "Error", wantReason: v1.ReasonLimitReached},
		"oom":        {code: 137, reason: "OOMKilled", wantReason: v1.ReasonOOMKilled, wantMsgContain: "memory"},
		"provider": {code: int32(contract.ExitModelError), reason: "Error", wantReason: v1.ReasonProviderError,
			msg:            `{"v":1,"outcome":"ModelError","exitCode":7,"message":"401: invalid api key","turns":0,"toolCalls":0,"usage":{"promptTokens":0,"completionTokens":0,"cachedTokens":0},"diff":{"filesChanged":0,"additions":0,"deletions":0},"events":3}`,
			wantMsgContain: "invalid api key"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := create(t, testutil.Session(name, ns).Obj())
			pod := waitForPod(t, ctx, s)
			kubelet{t}.run(ctx, pod, time.Now())
			waitForPhase(t, ctx, s, v1.PhaseRunning, "")
			kubelet{t}.exit(ctx, pod, tc.code, tc.reason, tc.msg)
			got := waitForPhase(t, ctx, s, v1.PhaseFailed, tc.wantReason)
			if c := cond(got, v1.ConditionSucceeded); !strings.Contains(c.Message, tc.wantMsgContain) {
				t.Fatalf("message %q lacks %q", c.Message, tc.wantMsgContain)
			}
			if got.Status.Result == nil || got.Status.Result.ExitCode == nil || *got.Status.Result.ExitCode != tc.code {
				t.Fatalf("result.exitCode = %+v, want %d", got.Status.Result, tc.code)
			}
		})
	}
}

func TestCancelStopsThePod(t *testing.T) {
	ctx := testContext(t, time.Minute)
	ns := restrictedNamespace(t, ctx)
	m := startManager(t, ns)
	s := create(t, testutil.Session("cancel-me", ns).Obj())
	pod := waitForPod(t, ctx, s)
	kubelet{t}.run(ctx, pod, time.Now())
	waitForPhase(t, ctx, s, v1.PhaseRunning, "")

	setCancel(t, s)
	got := waitForPhase(t, ctx, s, v1.PhaseCancelled, v1.ReasonCancelled)
	eventually(t, ctx, "pod deletion", func() error { return podGone(ctx, s) })
	if c := cond(got, v1.ConditionSucceeded); c.Status != metav1.ConditionFalse {
		t.Fatalf("Succeeded = %+v, want False", c)
	}
	expectEvent(t, m, "Cancelled")
}

func setCancel(t *testing.T, s *v1.AgentSession) {
	t.Helper()
	ctx := testContext(t, 30*time.Second)
	patch := client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"cancel":true}}`))
	if err := env.Client.Patch(ctx, s.DeepCopy(), patch); err != nil {
		t.Fatalf("setting spec.cancel: %v", err)
	}
}

func TestTimeoutEndsTheSession(t *testing.T) {
	ctx := testContext(t, time.Minute)
	ns := restrictedNamespace(t, ctx)
	startManager(t, ns)
	s := create(t, testutil.Session("slow", ns).Timeout(time.Minute).Obj())
	pod := waitForPod(t, ctx, s)
	if got := *pod.Spec.ActiveDeadlineSeconds; got != 60 {
		t.Fatalf("activeDeadlineSeconds = %d, want 60", got)
	}
	// The pod has been running for longer than the timeout.
	kubelet{t}.run(ctx, pod, time.Now().Add(-2*time.Minute))
	got := waitForPhase(t, ctx, s, v1.PhaseFailed, v1.ReasonTimeout)
	eventually(t, ctx, "pod deletion", func() error { return podGone(ctx, s) })
	if !strings.Contains(cond(got, v1.ConditionSucceeded).Message, "spec.limits.timeout (1m0s)") {
		t.Fatalf("timeout message = %q", cond(got, v1.ConditionSucceeded).Message)
	}
}

func TestPodDeletedUnderTheSession(t *testing.T) {
	ctx := testContext(t, time.Minute)
	ns := restrictedNamespace(t, ctx)
	startManager(t, ns)
	s := create(t, testutil.Session("orphaned", ns).Obj())
	pod := waitForPod(t, ctx, s)
	kubelet{t}.run(ctx, pod, time.Now())
	waitForPhase(t, ctx, s, v1.PhaseRunning, "")
	if err := env.Client.Delete(ctx, pod); err != nil {
		t.Fatal(err)
	}
	waitForPhase(t, ctx, s, v1.PhaseFailed, v1.ReasonPodDeleted)
	// A finished session never gets a new pod.
	eventually(t, ctx, "no new pod", func() error { return podGone(ctx, s) })
}

func TestTTLDeletesFinishedSessions(t *testing.T) {
	ctx := testContext(t, time.Minute)
	ns := restrictedNamespace(t, ctx)
	m := startManager(t, ns)
	s := create(t, testutil.Session("short-lived", ns).TTL(1).Obj())
	pod := waitForPod(t, ctx, s)
	kubelet{t}.exit(ctx, pod, 0, "Completed", "")
	expectEvent(t, m, "Completed")
	eventually(t, ctx, "session deletion after its TTL", func() error {
		_, err := getSession(ctx, s)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("session still exists (err %w)", err)
	})
}

// TestManagerRestartConverges stops the manager, changes the world while it is down, and
// starts a new one: status must be recomputed from what exists, not from memory.
func TestManagerRestartConverges(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	ns := restrictedNamespace(t, ctx)
	m := startManager(t, ns)

	running := create(t, testutil.Session("was-pending", ns).Obj())
	succeeded := create(t, testutil.Session("was-running", ns).Obj())
	cancelled := create(t, testutil.Session("to-cancel", ns).Obj())
	timedOut := create(t, testutil.Session("to-time-out", ns).Timeout(time.Minute).Obj())
	pods := map[string]*corev1.Pod{}
	for _, s := range []*v1.AgentSession{running, succeeded, cancelled, timedOut} {
		pods[s.Name] = waitForPod(t, ctx, s)
	}
	kubelet{t}.run(ctx, pods[succeeded.Name], time.Now())
	kubelet{t}.run(ctx, pods[cancelled.Name], time.Now())
	waitForPhase(t, ctx, succeeded, v1.PhaseRunning, "")
	waitForPhase(t, ctx, cancelled, v1.PhaseRunning, "")

	m.stop()
	kubelet{t}.run(ctx, pods[running.Name], time.Now())
	kubelet{t}.exit(ctx, pods[succeeded.Name], 0, "Completed", "")
	setCancel(t, cancelled)
	kubelet{t}.run(ctx, pods[timedOut.Name], time.Now().Add(-2*time.Minute))

	startManager(t, ns)
	waitForPhase(t, ctx, running, v1.PhaseRunning, v1.ReasonRunning)
	waitForPhase(t, ctx, succeeded, v1.PhaseSucceeded, v1.ReasonCompleted)
	waitForPhase(t, ctx, cancelled, v1.PhaseCancelled, v1.ReasonCancelled)
	waitForPhase(t, ctx, timedOut, v1.PhaseFailed, v1.ReasonTimeout)
	eventually(t, ctx, "cancelled pod deletion", func() error { return podGone(ctx, cancelled) })
	eventually(t, ctx, "timed-out pod deletion", func() error { return podGone(ctx, timedOut) })

	var list corev1.PodList
	if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, p := range list.Items {
		if p.DeletionTimestamp.IsZero() && p.Name != podName(running) && p.Name != podName(succeeded) {
			t.Errorf("unexpected pod %s after restart", p.Name)
		}
	}
}

// TestManySessionsAllGetPods creates 200 sessions at once.
func TestManySessionsAllGetPods(t *testing.T) {
	ctx := testContext(t, 3*time.Minute)
	ns := restrictedNamespace(t, ctx)
	startManager(t, ns)
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- env.Client.Create(ctx, testutil.Session(fmt.Sprintf("s-%03d", i), ns).Obj())
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, ctx, fmt.Sprintf("%d runner pods", n), func() error {
		var pods corev1.PodList
		if err := env.Client.List(ctx, &pods, client.InNamespace(ns), client.HasLabels{contract.LabelSessionUID}); err != nil {
			return err
		}
		if len(pods.Items) != n {
			return fmt.Errorf("%d pods", len(pods.Items))
		}
		return nil
	})
	eventually(t, ctx, "every session Pending with its pod recorded", func() error {
		var list v1.AgentSessionList
		if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, s := range list.Items {
			if s.Status.PodName == "" || s.Status.Phase != v1.PhasePending {
				return fmt.Errorf("session %s: phase %q pod %q", s.Name, s.Status.Phase, s.Status.PodName)
			}
		}
		return nil
	})
}

// TestRestrictedAdmissionIsEnforced proves the admission check in these tests is real: the
// same namespace that accepts runner pods refuses a pod that is not restricted.
func TestRestrictedAdmissionIsEnforced(t *testing.T) {
	ctx := testContext(t, 30*time.Second)
	ns := restrictedNamespace(t, ctx)
	s := testutil.Session("probe", ns).UID("uid-probe").Obj()

	ok := buildRunnerPod(s, testRunnerConfig, defaultSettings(t, s))
	if err := env.Client.Create(ctx, ok); err != nil {
		t.Fatalf("the apiserver refused the runner pod under Pod Security 'restricted': %v", err)
	}
	bad := buildRunnerPod(s, testRunnerConfig, defaultSettings(t, s))
	bad.Name = "not-restricted"
	bad.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = ptr.To(true)
	err := env.Client.Create(ctx, bad)
	if err == nil || !strings.Contains(err.Error(), "restricted") {
		t.Fatalf("a pod allowing privilege escalation was not refused by Pod Security admission: %v", err)
	}
}

// TestQueueingUnderAgentPolicy runs more sessions than a namespace's policy allows: the
// excess wait in Queued, and start, oldest first, as slots free up.
func TestQueueingUnderAgentPolicy(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	ns := restrictedNamespace(t, ctx)
	slotPolicy(t, ctx, ns, "two-at-a-time", 2)
	startManager(t, ns)
	var sessions []*v1.AgentSession
	for i := range 5 {
		// Creation timestamps have one-second resolution; ties are broken by name, so q-0
		// is always first in the queue, q-4 last.
		sessions = append(sessions, create(t, testutil.Session(fmt.Sprintf("q-%d", i), ns).Obj()))
	}
	countPods := func() int {
		var pods corev1.PodList
		if err := env.Client.List(ctx, &pods, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		return len(pods.Items)
	}
	waitForPod(t, ctx, sessions[0])
	waitForPod(t, ctx, sessions[1])
	waitForPhase(t, ctx, sessions[4], v1.PhaseQueued, v1.ReasonQueued)
	// The message follows the namespace: it may first say "1 of 2 running, 3 queued ahead"
	// (q-1 not yet counted), and must settle on the state once both slots are taken.
	eventually(t, ctx, "q-4's queued message to count both running sessions", func() error {
		got, err := getSession(ctx, sessions[4])
		if err != nil {
			return err
		}
		c := cond(got, v1.ConditionSucceeded)
		if c == nil {
			return fmt.Errorf("no Succeeded condition")
		}
		if msg := c.Message; !strings.Contains(msg, "2 of 2 sessions running") || !strings.Contains(msg, "2 queued ahead") {
			return fmt.Errorf("queued message = %q", msg)
		}
		return nil
	})
	if n := countPods(); n != 2 {
		t.Fatalf("%d pods with a limit of 2", n)
	}

	// The first session finishes: the oldest queued one (q-2) starts, no other.
	kubelet{t}.exit(ctx, waitForPod(t, ctx, sessions[0]), 0, "Completed", "")
	waitForPod(t, ctx, sessions[2])
	waitForPhase(t, ctx, sessions[3], v1.PhaseQueued, v1.ReasonQueued)
	if n := countPods(); n != 3 { // two running, one finished
		t.Fatalf("%d pods after one session finished, want 3", n)
	}
}

func TestPolicyViolationAndMissingProvider(t *testing.T) {
	ctx := testContext(t, time.Minute)
	ns := restrictedNamespace(t, ctx)
	if err := env.Client.Create(ctx, &v1.AgentPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "images", Namespace: ns},
		Spec:       v1.AgentPolicySpec{AllowedImages: []string{"registry.example/toolchains/"}},
	}); err != nil {
		t.Fatal(err)
	}
	m := startManager(t, ns)

	bad := create(t, testutil.Session("untrusted-image", ns).Image("docker.io/someone/miner:latest").Obj())
	got := waitForPhase(t, ctx, bad, v1.PhaseFailed, v1.ReasonPolicyViolation)
	if msg := cond(got, v1.ConditionSucceeded).Message; !strings.Contains(msg, `AgentPolicy images: spec.runner.image "docker.io/someone/miner:latest" is not allowed`) {
		t.Fatalf("message = %q", msg)
	}
	if err := podGone(ctx, bad); err != nil {
		t.Fatalf("a rejected session got a pod: %v", err)
	}

	provider := "later-" + ns
	waiting := testutil.Session("waits-for-provider", ns).Obj()
	waiting.Spec.Model.Provider = provider
	create(t, waiting)
	got = waitForPhase(t, ctx, waiting, v1.PhasePending, v1.ReasonPending)
	if msg := cond(got, v1.ConditionSucceeded).Message; !strings.Contains(msg, fmt.Sprintf("ModelProvider %q does not exist", provider)) {
		t.Fatalf("message = %q", msg)
	}
	expectEvent(t, m, "Pending")
	if err := env.Client.Create(ctx, &v1.ModelProvider{ObjectMeta: metav1.ObjectMeta{Name: provider},
		Spec: v1.ModelProviderSpec{BaseURL: "https://llm.example.com/v1"}}); err != nil {
		t.Fatal(err)
	}
	waitForPod(t, ctx, waiting)
}

// TestPodMadeBeforeTheControllerIsNeverTheRunnerPod performs the binding attack: a user who
// may create pods (not sessions) in the namespace builds the runner pod of someone's queued
// session first, with its name, labels and a controller reference to it, and a container of
// their own. Were it adopted, its projected token would pass as the session's at the
// gateway. The manager deletes it, creates the real runner pod and records only that UID.
func TestPodMadeBeforeTheControllerIsNeverTheRunnerPod(t *testing.T) {
	ctx := testContext(t, time.Minute)
	ns := restrictedNamespace(t, ctx)
	m := startManager(t, ns)
	provider := "later-" + ns
	waiting := testutil.Session("victim", ns).Obj()
	waiting.Spec.Model.Provider = provider
	s := create(t, waiting)
	waitForPhase(t, ctx, s, v1.PhasePending, v1.ReasonPending)

	forged := forgedRunnerPod(t, ctx, s, "attacker.example/steal:1")
	if err := env.Client.Create(ctx, &v1.ModelProvider{ObjectMeta: metav1.ObjectMeta{Name: provider},
		Spec: v1.ModelProviderSpec{BaseURL: "https://llm.example.com/v1"}}); err != nil {
		t.Fatal(err)
	}

	var runner *corev1.Pod
	eventually(t, ctx, "the real runner pod, recorded in status", func() error {
		got, err := getSession(ctx, s)
		if err != nil {
			return err
		}
		if got.Status.PodUID == string(forged.UID) {
			t.Fatalf("status.podUID is the forged pod's %s: the gateway would take its token as the session's", forged.UID)
		}
		pod := &corev1.Pod{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(forged), pod); err != nil {
			return err
		}
		if pod.UID == forged.UID || got.Status.PodUID != string(pod.UID) {
			return fmt.Errorf("pod UID %s, status.podUID %q", pod.UID, got.Status.PodUID)
		}
		runner = pod
		return nil
	})
	for _, c := range runner.Spec.Containers {
		if strings.HasPrefix(c.Image, "attacker.example/") {
			t.Errorf("the runner pod runs the attacker's image %s", c.Image)
		}
	}
	expectEvent(t, m, v1.ReasonUnrecordedPod)
}

func createGitCredentials(t *testing.T, ctx context.Context, ns, name string, labels map[string]string) {
	t.Helper()
	if err := env.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		StringData: map[string]string{"username": "ci", "password": "s3cret"},
	}); err != nil {
		t.Fatal(err)
	}
}

// TestCredentialsSecretMustOptIn performs the confused-deputy attack: a user who may create
// sessions but not read Secrets names the namespace's database password as git credentials
// and points the repository at a server they control. The session must fail without a pod
// ever mounting the Secret; a Secret its owner labelled is used.
func TestCredentialsSecretMustOptIn(t *testing.T) {
	ctx := testContext(t, time.Minute)
	ns := restrictedNamespace(t, ctx)
	createGitCredentials(t, ctx, ns, "db-password", nil)
	createGitCredentials(t, ctx, ns, "git-creds", map[string]string{LabelGitCredentials: "true"})
	m := startManager(t, ns)

	attack := create(t, testutil.Session("exfiltrate", ns).Repo("https://attacker.example/x.git").Credentials("db-password").Obj())
	got := waitForPhase(t, ctx, attack, v1.PhaseFailed, v1.ReasonInvalidSpec)
	msg := cond(got, v1.ConditionSucceeded).Message
	for _, want := range []string{"spec.repository.credentialsSecretRef", `"db-password"`, "agentry.dev/git-credentials=true"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	expectEvent(t, m, v1.ReasonInvalidSpec)
	if err := podGone(ctx, attack); err != nil {
		t.Fatalf("a pod was created for a session naming a Secret that did not opt in: %v", err)
	}

	// Plain http would send even an opted-in Secret in clear text.
	cleartext := create(t, testutil.Session("cleartext", ns).Repo("http://git.example.com/org/repo.git").Credentials("git-creds").Obj())
	got = waitForPhase(t, ctx, cleartext, v1.PhaseFailed, v1.ReasonInvalidSpec)
	if msg := cond(got, v1.ConditionSucceeded).Message; !strings.Contains(msg, "http:// spec.repository.url") {
		t.Errorf("message %q does not explain the http:// refusal", msg)
	}
	if err := podGone(ctx, cleartext); err != nil {
		t.Fatalf("a pod was created to send credentials over http: %v", err)
	}

	ok := create(t, testutil.Session("allowed", ns).Credentials("git-creds").Obj())
	pod := waitForPod(t, ctx, ok)
	mounted := false
	for _, v := range pod.Spec.Volumes {
		mounted = mounted || (v.Secret != nil && v.Secret.SecretName == "git-creds")
	}
	if !mounted {
		t.Fatalf("the opted-in Secret is not mounted: %+v", pod.Spec.Volumes)
	}
}

// TestEgressNeedsAnAgentPolicy: in a namespace nobody governs, a session must not open its
// pod's egress to the whole internet.
func TestEgressNeedsAnAgentPolicy(t *testing.T) {
	ctx := testContext(t, time.Minute)
	ns := restrictedNamespace(t, ctx)
	startManager(t, ns)
	s := create(t, testutil.Session("open", ns).Egress(v1.EgressRule{CIDR: "0.0.0.0/0"}).Obj())
	got := waitForPhase(t, ctx, s, v1.PhaseFailed, v1.ReasonPolicyViolation)
	if msg := cond(got, v1.ConditionSucceeded).Message; !strings.Contains(msg, "spec.network.egress") || !strings.Contains(msg, "AgentPolicy's spec.egress") {
		t.Errorf("message %q does not name the field and how to allow it", msg)
	}
	if err := podGone(ctx, s); err != nil {
		t.Fatal(err)
	}
}

// TestReplacedPodIsNotTrusted: someone deletes the runner pod while the manager is down and
// creates a look-alike with the same name, labels and owner reference. The session must
// not adopt it: status.podUID stays the original pod's, and the session fails.
func TestReplacedPodIsNotTrusted(t *testing.T) {
	ctx := testContext(t, time.Minute)
	ns := restrictedNamespace(t, ctx)
	m := startManager(t, ns)
	s := create(t, testutil.Session("bound", ns).Obj())
	pod := waitForPod(t, ctx, s)
	eventually(t, ctx, "status.podUID", func() error {
		got, err := getSession(ctx, s)
		if err != nil {
			return err
		}
		if got.Status.PodUID != string(pod.UID) {
			return fmt.Errorf("status.podUID = %q, want %q", got.Status.PodUID, pod.UID)
		}
		return nil
	})
	m.stop()

	if err := env.Client.Delete(ctx, pod, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "pod deletion", func() error { return podGone(ctx, s) })
	eventually(t, ctx, "pod to be gone for good", func() error {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("pod still there: %w", err)
	})
	imposter := pod.DeepCopy()
	imposter.ResourceVersion, imposter.UID, imposter.CreationTimestamp = "", "", metav1.Time{}
	imposter.DeletionTimestamp, imposter.DeletionGracePeriodSeconds, imposter.Finalizers = nil, nil, nil
	imposter.Status = corev1.PodStatus{}
	if err := env.Client.Create(ctx, imposter); err != nil {
		t.Fatal(err)
	}

	startManager(t, ns)
	got := waitForPhase(t, ctx, s, v1.PhaseFailed, v1.ReasonPodDeleted)
	if got.Status.PodUID != string(pod.UID) {
		t.Fatalf("status.podUID = %q, want the original pod's %q", got.Status.PodUID, pod.UID)
	}
	if msg := cond(got, v1.ConditionSucceeded).Message; !strings.Contains(msg, "replaced") {
		t.Errorf("message %q does not say the pod was replaced", msg)
	}
}

// A forged pod under the runner pod's name that its maker holds with a finalizer is
// deleted but never goes: the session ends with a clear reason once the pod has stayed
// past its deletion for StuckPodGrace, and frees its slot, instead of retrying every
// second for ever while a waiting session holds the namespace's only slot.
func TestForgedPodHeldByAFinalizerEndsTheSession(t *testing.T) {
	ctx := testContext(t, time.Minute)
	ns := restrictedNamespace(t, ctx)
	slotPolicy(t, ctx, ns, "one", 1)
	startManagerWith(t, ns, func(r *AgentSessionReconciler) { r.StuckPodGrace = 2 * time.Second })
	provider := "later-" + ns
	waiting := testutil.Session("victim", ns).Obj()
	waiting.Spec.Model.Provider = provider
	s := create(t, waiting)
	waitForPhase(t, ctx, s, v1.PhasePending, v1.ReasonPending)
	forged := forgedRunnerPod(t, ctx, s, "attacker.example/hold:1", "example.com/hold")
	t.Cleanup(func() { // let the namespace go
		p := &corev1.Pod{}
		if env.Client.Get(context.Background(), client.ObjectKeyFromObject(forged), p) == nil {
			p.Finalizers = nil
			_ = env.Client.Update(context.Background(), p)
		}
	})
	if err := env.Client.Create(ctx, &v1.ModelProvider{ObjectMeta: metav1.ObjectMeta{Name: provider},
		Spec: v1.ModelProviderSpec{BaseURL: "https://llm.example.com/v1"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.Delete(context.Background(), &v1.ModelProvider{ObjectMeta: metav1.ObjectMeta{Name: provider}})
	})

	got := waitForPhase(t, ctx, s, v1.PhaseFailed, v1.ReasonPodNameInUse)
	if msg := cond(got, v1.ConditionSucceeded).Message; !strings.Contains(msg, "still terminating (finalizers: example.com/hold)") {
		t.Errorf("message = %q", msg)
	}
	if got.Status.PodUID != "" {
		t.Errorf("status.podUID = %q: the forged pod was bound", got.Status.PodUID)
	}
	// The slot is free: the next session of the namespace gets its pod.
	waitForPod(t, ctx, create(t, testutil.Session("next", ns).Obj()))
}
