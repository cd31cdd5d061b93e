package controllers

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/test/testutil"
)

func TestAdmitSession(t *testing.T) {
	provider := &v1.ModelProvider{ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Spec: v1.ModelProviderSpec{DefaultModel: "gpt-4.1", Models: []string{"gpt-4.1", "o4-mini"}}}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	session := func(name string, age time.Duration, podName string, phase v1.SessionPhase) v1.AgentSession {
		s := testutil.Session(name, "ns").UID("uid-" + name).Obj()
		s.CreationTimestamp = metav1.NewTime(base.Add(-age))
		s.Status.PodName, s.Status.Phase = podName, phase
		return *s
	}
	policy := func(mutate func(*v1.AgentPolicySpec)) []v1.AgentPolicy {
		p := v1.AgentPolicy{ObjectMeta: metav1.ObjectMeta{Name: "team"}}
		mutate(&p.Spec)
		return []v1.AgentPolicy{p}
	}

	cases := map[string]struct {
		session     *v1.AgentSession
		provider    *v1.ModelProvider
		policies    []v1.AgentPolicy
		siblings    []v1.AgentSession
		want        verdict
		wantModel   string
		wantMessage string
	}{
		"no provider yet": {
			session: testutil.Session("s", "ns").Obj(), provider: nil,
			want: wait, wantMessage: `ModelProvider "default" does not exist`,
		},
		"provider default model": {
			session:  func() *v1.AgentSession { s := testutil.Session("s", "ns").Obj(); s.Spec.Model.Name = ""; return s }(),
			provider: provider, want: admit, wantModel: "gpt-4.1",
		},
		"model the provider does not offer": {
			session:  func() *v1.AgentSession { s := testutil.Session("s", "ns").Obj(); s.Spec.Model.Name = "gpt-9"; return s }(),
			provider: provider, want: reject, wantMessage: `does not offer model "gpt-9"`,
		},
		"image outside the allowed prefixes": {
			session: testutil.Session("s", "ns").Image("evil.example/miner:latest").Obj(), provider: provider,
			policies: policy(func(p *v1.AgentPolicySpec) { p.AllowedImages = []string{"registry.example/toolchains/"} }),
			want:     reject, wantMessage: `spec.runner.image "evil.example/miner:latest" is not allowed`,
		},
		"image inside the allowed prefixes": {
			session: testutil.Session("s", "ns").Image("registry.example/toolchains/go:1.26").Obj(), provider: provider,
			policies: policy(func(p *v1.AgentPolicySpec) { p.AllowedImages = []string{"registry.example/toolchains/"} }),
			want:     admit, wantModel: "gpt-4.1",
		},
		"runtime class required": {
			session: testutil.Session("s", "ns").Obj(), provider: provider,
			policies: policy(func(p *v1.AgentPolicySpec) { p.RequiredRuntimeClassName = "gvisor" }),
			want:     reject, wantMessage: `spec.runner.runtimeClassName must be "gvisor"`,
		},
		"turn cap": {
			session: testutil.Session("s", "ns").Obj(), provider: provider,
			policies: policy(func(p *v1.AgentPolicySpec) { p.MaxLimits = &v1.LimitCaps{MaxTurns: ptr.To[int32](10)} }),
			want:     reject, wantMessage: "spec.limits.maxTurns 60 exceeds the cap of 10",
		},
		"egress not in the policy": {
			session: testutil.Session("s", "ns").Egress(v1.EgressRule{Host: "pastebin.example"}).Obj(), provider: provider,
			policies: policy(func(p *v1.AgentPolicySpec) { p.Egress = []v1.EgressRule{{Host: "pkg.go.dev"}} }),
			want:     reject, wantMessage: "spec.network.egress[0] (pastebin.example)",
		},
		"model not allowed by policy": {
			session: testutil.Session("s", "ns").Obj(), provider: provider,
			policies: policy(func(p *v1.AgentPolicySpec) { p.AllowedModels = []string{"o4-mini"} }),
			want:     reject, wantMessage: `model "gpt-4.1" is not allowed`,
		},
		"under the concurrency limit": {
			session: ptr.To(session("new", 0, "", "")), provider: provider,
			policies: policy(func(p *v1.AgentPolicySpec) { p.MaxConcurrentSessions = ptr.To[int32](2) }),
			siblings: []v1.AgentSession{session("a", time.Hour, "a-runner", v1.PhaseRunning), session("done", time.Hour, "done-runner", v1.PhaseSucceeded)},
			want:     admit, wantModel: "gpt-4.1",
		},
		"at the concurrency limit": {
			session: ptr.To(session("new", 0, "", "")), provider: provider,
			policies: policy(func(p *v1.AgentPolicySpec) { p.MaxConcurrentSessions = ptr.To[int32](2) }),
			siblings: []v1.AgentSession{session("a", time.Hour, "a-runner", v1.PhaseRunning), session("b", time.Hour, "b-runner", v1.PhasePending)},
			want:     queue, wantMessage: "2 of 2 sessions running",
		},
		"an older session is queued first": {
			session: ptr.To(session("young", time.Minute, "", v1.PhaseQueued)), provider: provider,
			policies: policy(func(p *v1.AgentPolicySpec) { p.MaxConcurrentSessions = ptr.To[int32](1) }),
			siblings: []v1.AgentSession{session("old", time.Hour, "", v1.PhaseQueued)},
			want:     queue, wantMessage: "1 queued ahead",
		},
		"the strictest policy wins": {
			session: ptr.To(session("new", 0, "", "")), provider: provider,
			policies: append(policy(func(p *v1.AgentPolicySpec) { p.MaxConcurrentSessions = ptr.To[int32](5) }),
				policy(func(p *v1.AgentPolicySpec) { p.MaxConcurrentSessions = ptr.To[int32](1) })...),
			siblings: []v1.AgentSession{session("a", time.Hour, "a-runner", v1.PhaseRunning)},
			want:     queue,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			a := admitSession(tc.session, tc.provider, tc.policies, tc.siblings, "agentry/runner:test")
			if a.verdict != tc.want {
				t.Fatalf("verdict = %d (%s), want %d", a.verdict, a.message, tc.want)
			}
			if tc.wantModel != "" && a.model != tc.wantModel {
				t.Errorf("model = %q, want %q", a.model, tc.wantModel)
			}
			if !strings.Contains(a.message, tc.wantMessage) {
				t.Errorf("message %q lacks %q", a.message, tc.wantMessage)
			}
		})
	}
}
