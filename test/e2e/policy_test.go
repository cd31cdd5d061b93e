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
	sawActive := false
	eventually(t, 3*time.Minute, "the session to end", func() bool {
		out, _ := kubectl("-n", namespace, "get", "agentpolicy", "e2e", "-o", "jsonpath={.status.activeSessions}")
		if n, _ := strconv.Atoi(strings.TrimSpace(out)); n >= 1 {
			sawActive = true
		}
		p := getSession(t, name).Status.Phase
		return p == v1.PhaseSucceeded || p == v1.PhaseFailed
	})
	if !sawActive {
		t.Errorf("status.activeSessions never counted the running session")
	}
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
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "USED") || !strings.Contains(lines[1], strconv.Itoa(used)) {
		t.Errorf("the table does not show the tokens used (%d):\n%s", used, table)
	}
	if tot := getSession(t, name).Status.Usage; tot == nil || int(tot.TotalTokens) > used {
		t.Errorf("the policy counts %d tokens, fewer than the session's own usage %+v", used, tot)
	}
}
