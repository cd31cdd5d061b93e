package controllers

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner/cli"
	"github.com/agentry-dev/agentry/test/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata from what the code builds")

// goldenSession is a session using every part of the spec the runner pod reflects: a
// private repository at a ref, setup with a Secret, MCP servers, model settings, approval
// rules, limits, resources and scheduling, and egress rules.
func goldenSession() (*v1.AgentSession, podSettings) {
	s := testutil.Session("fix-flaky-test", "team-a").UID("0b8a7c1e-5f2d-4c39-9a61-2f0d3e4b5a6c").
		Repo("https://git.example.com/org/repo.git").Ref("main").Credentials("git-creds").
		Task("Fix the flaky test in ./pkg/cache.").Timeout(45*time.Minute).Image("golang:1.26").
		Tools(v1.ToolReadFile, v1.ToolWriteFile, v1.ToolEditFile, v1.ToolBash, v1.ToolGitDiff).
		Egress(v1.EgressRule{Host: "proxy.golang.org", Ports: []int32{443}}).Obj()
	s.Spec.Model = v1.ModelSpec{Provider: "openai", Name: "gpt-4.1", Temperature: "0.2", MaxOutputTokens: ptr.To[int32](8192)}
	s.Spec.Approval = v1.ApprovalPolicy{
		Bash: v1.ApprovalAsk, Writes: v1.ApprovalAllow,
		AllowCommands: []string{"go test *"}, DenyCommands: []string{"git push *"},
		Timeout: &metav1.Duration{Duration: 15 * time.Minute}, OnTimeout: v1.DecisionDeny,
	}
	s.Spec.Limits.MaxTurns, s.Spec.Limits.MaxTokens = 80, 3_000_000
	s.Spec.Runner.Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("2Gi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("6Gi")},
	}
	s.Spec.Runner.RuntimeClassName = ptr.To("gvisor")
	s.Spec.Runner.NodeSelector = map[string]string{"agentry.dev/pool": "agents"}
	s.Spec.Runner.Tolerations = []corev1.Toleration{{Key: "agents", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
	s.Spec.Setup = &v1.SetupSpec{
		Commands: []string{"go mod download", "make generate"},
		Env:      []v1.SetupEnvVar{{Name: "GOPROXY_TOKEN", SecretKeyRef: v1.SecretKeySelector{Name: "proxy", Key: "token"}}},
		Timeout:  &metav1.Duration{Duration: 5 * time.Minute},
	}
	s.Spec.MCPServers = []v1.MCPServerReference{{Name: "issues"}, {Name: "docs"}}
	s.Spec.Instructions = "Run go vet before finishing."

	settings, msg := resolvePodSettings(s, nil)
	if msg != "" {
		panic(msg)
	}
	// What the reconciler resolves at admission: the instructions and the model's window.
	settings.instructions = []contract.Instruction{
		{Source: "AgentPolicy team-a/defaults", Text: "Never commit secrets."},
		{Source: "spec.instructions", Text: s.Spec.Instructions},
	}
	settings.contextWindow = 128_000
	return s, settings
}

// The whole runner pod of a representative session, and so the runner's command lines, is
// pinned by a golden file: a change to the pod shows as a diff to review. Regenerate with
// go test ./controllers -run TestRunnerPodGolden -update.
func TestRunnerPodGolden(t *testing.T) {
	s, settings := goldenSession()
	got, err := yaml.Marshal(buildRunnerPod(s, testRunnerConfig, settings))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "runner-pod.golden.yaml")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("runner pod differs from %s (-want +got); if the change is intended, run with -update and review the diff:\n%s", path, diff)
	}
}

// Every command line the pod builder writes is one the runner accepts: its subcommands and
// flags exist and the values parse. --help makes the runner stop after parsing.
func TestRunnerAcceptsThePodsCommandLines(t *testing.T) {
	s, settings := goldenSession()
	s.Status.ContinuedFrom = &v1.ContinuationStatus{Session: "first", UID: "u", Commit: "4b825dc642cb6eb9a060e54bf8d69288fbee4904"}
	plain := testRunnerConfig
	plain.GatewayCAConfigMap = ""
	plainSettings := settings
	plainSettings.plainHTTPGateway = true
	pods := map[string]*corev1.Pod{
		"HTTPS gateway":      buildRunnerPod(s, testRunnerConfig, settings),
		"plain HTTP gateway": buildRunnerPod(s, plain, plainSettings),
	}
	for name, pod := range pods {
		for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
			if c.Name == contract.ContainerInstall {
				continue // cp, not the runner
			}
			var out, errb bytes.Buffer
			code := cli.Run(context.Background(), append(append([]string{}, c.Args...), "--help"), cli.IO{In: &bytes.Buffer{}, Out: &out, Err: &errb})
			if code != int(contract.ExitOK) {
				t.Errorf("%s: container %s: the runner refuses %q (exit %d): %s", name, c.Name, c.Args, code, errb.String())
			}
		}
	}
}
