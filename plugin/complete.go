package plugin

import (
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

// sessionNames completes a command's first argument with the names of the sessions in the
// namespace the connection flags select, as kubectl completes resource names.
func sessionNames(connect connectFunc) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, ns, err := connect()
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var list v1.AgentSessionList
		if err := c.List(cmd.Context(), &list, client.InNamespace(ns)); err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var names []cobra.Completion
		for _, s := range list.Items {
			if strings.HasPrefix(s.Name, toComplete) {
				names = append(names, s.Name)
			}
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

// pendingIDs completes approve and deny: the session, then the ids of its pending approvals.
func pendingIDs(connect connectFunc) cobra.CompletionFunc {
	sessions := sessionNames(connect)
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		switch len(args) {
		case 0:
			return sessions(cmd, args, toComplete)
		case 1:
		default:
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, ns, err := connect()
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		s := &v1.AgentSession{}
		if err := c.Get(cmd.Context(), client.ObjectKey{Namespace: ns, Name: args[0]}, s); err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var ids []cobra.Completion
		for _, p := range undecided(s) {
			if strings.HasPrefix(p.ID, toComplete) {
				// The description is the agent's text: shells print it, so no control characters.
				ids = append(ids, cobra.CompletionWithDesc(p.ID, displayOneLine(p.Tool+": "+p.Summary, 60)))
			}
		}
		return ids, cobra.ShellCompDirectiveNoFileComp
	}
}
