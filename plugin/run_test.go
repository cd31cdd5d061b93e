package plugin_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/plugin"
)

// lines collects what the plugin writes and hands each complete line to whoever awaits it.
type lines struct {
	mu      sync.Mutex
	all     bytes.Buffer
	partial string
	ch      chan string
}

func newLines() *lines { return &lines{ch: make(chan string, 4096)} }

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all.Write(p)
	l.partial += string(p)
	for {
		i := strings.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.ch <- l.partial[:i]
		l.partial = l.partial[i+1:]
	}
	return len(p), nil
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all.String()
}

// await returns the first line from now on that contains every one of subs.
func (l *lines) await(ctx context.Context, t *testing.T, subs ...string) string {
	t.Helper()
	for {
		select {
		case line := <-l.ch:
			ok := true
			for _, s := range subs {
				ok = ok && strings.Contains(line, s)
			}
			if ok {
				return line
			}
		case <-ctx.Done():
			t.Fatalf("no line with %q; output so far:\n%s", subs, l.String())
		}
	}
}

type runResult struct {
	code   chan int
	stdout *lines
	stderr *lines
}

// startRun runs `kubectl agentry -n ns run ARGS...` in-process.
func startRun(ctx context.Context, ns, stdin string, args ...string) *runResult {
	r := &runResult{code: make(chan int, 1), stdout: newLines(), stderr: newLines()}
	full := append([]string{"--kubeconfig", env.Kubeconfig, "-n", ns, "run"}, args...)
	go func() { r.code <- plugin.Main(ctx, full, strings.NewReader(stdin), r.stdout, r.stderr) }()
	return r
}

func (r *runResult) wait(ctx context.Context, t *testing.T) int {
	t.Helper()
	select {
	case c := <-r.code:
		return c
	case <-ctx.Done():
		t.Fatalf("the command did not return; stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
		return -1
	}
}

func runSync(ctx context.Context, t *testing.T, ns, stdin string, args ...string) (int, string, string) {
	t.Helper()
	r := startRun(ctx, ns, stdin, args...)
	code := r.wait(ctx, t)
	return code, r.stdout.String(), r.stderr.String()
}

func sessionsIn(ctx context.Context, t *testing.T, ns string) []v1.AgentSession {
	t.Helper()
	var list v1.AgentSessionList
	if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// setStatus writes the session's status as the controller, the gateway and the delivery
// controller would.
func setStatus(ctx context.Context, t *testing.T, ns, name string, mutate func(*v1.AgentSessionStatus)) {
	t.Helper()
	s := &v1.AgentSession{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
		t.Fatal(err)
	}
	mutate(&s.Status)
	if err := env.Client.Status().Update(ctx, s); err != nil {
		t.Fatal(err)
	}
}

func condition(st *v1.AgentSessionStatus, typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg})
}

func ended(phase v1.SessionPhase, reason string) func(*v1.AgentSessionStatus) {
	return func(st *v1.AgentSessionStatus) {
		st.Phase = phase
		status := metav1.ConditionFalse
		if phase == v1.PhaseSucceeded {
			status = metav1.ConditionTrue
		}
		condition(st, v1.ConditionSucceeded, status, reason, "ended "+reason)
		st.Usage = &v1.Usage{PromptTokens: 1000, CompletionTokens: 234, TotalTokens: 1234, ToolCalls: 5}
		st.Result = &v1.SessionResult{Summary: "Fixed the flaky test.\nDetails follow.", FilesChanged: 3, Additions: 40, Deletions: 12}
		st.Transcript = &v1.ArtifactRef{URI: "s3://agentry/ns/x/transcript.jsonl"}
	}
}

func TestRunCreatesTheSessionFromFlags(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns, err := env.CreateNamespace(ctx, "run-flags", nil)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runSync(ctx, t, ns, "",
		"--name", "fix-flaky", "--task", "Fix the flaky test", "--repo", "https://git.example.com/org/app.git", "--ref", "dev",
		"--credentials-secret", "git-creds", "--model", "openai/gpt-4.1", "--approval-bash", "deny",
		"--allow-command", "go test *", "--allow-command", "make lint", "--max-turns", "7", "--max-tokens", "50000",
		"--timeout", "20m", "--image", "golang:1.26", "--pr", "--branch", "agentry/fix", "--base", "main",
		"--pr-title", "Fix: {{.Summary}}", "--pr-body", "By Agentry.", "--draft", "--label", "agentry", "--label", "bot",
		"--git-provider", "github")
	if code != 0 || out != "agentsession.agentry.dev/fix-flaky created\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	got := &v1.AgentSession{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "fix-flaky"}, got); err != nil {
		t.Fatal(err)
	}
	want := v1.AgentSessionSpec{
		Task: "Fix the flaky test",
		Repository: v1.RepositorySpec{URL: "https://git.example.com/org/app.git", Ref: "dev",
			CredentialsSecretRef: &corev1.LocalObjectReference{Name: "git-creds"}},
		Model: v1.ModelSpec{Provider: "openai", Name: "gpt-4.1"},
		Tools: v1.AllTools,
		Approval: v1.ApprovalPolicy{Bash: v1.ApprovalDeny, Writes: v1.ApprovalAllow, AllowCommands: []string{"go test *", "make lint"},
			Timeout: &metav1.Duration{Duration: 10 * time.Minute}, OnTimeout: v1.DecisionDeny},
		Limits:                  v1.Limits{MaxTurns: 7, MaxTokens: 50000, Timeout: &metav1.Duration{Duration: 20 * time.Minute}},
		Runner:                  v1.RunnerSpec{Image: "golang:1.26"},
		TTLSecondsAfterFinished: ptr.To[int32](86400),
		Delivery: &v1.DeliverySpec{GitProvider: "github", PullRequest: &v1.PullRequestDelivery{
			Branch: "agentry/fix", Base: "main", Title: "Fix: {{.Summary}}", Body: "By Agentry.", Draft: true, Labels: []string{"agentry", "bot"}}},
	}
	if diff := cmp.Diff(want, got.Spec); diff != "" {
		t.Errorf("spec (-want +got):\n%s", diff)
	}
}

func TestRunFromManifestWithOverrides(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns, err := env.CreateNamespace(ctx, "run-file", nil)
	if err != nil {
		t.Fatal(err)
	}
	manifest := `
apiVersion: agentry.dev/v1alpha1
kind: AgentSession
metadata: {name: from-file}
spec:
  task: Update the changelog.
  repository: {url: "https://git.example.com/org/app.git", ref: main}
  model: {provider: local, name: small}
  tools: [read_file, edit_file]
  limits: {maxTurns: 5, maxTokens: 1000}
  delivery: {push: {branch: agentry/changelog}}
`
	code, out, errOut := runSync(ctx, t, ns, manifest, "-f", "-", "--max-turns", "9", "--ref", "v2", "--pr", "--base", "release", "--model", "large")
	if code != 0 || !strings.Contains(out, "agentsession.agentry.dev/from-file created") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	got := &v1.AgentSession{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "from-file"}, got); err != nil {
		t.Fatal(err)
	}
	want := v1.AgentSessionSpec{
		Task:       "Update the changelog.",
		Repository: v1.RepositorySpec{URL: "https://git.example.com/org/app.git", Ref: "v2"},
		Model:      v1.ModelSpec{Provider: "local", Name: "large"},
		Tools:      []v1.ToolName{v1.ToolReadFile, v1.ToolEditFile},
		Approval: v1.ApprovalPolicy{Bash: v1.ApprovalAsk, Writes: v1.ApprovalAllow,
			Timeout: &metav1.Duration{Duration: 10 * time.Minute}, OnTimeout: v1.DecisionDeny},
		Limits:                  v1.Limits{MaxTurns: 9, MaxTokens: 1000, Timeout: &metav1.Duration{Duration: 30 * time.Minute}},
		TTLSecondsAfterFinished: ptr.To[int32](86400),
		// --pr switches the manifest's push to a pull request from the same branch.
		Delivery: &v1.DeliverySpec{PullRequest: &v1.PullRequestDelivery{Branch: "agentry/changelog", Base: "release"}},
	}
	if diff := cmp.Diff(want, got.Spec); diff != "" {
		t.Errorf("spec (-want +got):\n%s", diff)
	}

	// A misspelt field is refused before anything reaches the apiserver.
	file := filepath.Join(t.TempDir(), "typo.yaml")
	if err := os.WriteFile(file, []byte(strings.Replace(manifest, "maxTurns", "maxTurn", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runSync(ctx, t, ns, "", "-f", file, "--name", "typo"); code != plugin.ExitUsage || !strings.Contains(errOut, "maxTurn") {
		t.Errorf("a manifest with an unknown field: exit %d, stderr %q; want 2 naming the field", code, errOut)
	}
}

func TestRunDryRunCreatesNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns, err := env.CreateNamespace(ctx, "run-dry", nil)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runSync(ctx, t, ns, "Add a README badge.\n",
		"--task-file", "-", "--repo", "https://git.example.com/org/app.git", "--push", "--dry-run")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	got := &v1.AgentSession{}
	if err := yaml.UnmarshalStrict([]byte(out), got); err != nil {
		t.Fatalf("--dry-run printed no AgentSession: %v\n%s", err, out)
	}
	want := &v1.AgentSession{
		TypeMeta:   metav1.TypeMeta{APIVersion: "agentry.dev/v1alpha1", Kind: "AgentSession"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: "run-", Namespace: ns},
		Spec: v1.AgentSessionSpec{Task: "Add a README badge.", Repository: v1.RepositorySpec{URL: "https://git.example.com/org/app.git"},
			Delivery: &v1.DeliverySpec{Push: &v1.PushDelivery{}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("printed manifest (-want +got):\n%s", diff)
	}
	if strings.Contains(out, "status") || strings.Contains(out, "creationTimestamp") {
		t.Errorf("the manifest carries empty fields:\n%s", out)
	}
	if n := len(sessionsIn(ctx, t, ns)); n != 0 {
		t.Errorf("--dry-run created %d sessions", n)
	}
}

func TestRunFlagErrorsExit2AndNameTheFlag(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns, err := env.CreateNamespace(ctx, "run-usage", nil)
	if err != nil {
		t.Fatal(err)
	}
	base := []string{"--task", "t", "--repo", "https://git.example.com/a.git"}
	cases := map[string]struct {
		args []string
		want string
	}{
		"bad approval mode":         {append(base, "--approval-bash", "Maybe"), "--approval-bash"},
		"not a number":              {append(base, "--max-turns", "many"), `"--max-turns"`},
		"not a duration":            {append(base, "--timeout", "soon"), `"--timeout"`},
		"unknown flag":              {append(base, "--turns", "3"), "--turns"},
		"pr and push":               {append(base, "--pr", "--push"), "--pr or --push"},
		"base without pr":           {append(base, "--base", "main"), "--base needs --pr"},
		"label with push":           {append(base, "--push", "--label", "x"), "--label needs --pr"},
		"branch without delivery":   {append(base, "--branch", "b"), "--branch needs --pr or --push"},
		"wait timeout without wait": {append(base, "--wait-timeout", "1m"), "--wait-timeout needs --wait"},
		"no repository":             {[]string{"--task", "t"}, "--repo"},
		"no task":                   {[]string{"--repo", "https://git.example.com/a.git"}, "--task"},
		"task twice":                {append(base, "--task-file", "-"), "--task or --task-file"},
		"model without a name":      {append(base, "--model", "openai/"), "--model"},
		"an argument":               {append(base, "fix it"), "--task"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := runSync(ctx, t, ns, "", tc.args...)
			if code != plugin.ExitUsage || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d naming %s (stdout %q)", code, errOut, plugin.ExitUsage, tc.want, out)
			}
		})
	}
	if n := len(sessionsIn(ctx, t, ns)); n != 0 {
		t.Errorf("refused commands created %d sessions", n)
	}
}

func TestRunInvalidManifestIsRefusedByTheAPIServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns, err := env.CreateNamespace(ctx, "run-invalid", nil)
	if err != nil {
		t.Fatal(err)
	}
	manifest := `{"apiVersion": "agentry.dev/v1alpha1", "kind": "AgentSession",
	  "spec": {"task": "   ", "repository": {"url": "https://git.example.com/a.git"}}}`
	code, out, errOut := runSync(ctx, t, ns, manifest, "-f", "-", "--wait")
	if code != plugin.ExitUsage || !strings.Contains(errOut, "spec.task") || !strings.Contains(errOut, "task must not be blank") {
		t.Errorf("exit %d, stderr %q; want 2 with the apiserver's message naming spec.task (stdout %q)", code, errOut, out)
	}
	if n := len(sessionsIn(ctx, t, ns)); n != 0 {
		t.Errorf("an invalid manifest was stored (%d sessions)", n)
	}
}

// Each outcome of the exit-code table: the test writes the session's status as the controller
// would and checks what `run --wait` exits with.
func TestRunWaitExitsWithTheOutcome(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns, err := env.CreateNamespace(ctx, "run-exit", nil)
	if err != nil {
		t.Fatal(err)
	}
	delivered := func(status metav1.ConditionStatus, reason string) func(*v1.AgentSessionStatus) {
		return func(st *v1.AgentSessionStatus) {
			ended(v1.PhaseSucceeded, v1.ReasonCompleted)(st)
			condition(st, v1.ConditionDelivered, status, reason, "delivery "+reason)
		}
	}
	cases := map[string]struct {
		pr     bool
		status func(*v1.AgentSessionStatus)
		want   int
		output string
	}{
		"succeeded":       {status: ended(v1.PhaseSucceeded, v1.ReasonCompleted), want: plugin.ExitSucceeded, output: "Succeeded (Completed)"},
		"limit reached":   {status: ended(v1.PhaseFailed, v1.ReasonLimitReached), want: plugin.ExitLimitReached, output: "Failed (LimitReached)"},
		"budget exceeded": {status: ended(v1.PhaseFailed, v1.ReasonBudgetExceeded), want: plugin.ExitBudgetExceeded, output: "BudgetExceeded"},
		"cancelled":       {status: ended(v1.PhaseCancelled, v1.ReasonCancelled), want: plugin.ExitCancelled, output: "Cancelled"},
		"timeout":         {status: ended(v1.PhaseFailed, v1.ReasonTimeout), want: plugin.ExitTimeout, output: "Failed (Timeout)"},
		"provider error":  {status: ended(v1.PhaseFailed, v1.ReasonProviderError), want: plugin.ExitProviderError, output: "ProviderError"},
		"pod failed":      {status: ended(v1.PhaseFailed, v1.ReasonPodFailed), want: plugin.ExitFailed, output: "Failed (PodFailed)"},
		"delivery conflict": {pr: true, status: delivered(metav1.ConditionFalse, v1.ReasonConflict),
			want: plugin.ExitDeliveryFailed, output: "Conflict: delivery Conflict"},
		"no changes to deliver": {pr: true, status: delivered(metav1.ConditionFalse, v1.ReasonNoChanges),
			want: plugin.ExitSucceeded, output: "NoChanges"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			session := strings.ReplaceAll(name, " ", "-")
			args := []string{"--name", session, "--task", "t", "--repo", "https://git.example.com/a.git", "--wait"}
			if tc.pr {
				args = append(args, "--pr")
			}
			r := startRun(ctx, ns, "", args...)
			r.stdout.await(ctx, t, "agentsession.agentry.dev/"+session+" created")
			setStatus(ctx, t, ns, session, tc.status)
			if code := r.wait(ctx, t); code != tc.want {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.want, r.stdout, r.stderr)
			}
			out := r.stdout.String()
			for _, s := range []string{tc.output, "1234 (prompt 1000, completion 234)", "3 changed, +40 -12", "s3://agentry/ns/x/transcript.jsonl", "Fixed the flaky test."} {
				if !strings.Contains(out, s) {
					t.Errorf("summary lacks %q:\n%s", s, out)
				}
			}
		})
	}
}

// With delivery requested, a Succeeded session is not the end: run waits until Delivered is
// True or False, and shows the pull request.
func TestRunWaitsForDeliveryAndShowsProgress(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns, err := env.CreateNamespace(ctx, "run-deliver", nil)
	if err != nil {
		t.Fatal(err)
	}
	r := startRun(ctx, ns, "", "--name", "pr", "--task", "t", "--repo", "https://git.example.com/a.git", "--pr", "--wait")
	r.stdout.await(ctx, t, "agentsession.agentry.dev/pr created")

	setStatus(ctx, t, ns, "pr", func(st *v1.AgentSessionStatus) {
		st.Phase = v1.PhaseWaitingForApproval
		st.Progress = &v1.Progress{Turn: 3, LastTool: "bash", Message: "asking to run go test"}
		st.Usage = &v1.Usage{TotalTokens: 4321}
		st.PendingApprovals = []v1.PendingApproval{{ID: "ap-1", Tool: "bash", Summary: "go test ./...\x1b[2K", Digest: digest1}}
	})
	r.stderr.await(ctx, t, "pr: WaitingForApproval, turn 3, 4321 tokens, last tool bash: asking to run go test")
	r.stderr.await(ctx, t, `waiting for approval ap-1: bash: go test ./...\x1b[2K`)
	r.stderr.await(ctx, t, "kubectl agentry approve pr ap-1 -n "+ns)

	setStatus(ctx, t, ns, "pr", func(st *v1.AgentSessionStatus) {
		st.PendingApprovals = nil
		ended(v1.PhaseSucceeded, v1.ReasonCompleted)(st)
		condition(st, v1.ConditionDelivered, metav1.ConditionUnknown, v1.ReasonDelivering, "pushing")
	})
	r.stderr.await(ctx, t, "Succeeded", "delivery: Unknown Delivering")
	select {
	case code := <-r.code:
		t.Fatalf("run returned %d on Succeeded while Delivered is Unknown", code)
	default:
	}

	setStatus(ctx, t, ns, "pr", func(st *v1.AgentSessionStatus) {
		condition(st, v1.ConditionDelivered, metav1.ConditionTrue, v1.ReasonDelivered, "opened")
		st.Delivery = &v1.DeliveryStatus{Branch: "agentry/pr", CommitSHA: "0123abc", PullRequestURL: "https://git.example.com/a/pull/7", PullRequestNumber: 7}
	})
	if code := r.wait(ctx, t); code != plugin.ExitSucceeded {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, r.stdout, r.stderr)
	}
	if out := r.stdout.String(); !strings.Contains(out, "pull request https://git.example.com/a/pull/7; branch agentry/pr at 0123abc") {
		t.Errorf("the summary does not show the pull request:\n%s", out)
	}
	if strings.Contains(r.stderr.String(), "\x1b") {
		t.Errorf("the agent's control characters reached the terminal:\n%q", r.stderr)
	}
}

func TestRunWaitTimeoutLeavesTheSessionRunning(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns, err := env.CreateNamespace(ctx, "run-waittimeout", nil)
	if err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runSync(ctx, t, ns, "", "--name", "slow", "--task", "t", "--repo", "https://git.example.com/a.git", "--wait", "--wait-timeout", "500ms")
	if code != plugin.ExitWaitTimeout || !strings.Contains(errOut, "left running") || !strings.Contains(errOut, "kubectl agentry cancel slow -n "+ns) {
		t.Errorf("exit %d, stderr %q; want %d saying the session is left running", code, errOut, plugin.ExitWaitTimeout)
	}
	if n := len(sessionsIn(ctx, t, ns)); n != 1 {
		t.Errorf("%d sessions after the wait timed out, want the one left running", n)
	}
}

// Without the runner's log (here no kubelet: the pod does not exist) --follow prints the
// progress the status carries.
func TestRunFollowFallsBackToStatusProgress(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns, err := env.CreateNamespace(ctx, "run-follow", nil)
	if err != nil {
		t.Fatal(err)
	}
	r := startRun(ctx, ns, "", "--name", "f", "--task", "t", "--repo", "https://git.example.com/a.git", "--follow")
	r.stdout.await(ctx, t, "agentsession.agentry.dev/f created")
	setStatus(ctx, t, ns, "f", func(st *v1.AgentSessionStatus) {
		st.Phase, st.PodName = v1.PhaseRunning, "f-runner"
		st.Progress = &v1.Progress{Turn: 1, LastTool: "read_file", Message: "reading main.go"}
	})
	r.stderr.await(ctx, t, "the runner's log is not available")
	r.stderr.await(ctx, t, "f: Running, turn 1, last tool read_file: reading main.go")
	setStatus(ctx, t, ns, "f", func(st *v1.AgentSessionStatus) {
		st.Progress = &v1.Progress{Turn: 2, LastTool: "edit_file", Message: "editing main.go"}
	})
	r.stderr.await(ctx, t, "f: Running, turn 2, last tool edit_file: editing main.go")
	setStatus(ctx, t, ns, "f", ended(v1.PhaseSucceeded, v1.ReasonCompleted))
	if code := r.wait(ctx, t); code != plugin.ExitSucceeded {
		t.Fatalf("exit %d\nstderr:\n%s", code, r.stderr)
	}
}
