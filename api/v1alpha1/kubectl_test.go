package v1alpha1_test

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/test/controlplane"
)

// TestSamplesApply applies every sample in config/samples with the real kubectl, as a user
// following the docs would, and checks each one is stored.
func TestSamplesApply(t *testing.T) {
	ctx := testContext(t)
	ns := namespace(t, ctx)
	files, err := filepath.Glob(filepath.Join(controlplane.RepoRoot(), "config", "samples", "agentry_*.yaml"))
	if err != nil || len(files) < 5 {
		t.Fatalf("found %d samples (%v); want at least 5", len(files), err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			out, errOut, err := env.Kubectl(ctx, nil, "apply", "--server-side", "--field-manager=samples-test", "-n", ns, "-f", f)
			if err != nil {
				t.Fatalf("kubectl apply -f %s: %v\n%s%s", f, err, out, errOut)
			}
			if !strings.Contains(out, "serverside-applied") {
				t.Fatalf("kubectl apply printed %q", out)
			}
		})
	}
	var list v1.AgentSessionList
	if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 3 {
		t.Fatalf("%d sessions stored, want 3", len(list.Items))
	}
}

// TestKubectlExplain checks that the field documentation reaches `kubectl explain`.
func TestKubectlExplain(t *testing.T) {
	ctx := testContext(t)
	out, errOut, err := env.Kubectl(ctx, nil, "explain", "agentsession.spec.limits")
	if err != nil {
		t.Fatalf("kubectl explain: %v\n%s", err, errOut)
	}
	for _, want := range []string{
		"limits bound the session's turns, tokens and wall-clock time",
		"maxTurns",
		"caps the model round trips",
		"maxTokens",
		"timeout",
		"caps the session's wall-clock time",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl explain agentsession.spec.limits lacks %q:\n%s", want, out)
		}
	}
	out, _, err = env.Kubectl(ctx, nil, "explain", "modelprovider.spec.apiKeySecretRef")
	if err != nil || !strings.Contains(out, "runner pods never see it") {
		t.Errorf("kubectl explain modelprovider.spec.apiKeySecretRef: %v\n%s", err, out)
	}
}

// TestKubectlGetColumns checks the printer columns a user sees, narrow and wide, with
// values coming from status.
func TestKubectlGetColumns(t *testing.T) {
	ctx := testContext(t)
	ns := namespace(t, ctx)
	manifest := strings.Replace(sessionHeader, "name: bad", "name: columns", 1) + validSpec
	if out, errOut, err := env.Kubectl(ctx, []byte(manifest), "apply", "-n", ns, "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s%s", err, out, errOut)
	}
	s := &v1.AgentSession{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "columns"}, s); err != nil {
		t.Fatal(err)
	}
	s.Status.Phase = v1.PhaseRunning
	s.Status.PodName = "columns-runner"
	s.Status.Progress = &v1.Progress{Turn: 12, LastTool: "bash"}
	s.Status.Usage = &v1.Usage{PromptTokens: 40000, CompletionTokens: 2345, TotalTokens: 42345}
	if err := env.Client.Status().Update(ctx, s); err != nil {
		t.Fatal(err)
	}

	out, errOut, err := env.Kubectl(ctx, nil, "get", "agentsessions", "-n", ns)
	if err != nil {
		t.Fatalf("kubectl get: %v\n%s", err, errOut)
	}
	if !regexp.MustCompile(`(?m)^NAME\s+PHASE\s+TURN\s+TOKENS\s+AGE\s*$`).MatchString(out) {
		t.Fatalf("unexpected header:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^columns\s+Running\s+12\s+42345\s+\S+\s*$`).MatchString(out) {
		t.Fatalf("row does not show status values:\n%s", out)
	}

	out, _, err = env.Kubectl(ctx, nil, "get", "as", "-n", ns, "-o", "wide")
	if err != nil {
		t.Fatalf("kubectl get as -o wide: %v", err)
	}
	for _, want := range []string{"REASON", "MODEL", "POD", "LAST-TOOL", "REPOSITORY", "columns-runner", "bash", "https://git.example.com/org/repo.git"} {
		if !strings.Contains(out, want) {
			t.Errorf("wide output lacks %q:\n%s", want, out)
		}
	}
}
