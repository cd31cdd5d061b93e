package gateway

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
)

func TestLastContiguousStopsAtTheFirstGap(t *testing.T) {
	cases := map[string]struct {
		segs []segment
		want int64
	}{
		"none":        {nil, 0},
		"consecutive": {[]segment{{first: 1, last: 4}, {first: 5, last: 9}}, 9},
		"overlapping": {[]segment{{first: 1, last: 4}, {first: 3, last: 6}}, 6},
		"gap":         {[]segment{{first: 1, last: 4}, {first: 7, last: 9}}, 4},
		"no start":    {[]segment{{first: 2, last: 4}}, 0},
	}
	for name, tc := range cases {
		if got := lastContiguous(tc.segs); got != tc.want {
			t.Errorf("%s: lastContiguous = %d, want %d", name, got, tc.want)
		}
	}
}

func TestApprovalDigestCoversTheExactAction(t *testing.T) {
	a := contract.ApprovalRequest{ID: "c1", Tool: "bash", Class: "shell", Summary: "rm -rf build", Command: "rm -rf build"}
	b := a
	b.Command = "rm -rf /"
	c := a
	c.ID = "c2"
	if approvalDigest(&a) == approvalDigest(&b) {
		t.Error("different commands share a digest")
	}
	if approvalDigest(&a) != approvalDigest(&c) {
		t.Error("the digest must depend on the action, not on the request id")
	}
	if !strings.HasPrefix(approvalDigest(&a), "sha256:") || len(approvalDigest(&a)) != 71 {
		t.Errorf("digest %q does not fit status.pendingApprovals[].digest", approvalDigest(&a))
	}
}

func TestProgressFollowsEvents(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ss := &session{}
	ss.observe([]contract.Event{
		{Seq: 1, Time: now, Type: contract.EventSessionStart, SessionStart: &contract.SessionStart{Task: "fix it\nplease"}},
		{Seq: 2, Time: now, Turn: 1, Type: contract.EventModelRequest, ModelRequest: &contract.ModelRequest{}},
		{Seq: 3, Time: now.Add(time.Second), Turn: 1, Type: contract.EventToolCall, ToolCall: &contract.ToolCall{Name: "bash", Arguments: `{"command":"go test ./..."}`}},
	})
	p := ss.status.Progress
	if p.Turn != 1 || p.LastTool != "bash" || !p.LastActivityTime.Time.Equal(now.Add(time.Second)) || !strings.Contains(p.Message, "go test") {
		t.Errorf("progress = %+v", p)
	}
	if ss.status.Usage.ToolCalls != 1 {
		t.Errorf("toolCalls = %d", ss.status.Usage.ToolCalls)
	}
}

func TestUsageIsReadFromStreamsAndBodies(t *testing.T) {
	body := `{"id":"x","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":8}}}`
	if diff := cmp.Diff(&contract.Usage{PromptTokens: 12, CompletionTokens: 3, CachedTokens: 8}, usageFromJSON([]byte(body))); diff != "" {
		t.Errorf("non-streamed usage (-want +got):\n%s", diff)
	}
	stream := "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n"
	rec := httptest.NewRecorder()
	u := relayStream(rec, strings.NewReader(stream))
	if diff := cmp.Diff(&contract.Usage{PromptTokens: 5, CompletionTokens: 2}, u); diff != "" {
		t.Errorf("streamed usage (-want +got):\n%s", diff)
	}
	if rec.Body.String() != stream {
		t.Errorf("the stream was not relayed byte for byte:\n%q", rec.Body.String())
	}
}

// A runner sends its next model call the moment it has read "[DONE]": the call must be
// settled (charged, its reservation released) before that line leaves the gateway, or the
// next call finds the namespace budget still held by this one's reservation and is refused.
func TestAStreamedCallIsSettledBeforeTheRunnerSeesItsEnd(t *testing.T) {
	stream := "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n"
	rec := httptest.NewRecorder()
	calls := 0
	u := relayStreamUntilEnd(context.Background(), rec, strings.NewReader(stream), func(u *contract.Usage) {
		calls++
		if strings.Contains(rec.Body.String(), "[DONE]") {
			t.Error("settled after [DONE] was relayed: the runner's next call could arrive first")
		}
		if diff := cmp.Diff(&contract.Usage{PromptTokens: 5, CompletionTokens: 2}, u); diff != "" {
			t.Errorf("usage at settlement (-want +got):\n%s", diff)
		}
	})
	if calls != 1 {
		t.Errorf("settled %d times, want once", calls)
	}
	if u == nil || rec.Body.String() != stream {
		t.Errorf("usage %v; relayed %q", u, rec.Body.String())
	}
}

// The decided list is recorded once per id, keeps what another replica recorded, and keeps
// the newest 50.
func TestRecordDecisionMergesAndBounds(t *testing.T) {
	at := func(sec int) *metav1.Time { m := metav1.NewTime(time.Unix(int64(sec), 0)); return &m }
	ours := []v1.DecidedApproval{{ID: "ap-1", DecidedAt: at(1)}}
	stored := []v1.DecidedApproval{{ID: "ap-1", DecidedAt: at(1)}, {ID: "ap-2", DecidedAt: at(2)}} // ap-2 from another replica
	got, added := recordDecision(ours, stored, v1.DecidedApproval{ID: "ap-3", By: v1.DecidedByUser, DecidedBy: "alice"}, time.Unix(3, 0))
	if !added || len(got) != 3 || got[0].ID != "ap-1" || got[1].ID != "ap-2" || got[2].ID != "ap-3" || got[2].DecidedBy != "alice" || got[2].DecidedAt == nil {
		t.Fatalf("got %+v (added %v), want ap-1, ap-2 (the other replica's), ap-3", got, added)
	}
	again, added := recordDecision(got, got, v1.DecidedApproval{ID: "ap-3", DecidedBy: "mallory"}, time.Unix(9, 0))
	if added || len(again) != 3 || again[2].DecidedBy != "alice" {
		t.Errorf("a repeated answer for ap-3 changed the record: %+v", again)
	}
	var many []v1.DecidedApproval
	for i := range maxDecidedApprovals {
		many = append(many, v1.DecidedApproval{ID: fmt.Sprintf("ap-%d", i), DecidedAt: at(i)})
	}
	got, _ = recordDecision(many, nil, v1.DecidedApproval{ID: "newest"}, time.Unix(1000, 0))
	if len(got) != maxDecidedApprovals || got[0].ID != "ap-1" || got[len(got)-1].ID != "newest" {
		t.Errorf("bounded list: %d entries from %s to %s, want %d ending in the newest", len(got), got[0].ID, got[len(got)-1].ID, maxDecidedApprovals)
	}
}

// A replica's status write reaches the cache (and the next call's observeStored) before
// the write returns. The count it carries already holds the charges the write sent, so
// it must not be added to them again: before this was fixed, a session that had used
// 4,020 tokens counted 8,040 for a moment, the namespace's budget index kept that
// figure, and the runner's next call was refused with half the budget unused.
func TestOwnStatusWriteSeenInTheCacheIsNotCountedTwice(t *testing.T) {
	usage := func(u contract.Usage) *v1.Usage {
		return &v1.Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.Total()}
	}
	call := contract.Usage{PromptTokens: 4000, CompletionTokens: 20}
	ss := &session{}
	ss.addTokens(call)

	// The write of 4,020 goes out; the cache shows it before the write returns.
	ss.mu.Lock()
	sent, base := ss.pending, ss.stored
	ss.writing = true
	ss.observeStored(usage(base.Add(sent)))
	if got := ss.tokens().Total(); got != 4020 {
		t.Errorf("while the write is in flight the session counts %d tokens, want 4020", got)
	}
	ss.wrote(base, sent, time.Now(), "2", true)
	if got := ss.tokens().Total(); got != 4020 || ss.pending != (contract.Usage{}) {
		t.Errorf("after the write the session counts %d tokens (pending %+v), want 4020 and nothing pending", got, ss.pending)
	}

	// Another replica's later write (4,020 of ours + 1,000 of its own) counts in full.
	ss.observeStored(usage(call.Add(contract.Usage{PromptTokens: 1000})))
	if got := ss.tokens().Total(); got != 5020 {
		t.Errorf("after another replica's write the session counts %d tokens, want 5020", got)
	}

	// A write that does not land: this replica's new charge stays pending, and what was
	// observed meanwhile is read again rather than guessed at.
	ss.addTokens(contract.Usage{CompletionTokens: 30})
	sent, base = ss.pending, ss.stored
	ss.writing = true
	ss.observeStored(usage(base.Add(sent)))
	ss.wrote(base, sent, time.Now(), "", false)
	if got := ss.tokens().Total(); got != 5050 || ss.pending.Total() != 30 {
		t.Errorf("after a failed write the session counts %d tokens (pending %+v), want 5050 with 30 pending", got, ss.pending)
	}
	ss.mu.Unlock()
}

// A charge made while a status write is out stays pending after it; the oldest unwritten
// charge is then no older than that write's snapshot, not the charge the write took, so
// the next model call is not held to write charges that are not overdue.
func TestPendingSinceFollowsTheOldestUnwrittenCharge(t *testing.T) {
	ss := &session{}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.addTokens(contract.Usage{PromptTokens: 100})
	ss.pendingSince = time.Now().Add(-time.Minute) // charged a minute ago
	sent, base, at := ss.pending, ss.stored, time.Now()
	ss.writing = true
	ss.addTokens(contract.Usage{PromptTokens: 10}) // charged while the write is out
	ss.wrote(base, sent, at, "2", true)
	if ss.pending.Total() != 10 || ss.pendingSince.Before(at) {
		t.Errorf("after the write: pending %+v since %v, want 10 tokens since no earlier than %v", ss.pending, ss.pendingSince, at)
	}
}
