//go:build e2e

package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

// A platform team looks at its namespace's policy while sessions run: `kubectl get
// agentpolicies` shows the sessions running and the tokens used, from real accounting.
func TestAgentPolicyShowsUsage(t *testing.T) {
	if _, err := kubectlIn(manifest(`
apiVersion: agentry.dev/v1alpha1
kind: AgentPolicy
metadata: {name: e2e, namespace: %s}
spec:
  maxConcurrentSessions: 4
  tokenBudget: {tokens: 1000000, window: 24h}`, namespace), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kubectl("-n", namespace, "delete", "agentpolicy", "e2e", "--ignore-not-found") }) //nolint:errcheck

	const name = "policy-usage"
	applySession(t, name, "[e2e:success-policy]", ", timeout: 5m")
	sawActive, activeTable := false, ""
	eventually(t, 3*time.Minute, "the session to end", func() bool {
		// What the platform team reads: the ACTIVE column of the table, not the field.
		table, _ := kubectl("-n", namespace, "get", "agentpolicies")
		if n, _ := strconv.Atoi(column(table, "ACTIVE")); n >= 1 && !sawActive {
			sawActive, activeTable = true, table
		}
		p := getSession(t, name).Status.Phase
		return p == v1.PhaseSucceeded || p == v1.PhaseFailed
	})
	if !sawActive {
		t.Errorf("the ACTIVE column of kubectl get agentpolicies never counted the running session")
	}
	t.Logf("kubectl get agentpolicies while the session ran:\n%s", activeTable)
	var used int
	eventually(t, time.Minute, "status.tokensUsed", func() bool {
		out, _ := kubectl("-n", namespace, "get", "agentpolicy", "e2e", "-o", "jsonpath={.status.tokensUsed}")
		used, _ = strconv.Atoi(strings.TrimSpace(out))
		return used > 0
	})
	table, err := kubectl("-n", namespace, "get", "agentpolicies")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl get agentpolicies:\n%s", table)
	if got := column(table, "USED"); got != strconv.Itoa(used) {
		t.Errorf("the USED column shows %q, want the %d tokens used:\n%s", got, used, table)
	}
	if got := column(table, "BUDGET"); got != "1000000" {
		t.Errorf("the BUDGET column shows %q, want 1000000:\n%s", got, table)
	}
	if tot := getSession(t, name).Status.Usage; tot == nil || int(tot.TotalTokens) > used {
		t.Errorf("the policy counts %d tokens, fewer than the session's own usage %+v", used, tot)
	}
}

// column returns the cell under header in a one-row kubectl table, by the header's position
// (kubectl aligns each column to its header), or "" when the table is not one row.
func column(table, header string) string {
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	if len(lines) != 2 {
		return ""
	}
	start := strings.Index(lines[0], header)
	if start < 0 || start >= len(lines[1]) {
		return ""
	}
	end := len(lines[1])
	if next := strings.IndexFunc(lines[0][start+len(header):], func(r rune) bool { return r != ' ' }); next >= 0 {
		end = min(end, start+len(header)+next)
	}
	return strings.TrimSpace(lines[1][start:end])
}
