package plugin

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/display"
)

type shareOptions struct {
	expires    time.Duration
	visibility string
	artifacts  []string
	list       bool
	revoke     string
}

func shareCommand(out io.Writer, a *artifactsCmd) *cobra.Command {
	o := &shareOptions{}
	cmd := &cobra.Command{
		Use:   "share SESSION | share --list [SESSION] | share --revoke NAME",
		Short: "Make an expiring link to a session's transcript, patch and summary; list or revoke links",
		Long: `Create an AgentSessionShare for the session, wait until the controller makes its link, and
print the link and when it expires. A Link share opens for anyone who has the link; a Private
one only with a Kubernetes identity that may get the share (kubectl agentry console). Deleting
the share (--revoke) ends the link at once.`,
		Example: `  kubectl agentry share fix-flaky-test
  kubectl agentry share fix-flaky-test --expires 2h --visibility private --artifacts transcript,summary
  kubectl agentry share --list fix-flaky-test
  kubectl agentry share --revoke fix-flaky-test-x7k2p`,
		Args: func(_ *cobra.Command, args []string) error {
			switch {
			case o.list && o.revoke != "":
				return usageErrorf("--list and --revoke do not go together")
			case o.revoke != "" && len(args) > 0:
				return usageErrorf("--revoke takes the share's name, not a session: kubectl agentry share --revoke NAME")
			case o.list && len(args) > 1, !o.list && o.revoke == "" && len(args) != 1:
				return usageErrorf("share takes one session, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := a.connect()
			if err != nil {
				return err
			}
			switch {
			case o.revoke != "":
				return revokeShare(cmd.Context(), out, c, ns, o.revoke)
			case o.list:
				session := ""
				if len(args) == 1 {
					session = args[0]
				}
				return listShares(cmd.Context(), out, c, ns, session, time.Now())
			}
			vis, arts, err := o.parse()
			if err != nil {
				return err
			}
			s, err := getSession(cmd.Context(), c, ns, args[0])
			if err != nil {
				return err
			}
			sh := newShare(ns, shareName(s.Name, "share"), s.Name, arts, o.expires, vis)
			if err := c.Create(cmd.Context(), sh); err != nil {
				return fmt.Errorf("creating a share of session %s/%s: %w", ns, s.Name, err)
			}
			ready, err := waitShareReady(cmd.Context(), c, sh)
			if err != nil {
				return fmt.Errorf("%w (the share %s stays; delete it with: kubectl agentry share --revoke %s -n %s)", err, sh.Name, sh.Name, ns)
			}
			fmt.Fprintf(out, "agentsessionshare/%s: %s\n", ready.Name, display.Escape(ready.Status.URL))
			if e := ready.Status.ExpiresAt; e != nil {
				fmt.Fprintf(out, "  expires %s (in %s); %s; revoke with: kubectl agentry share --revoke %s -n %s\n",
					e.UTC().Format(time.RFC3339), duration.HumanDuration(time.Until(e.Time)), visibilityLine(vis), ready.Name, ns)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.expires, "expires", 24*time.Hour, "how long the link works (1m to 720h; the namespace's AgentPolicy may allow less)")
	f.StringVar(&o.visibility, "visibility", "link", "link (anyone with the link) or private (a Kubernetes identity that may get the share)")
	f.StringSliceVar(&o.artifacts, "artifacts", []string{"transcript", "patch", "summary"}, "what the link opens: transcript, patch, summary")
	f.BoolVar(&o.list, "list", false, "list the shares (of SESSION, or of the namespace)")
	f.StringVar(&o.revoke, "revoke", "", "delete the share NAME, ending its link")
	_ = cmd.RegisterFlagCompletionFunc("revoke", func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		c, ns, err := a.connect()
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var list v1.AgentSessionShareList
		if err := c.List(cmd.Context(), &list, client.InNamespace(ns)); err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var names []cobra.Completion
		for _, sh := range list.Items {
			if strings.HasPrefix(sh.Name, toComplete) {
				names = append(names, cobra.CompletionWithDesc(sh.Name, "share of "+sh.Spec.Session))
			}
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

func visibilityLine(v v1.ShareVisibility) string {
	if v == v1.SharePrivate {
		return "opens only with a Kubernetes identity that may get the share"
	}
	return "anyone with the link can open it"
}

func (o *shareOptions) parse() (v1.ShareVisibility, []v1.ShareArtifact, error) {
	var vis v1.ShareVisibility
	switch strings.ToLower(o.visibility) {
	case "link":
		vis = v1.ShareLinkVisibility
	case "private":
		vis = v1.SharePrivate
	default:
		return "", nil, usageErrorf("--visibility must be link or private, got %q", o.visibility)
	}
	if o.expires < time.Minute || o.expires > 720*time.Hour {
		return "", nil, usageErrorf("--expires must be between 1m and 720h, got %s", o.expires)
	}
	known := map[string]v1.ShareArtifact{"transcript": v1.ShareTranscript, "patch": v1.SharePatch, "summary": v1.ShareSummary}
	seen := map[v1.ShareArtifact]bool{}
	var arts []v1.ShareArtifact
	for _, s := range o.artifacts {
		art, ok := known[strings.ToLower(strings.TrimSpace(s))]
		if !ok {
			return "", nil, usageErrorf("--artifacts: unknown artifact %q (transcript, patch, summary)", s)
		}
		if !seen[art] {
			seen[art] = true
			arts = append(arts, art)
		}
	}
	if len(arts) == 0 {
		return "", nil, usageErrorf("--artifacts needs at least one of transcript, patch, summary")
	}
	return vis, arts, nil
}

func listShares(ctx context.Context, out io.Writer, c client.Client, ns, session string, now time.Time) error {
	var list v1.AgentSessionShareList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return fmt.Errorf("listing shares in %s: %w", ns, err)
	}
	w := tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)
	fmt.Fprintln(w, "NAME\tSESSION\tVISIBILITY\tARTIFACTS\tEXPIRES\tREADY\tURL")
	n := 0
	for _, sh := range list.Items {
		if session != "" && sh.Spec.Session != session {
			continue
		}
		expires := "-"
		if e := sh.Status.ExpiresAt; e != nil {
			if e.Time.After(now) {
				expires = "in " + duration.HumanDuration(e.Sub(now))
			} else {
				expires = "expired"
			}
		}
		ready := "-"
		if cond := meta.FindStatusCondition(sh.Status.Conditions, shareReady); cond != nil {
			ready = cond.Reason
		}
		arts := make([]string, len(sh.Spec.Artifacts))
		for i, a := range sh.Spec.Artifacts {
			arts[i] = string(a)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sh.Name, sh.Spec.Session, sh.Spec.Visibility, strings.Join(arts, ","), expires,
			display.Escape(ready), orDash(display.Escape(sh.Status.URL)))
		n++
	}
	if n == 0 {
		if session != "" {
			fmt.Fprintf(out, "No shares of session %s in %s.\n", session, ns)
		} else {
			fmt.Fprintf(out, "No shares in %s.\n", ns)
		}
		return nil
	}
	return w.Flush()
}

func revokeShare(ctx context.Context, out io.Writer, c client.Client, ns, name string) error {
	sh := &v1.AgentSessionShare{}
	sh.Namespace, sh.Name = ns, name
	if err := c.Delete(ctx, sh); err != nil {
		return fmt.Errorf("revoking share %s/%s: %w", ns, name, err)
	}
	fmt.Fprintf(out, "agentsessionshare/%s deleted: its link no longer works\n", name)
	return nil
}
