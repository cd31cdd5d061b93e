package plugin

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

// configFunc returns the REST config and the namespace (-n, else the kubeconfig's).
type configFunc func() (*rest.Config, string, error)

// maxInputBytes bounds a manifest or task file read: the apiserver refuses larger objects.
const maxInputBytes = 3 << 20

type runOptions struct {
	task, taskFile, repo, ref, credentialsSecret string
	model, provider                              string
	approvalBash                                 string
	allowCommands                                []string
	maxTurns                                     int32
	maxTokens                                    int64
	timeout                                      time.Duration
	image                                        string

	pr, push                           bool
	branch, base, prTitle, prBody, git string
	draft                              bool
	labels                             []string
	filename, name, generateName       string
	dryRun, wait, follow               bool
	waitTimeout                        time.Duration
}

func runCommand(out io.Writer, config configFunc) *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Create a session; with --wait, wait for its outcome and exit with it (the CI step)",
		Long: `Create an AgentSession from flags, or from a manifest (-f) whose fields the flags given
override. Without --wait it prints the session's name and exits 0. With --wait it prints a
line to stderr whenever the session's state changes, waits until the session ends (and, when
spec.delivery is set, until the Delivered condition is True or False), prints a summary and
exits with a status that says how it ended; --follow also streams the runner's log.

Exit statuses:
` + ExitCodeTable(),
		Example: `  kubectl agentry run --repo https://git.example.com/org/app.git --task "Fix the flaky test in pkg/watch" \
    --model openai/gpt-4.1 --pr --label agentry --wait --wait-timeout 45m
  kubectl agentry run -f session.yaml --max-turns 20 --follow
  kubectl agentry run --repo https://git.example.com/org/app.git --task-file task.md --dry-run`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("run takes no arguments, got %q (give the task with --task or --task-file)", args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd, out, config)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{code: ExitUsage, err: err} })
	f := cmd.Flags()
	f.StringVar(&o.task, "task", "", "the instruction for the agent (spec.task)")
	f.StringVar(&o.taskFile, "task-file", "", "read the task from this file; - reads stdin")
	f.StringVar(&o.repo, "repo", "", "the git repository's clone URL (spec.repository.url)")
	f.StringVar(&o.ref, "ref", "", "branch, tag or commit to check out (spec.repository.ref)")
	f.StringVar(&o.credentialsSecret, "credentials-secret", "", "Secret with git credentials (spec.repository.credentialsSecretRef)")
	f.StringVar(&o.model, "model", "", "the model: PROVIDER/NAME or NAME (spec.model); with --provider, taken whole as the name")
	f.StringVar(&o.provider, "provider", "", "the ModelProvider (spec.model.provider)")
	f.StringVar(&o.approvalBash, "approval-bash", "", "shell commands: Allow, Ask or Deny (spec.approval.bash)")
	f.StringArrayVar(&o.allowCommands, "allow-command", nil, "a command pattern that runs without asking, e.g. 'go test *' (repeatable; spec.approval.allowCommands)")
	f.Int32Var(&o.maxTurns, "max-turns", 0, "cap on model round trips (spec.limits.maxTurns)")
	f.Int64Var(&o.maxTokens, "max-tokens", 0, "cap on prompt plus completion tokens (spec.limits.maxTokens)")
	f.DurationVar(&o.timeout, "timeout", 0, "the session's wall-clock limit, e.g. 30m (spec.limits.timeout)")
	f.StringVar(&o.image, "image", "", "the toolchain image the agent's tools run in (spec.runner.image)")
	f.BoolVar(&o.pr, "pr", false, "deliver the result as a pull request (spec.delivery.pullRequest)")
	f.BoolVar(&o.push, "push", false, "deliver the result by pushing a branch, no pull request (spec.delivery.push)")
	f.StringVar(&o.branch, "branch", "", "with --pr or --push: the branch to push (default agentry/<session>)")
	f.StringVar(&o.base, "base", "", "with --pr: the branch the pull request targets")
	f.StringVar(&o.prTitle, "pr-title", "", "with --pr: the pull request's title (a Go template)")
	f.StringVar(&o.prBody, "pr-body", "", "with --pr: the pull request's description (a Go template)")
	f.BoolVar(&o.draft, "draft", false, "with --pr: open the pull request as a draft")
	f.StringArrayVar(&o.labels, "label", nil, "with --pr: a label to add to the pull request (repeatable)")
	f.StringVar(&o.git, "git-provider", "", "with --pr or --push: the GitProvider to deliver through (default: the one for the repository's host)")
	f.StringVarP(&o.filename, "filename", "f", "", "an AgentSession manifest (YAML or JSON; - reads stdin); flags given override its fields")
	f.StringVar(&o.name, "name", "", "the session's name")
	f.StringVar(&o.generateName, "generate-name", "run-", "prefix of a generated name, used when no name is given")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the manifest (YAML) instead of creating the session")
	f.BoolVar(&o.wait, "wait", false, "wait for the outcome (and the delivery) and exit with its status")
	f.DurationVar(&o.waitTimeout, "wait-timeout", 0, "with --wait: give up waiting after this long (exit 10; the session is left running); 0 waits indefinitely")
	f.BoolVar(&o.follow, "follow", false, "stream the agent's steps as they happen (implies --wait)")
	return cmd
}

func (o *runOptions) run(cmd *cobra.Command, out io.Writer, config configFunc) error {
	flags := cmd.Flags()
	if o.follow {
		o.wait = true
	}
	if flags.Changed("wait-timeout") && !o.wait {
		return usageErrorf("--wait-timeout needs --wait or --follow")
	}
	if o.waitTimeout < 0 {
		return usageErrorf("--wait-timeout must not be negative, got %s", o.waitTimeout)
	}
	if o.dryRun && o.wait {
		return usageErrorf("--dry-run creates nothing to wait for: drop --wait/--follow")
	}
	s, err := o.session(flags, cmd.InOrStdin())
	if err != nil {
		return err
	}
	explicitNS := ""
	if flags.Changed("namespace") {
		explicitNS, _ = flags.GetString("namespace")
		if s.Namespace != "" && s.Namespace != explicitNS {
			return usageErrorf("the manifest's namespace %q does not match --namespace %q", s.Namespace, explicitNS)
		}
		s.Namespace = explicitNS
	}
	if o.dryRun {
		return printManifest(out, s)
	}

	cfg, ns, err := config()
	if err != nil {
		return err
	}
	if s.Namespace == "" {
		s.Namespace = ns
	}
	scheme, err := pluginScheme()
	if err != nil {
		return err
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	if err := c.Create(cmd.Context(), s); err != nil {
		if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) {
			// The apiserver's message names the field; it is the most precise thing to say.
			return &exitError{code: ExitUsage, err: err}
		}
		return fmt.Errorf("creating the session: %w", err)
	}
	fmt.Fprintf(out, "agentsession.%s/%s created\n", v1.GroupVersion.Group, s.Name)
	if !o.wait {
		return nil
	}
	w := &waiter{c: c, key: client.ObjectKeyFromObject(s), out: out, errOut: &lockedWriter{w: cmd.ErrOrStderr()}}
	if o.follow {
		if w.logs, err = kubernetes.NewForConfig(cfg); err != nil {
			return err
		}
	}
	return w.wait(cmd.Context(), o.waitTimeout)
}

// session builds the AgentSession from the manifest, if any, and the flags given.
func (o *runOptions) session(flags *pflag.FlagSet, stdin io.Reader) (*v1.AgentSession, error) {
	set := flags.Changed
	if o.filename == "-" && o.taskFile == "-" {
		return nil, usageErrorf("-f and --task-file cannot both read stdin")
	}
	s := &v1.AgentSession{}
	if o.filename != "" {
		var err error
		if s, err = readManifest(o.filename, stdin); err != nil {
			return nil, err
		}
	}
	s.APIVersion, s.Kind = v1.GroupVersion.String(), "AgentSession"

	if set("task") && set("task-file") {
		return nil, usageErrorf("give --task or --task-file, not both")
	}
	switch {
	case set("task"):
		s.Spec.Task = o.task
	case set("task-file"):
		b, err := readInput(o.taskFile, stdin)
		if err != nil {
			return nil, usageErrorf("--task-file: %w", err)
		}
		s.Spec.Task = strings.TrimSpace(string(b))
	case o.filename == "":
		return nil, usageErrorf("--task or --task-file is required (or -f with a manifest)")
	}
	if set("repo") {
		s.Spec.Repository.URL = o.repo
	} else if o.filename == "" {
		return nil, usageErrorf("--repo is required (or -f with a manifest)")
	}
	if set("ref") {
		s.Spec.Repository.Ref = o.ref
	}
	if set("credentials-secret") {
		s.Spec.Repository.CredentialsSecretRef = &corev1.LocalObjectReference{Name: o.credentialsSecret}
	}
	switch {
	case set("model") && set("provider"):
		s.Spec.Model.Provider, s.Spec.Model.Name = o.provider, o.model
	case set("model"):
		if provider, name, ok := strings.Cut(o.model, "/"); ok {
			if provider == "" || name == "" {
				return nil, usageErrorf("--model: want PROVIDER/NAME or NAME, got %q", o.model)
			}
			s.Spec.Model.Provider, s.Spec.Model.Name = provider, name
		} else {
			s.Spec.Model.Name = o.model
		}
	case set("provider"):
		s.Spec.Model.Provider = o.provider
	}
	if set("approval-bash") {
		mode, err := parseApprovalMode(o.approvalBash)
		if err != nil {
			return nil, usageErrorf("--approval-bash: %w", err)
		}
		s.Spec.Approval.Bash = mode
	}
	if set("allow-command") {
		s.Spec.Approval.AllowCommands = o.allowCommands
	}
	if set("max-turns") {
		s.Spec.Limits.MaxTurns = o.maxTurns
	}
	if set("max-tokens") {
		s.Spec.Limits.MaxTokens = o.maxTokens
	}
	if set("timeout") {
		s.Spec.Limits.Timeout = &metav1.Duration{Duration: o.timeout}
	}
	if set("image") {
		s.Spec.Runner.Image = o.image
	}
	if err := o.delivery(set, &s.Spec); err != nil {
		return nil, err
	}

	if set("name") && set("generate-name") {
		return nil, usageErrorf("give --name or --generate-name, not both")
	}
	switch {
	case set("name"):
		s.Name, s.GenerateName = o.name, ""
	case set("generate-name"):
		s.Name, s.GenerateName = "", o.generateName
	case s.Name == "" && s.GenerateName == "":
		s.GenerateName = o.generateName
	}
	return s, nil
}

// delivery applies the delivery flags: --pr or --push choose (or switch) the mode, the others
// fill it in.
func (o *runOptions) delivery(set func(string) bool, spec *v1.AgentSessionSpec) error {
	if o.pr && o.push {
		return usageErrorf("give --pr or --push, not both")
	}
	d := spec.Delivery
	branch := func() string {
		switch {
		case d == nil:
			return ""
		case d.PullRequest != nil:
			return d.PullRequest.Branch
		case d.Push != nil:
			return d.Push.Branch
		}
		return ""
	}
	if o.pr {
		if d == nil {
			d = &v1.DeliverySpec{}
		}
		if d.PullRequest == nil {
			d.PullRequest = &v1.PullRequestDelivery{Branch: branch()}
		}
		d.Push = nil
	}
	if o.push {
		if d == nil {
			d = &v1.DeliverySpec{}
		}
		if d.Push == nil {
			d.Push = &v1.PushDelivery{Branch: branch()}
		}
		d.PullRequest = nil
	}
	for _, name := range []string{"base", "pr-title", "pr-body", "draft", "label"} {
		if set(name) && (d == nil || d.PullRequest == nil) {
			return usageErrorf("--%s needs --pr", name)
		}
	}
	for _, name := range []string{"branch", "git-provider"} {
		if set(name) && d == nil {
			return usageErrorf("--%s needs --pr or --push", name)
		}
	}
	if d == nil {
		return nil
	}
	if set("git-provider") {
		d.GitProvider = o.git
	}
	if set("branch") {
		if d.PullRequest != nil {
			d.PullRequest.Branch = o.branch
		} else if d.Push != nil {
			d.Push.Branch = o.branch
		}
	}
	if pr := d.PullRequest; pr != nil {
		if set("base") {
			pr.Base = o.base
		}
		if set("pr-title") {
			pr.Title = o.prTitle
		}
		if set("pr-body") {
			pr.Body = o.prBody
		}
		if set("draft") {
			pr.Draft = o.draft
		}
		if set("label") {
			pr.Labels = o.labels
		}
	}
	spec.Delivery = d
	return nil
}

func parseApprovalMode(s string) (v1.ApprovalMode, error) {
	for _, m := range []v1.ApprovalMode{v1.ApprovalAllow, v1.ApprovalAsk, v1.ApprovalDeny} {
		if strings.EqualFold(s, string(m)) {
			return m, nil
		}
	}
	return "", fmt.Errorf("want Allow, Ask or Deny, got %q", s)
}

func readInput(name string, stdin io.Reader) ([]byte, error) {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxInputBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxInputBytes {
		return nil, fmt.Errorf("larger than %d bytes", maxInputBytes)
	}
	return b, nil
}

// readManifest reads one AgentSession, strictly: a misspelt field is an error here rather
// than silently dropped on the way to the apiserver.
func readManifest(name string, stdin io.Reader) (*v1.AgentSession, error) {
	b, err := readInput(name, stdin)
	if err != nil {
		return nil, usageErrorf("-f %s: %w", name, err)
	}
	docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var doc []byte
	for {
		d, err := docs.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, usageErrorf("-f %s: %w", name, err)
		}
		if len(bytes.TrimSpace(d)) == 0 || string(bytes.TrimSpace(d)) == "---" {
			continue
		}
		if doc != nil {
			return nil, usageErrorf("-f %s: holds more than one document; give one AgentSession", name)
		}
		doc = d
	}
	if doc == nil {
		return nil, usageErrorf("-f %s: no AgentSession in it", name)
	}
	s := &v1.AgentSession{}
	if err := yaml.UnmarshalStrict(doc, s); err != nil {
		return nil, usageErrorf("-f %s: %w", name, err)
	}
	if (s.APIVersion != "" && s.APIVersion != v1.GroupVersion.String()) || (s.Kind != "" && s.Kind != "AgentSession") {
		return nil, usageErrorf("-f %s: want an AgentSession (%s), got %s %s", name, v1.GroupVersion, s.Kind, s.APIVersion)
	}
	// A manifest saved from `kubectl get -o yaml` creates a new session like it.
	s.ResourceVersion, s.UID, s.Generation, s.CreationTimestamp, s.ManagedFields = "", "", 0, metav1.Time{}, nil
	s.Status = v1.AgentSessionStatus{}
	return s, nil
}

// printManifest prints s as YAML without the empty fields a Go struct always carries (an
// empty delivery.push, which means something, stays).
func printManifest(out io.Writer, s *v1.AgentSession) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	delete(m, "status")
	if meta, ok := m["metadata"].(map[string]any); ok && meta["creationTimestamp"] == nil {
		delete(meta, "creationTimestamp")
	}
	if spec, ok := m["spec"].(map[string]any); ok {
		if runner, ok := spec["runner"].(map[string]any); ok {
			dropEmpty(runner, "resources")
		}
		dropEmpty(spec, "model", "approval", "limits", "runner", "network")
	}
	y, err := yaml.Marshal(m)
	if err != nil {
		return err
	}
	_, err = out.Write(y)
	return err
}

func dropEmpty(m map[string]any, keys ...string) {
	for _, k := range keys {
		if v, ok := m[k].(map[string]any); ok && len(v) == 0 {
			delete(m, k)
		}
	}
}
