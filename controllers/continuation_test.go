package controllers

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/test/testutil"
)

const (
	earlierCommit = "0123456789abcdef0123456789abcdef01234567"
	earlierPatch  = "a665a45920422f9d417e4867efdc4fb8a04a1f3fff1fa07e998e86f7f7a27ae3"
)

// finishedSession runs a session to the given exit code as a kubelet would, then records
// what the gateway archives for it (its patch, and the commit it checked out).
func finishedSession(t *testing.T, ctx context.Context, s *v1.AgentSession, code int32, archived bool) *v1.AgentSession {
	t.Helper()
	create(t, s)
	pod := waitForPod(t, ctx, s)
	kubelet{t}.run(ctx, pod, time.Now())
	waitForPhase(t, ctx, s, v1.PhaseRunning, "")
	kubelet{t}.exit(ctx, pod, code, "Completed", "")
	phase := v1.PhaseSucceeded
	if code != 0 {
		phase = v1.PhaseFailed
	}
	got := waitForPhase(t, ctx, s, phase, "")
	if !archived {
		return got
	}
	eventually(t, ctx, "the archived patch in status", func() error {
		fresh, err := getSession(ctx, s)
		if err != nil {
			return err
		}
		fresh.Status.Patch = &v1.ArtifactRef{URI: "s3://bucket/p", SizeBytes: 3, SHA256: earlierPatch}
		fresh.Status.Resolved = &v1.Resolved{CommitSHA: earlierCommit}
		return env.Client.Status().Update(ctx, fresh)
	})
	got, _ = getSession(ctx, s)
	return got
}

func followUp(name, ns, of string) *v1.AgentSession {
	s := testutil.Session(name, ns).Task("Now add the changelog entry.").Obj()
	s.Spec.ContinueFrom = &v1.ContinueFrom{Session: of}
	return s
}

// TestFollowUpNeedsAFinishedEarlierSession: a follow-up whose earlier session is missing,
// still running, cancelled, without an archived patch or on another repository fails at
// once with ContinuationUnavailable, a message naming spec.continueFrom.session and the
// problem, and no pod.
func TestFollowUpNeedsAFinishedEarlierSession(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	ns := restrictedNamespace(t, ctx)
	startManager(t, ns)
	finishedSession(t, ctx, testutil.Session("done", ns).Obj(), 0, true)
	finishedSession(t, ctx, testutil.Session("no-patch", ns).Obj(), int32(contract.ExitLimitReached), false)
	running := create(t, testutil.Session("running", ns).Obj())
	kubelet{t}.run(ctx, waitForPod(t, ctx, running), time.Now())
	waitForPhase(t, ctx, running, v1.PhaseRunning, "")

	cases := map[string]struct {
		session *v1.AgentSession
		want    string
	}{
		"missing":      {followUp("of-missing", ns, "nope"), `spec.continueFrom.session "nope": no such session`},
		"not-finished": {followUp("of-running", ns, "running"), `spec.continueFrom.session "running" has not finished (phase Running)`},
		"no-patch":     {followUp("of-no-patch", ns, "no-patch"), `spec.continueFrom.session "no-patch" has no archived patch`},
		"other-repo": {func() *v1.AgentSession {
			s := followUp("of-other", ns, "done")
			s.Spec.Repository.URL = "https://git.example.com/org/other.git"
			return s
		}(), "not spec.repository.url https://git.example.com/org/other.git"},
		"self-reference": {followUp("myself", ns, "myself"), "cannot continue itself"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := create(t, tc.session)
			got := waitForPhase(t, ctx, s, v1.PhaseFailed, v1.ReasonContinuationUnavailable)
			if msg := cond(got, v1.ConditionSucceeded).Message; !strings.Contains(msg, tc.want) {
				t.Fatalf("message %q lacks %q", msg, tc.want)
			}
			if got.Status.ContinuedFrom != nil || got.Status.PodName != "" {
				t.Fatalf("a refused follow-up recorded continuedFrom %+v and pod %q", got.Status.ContinuedFrom, got.Status.PodName)
			}
			if err := podGone(ctx, s); err != nil {
				t.Fatalf("a refused follow-up got a pod: %v", err)
			}
		})
	}
	// The refused follow-ups did not touch the sessions they named.
	if got, _ := getSession(ctx, testutil.Session("done", ns).Obj()); got.Status.Phase != v1.PhaseSucceeded || got.Status.Patch.SHA256 != earlierPatch {
		t.Fatalf("earlier session changed: %+v", got.Status)
	}
}

// TestFollowUpChecksOutTheEarlierBase: the follow-up records what it continues and its
// pod checks out the earlier session's base commit (not spec.repository.ref), fetches the
// patch with the gateway token in the checkout container and the history in the runner.
func TestFollowUpChecksOutTheEarlierBase(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	ns := restrictedNamespace(t, ctx)
	startManager(t, ns)
	first := finishedSession(t, ctx, testutil.Session("first", ns).Obj(), int32(contract.ExitLimitReached), true)

	s := create(t, followUp("first-reply-1", ns, "first"))
	pod := waitForPod(t, ctx, s)
	got := waitForPhase(t, ctx, s, v1.PhasePending, v1.ReasonPending)
	want := v1.ContinuationStatus{Session: "first", UID: string(first.UID), Commit: earlierCommit, PatchSHA256: earlierPatch}
	if got.Status.ContinuedFrom == nil || *got.Status.ContinuedFrom != want {
		t.Fatalf("status.continuedFrom = %+v, want %+v", got.Status.ContinuedFrom, want)
	}
	checkout := containerByName(pod, contract.ContainerCheckout)
	args := strings.Join(checkout.Args, " ")
	for _, w := range []string{"--ref " + earlierCommit, "--continuation-from-gateway " + testRunnerConfig.GatewayURL, "--token-file " + tokenDir + "/" + tokenFile} {
		if !strings.Contains(args, w) {
			t.Errorf("checkout args %q lack %q", args, w)
		}
	}
	if strings.Contains(args, "--ref main") {
		t.Errorf("checkout args %q use spec.repository.ref instead of the earlier base commit", args)
	}
	if !slices.ContainsFunc(checkout.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "gateway-token" && m.ReadOnly }) {
		t.Errorf("checkout container lacks the read-only gateway token: %+v", checkout.VolumeMounts)
	}
	if agent := containerByName(pod, contract.ContainerAgent); slices.ContainsFunc(agent.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "gateway-token" }) {
		t.Error("the agent container must never mount the gateway token")
	}
	if !slices.Contains(containerByName(pod, contract.ContainerRunner).Args, "--continuation") {
		t.Error("runner args lack --continuation")
	}

	// A session that continues nothing keeps the token out of its checkout.
	plain := create(t, testutil.Session("plain", ns).Obj())
	plainPod := &corev1.Pod{}
	eventually(t, ctx, "plain pod", func() error {
		return env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: podName(plain)}, plainPod)
	})
	if c := containerByName(plainPod, contract.ContainerCheckout); slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "gateway-token" }) {
		t.Error("a session without continueFrom mounts the gateway token into its checkout")
	}
}

// TestFollowUpPodTrustsTheGatewayAsTheRunnerDoes: the checkout sends its token only over
// the gateway's CA-pinned HTTPS, or over plain HTTP where the namespace allowed it, as the
// runner does; a follow-up's checkout runs at the recorded commit whatever
// spec.repository.ref says.
func TestFollowUpPodTrustsTheGatewayAsTheRunnerDoes(t *testing.T) {
	s := followUp("next", "ns", "first")
	s.Status.ContinuedFrom = &v1.ContinuationStatus{Session: "first", UID: "u", Commit: earlierCommit, PatchSHA256: earlierPatch}
	cases := map[string]struct {
		cfg   func(RunnerConfig) RunnerConfig
		plain bool
		want  string
	}{
		"https with the CA bundle": {func(c RunnerConfig) RunnerConfig { c.GatewayCAConfigMap = "agentry-gateway-ca"; return c }, false,
			"checkout --repo https://git.example.com/org/repo.git --dir /workspace --ref " + earlierCommit +
				" --continuation-from-gateway https://agentry-gateway.agentry-system.svc:8443 --token-file " + tokenDir + "/" + tokenFile +
				" --gateway-ca-file " + tokenDir + "/" + gatewayCAFile},
		"plain http allowed": {func(c RunnerConfig) RunnerConfig { c.GatewayCAConfigMap = ""; return c }, true,
			"checkout --repo https://git.example.com/org/repo.git --dir /workspace --ref " + earlierCommit +
				" --continuation-from-gateway https://agentry-gateway.agentry-system.svc:8443 --token-file " + tokenDir + "/" + tokenFile +
				" --allow-plain-http-gateway"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			settings := defaultSettings(t, s)
			settings.plainHTTPGateway = tc.plain
			pod := buildRunnerPod(s, tc.cfg(testRunnerConfig), settings)
			if got := strings.Join(containerByName(pod, contract.ContainerCheckout).Args, " "); got != tc.want {
				t.Errorf("checkout args:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}
