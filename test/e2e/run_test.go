//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/plugin"
)

// agentryRun starts `kubectl agentry -n <namespace> run ARGS...` with the plugin `make build`
// produced; wait returns its exit status and output.
func agentryRun(t *testing.T, name string, args ...string) (wait func() (int, string)) {
	t.Helper()
	bin, _ := filepath.Abs("../../bin")
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"agentry", "-n", namespace, "run", "--name", name}, args...)...)
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { kubectl("-n", namespace, "delete", "agentsession", name, "--ignore-not-found", "--wait=false") }) //nolint:errcheck
	return func() (int, string) {
		defer cancel()
		err := cmd.Wait()
		var exit *exec.ExitError
		switch {
		case err == nil:
			return 0, out.String()
		case errors.As(err, &exit):
			return exit.ExitCode(), out.String()
		}
		t.Fatalf("kubectl agentry run: %v\n%s", err, out.String())
		return -1, ""
	}
}

// `kubectl agentry run --wait` is a CI step: its exit status is the session's outcome.
func TestRunWaitExitsWithTheOutcome(t *testing.T) {
	session := func(marker string, extra ...string) []string {
		return append([]string{"--task", marker + " List the workspace and write NOTES.md.", "--repo", env.repoURL, "--ref", "main",
			"--model", providerName + "/scripted", "--timeout", "5m", "--wait", "--wait-timeout", "5m"}, extra...)
	}

	t.Run("succeeded", func(t *testing.T) {
		code, out := agentryRun(t, "run-ok", session("[e2e:success-run]", "--max-turns", "10")...)()
		if code != plugin.ExitSucceeded || !strings.Contains(out, "Succeeded") || !strings.Contains(out, "1 changed") {
			t.Fatalf("exit %d, want %d with a summary of one changed file:\n%s", code, plugin.ExitSucceeded, out)
		}
	})

	// The scripted model calls a tool on its first turn, so one turn is not enough.
	t.Run("limit reached", func(t *testing.T) {
		code, out := agentryRun(t, "run-limit", session("[e2e:success-limit]", "--max-turns", "1")...)()
		if code != plugin.ExitLimitReached || !strings.Contains(out, "LimitReached") {
			t.Fatalf("exit %d, want %d (LimitReached):\n%s", code, plugin.ExitLimitReached, out)
		}
	})

	t.Run("cancelled", func(t *testing.T) {
		const name = "run-cancel"
		wait := agentryRun(t, name, session("[e2e:hang-run-cancel]")...)
		eventually(t, 3*time.Minute, "session "+name+" to run", func() bool {
			out, _ := kubectl("-n", namespace, "get", "agentsession", name, "-o", "jsonpath={.status.phase}", "--ignore-not-found")
			return out == string(v1.PhaseRunning)
		})
		if out, err := kubectlPlugin("agentry", "-n", namespace, "cancel", name); err != nil {
			t.Fatalf("kubectl agentry cancel: %v\n%s", err, out)
		}
		if code, out := wait(); code != plugin.ExitCancelled || !strings.Contains(out, "Cancelled") {
			t.Fatalf("exit %d, want %d (Cancelled):\n%s", code, plugin.ExitCancelled, out)
		}
	})
}
