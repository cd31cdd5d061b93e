//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// helm runs the helm `make setup` built against the cluster under test.
func helm(t *testing.T, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	bin := os.Getenv("AGENTRY_HELM")
	if bin == "" {
		matches, _ := filepath.Glob("../../bin/tools/helm-v*")
		if len(matches) == 0 {
			t.Fatal("helm not found: run 'make setup' (or set AGENTRY_HELM)")
		}
		bin = matches[len(matches)-1]
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out), err
}

// The operator under test is the Helm release `make dev` installed: `helm upgrade` rolls
// the manager to a new revision, and `helm test` then runs a session end to end through it
// (the manager's selftest in a hook pod: create a session, wait, Succeeded or fail).
func TestHelmReleaseUpgradesAndPassesItsTest(t *testing.T) {
	status, err := helm(t, time.Minute, "status", "agentry", "-n", operatorNS)
	if err != nil || !strings.Contains(status, "STATUS: deployed") {
		t.Fatalf("the operator is not the Helm release agentry in %s (make dev installs it so): %v\n%s", operatorNS, err, status)
	}
	before, _ := kubectl("-n", operatorNS, "get", "deployment", manager, "-o", "jsonpath={.metadata.generation}")

	// The upgrade changes the pod template (a rollout) and points the test at this suite's
	// model and repository.
	out, err := helm(t, 5*time.Minute, "upgrade", "agentry", "../../charts/agentry", "-n", operatorNS, "--reuse-values", "--wait", "--timeout", "4m",
		"--set-string", "podAnnotations.agentry-e2e/upgraded="+time.Now().UTC().Format("20060102T150405"),
		"--set-string", "test.namespace="+namespace, "--set-string", "test.modelProvider="+providerName, "--set-string", "test.model=scripted",
		"--set-string", "test.repository.url="+env.repoURL, "--set-string", "test.repository.ref=main", "--set-string", "test.timeout=2m")
	if err != nil {
		t.Fatalf("helm upgrade: %v\n%s", err, out)
	}
	after, _ := kubectl("-n", operatorNS, "get", "deployment", manager, "-o", "jsonpath={.metadata.generation}")
	if after == before {
		t.Errorf("helm upgrade did not roll the manager (generation %s)", after)
	}
	if err := waitForLeader(); err != nil {
		t.Fatal(err)
	}

	out, err = helm(t, 5*time.Minute, "test", "agentry", "-n", operatorNS, "--logs", "--timeout", "4m")
	t.Logf("helm test:\n%s", out)
	if err != nil {
		t.Fatalf("helm test failed: %v", err)
	}
	if !strings.Contains(out, "Succeeded") {
		t.Errorf("helm test passed without the session's Succeeded in its logs")
	}
	// The hook's session is gone: selftest cleans up after itself.
	if left, _ := kubectl("-n", namespace, "get", "agentsessions", "-o", "name"); strings.Contains(left, "agentry-selftest-") {
		t.Errorf("selftest left its session behind: %s", left)
	}
}
