//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

// The trust boundary on a real node: bash runs in the agent container (the session's
// image, here a toolchain with an HTTPS client), its first command approved by a person
// through `kubectl agentry approve`; its second command is hostile agent code looking for
// the gateway token in files, /proc and the environment, and calling the gateway with
// whatever it finds. It must find nothing and be refused.
func TestAgentCodeCannotActAsTheSession(t *testing.T) {
	const name = "boundary"
	applyBashSession(t, name, "[e2e:steal]", "agentry/e2e-tools:dev") // a toolchain with an HTTPS client, as an attacker's would have

	approved := approveUntilEnd(t, name)
	if approved != 2 {
		t.Errorf("approved %d commands through kubectl agentry, want 2", approved)
	}
	if s := getSession(t, name); s.Status.Phase != v1.PhaseSucceeded {
		t.Fatalf("session ended %s: %+v", s.Status.Phase, s.Status.Conditions)
	}

	var first, second string
	for _, r := range env.llm.Requests() {
		msgs := r.Body.Messages
		if len(msgs) == 0 || !strings.Contains(msgs[1].Content, "[e2e:steal]") {
			continue
		}
		last := msgs[len(msgs)-1]
		if last.Role != "tool" {
			continue
		}
		if first == "" {
			first = last.Content
		} else {
			second = last.Content
		}
	}
	t.Logf("approved command: %s", first)
	if !strings.Contains(first, "ran in bash as uid 65533") {
		t.Errorf("the approved bash call did not run with bash as the agent's UID: %q", first)
	}
	t.Logf("hostile command output:\n%s", second)
	if !strings.Contains(second, "no token:") || !strings.Contains(second, "forged finish:") {
		t.Fatalf("the hostile command did not run to its end: %q", second)
	}
	if regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+`).MatchString(second) {
		t.Errorf("agent code found a token")
	}
	if !regexp.MustCompile(`/var/run/secrets/agentry.dev/gateway/token'?: No such file`).MatchString(second) {
		t.Errorf("the gateway token file is visible in the agent container")
	}
	if strings.Contains(second, `"object":"list"`) || strings.Contains(second, "scripted") && strings.Contains(second, `"data"`) {
		t.Errorf("agent code got an answer from the gateway's model API")
	}
	if c := strings.Count(second, "401"); c < 2 {
		t.Errorf("the gateway did not refuse agent code's calls with 401 (%d refusals seen)", c)
	}
	if strings.Contains(second, env.providerKey) {
		t.Errorf("agent code found the provider key")
	}
}

// The default runner image runs the bash tool with bash (the busybox image had none, and
// every command failed on a real node): a command asked about is approved by a person with
// `kubectl agentry approve` and runs in the agent container as the agent's UID.
func TestApprovedBashRunsInTheDefaultImage(t *testing.T) {
	const name = "bash-default"
	applyBashSession(t, name, "[e2e:bash]", "")
	if approved := approveUntilEnd(t, name); approved != 1 {
		t.Errorf("approved %d commands through kubectl agentry, want 1", approved)
	}
	s := getSession(t, name)
	if s.Status.Phase != v1.PhaseSucceeded {
		t.Fatalf("session ended %s: %+v", s.Status.Phase, s.Status.Conditions)
	}
	if r := s.Status.Resolved; r == nil || strings.Contains(r.Image, "e2e-tools") {
		t.Fatalf("resolved = %+v, want the default runner image", r)
	}
	var result string
	for _, r := range env.llm.Requests() {
		msgs := r.Body.Messages
		if len(msgs) > 1 && strings.Contains(msgs[1].Content, "[e2e:bash]") && msgs[len(msgs)-1].Role == "tool" {
			result = msgs[len(msgs)-1].Content
		}
	}
	if !strings.Contains(result, "ran in bash as uid 65533") {
		t.Errorf("the approved command's result in the default image: %q, want it run by bash as the agent's UID", result)
	}
}

// applyBashSession creates a session whose model (the marker picks its script) runs bash
// commands, each asked about (approval.bash Ask), in image ("" is the default runner image).
func applyBashSession(t *testing.T, name, marker, image string) {
	t.Helper()
	runner := ""
	if image != "" {
		runner = fmt.Sprintf("\n  runner: {image: %q}", image)
	}
	m := manifest(`
apiVersion: agentry.dev/v1alpha1
kind: AgentSession
metadata: {name: %s, namespace: %s}
spec:
  task: "%s Run a command."
  repository: {url: "%s", ref: main}
  model: {provider: %s, name: scripted}
  tools: [bash]
  approval: {bash: Ask}%s
  limits: {maxTurns: 5, timeout: 5m}`, name, namespace, marker, env.repoURL, providerName, runner)
	if _, err := kubectlIn(m, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kubectl("-n", namespace, "delete", "agentsession", name, "--ignore-not-found", "--wait=false") }) //nolint:errcheck
}

// approveUntilEnd approves every command the session asks about with the kubectl plugin,
// as a person following the README does, until the session ends; it returns how many.
func approveUntilEnd(t *testing.T, name string) int {
	t.Helper()
	approved := 0
	eventually(t, 4*time.Minute, "the session's calls approved and the session ended", func() bool {
		s := getSession(t, name)
		for _, p := range s.Status.PendingApprovals {
			if slices.ContainsFunc(s.Spec.Approvals, func(d v1.ApprovalDecision) bool { return d.ID == p.ID }) {
				continue // decided; status lists it until the gateway's next write
			}
			out, err := kubectlPlugin("agentry", "-n", namespace, "approve", name, p.ID, "--reason", "e2e")
			if err != nil {
				t.Fatalf("kubectl agentry approve: %v\n%s", err, out)
			}
			approved++
		}
		return s.Status.Phase == v1.PhaseSucceeded || s.Status.Phase == v1.PhaseFailed
	})
	return approved
}

// kubectlPlugin runs kubectl with the repository's bin/ on PATH, so `kubectl agentry`
// resolves to the plugin `make build` produced.
func kubectlPlugin(args ...string) (string, error) {
	bin, _ := filepath.Abs("../../bin")
	cmd := exec.Command("kubectl", args...)
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}
