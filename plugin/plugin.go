// Package plugin is the kubectl plugin `kubectl agentry`: the day-to-day verbs on
// AgentSessions that would otherwise be hand-written patches — see the pending approvals,
// approve or deny one, cancel a session — and `run`, which creates a session and waits for
// its outcome, the one step a CI job needs.
package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/display"
)

// New returns the root command. Output goes to out.
func New(out io.Writer) *cobra.Command {
	// kubectl's own connection flags, with kubectl's names and meanings (--kubeconfig,
	// --context, -n, --as, --token, --server, --request-timeout, ...), so a plugin call
	// reaches the cluster exactly as the same kubectl call would.
	flags := genericclioptions.NewConfigFlags(true)
	root := &cobra.Command{
		Use:           "kubectl-agentry",
		Short:         "Work with Agentry sessions: run one, approvals, logs, transcript, patch, share links",
		SilenceUsage:  true,
		SilenceErrors: true,
		Annotations: map[string]string{
			// cobra names the command "kubectl agentry" in help and completion.
			cobra.CommandDisplayNameAnnotation: "kubectl agentry",
		},
	}
	flags.AddFlags(root.PersistentFlags())
	config := func() (*rest.Config, string, error) {
		cfg, err := flags.ToRESTConfig()
		if err != nil {
			return nil, "", err
		}
		ns, _, err := flags.ToRawKubeConfigLoader().Namespace()
		return cfg, ns, err
	}
	connect := func() (client.WithWatch, string, error) {
		cfg, ns, err := config()
		if err != nil {
			return nil, "", err
		}
		scheme, err := pluginScheme()
		if err != nil {
			return nil, "", err
		}
		c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
		return c, ns, err
	}
	complete := sessionNames(connect)
	root.AddCommand(pendingCommand(out, connect), decideCommand(out, connect, v1.DecisionAllow), decideCommand(out, connect, v1.DecisionDeny), cancelCommand(out, connect),
		runCommand(out, config), replyCommand(out, config))
	a := &artifactsCmd{config: config, connect: connect}
	root.PersistentFlags().StringVar(&a.viaAPIServer, "console-via-apiserver", "",
		"reach share links through the API server's service proxy to NAMESPACE/SERVICE (for example agentry-system/agentry-console), with your kubeconfig's identity, where the manager's console URL is not reachable from here")
	root.AddCommand(logsCommand(out, a), transcriptCommand(out, a), diffCommand(out, a), applyCommand(out, a), shareCommand(out, a), consoleCommand(out, a))
	for _, c := range root.Commands() {
		if c.Name() != "run" && c.ValidArgsFunction == nil {
			c.ValidArgsFunction = complete
		}
	}
	return root
}

func pluginScheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	if err := v1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := authenticationv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return scheme, nil
}

type connectFunc func() (client.WithWatch, string, error)

func pendingCommand(out io.Writer, connect connectFunc) *cobra.Command {
	return &cobra.Command{
		Use:   "pending [SESSION]",
		Short: "List tool calls waiting for a decision (in one session, or the whole namespace)",
		Example: `  kubectl agentry pending -n team-a
  kubectl agentry pending fix-flaky-test`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := connect()
			if err != nil {
				return err
			}
			var sessions []v1.AgentSession
			if len(args) == 1 {
				s := v1.AgentSession{}
				if err := c.Get(cmd.Context(), client.ObjectKey{Namespace: ns, Name: args[0]}, &s); err != nil {
					return err
				}
				sessions = append(sessions, s)
			} else {
				var list v1.AgentSessionList
				if err := c.List(cmd.Context(), &list, client.InNamespace(ns)); err != nil {
					return err
				}
				sessions = list.Items
			}
			return writePending(out, sessions, time.Now())
		},
	}
}

// undecided is the session's pending approvals without those already decided in
// spec.approvals: status lists a decided call until the gateway's next write.
func undecided(s *v1.AgentSession) []v1.PendingApproval {
	decided := map[string]bool{}
	for _, a := range s.Spec.Approvals {
		decided[a.ID] = true
	}
	var out []v1.PendingApproval
	for _, p := range s.Status.PendingApprovals {
		if !decided[p.ID] {
			out = append(out, p)
		}
	}
	return out
}

// writePending prints the pending approvals as a table. The person decides
// from the ACTION column, which the agent wrote: it is escaped (again — the
// gateway escapes it too, and escaping twice changes nothing), so a control
// sequence or bidi override in it cannot rewrite what the terminal shows, and
// a newline that separates two commands shows as \n. It is cut at 80 bytes;
// kubectl get -o yaml shows all of it.
func writePending(out io.Writer, sessions []v1.AgentSession, now time.Time) error {
	w := tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)
	fmt.Fprintln(w, "SESSION\tID\tTOOL\tEXPIRES\tACTION")
	n := 0
	for _, s := range sessions {
		for _, p := range undecided(&s) {
			expires := "-"
			if p.ExpiresAt != nil {
				expires = "in " + duration.HumanDuration(p.ExpiresAt.Sub(now))
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", display.Escape(s.Name), display.Escape(p.ID), display.Escape(p.Tool), expires,
				display.Truncate(display.Escape(p.Summary), 80))
			n++
		}
	}
	if n == 0 {
		fmt.Fprintln(out, "No pending approvals.")
		return nil
	}
	return w.Flush()
}

func decideCommand(out io.Writer, connect connectFunc, d v1.Decision) *cobra.Command {
	var reason string
	verb := map[v1.Decision]string{v1.DecisionAllow: "approve", v1.DecisionDeny: "deny"}[d]
	cmd := &cobra.Command{
		Use:   verb + " SESSION ID",
		Short: fmt.Sprintf("Decide %s on a pending tool call", d),
		Example: map[v1.Decision]string{
			v1.DecisionAllow: "  kubectl agentry approve fix-flaky-test ap-1 --reason \"tests only\"",
			v1.DecisionDeny:  "  kubectl agentry deny fix-flaky-test ap-2 --reason \"no network installs\"",
		}[d],
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: pendingIDs(connect),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := connect()
			if err != nil {
				return err
			}
			name, id := args[0], args[1]
			s := &v1.AgentSession{}
			if err := c.Get(cmd.Context(), client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
				return err
			}
			for _, a := range s.Spec.Approvals {
				if a.ID == id {
					return fmt.Errorf("approval %s of session %s was already decided: %s", id, name, a.Decision)
				}
			}
			var pending *v1.PendingApproval
			for i := range s.Status.PendingApprovals {
				if s.Status.PendingApprovals[i].ID == id {
					pending = &s.Status.PendingApprovals[i]
				}
			}
			if pending == nil {
				return fmt.Errorf("session %s has no pending approval %s (see: kubectl agentry pending %s)", name, id, name)
			}
			// Admission accepts a decision only in the name of the user who sends it.
			me, err := whoAmI(cmd.Context(), c)
			if err != nil {
				return err
			}
			// A JSON patch that appends, guarded by the resourceVersion, so two people deciding
			// at once cannot overwrite each other's decisions.
			patch, _ := json.Marshal([]map[string]any{
				{"op": "test", "path": "/metadata/resourceVersion", "value": s.ResourceVersion},
				// The digest binds the decision to the exact action shown by `pending`.
				appendOp(s, v1.ApprovalDecision{ID: id, Digest: pending.Digest, Decision: d, Reason: reason, DecidedBy: me}),
			})
			if err := c.Patch(cmd.Context(), s, client.RawPatch(types.JSONPatchType, patch)); err != nil {
				return fmt.Errorf("recording the decision: %w", err)
			}
			fmt.Fprintf(out, "agentsession/%s: %s %s\n", name, map[v1.Decision]string{v1.DecisionAllow: "approved", v1.DecisionDeny: "denied"}[d], id)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why; shown to the model with a denial and kept in the transcript")
	return cmd
}

// whoAmI asks the API server who the caller is (a SelfSubjectReview, what `kubectl auth
// whoami` does).
func whoAmI(ctx context.Context, c client.Client) (string, error) {
	r := &authenticationv1.SelfSubjectReview{}
	if err := c.Create(ctx, r); err != nil {
		return "", fmt.Errorf("asking the API server who you are (SelfSubjectReview): %w", err)
	}
	if r.Status.UserInfo.Username == "" {
		return "", fmt.Errorf("the API server did not say who you are; a decision needs a username")
	}
	return r.Status.UserInfo.Username, nil
}

func appendOp(s *v1.AgentSession, d v1.ApprovalDecision) map[string]any {
	if len(s.Spec.Approvals) == 0 {
		return map[string]any{"op": "add", "path": "/spec/approvals", "value": []v1.ApprovalDecision{d}}
	}
	return map[string]any{"op": "add", "path": "/spec/approvals/-", "value": d}
}

func cancelCommand(out io.Writer, connect connectFunc) *cobra.Command {
	return &cobra.Command{
		Use:     "cancel SESSION",
		Short:   "Stop a session; what it did so far is archived",
		Example: `  kubectl agentry cancel fix-flaky-test -n team-a`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := connect()
			if err != nil {
				return err
			}
			s := &v1.AgentSession{}
			if err := c.Get(cmd.Context(), client.ObjectKey{Namespace: ns, Name: args[0]}, s); err != nil {
				return err
			}
			if s.Status.Phase.IsTerminal() {
				return fmt.Errorf("session %s already ended: %s", s.Name, s.Status.Phase)
			}
			if err := c.Patch(cmd.Context(), s, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"cancel":true}}`))); err != nil {
				return err
			}
			fmt.Fprintf(out, "agentsession/%s: cancel requested\n", s.Name)
			return nil
		},
	}
}

// Run executes the plugin with args and returns its error; the exit status a command asks
// for (`run`: see ExitCodes) is Main's to give.
func Run(ctx context.Context, out io.Writer, args []string) error {
	root := New(out)
	root.SetArgs(args)
	root.SetOut(out)
	return root.ExecuteContext(ctx)
}
