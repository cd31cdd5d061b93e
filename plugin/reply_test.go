package plugin_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/plugin"
	"github.com/agentry-dev/agentry/test/testutil"
)

// startReply runs `kubectl agentry -n ns reply ARGS...` in-process.
func startReply(ctx context.Context, ns string, args ...string) *runResult {
	r := &runResult{code: make(chan int, 1), stdout: newLines(), stderr: newLines()}
	full := append([]string{"--kubeconfig", env.Kubeconfig, "-n", ns, "reply"}, args...)
	go func() { r.code <- plugin.Main(ctx, full, strings.NewReader(""), r.stdout, r.stderr) }()
	return r
}

// TestReplyCreatesAFollowUp: reply copies the finished session's spec with the new task and
// spec.continueFrom, drops its delivery and decided approvals, names it SESSION-reply-N and
// labels it with the session it continues.
func TestReplyCreatesAFollowUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns, err := env.CreateNamespace(ctx, "reply", nil)
	if err != nil {
		t.Fatal(err)
	}
	earlier := testutil.Session("fix", ns).Repo("https://git.example.com/org/app.git").Image("golang:1.26").Obj()
	earlier.Spec.Instructions = "Run go vet before you finish."
	earlier.Spec.Delivery = &v1.DeliverySpec{PullRequest: &v1.PullRequestDelivery{Branch: "agentry/fix"}}
	if err := env.Client.Create(ctx, earlier); err != nil {
		t.Fatal(err)
	}
	setStatus(ctx, t, ns, "fix", ended(v1.PhaseSucceeded, v1.ReasonCompleted))

	for i, name := range []string{"fix-reply-1", "fix-reply-2"} {
		r := startReply(ctx, ns, "fix", "  Also cover the timeout path.\n")
		if code := r.wait(ctx, t); code != 0 || r.stdout.String() != "agentsession.agentry.dev/"+name+" created\n" {
			t.Fatalf("reply %d: exit %d, stdout %q, stderr %q", i+1, code, r.stdout, r.stderr)
		}
		got := &v1.AgentSession{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, got); err != nil {
			t.Fatal(err)
		}
		want := *earlier.Spec.DeepCopy()
		want.Task, want.ContinueFrom, want.Delivery = "Also cover the timeout path.", &v1.ContinueFrom{Session: "fix"}, nil
		if diff := cmp.Diff(want, got.Spec); diff != "" {
			t.Errorf("follow-up spec (-want +got):\n%s", diff)
		}
		if got.Labels[plugin.LabelContinues] != "fix" {
			t.Errorf("labels = %v, want %s=fix", got.Labels, plugin.LabelContinues)
		}
	}
}

// TestReplyRefusesWhatCannotBeContinued: a missing or unfinished session, or no task, is a
// usage error that says why, and nothing is created.
func TestReplyRefusesWhatCannotBeContinued(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns, err := env.CreateNamespace(ctx, "reply-bad", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(ctx, testutil.Session("busy", ns).Obj()); err != nil {
		t.Fatal(err)
	}
	setStatus(ctx, t, ns, "busy", func(st *v1.AgentSessionStatus) { st.Phase = v1.PhaseRunning })
	if err := env.Client.Create(ctx, testutil.Session("stopped", ns).Obj()); err != nil {
		t.Fatal(err)
	}
	setStatus(ctx, t, ns, "stopped", ended(v1.PhaseCancelled, v1.ReasonCancelled))
	cases := map[string]struct {
		args []string
		want string
	}{
		"missing":      {[]string{"nope", "next"}, "session nope not found in namespace " + ns},
		"not finished": {[]string{"busy", "next"}, "session busy has not finished (phase Running)"},
		"cancelled":    {[]string{"stopped", "next"}, "session stopped was cancelled"},
		"no task":      {[]string{"busy", "  "}, "a task is required"},
		"no session":   {nil, "reply takes the session and the task"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := startReply(ctx, ns, tc.args...)
			if code := r.wait(ctx, t); code != plugin.ExitUsage || !strings.Contains(r.stderr.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, r.stderr, plugin.ExitUsage, tc.want)
			}
		})
	}
	if n := len(sessionsIn(ctx, t, ns)); n != 2 {
		t.Errorf("%d sessions, want only the two earlier ones", n)
	}
}

// TestReplyWaitsForTheFollowUp: with --wait, reply follows the follow-up as run does and
// exits with its outcome.
func TestReplyWaitsForTheFollowUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns, err := env.CreateNamespace(ctx, "reply-wait", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(ctx, testutil.Session("first", ns).Obj()); err != nil {
		t.Fatal(err)
	}
	setStatus(ctx, t, ns, "first", ended(v1.PhaseFailed, v1.ReasonLimitReached))
	r := startReply(ctx, ns, "first", "Finish what you started.", "--name", "second", "--wait")
	r.stdout.await(ctx, t, "agentsession.agentry.dev/second created")
	setStatus(ctx, t, ns, "second", ended(v1.PhaseSucceeded, v1.ReasonCompleted))
	if code := r.wait(ctx, t); code != plugin.ExitSucceeded {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, plugin.ExitSucceeded, r.stderr)
	}
}
