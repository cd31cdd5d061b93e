package gateway_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/test/scriptedllm"
)

func TestApprovalsThroughTheSessionResource(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	ctx := context.Background()
	f := newFixture(t,
		scriptedllm.Tools(scriptedllm.Call{Name: "bash", Args: map[string]any{"command": "echo approved > approved.txt"}}),
		scriptedllm.Tools(scriptedllm.Call{Name: "bash", Args: map[string]any{"command": "echo unanswered > unanswered.txt"}}),
		scriptedllm.Text("One command ran, one was not approved."),
	)
	g := startGateway(t)
	s := f.session("asks", func(s *v1.AgentSession) {
		s.Spec.Approval = v1.ApprovalPolicy{Bash: v1.ApprovalAsk, Writes: v1.ApprovalAllow,
			Timeout: &metav1.Duration{Duration: 10 * time.Second}, OnTimeout: v1.DecisionDeny}
	})
	r := runnerFor(t, s, g, f.tokenFile(f.runnerPod(s)), "--approval-bash", "Ask")
	done := make(chan int, 1)
	go func() { done <- r.run(ctx) }()

	var first v1.PendingApproval
	eventually(t, 20*time.Second, "the first call to be listed in status.pendingApprovals", func() bool {
		p := f.get(s).Status.PendingApprovals
		if len(p) == 1 {
			first = p[0]
		}
		return len(p) == 1
	})
	if first.Tool != "bash" || !strings.Contains(first.Summary, "echo approved > approved.txt") || !strings.HasPrefix(first.Digest, "sha256:") ||
		first.RequestedAt == nil || first.ExpiresAt == nil || first.ExpiresAt.Sub(first.RequestedAt.Time) != 10*time.Second {
		t.Errorf("pending approval = %+v", first)
	}

	// The manager restarts while the runner waits: the request is in the CR, not in memory.
	g.restart()
	eventually(t, 10*time.Second, "the runner to ask the new gateway replica", func() bool {
		return len(f.get(s).Status.PendingApprovals) == 1
	})
	decide := fmt.Sprintf(`{"spec":{"approvals":[{"id":%q,"digest":%q,"decision":"Allow","decidedBy":"alice","reason":"looks safe"}]}}`, first.ID, first.Digest)
	if err := env.Client.Patch(ctx, s, rawMerge(decide)); err != nil {
		t.Fatalf("deciding as a user: %v", err)
	}

	var second v1.PendingApproval
	eventually(t, 20*time.Second, "the second call to be listed (the first is resolved)", func() bool {
		p := f.get(s).Status.PendingApprovals
		if len(p) == 1 && p[0].ID != first.ID {
			second = p[0]
			return true
		}
		return false
	})
	if second.Digest == first.Digest {
		t.Error("different actions share a digest")
	}
	// Nobody answers the second: onTimeout (Deny) applies at expiresAt.
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("runner exited %d:\n%s", code, r.stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("runner did not finish after the approval expired")
	}
	if now := time.Now(); now.Before(second.ExpiresAt.Time) {
		t.Errorf("the unanswered call was decided at %s, before it expired at %s", now, second.ExpiresAt)
	}
	st := f.get(s).Status
	if len(st.PendingApprovals) != 0 {
		t.Errorf("pending approvals left after the session: %+v", st.PendingApprovals)
	}
	// Who decided lands in status next to the decision: the user admission checked, or
	// the timeout.
	if d := st.DecidedApprovals; len(d) != 2 {
		t.Errorf("status.decidedApprovals = %+v, want the two answered calls", d)
	} else {
		if d[0].ID != first.ID || d[0].Tool != "bash" || d[0].Digest != first.Digest || d[0].Decision != v1.DecisionAllow ||
			d[0].By != v1.DecidedByUser || d[0].DecidedBy != "alice" || d[0].DecidedAt == nil {
			t.Errorf("the user's decision in status = %+v, want %s Allow by alice", d[0], first.ID)
		}
		if d[1].ID != second.ID || d[1].Decision != v1.DecisionDeny || d[1].By != v1.DecidedByTimeout || d[1].DecidedBy != "" || d[1].DecidedAt == nil {
			t.Errorf("the timeout's decision in status = %+v, want %s Deny by Timeout", d[1], second.ID)
		}
	}
	transcript := string(objectBytes(t, st.Transcript.URI))
	if !strings.Contains(transcript, `"decision":"Allow","by":"user:alice","reason":"looks safe"`) {
		t.Errorf("transcript lacks the user's decision:\n%s", transcript)
	}
	if !strings.Contains(transcript, `"decision":"Deny","by":"gateway","reason":"timeout: nobody decided`) {
		t.Errorf("transcript lacks the onTimeout decision:\n%s", transcript)
	}
	patch := string(objectBytes(t, st.Patch.URI))
	if !strings.Contains(patch, "approved.txt") || strings.Contains(patch, "unanswered") {
		t.Errorf("patch = %s", patch)
	}
}

func rawMerge(body string) client.Patch { return client.RawPatch(types.MergePatchType, []byte(body)) }
