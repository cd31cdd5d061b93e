package plugin_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/plugin"
	"github.com/agentry-dev/agentry/test/controlplane"
	"github.com/agentry-dev/agentry/test/testutil"
)

// agentry runs `kubectl agentry ARGS...` in-process against the test apiserver.
func agentry(ctx context.Context, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := plugin.Main(ctx, append([]string{"--kubeconfig", env.Kubeconfig}, args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestEveryVerbHasAnExample(t *testing.T) {
	for _, c := range plugin.New(os.Stdout).Commands() {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("%s --help has no Example", c.Name())
		}
		code, out, _ := agentry(context.Background(), c.Name(), "--help")
		if code != 0 || !strings.Contains(out, "Examples:") || !strings.Contains(out, "kubectl agentry "+c.Name()) {
			t.Errorf("%s --help (exit %d) shows no example:\n%s", c.Name(), code, out)
		}
		if c.Name() != "run" && c.ValidArgsFunction == nil {
			t.Errorf("%s does not complete session names", c.Name())
		}
	}
}

// TestCompletionListsTheNamespacesSessions drives cobra's hidden completion command, what
// the shell's completion script calls.
func TestCompletionListsTheNamespacesSessions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns, err := env.CreateNamespace(ctx, "complete", nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := env.CreateNamespace(ctx, "complete-other", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*v1.AgentSession{testutil.Session("fix-flaky", ns).Obj(), testutil.Session("bump-deps", ns).Obj(), testutil.Session("elsewhere", other).Obj()} {
		if err := env.Client.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	s := testutil.Session("waiting", ns).Obj()
	if err := env.Client.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	s.Status.PendingApprovals = []v1.PendingApproval{{ID: "ap-7", Tool: "bash", Summary: "make\x1b[2K test", Digest: digest1}}
	if err := env.Client.Status().Update(ctx, s); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := agentry(ctx, "__complete", "approve", "-n", ns, "")
	if code != 0 {
		t.Fatalf("__complete approve: exit %d\n%s", code, errOut)
	}
	got := strings.Fields(out)
	for _, want := range []string{"fix-flaky", "bump-deps", "waiting", ":4"} {
		if !strings.Contains(" "+strings.Join(got, " ")+" ", " "+want+" ") {
			t.Errorf("__complete approve lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "elsewhere") {
		t.Errorf("__complete approve offers another namespace's session:\n%s", out)
	}
	if _, out, _ := agentry(ctx, "__complete", "logs", "-n", ns, "fix"); !strings.Contains(out, "fix-flaky") || strings.Contains(out, "bump-deps") {
		t.Errorf("__complete logs fix:\n%s", out)
	}
	_, out, _ = agentry(ctx, "__complete", "approve", "-n", ns, "waiting", "")
	if !strings.Contains(out, "ap-7\tbash: make\\x1b[2K test") || strings.Contains(out, "\x1b") {
		t.Errorf("__complete approve waiting: want ap-7 with its escaped action:\n%q", out)
	}
}

// TestConnectionFlagsReachTheAPIServer: --as impersonates as kubectl does; the apiserver's
// refusal is shown as it said it, with exit 1.
func TestConnectionFlagsReachTheAPIServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns, err := env.CreateNamespace(ctx, "flags", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(ctx, testutil.Session("fix", ns).Obj()); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"pending"},
		{"cancel", "fix"},
		{"share", "fix"},
		{"logs", "fix"},
	} {
		code, _, errOut := agentry(ctx, append([]string{"-n", ns, "--as", "mallory", "--as-group", "devs"}, args...)...)
		if code != 1 || !strings.Contains(errOut, `User "mallory" cannot`) || !strings.Contains(errOut, "forbidden") {
			t.Errorf("%v as mallory: exit %d, want 1 and the apiserver's Forbidden:\n%s", args, code, errOut)
		}
	}
	if code, out, errOut := agentry(ctx, "-n", ns, "pending"); code != 0 || !strings.Contains(out, "No pending approvals.") {
		t.Errorf("pending as the admin: exit %d\n%s%s", code, out, errOut)
	}
	// --server and --request-timeout are kubectl's: a wrong server is an error naming it.
	code, _, errOut := agentry(ctx, "-n", ns, "--server", "https://127.0.0.1:1", "--request-timeout", "5s", "pending")
	if code != 1 || !strings.Contains(errOut, "127.0.0.1:1") {
		t.Errorf("pending against a closed port: exit %d\n%s", code, errOut)
	}
}

// TestThroughKubectl installs the plugin where kubectl looks for plugins and runs it through
// the real kubectl with an explicit --kubeconfig, as a user would.
func TestThroughKubectl(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := t.TempDir()
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(bin, "kubectl-agentry"), "./cmd/kubectl-agentry")
	build.Dir = controlplane.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the plugin: %v\n%s", err, out)
	}
	ns, err := env.CreateNamespace(ctx, "kubectl", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := testutil.Session("fix", ns).Obj()
	if err := env.Client.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	s.Status.PendingApprovals = []v1.PendingApproval{{ID: "ap-1", Tool: "bash", Summary: "go test ./...", Digest: digest1}}
	if err := env.Client.Status().Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	kubectl := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "kubectl", args...)
		// No KUBECONFIG: the plugin must take the cluster from --kubeconfig.
		cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "KUBECONFIG=/nonexistent")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := kubectl("plugin", "list")
	if err != nil || !strings.Contains(out, filepath.Join(bin, "kubectl-agentry")) {
		t.Fatalf("kubectl plugin list does not show the plugin: %v\n%s", err, out)
	}
	out, err = kubectl("agentry", "pending", "-n", ns, "--kubeconfig", env.Kubeconfig)
	if err != nil || !strings.Contains(out, "SESSION") || !strings.Contains(out, "fix") || !strings.Contains(out, "ap-1") || !strings.Contains(out, "go test ./...") {
		t.Fatalf("kubectl agentry pending: %v\n%s", err, out)
	}
	// Every verb answers through kubectl: its help with an example, its completion.
	for _, verb := range []string{"run", "logs", "transcript", "diff", "apply", "share", "console", "pending", "approve", "deny", "cancel"} {
		out, err := kubectl("agentry", verb, "--help")
		if err != nil || !strings.Contains(out, "kubectl agentry "+verb) || !strings.Contains(out, "Examples:") || !strings.Contains(out, "--kubeconfig") {
			t.Errorf("kubectl agentry %s --help: %v\n%s", verb, err, out)
		}
	}
	out, err = kubectl("agentry", "__complete", "cancel", "-n", ns, "--kubeconfig", env.Kubeconfig, "")
	if err != nil || !strings.Contains(out, "fix") {
		t.Fatalf("completion through kubectl: %v\n%s", err, out)
	}
	// A verb's real work through kubectl: cancel the session.
	if out, err := kubectl("agentry", "cancel", "fix", "-n", ns, "--kubeconfig", env.Kubeconfig); err != nil || !strings.Contains(out, "cancel requested") {
		t.Fatalf("kubectl agentry cancel: %v\n%s", err, out)
	}
}
