//go:build e2e

package e2e

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/test/scriptedllm"
)

// setupOnlyHost serves on the host address pods see, on a port only the AgentPolicy's setup
// egress allows. It answers "setup-ok" to a request carrying the token and counts every
// connection.
type setupOnlyHost struct {
	addr      string
	withToken atomic.Int32
	conns     atomic.Int32
}

func serveSetupOnlyHost(t *testing.T, token string) *setupOnlyHost {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(env.hostIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	h := &setupOnlyHost{addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			h.conns.Add(1)
			c.SetDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck // a probe target
			line, _ := bufio.NewReader(c).ReadString('\n')
			if strings.Contains(line, token) {
				h.withToken.Add(1)
				c.Write([]byte("HTTP/1.0 200 OK\r\n\r\nsetup-ok\n")) //nolint:errcheck
			} else {
				c.Write([]byte("HTTP/1.0 403 Forbidden\r\n\r\nno token\n")) //nolint:errcheck
			}
			c.Close()
		}
	}()
	return h
}

// TestSetupSecretAndEgressEndBeforeTheAgent: on the real node, setup commands read a Secret
// passed in spec.setup.env and fetch from a host only the AgentPolicy's setup egress allows,
// writing proof into the workspace. Then the agent's bash command finds the proof but not
// the variable in its environment, not the value in any file under its mounts or in its own
// /proc environ, no setup volume, and cannot connect to the setup-only host. The transcript
// records the setup command.
func TestSetupSecretAndEgressEndBeforeTheAgent(t *testing.T) {
	const name = "setup-phase"
	token := fmt.Sprintf("setup-token-%d", time.Now().UnixNano())
	host := serveSetupOnlyHost(t, token)
	hostIP, port, _ := net.SplitHostPort(host.addr)

	if _, err := kubectlIn(manifest(`
apiVersion: v1
kind: Secret
metadata: {name: setup-secret, namespace: %s}
stringData: {token: %s}
---
apiVersion: agentry.dev/v1alpha1
kind: AgentPolicy
metadata: {name: setup, namespace: %s}
spec:
  setup:
    egress: [{cidr: %s/32, ports: [%s]}]
    allowedSecrets: [setup-secret]`, namespace, token, namespace, hostIP, port), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		kubectl("-n", namespace, "delete", "agentpolicy", "setup", "--ignore-not-found")   //nolint:errcheck
		kubectl("-n", namespace, "delete", "secret", "setup-secret", "--ignore-not-found") //nolint:errcheck
	})

	// The model's one command, in the agent phase. The value is passed base64-encoded so the
	// command line itself does not hold it.
	check := strings.Join([]string{
		`echo "proof: $(cat setup-proof.txt)"`,
		`echo "env-begin"; env; echo "env-end"`,
		`V=$(echo ` + base64.StdEncoding.EncodeToString([]byte(token)) + ` | base64 -d)`,
		`echo "files-begin"; grep -rlF "$V" /proc/self/environ /var/run/secrets /agentry /home /tmp /workspace 2>/dev/null; echo "files-end"`,
		`echo "agentry: $(ls /agentry | tr '\n' ' ')"`,
		`echo "connect-begin"; printf 'GET /agent HTTP/1.0\r\n\r\n' | nc -w 3 ` + hostIP + ` ` + port + `; echo "connect-end"`,
	}, "; ")
	env.llm.Generate(func(n int, r scriptedllm.Request) scriptedllm.Step {
		if len(r.Body.Messages) < 2 || !strings.Contains(r.Body.Messages[1].Content, "[e2e:setup]") {
			return script(n, r)
		}
		if r.Body.Messages[len(r.Body.Messages)-1].Role != "tool" {
			return scriptedllm.Tools(scriptedllm.Call{Name: "bash", Args: map[string]any{"command": check}})
		}
		return scriptedllm.Text("Checked what setup left behind.")
	})
	t.Cleanup(func() { env.llm.Generate(script) })

	fetch := `printf 'GET /fetch?token=%s HTTP/1.0\r\n\r\n' "$SETUP_TOKEN" | nc -w 5 ` + hostIP + ` ` + port + ` > setup-proof.txt; grep -q setup-ok setup-proof.txt`
	m := manifest(`
apiVersion: agentry.dev/v1alpha1
kind: AgentSession
metadata: {name: %s, namespace: %s}
spec:
  task: "[e2e:setup] Check the setup phase."
  repository: {url: "%s", ref: main}
  model: {provider: %s, name: scripted}
  tools: [bash]
  approval: {bash: Allow}
  setup:
    commands: [%q]
    env: [{name: SETUP_TOKEN, secretKeyRef: {name: setup-secret, key: token}}]
  limits: {maxTurns: 5, timeout: 5m}`, name, namespace, env.repoURL, providerName, fetch)
	if _, err := kubectlIn(m, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kubectl("-n", namespace, "delete", "agentsession", name, "--ignore-not-found", "--wait=false") }) //nolint:errcheck

	eventually(t, 4*time.Minute, "the session to end", func() bool {
		p := getSession(t, name).Status.Phase
		return p == v1.PhaseSucceeded || p == v1.PhaseFailed
	})
	if s := getSession(t, name); s.Status.Phase != v1.PhaseSucceeded {
		t.Fatalf("session ended %s: %+v", s.Status.Phase, s.Status.Conditions)
	}
	if host.withToken.Load() != 1 {
		t.Errorf("the setup-only host got %d requests with the token, want 1 (from setup)", host.withToken.Load())
	}

	var out string
	for _, r := range env.llm.Requests() {
		msgs := r.Body.Messages
		if len(msgs) > 2 && strings.Contains(msgs[1].Content, "[e2e:setup]") && msgs[len(msgs)-1].Role == "tool" {
			out = msgs[len(msgs)-1].Content
		}
	}
	t.Logf("agent-phase command output:\n%s", out)
	section := func(begin, end string) string {
		i, j := strings.Index(out, begin), strings.Index(out, end)
		if i < 0 || j < i {
			t.Fatalf("the agent's command did not run to its end: %q", out)
		}
		return out[i+len(begin) : j]
	}
	if !strings.Contains(out, "proof: HTTP/1.0 200 OK") || !strings.Contains(out, "setup-ok") {
		t.Errorf("the workspace lacks what setup fetched from the setup-only host")
	}
	if e := section("env-begin", "env-end"); strings.Contains(e, "SETUP_TOKEN") || strings.Contains(e, token) {
		t.Errorf("the agent's environment holds the setup Secret:\n%s", e)
	}
	if f := strings.TrimSpace(section("files-begin", "files-end")); f != "" {
		t.Errorf("files under the agent's mounts hold the setup Secret: %s", f)
	}
	if strings.Contains(out, "agentry: ") && strings.Contains(section("agentry: ", "connect-begin"), "setup") {
		t.Errorf("the agent container sees the setup volume")
	}
	if c := section("connect-begin", "connect-end"); strings.Contains(c, "HTTP/") {
		t.Errorf("the agent reached the setup-only host %s: %q", host.addr, c)
	}
	if host.conns.Load() != 1 {
		t.Errorf("the setup-only host saw %d connections, want only setup's", host.conns.Load())
	}

	// The transcript records the setup command before the agent's turns, its output redacted.
	tr, err := kubectlPlugin("agentry", "-n", namespace, "--console-via-apiserver", "agentry-system/agentry-console", "transcript", name, "--format", "json")
	if err != nil {
		t.Fatalf("kubectl agentry transcript: %v\n%.500s", err, tr)
	}
	var types []string
	var setup *contract.Setup
	for _, line := range strings.Split(strings.TrimSpace(tr), "\n") {
		var ev contract.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("transcript line %q: %v", line, err)
		}
		types = append(types, string(ev.Type))
		if ev.Setup != nil {
			setup = ev.Setup
		}
	}
	if len(types) < 3 || types[0] != "sessionStart" || types[1] != "setup" || setup == nil || setup.ExitCode != 0 || setup.Command != fetch {
		t.Errorf("transcript events %v, setup %+v: want sessionStart, then the setup command", types, setup)
	}
	if strings.Contains(tr, token) {
		t.Errorf("the transcript holds the setup Secret")
	}
}

// TestSetupFailureEndsTheSessionSetupFailed: on the real node, a failing setup command ends
// the session Failed/SetupFailed with the command and the end of its output in the message,
// and the model is never called.
func TestSetupFailureEndsTheSessionSetupFailed(t *testing.T) {
	const name = "setup-fails"
	m := manifest(`
apiVersion: agentry.dev/v1alpha1
kind: AgentSession
metadata: {name: %s, namespace: %s}
spec:
  task: "[e2e:setup-fails] Never asked."
  repository: {url: "%s", ref: main}
  model: {provider: %s, name: scripted}
  tools: [bash]
  setup:
    commands: ["echo resolving dependencies; echo 'npm ERR! 404 left-pad not found' >&2; exit 3", "touch never-ran"]
  limits: {maxTurns: 5, timeout: 5m}`, name, namespace, env.repoURL, providerName)
	if _, err := kubectlIn(m, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kubectl("-n", namespace, "delete", "agentsession", name, "--ignore-not-found", "--wait=false") }) //nolint:errcheck
	eventually(t, 3*time.Minute, "the session to end", func() bool {
		p := getSession(t, name).Status.Phase
		return p == v1.PhaseSucceeded || p == v1.PhaseFailed
	})
	s := getSession(t, name)
	c := meta.FindStatusCondition(s.Status.Conditions, v1.ConditionSucceeded)
	if s.Status.Phase != v1.PhaseFailed || c == nil || c.Reason != v1.ReasonSetupFailed {
		t.Fatalf("session ended %s: %+v", s.Status.Phase, s.Status.Conditions)
	}
	t.Logf("message: %s", c.Message)
	if !strings.Contains(c.Message, "exited 3") || !strings.Contains(c.Message, "npm ERR! 404 left-pad not found") {
		t.Errorf("the message lacks the exit code or the output tail: %q", c.Message)
	}
	if _, called := env.firstCall.Load("[e2e:setup-fails]"); called {
		t.Error("the model was called after a failed setup")
	}
}
