package controllers

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/notify"
)

// receiver is a webhook endpoint that verifies what it gets the way docs/notifications.md
// tells a user to, failing the first failFirst requests with 503.
type receiver struct {
	mu        sync.Mutex
	secret    []byte
	failFirst int
	requests  int
	events    []map[string]any
	bad       []string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.requests++
	body, _ := io.ReadAll(r.Body)
	if rc.requests <= rc.failFirst {
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	mac := hmac.New(sha256.New, rc.secret)
	mac.Write(body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if got := r.Header.Get(notify.SignatureHeader); !hmac.Equal([]byte(got), []byte(want)) {
		rc.bad = append(rc.bad, "bad signature "+got)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/cloudevents+json") {
		rc.bad = append(rc.bad, "content type "+ct)
	}
	var ev map[string]any
	if err := json.Unmarshal(body, &ev); err != nil {
		rc.bad = append(rc.bad, err.Error())
	}
	rc.events = append(rc.events, ev)
	w.WriteHeader(http.StatusAccepted)
}

func (rc *receiver) snapshot() ([]map[string]any, int, []string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]map[string]any(nil), rc.events...), rc.requests, append([]string(nil), rc.bad...)
}

func startNotifications(t *testing.T, ns string) {
	t.Helper()
	runManager(t, ns, func(mgr ctrl.Manager) error {
		return (&NotificationReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: record.NewFakeRecorder(100),
			OperatorNamespace: operatorNS, Backoff: notify.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond, Attempts: 3}}).SetupWithManager(mgr)
	})
}

func TestNotificationsReachWebhookAndSlack(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	ns := restrictedNamespace(t, ctx)

	hook := &receiver{secret: []byte("hmac-key-" + ns), failFirst: 2}
	hookSrv := httptest.NewServer(hook)
	t.Cleanup(hookSrv.Close)
	var slackMu sync.Mutex
	var slackMsgs []slack.WebhookMessage
	slackSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m slack.WebhookMessage
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		slackMu.Lock()
		slackMsgs = append(slackMsgs, m)
		slackMu.Unlock()
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(slackSrv.Close)

	for name, data := range map[string]map[string][]byte{
		"hook-key-" + ns:  {"key": hook.secret},
		"slack-url-" + ns: {"url": []byte(slackSrv.URL + "/services/T000/B000/XXXXSECRET")},
	} {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: operatorNS, Labels: map[string]string{LabelNotificationSecret: "true"}}, Data: data}
		if err := env.Client.Create(ctx, sec); err != nil {
			t.Fatal(err)
		}
	}
	// An unlabelled Secret (say, the S3 credentials) cannot be named by a policy.
	unlabelled := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "not-for-notify-" + ns, Namespace: operatorNS}, Data: map[string][]byte{"url": []byte(slackSrv.URL)}}
	if err := env.Client.Create(ctx, unlabelled); err != nil {
		t.Fatal(err)
	}

	// A session that finished before the policy existed is not replayed to it.
	old := &v1.AgentSession{ObjectMeta: metav1.ObjectMeta{Name: "old", Namespace: ns},
		Spec: v1.AgentSessionSpec{Task: "Old.", Repository: v1.RepositorySpec{URL: "https://git.example.com/a.git"}}}
	if err := env.Client.Create(ctx, old); err != nil {
		t.Fatal(err)
	}
	past := metav1.NewTime(time.Now().Add(-time.Minute))
	old.Status.Phase, old.Status.CompletionTime = v1.PhaseSucceeded, &past
	if err := env.Client.Status().Update(ctx, old); err != nil {
		t.Fatal(err)
	}
	pol := &v1.AgentPolicy{ObjectMeta: metav1.ObjectMeta{Name: "notify", Namespace: ns}, Spec: v1.AgentPolicySpec{Notifications: []v1.NotificationTarget{
		{Name: "ci", Events: []v1.NotificationEvent{v1.NotifyFinished, v1.NotifyWaitingForApproval},
			Webhook: &v1.WebhookTarget{URL: hookSrv.URL + "/agentry", SigningSecretRef: &v1.SecretKeySelector{Name: "hook-key-" + ns, Key: "key"}}},
		{Name: "team", Slack: &v1.SlackTarget{WebhookURLSecretRef: v1.SecretKeySelector{Name: "slack-url-" + ns, Key: "url"}}},
		{Name: "borrowed", Slack: &v1.SlackTarget{WebhookURLSecretRef: v1.SecretKeySelector{Name: unlabelled.Name, Key: "url"}}},
	}}}
	if err := env.Client.Create(ctx, pol); err != nil {
		t.Fatal(err)
	}
	startNotifications(t, ns)

	s := &v1.AgentSession{ObjectMeta: metav1.ObjectMeta{Name: "fix", Namespace: ns},
		Spec: v1.AgentSessionSpec{Task: "Fix Add.", Repository: v1.RepositorySpec{URL: "https://git.example.com/a.git"}}}
	if err := env.Client.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	// The agent asks to run a command.
	now := metav1.Now()
	s.Status.Phase = v1.PhaseWaitingForApproval
	s.Status.PendingApprovals = []v1.PendingApproval{{ID: "ap-1", Tool: "bash", Summary: "go test ./... <!channel>", Digest: "sha256:ab", RequestedAt: &now}}
	if err := env.Client.Status().Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, "the approval notification", func() error {
		got, err := getSession(ctx, s)
		if err != nil {
			return err
		}
		for _, r := range got.Status.Notifications {
			if r.Target == "ci" && r.Event == "WaitingForApproval/ap-1" && r.Sent && r.Attempts == 3 {
				return nil
			}
		}
		return fmt.Errorf("status.notifications = %+v", got.Status.Notifications)
	})

	// It finishes.
	s, _ = getSession(ctx, s)
	done := metav1.Now()
	s.Status.Phase, s.Status.CompletionTime, s.Status.PendingApprovals = v1.PhaseSucceeded, &done, nil
	s.Status.Conditions = []metav1.Condition{{Type: v1.ConditionSucceeded, Status: metav1.ConditionTrue, Reason: v1.ReasonCompleted, Message: "done", LastTransitionTime: done}}
	s.Status.Result = &v1.SessionResult{Summary: "Fixed Add. <https://evil.example|click>", FilesChanged: 1, Additions: 1, Deletions: 1}
	if err := env.Client.Status().Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	var final *v1.AgentSession
	eventually(t, ctx, "the finish notifications recorded", func() error {
		var err error
		if final, err = getSession(ctx, s); err != nil {
			return err
		}
		want := map[string]bool{"ci/Finished": true, "team/Finished": true, "ci/WaitingForApproval/ap-1": true, "borrowed/Finished": false}
		seen := 0
		for _, r := range final.Status.Notifications {
			sent, ok := want[r.Target+"/"+r.Event]
			if !ok {
				return fmt.Errorf("unexpected record %+v", r)
			}
			if r.Sent != sent || (!sent && r.Attempts == 0) {
				return fmt.Errorf("record %+v", r)
			}
			seen++
		}
		if seen != len(want) {
			return fmt.Errorf("status.notifications = %+v", final.Status.Notifications)
		}
		return nil
	})
	for _, r := range final.Status.Notifications {
		if r.Target == "borrowed" && !strings.Contains(r.Message, "lacks the label "+LabelNotificationSecret) {
			t.Errorf("the unlabelled Secret's refusal = %q", r.Message)
		}
		if strings.Contains(r.Message, "XXXXSECRET") {
			t.Errorf("a record shows the Slack URL: %q", r.Message)
		}
	}

	events, requests, bad := hook.snapshot()
	if len(bad) > 0 {
		t.Fatalf("the receiver refused requests: %v", bad)
	}
	if len(events) != 2 || requests != 4 {
		t.Fatalf("webhook got %d events in %d requests, want 2 in 4 (two 503s retried)", len(events), requests)
	}
	approval, finished := events[0], events[1]
	if approval["type"] != "dev.agentry.session.waitingforapproval.v1" || finished["type"] != "dev.agentry.session.finished.v1" ||
		finished["specversion"] != "1.0" || finished["subject"] != ns+"/fix" || finished["id"] == approval["id"] {
		t.Fatalf("CloudEvents attributes: approval %v, finished %v", approval, finished)
	}
	data, _ := finished["data"].(map[string]any)
	if data["phase"] != "Succeeded" || data["reason"] != "Completed" || data["name"] != "fix" {
		t.Fatalf("finished data = %v", data)
	}
	for _, o := range []string{"old"} {
		for _, ev := range events {
			if d, _ := ev["data"].(map[string]any); d["name"] == o {
				t.Fatalf("session %s, finished before the policy, was notified", o)
			}
		}
	}

	slackMu.Lock()
	defer slackMu.Unlock()
	if len(slackMsgs) != 1 {
		t.Fatalf("slack got %d messages, want 1 (Finished only)", len(slackMsgs))
	}
	text, _ := json.Marshal(slackMsgs[0])
	if !strings.Contains(string(text), "fix") || strings.Contains(string(text), "<https://evil.example|click>") {
		t.Fatalf("slack message = %s", text)
	}
}
