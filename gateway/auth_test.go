package gateway_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/test/scriptedllm"
)

func TestGatewayRefusesWhatIsNotTheSessionsOwnPod(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	f := newFixture(t, scriptedllm.Text("should never be reached"))
	g := startGateway(t)
	a, b := f.session("alpha"), f.session("beta")
	podA := f.runnerPod(a)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: f.ns}}
	if err := env.Client.Create(context.Background(), secret); err != nil {
		t.Fatal(err)
	}
	batch := `{"events":[{"v":1,"seq":1,"time":"2026-01-01T00:00:00Z","type":"error","error":{"message":"x","source":"runner"}}]}`
	chat := `{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}`

	cases := map[string]struct {
		token string
		want  int
	}{
		"no token":           {"", http.StatusUnauthorized},
		"garbage token":      {"not-a-jwt", http.StatusUnauthorized},
		"another audience":   {f.token("https://kubernetes.default.svc", boundTo(podA)), http.StatusUnauthorized},
		"not bound to a pod": {f.token(contract.GatewayAudience, nil), http.StatusForbidden},
		"bound to a Secret":  {f.token(contract.GatewayAudience, &authnv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: secret.Name, UID: secret.UID}), http.StatusForbidden},
		"pod without labels": {f.token(contract.GatewayAudience, boundTo(f.pod("plain", "", nil))), http.StatusForbidden},
		"label A, owner B":   {f.token(contract.GatewayAudience, boundTo(f.pod("forged-label", a.UID, b))), http.StatusForbidden},
		"owner A, label B":   {f.token(contract.GatewayAudience, boundTo(f.pod("forged-owner", b.UID, a))), http.StatusForbidden},
		"label A, no owner":  {f.token(contract.GatewayAudience, boundTo(f.pod("orphan", a.UID, nil))), http.StatusForbidden},
		"owner A, no label":  {f.token(contract.GatewayAudience, boundTo(f.pod("unlabelled", "", a))), http.StatusForbidden},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			for _, p := range []string{contract.PathEvents, contract.PathFinish, contract.PathApprovals, contract.PathChatCompletions} {
				body := batch
				if p == contract.PathChatCompletions {
					body = chat
				}
				if code, resp := post(t, g.URL+p, tc.token, body); code != tc.want {
					t.Errorf("POST %s = %d %s, want %d", p, code, resp, tc.want)
				}
			}
		})
	}
	if n := len(f.llm.Requests()); n != 0 {
		t.Errorf("the provider was called %d times by refused requests", n)
	}
	if st := f.get(a).Status; st.Progress != nil || f.get(b).Status.Progress != nil {
		t.Errorf("a refused request changed a session's status: %+v", st)
	}

	// A valid token for B's pod acts for B only: there is no way to name A.
	podB := f.runnerPod(b)
	tokB := f.token(contract.GatewayAudience, boundTo(podB))
	if code, resp := post(t, g.URL+contract.PathEvents, tokB, batch); code != http.StatusOK {
		t.Fatalf("B's own pod: %d %s", code, resp)
	}
	eventually(t, 10e9, "B's status to show the event", func() bool { return f.get(b).Status.Progress != nil })
	if f.get(a).Status.Progress != nil {
		t.Error("B's event changed A's status")
	}
	objs := s3c.ListObjects(context.Background(), bucket, minioPrefix("sessions/"+f.ns+"/alpha/"))
	for o := range objs {
		t.Errorf("B's event was stored under A: %s", o.Key)
	}

	// Once B's pod is gone (and a new one with the same name is made), the old token is dead.
	if err := env.Client.Delete(context.Background(), podB); err != nil {
		t.Fatal(err)
	}
	f.pod(podB.Name, b.UID, b)
	g.restart() // drop the gateway's short-lived authentication cache
	if code, resp := post(t, g.URL+contract.PathEvents, tokB, batch); code != http.StatusUnauthorized && code != http.StatusForbidden {
		t.Errorf("token of a deleted pod: %d %s", code, resp)
	} else if !strings.Contains(resp, "error") {
		t.Errorf("refusal without an explanation: %s", resp)
	}
}
