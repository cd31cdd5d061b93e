package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/controllers"
	"github.com/agentry-dev/agentry/gateway"
	"github.com/agentry-dev/agentry/test/scriptedllm"
	"github.com/agentry-dev/agentry/test/testutil"
)

// TestFinishedSessionStatusHasTwoOwners runs a session through the manager as deployed (the
// reconciler, the gateway and its archiver) and a real runner, and reads who wrote the
// finished session's status: exactly the reconciler and the gateway, each by server-side
// apply, each owning its own fields and none of the other's.
func TestFinishedSessionStatusHasTwoOwners(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	ctx := context.Background()
	f := newFixture(t,
		scriptedllm.Tools(scriptedllm.Call{Name: "write_file", Args: map[string]any{"path": "greeting.txt", "content": "hello\n"}}),
		// Over the patch's 1 MiB per-file limit: left out of the patch, listed in status.
		scriptedllm.Tools(scriptedllm.Call{Name: "write_file", Args: map[string]any{"path": "big.txt", "content": strings.Repeat("a\n", 600<<10)}}),
		scriptedllm.Text("Added greeting.txt."),
	)
	g := startOperator(t, f.ns)
	s := f.session("owners")
	pod := &corev1.Pod{}
	eventually(t, 20*time.Second, "the reconciler to create the runner pod", func() bool {
		return env.Client.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "owners-runner"}, pod) == nil
	})
	kubeletRun(t, pod)
	termination := filepath.Join(t.TempDir(), "termination-log")
	r := runnerFor(t, s, g, f.tokenFile(pod), "--termination-message-path", termination)
	if code := r.run(ctx); code != 0 {
		t.Fatalf("runner exited %d:\n%s", code, r.stderr.String())
	}
	msg, err := os.ReadFile(termination)
	if err != nil {
		t.Fatal(err)
	}
	kubeletExit(t, pod, 0, string(msg))
	got := waitFinishedAndArchived(t, f, s, v1.PhaseSucceeded)
	if got.Status.Result == nil || got.Status.Result.Summary != "Added greeting.txt." || got.Status.Result.ExitCode == nil || got.Status.Usage == nil {
		t.Fatalf("status = %+v", got.Status)
	}
	if om := got.Status.Result.OmittedFiles; len(om) != 1 || om[0].Path != "big.txt" || om[0].SizeBytes != 1200<<10 || om[0].Reason == "" {
		t.Errorf("result.omittedFiles = %+v, want big.txt with its size and the reason", om)
	}

	owners := testutil.StatusOwners(t, got.ManagedFields)
	if keys := testutil.SortedKeys(owners); strings.Join(keys, ",") != "agentry-controller/Apply,agentry-gateway/Apply" {
		t.Fatalf("status written by %v, want agentry-controller/Apply and agentry-gateway/Apply", keys)
	}
	testutil.AssertDisjoint(t, owners)
	assertOwns(t, owners, "agentry-controller/Apply", "phase", "conditions[Succeeded]", "conditions[PodReady]", "observedGeneration",
		"podName", "podUID", "startTime", "completionTime", "result.exitCode", "resolved.model", "resolved.image", "resolved.commitSHA")
	assertOwns(t, owners, string(gateway.FieldOwner)+"/Apply", "progress.turn", "usage.totalTokens", "usage.toolCalls", "result.summary",
		"result.filesChanged", "transcript.uri", "patch.sha256", "conditions[Archived]")
}

// TestArchiverRecordsTheRunnersOwnSummary: a runner that never reached the gateway's
// /finish still leaves its summary as the pod's termination message; the archiver records
// its final message, diff stats and usage under the gateway's field manager (the
// reconciler, which reads the pod, writes none of them).
func TestArchiverRecordsTheRunnersOwnSummary(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	ctx := context.Background()
	f := newFixture(t)
	startOperator(t, f.ns)
	s := f.session("unreported")
	pod := &corev1.Pod{}
	eventually(t, 20*time.Second, "the reconciler to create the runner pod", func() bool {
		return env.Client.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "unreported-runner"}, pod) == nil
	})
	kubeletRun(t, pod)
	sum, err := contract.Summary{
		Outcome: contract.OutcomeCompleted, Message: "Fixed the flaky test.", ToolCalls: 5,
		Usage: contract.Usage{PromptTokens: 900, CompletionTokens: 100},
		Diff: contract.DiffStats{FilesChanged: 2, Additions: 7, Deletions: 3,
			Omitted: []contract.OmittedFile{{Path: "data.bin", Size: 200 << 20, Reason: "larger than 1 MiB"}}},
		BaseCommit: strings.Repeat("c", 40),
	}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	kubeletExit(t, pod, 0, string(sum))
	got := waitFinishedAndArchived(t, f, s, v1.PhaseSucceeded)

	res, u := got.Status.Result, got.Status.Usage
	if res == nil || res.Summary != "Fixed the flaky test." || res.FilesChanged != 2 || res.Additions != 7 || res.Deletions != 3 ||
		res.ExitCode == nil || *res.ExitCode != 0 {
		t.Errorf("result = %+v, want the runner's summary and diff stats, exit code 0", res)
	}
	if res != nil && (len(res.OmittedFiles) != 1 || res.OmittedFiles[0].Path != "data.bin" || res.OmittedFiles[0].SizeBytes != 200<<20 || res.OmittedFiles[0].Reason != "larger than 1 MiB") {
		t.Errorf("result.omittedFiles = %+v, want the runner's data.bin", res.OmittedFiles)
	}
	if u == nil || u.TotalTokens != 1000 || u.PromptTokens != 900 || u.ToolCalls != 5 {
		t.Errorf("usage = %+v, want the runner's 1000 tokens and 5 tool calls", u)
	}
	if r := got.Status.Resolved; r == nil || r.CommitSHA != strings.Repeat("c", 40) {
		t.Errorf("resolved = %+v, want the runner's base commit", r)
	}
	owners := testutil.StatusOwners(t, got.ManagedFields)
	testutil.AssertDisjoint(t, owners)
	assertOwns(t, owners, string(gateway.FieldOwner)+"/Apply", "result.summary", "result.filesChanged", "usage.totalTokens", "usage.toolCalls", "transcript.uri", "conditions[Archived]")
	assertOwns(t, owners, string(controllers.FieldOwner)+"/Apply", "result.exitCode", "resolved.commitSHA")
}

func waitFinishedAndArchived(t *testing.T, f *fixture, s *v1.AgentSession, phase v1.SessionPhase) *v1.AgentSession {
	t.Helper()
	var got *v1.AgentSession
	eventually(t, 30*time.Second, fmt.Sprintf("the session to end %s and be archived", phase), func() bool {
		got = f.get(s)
		a := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionArchived)
		return got.Status.Phase == phase && a != nil && a.Status == metav1.ConditionTrue
	})
	return got
}

func assertOwns(t *testing.T, owners map[string]map[string]bool, manager string, fields ...string) {
	t.Helper()
	for _, f := range fields {
		if !owners[manager][f] {
			t.Errorf("%s does not own status.%s; it owns %v", manager, f, testutil.SortedKeys(owners[manager]))
		}
	}
}

// The archiver raises a session's usage to the count the runner left in its termination
// message against the count the API holds at that moment. Replica A (the leader) served a
// call and still holds the session; replica B then charged 500 more and wrote them; the
// runner exits without /finish, counting both. The result is what was charged (610),
// never B's 500 twice (1,110, as when A raised against its own older count).
func TestArchiverRaisesUsageAgainstTheCountTheAPIHolds(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	ctx := context.Background()
	f := newFixture(t)
	up := newUpstream(t, 100, 10)
	prov := f.upstreamProvider(up)
	g := startOperator(t, f.ns)
	s := f.session("stale", usesProvider(prov))
	pod := &corev1.Pod{}
	eventually(t, 20*time.Second, "the runner pod", func() bool {
		return env.Client.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "stale-runner"}, pod) == nil
	})
	kubeletRun(t, pod)
	tok := f.token(contract.GatewayAudience, boundTo(pod))
	eventually(t, 20*time.Second, "a call through replica A", func() bool {
		code, _ := post(t, g.URL+contract.PathChatCompletions, tok, chatBody(""))
		return code == http.StatusOK
	})
	eventually(t, 10*time.Second, "A's charge to be written", func() bool { return usedTokens(f, s) == 110 })
	applyUsageOf(t, s, contract.Usage{PromptTokens: 600, CompletionTokens: 10}) // replica B's write
	sum, err := contract.Summary{Outcome: contract.OutcomeCompleted, Message: "done", Usage: contract.Usage{PromptTokens: 600, CompletionTokens: 10}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	kubeletExit(t, pod, 0, string(sum))
	got := waitFinishedAndArchived(t, f, s, v1.PhaseSucceeded)
	if u := got.Status.Usage; u == nil || u.TotalTokens != 610 || u.PromptTokens != 600 {
		t.Errorf("usage = %+v, want the 610 tokens both replicas charged and the runner counted", u)
	}
}
