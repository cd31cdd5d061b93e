package plugin

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

// LabelContinues names, on a session kubectl agentry reply created, the session it continues.
const LabelContinues = "agentry.dev/continues"

type replyOptions struct {
	taskFile, name       string
	dryRun, wait, follow bool
	waitTimeout          time.Duration
}

func replyCommand(out io.Writer, config configFunc) *cobra.Command {
	o := &replyOptions{}
	cmd := &cobra.Command{
		Use:   "reply SESSION [TASK]",
		Short: "Continue a finished session with a new task (a follow-up session on its work and history)",
		Long: `Create a follow-up of a finished session: a new AgentSession with spec.continueFrom set,
which starts on the same repository at the earlier session's base commit with its patch
applied and its task and summary as history, then works on the new task. Its own patch
holds both sessions' changes.

The follow-up copies the earlier session's repository, model, tools, approval policy,
limits, runner, network, instructions, setup and MCP servers; not its delivery (a
follow-up's patch includes the earlier one, and delivering both would open two changes
for the same work) nor its decided approvals. It is named SESSION-reply-N unless --name
is given. --wait and --follow behave as for run.

Exit statuses:
` + ExitCodeTable(),
		Example: `  kubectl agentry reply fix-flaky "Also cover the timeout path with a test."
  kubectl agentry reply fix-flaky --task-file next.md --follow`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usageErrorf("reply takes the session and the task: reply SESSION \"TASK\" (or --task-file)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, out, config, args)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{code: ExitUsage, err: err} })
	f := cmd.Flags()
	f.StringVar(&o.taskFile, "task-file", "", "read the task from this file; - reads stdin")
	f.StringVar(&o.name, "name", "", "the follow-up's name (default SESSION-reply-N)")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the manifest (YAML) instead of creating the session")
	f.BoolVar(&o.wait, "wait", false, "wait for the outcome and exit with its status")
	f.DurationVar(&o.waitTimeout, "wait-timeout", 0, "with --wait: give up waiting after this long (exit 10; the session is left running); 0 waits indefinitely")
	f.BoolVar(&o.follow, "follow", false, "stream the agent's steps as they happen (implies --wait)")
	return cmd
}

func (o *replyOptions) run(cmd *cobra.Command, out io.Writer, config configFunc, args []string) error {
	if o.follow {
		o.wait = true
	}
	if cmd.Flags().Changed("wait-timeout") && !o.wait {
		return usageErrorf("--wait-timeout needs --wait or --follow")
	}
	if o.dryRun && o.wait {
		return usageErrorf("--dry-run creates nothing to wait for: drop --wait/--follow")
	}
	task, err := o.task(args, cmd.InOrStdin())
	if err != nil {
		return err
	}
	cfg, ns, err := config()
	if err != nil {
		return err
	}
	scheme, err := pluginScheme()
	if err != nil {
		return err
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	earlier := &v1.AgentSession{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: args[0]}, earlier); err != nil {
		if apierrors.IsNotFound(err) {
			return &exitError{code: ExitUsage, err: fmt.Errorf("session %s not found in namespace %s", args[0], ns)}
		}
		return err
	}
	if p := earlier.Status.Phase; !p.IsTerminal() {
		return usageErrorf("session %s has not finished (phase %s): reply once it has", earlier.Name, orPending(p))
	}
	if earlier.Status.Phase == v1.PhaseCancelled {
		return usageErrorf("session %s was cancelled: only a Succeeded or Failed session can be continued", earlier.Name)
	}
	s := followUpSession(earlier, task)
	if o.dryRun {
		s.Name = o.name
		if s.Name == "" {
			s.Name = earlier.Name + "-reply-N"
		}
		return printManifest(out, s)
	}
	if err := createFollowUp(ctx, c, s, o.name); err != nil {
		return err
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
	return w.wait(ctx, o.waitTimeout)
}

func orPending(p v1.SessionPhase) v1.SessionPhase {
	if p == "" {
		return v1.PhasePending
	}
	return p
}

func (o *replyOptions) task(args []string, stdin io.Reader) (string, error) {
	var task string
	switch {
	case len(args) == 2 && o.taskFile != "":
		return "", usageErrorf("give the task as an argument or with --task-file, not both")
	case len(args) == 2:
		task = args[1]
	case o.taskFile != "":
		b, err := readInput(o.taskFile, stdin)
		if err != nil {
			return "", usageErrorf("--task-file: %w", err)
		}
		task = string(b)
	}
	if task = strings.TrimSpace(task); task == "" {
		return "", usageErrorf("a task is required: reply SESSION \"TASK\" (or --task-file)")
	}
	return task, nil
}

// followUpSession is the follow-up of earlier: its spec with the new task and
// spec.continueFrom, without what belongs to the earlier run alone (decided approvals,
// cancel, delivery).
func followUpSession(earlier *v1.AgentSession, task string) *v1.AgentSession {
	spec := *earlier.Spec.DeepCopy()
	spec.Task = task
	spec.ContinueFrom = &v1.ContinueFrom{Session: earlier.Name}
	spec.Approvals, spec.Cancel, spec.Delivery = nil, false, nil
	s := &v1.AgentSession{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1.GroupVersion.String(), Kind: "AgentSession"},
		ObjectMeta: metav1.ObjectMeta{Namespace: earlier.Namespace},
		Spec:       spec,
	}
	if len(validation.IsValidLabelValue(earlier.Name)) == 0 {
		s.Labels = map[string]string{LabelContinues: earlier.Name}
	}
	return s
}

// createFollowUp creates s as name, or as the next free EARLIER-reply-N.
func createFollowUp(ctx context.Context, c client.Client, s *v1.AgentSession, name string) error {
	if name != "" {
		s.Name = name
		return createSession(ctx, c, s)
	}
	var list v1.AgentSessionList
	if err := c.List(ctx, &list, client.InNamespace(s.Namespace)); err != nil {
		return fmt.Errorf("listing sessions to name the follow-up: %w", err)
	}
	earlier := s.Spec.ContinueFrom.Session
	re := regexp.MustCompile("^" + regexp.QuoteMeta(earlier) + `-reply-([0-9]+)$`)
	n := 0
	for _, o := range list.Items {
		if m := re.FindStringSubmatch(o.Name); m != nil {
			if k, err := strconv.Atoi(m[1]); err == nil && k > n {
				n = k
			}
		}
	}
	for attempt := 0; ; attempt++ {
		s.Name = fmt.Sprintf("%s-reply-%d", earlier, n+1+attempt)
		err := createSession(ctx, c, s)
		if !apierrors.IsAlreadyExists(err) || attempt == 4 {
			return err
		}
	}
}

func createSession(ctx context.Context, c client.Client, s *v1.AgentSession) error {
	err := c.Create(ctx, s)
	switch {
	case err == nil:
		return nil
	case apierrors.IsAlreadyExists(err):
		return err
	case apierrors.IsInvalid(err) || apierrors.IsBadRequest(err):
		return &exitError{code: ExitUsage, err: err} // the apiserver's message names the field
	}
	return fmt.Errorf("creating the follow-up session: %w", err)
}
