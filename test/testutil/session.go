// Package testutil builds test objects with a fluent, readable syntax:
//
//	testutil.Session("s", "ns").Repo(u).Timeout(d).Obj()
package testutil

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

// SessionBuilder builds an AgentSession with the defaults the apiserver would apply.
type SessionBuilder struct{ s v1.AgentSession }

// Session starts a valid session named name in namespace ns.
func Session(name, ns string) *SessionBuilder {
	return &SessionBuilder{s: v1.AgentSession{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1.AgentSessionSpec{
			Task:       "Make TestFoo deterministic.",
			Repository: v1.RepositorySpec{URL: "https://git.example.com/org/repo.git", Ref: "main"},
			Model:      v1.ModelSpec{Provider: "default", Name: "gpt-4.1"},
			Tools:      append([]v1.ToolName(nil), v1.AllTools...),
			Approval: v1.ApprovalPolicy{
				Bash: v1.ApprovalAsk, Writes: v1.ApprovalAllow, OnTimeout: v1.DecisionDeny,
				Timeout: &metav1.Duration{Duration: 10 * time.Minute},
			},
			Limits:                  v1.Limits{MaxTurns: 60, MaxTokens: 2000000, Timeout: &metav1.Duration{Duration: 30 * time.Minute}},
			TTLSecondsAfterFinished: ptr.To[int32](86400),
		},
	}}
}

// Repo sets the repository URL.
func (b *SessionBuilder) Repo(url string) *SessionBuilder { b.s.Spec.Repository.URL = url; return b }

// Ref sets the repository ref.
func (b *SessionBuilder) Ref(ref string) *SessionBuilder { b.s.Spec.Repository.Ref = ref; return b }

// Credentials sets the git credentials Secret.
func (b *SessionBuilder) Credentials(secret string) *SessionBuilder {
	b.s.Spec.Repository.CredentialsSecretRef = &corev1.LocalObjectReference{Name: secret}
	return b
}

// Task sets the task.
func (b *SessionBuilder) Task(t string) *SessionBuilder { b.s.Spec.Task = t; return b }

// Timeout sets limits.timeout.
func (b *SessionBuilder) Timeout(d time.Duration) *SessionBuilder {
	b.s.Spec.Limits.Timeout = &metav1.Duration{Duration: d}
	return b
}

// TTL sets ttlSecondsAfterFinished.
func (b *SessionBuilder) TTL(seconds int32) *SessionBuilder {
	b.s.Spec.TTLSecondsAfterFinished = ptr.To(seconds)
	return b
}

// Image sets the toolchain image.
func (b *SessionBuilder) Image(img string) *SessionBuilder { b.s.Spec.Runner.Image = img; return b }

// Tools sets the tool list.
func (b *SessionBuilder) Tools(t ...v1.ToolName) *SessionBuilder { b.s.Spec.Tools = t; return b }

// Egress adds an egress rule.
func (b *SessionBuilder) Egress(r v1.EgressRule) *SessionBuilder {
	b.s.Spec.Network.Egress = append(b.s.Spec.Network.Egress, r)
	return b
}

// UID sets the UID (for pure tests; the apiserver assigns it otherwise).
func (b *SessionBuilder) UID(uid string) *SessionBuilder { b.s.UID = types.UID(uid); return b }

// Obj returns the session.
func (b *SessionBuilder) Obj() *v1.AgentSession { return b.s.DeepCopy() }
