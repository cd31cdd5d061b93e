//go:build e2e

package e2e

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/agentry-dev/agentry/test/scriptedllm"
)

// devUp runs `make dev`'s script with extra environment and returns its output.
func devUp(t *testing.T, extra ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "../../hack/dev-up.sh")
	cmd.Env = append(os.Environ(), append([]string{"AGENTRY_DEV_WAIT=180", "OPENAI_API_KEY=", "OPENAI_BASE_URL=", "AGENTRY_MODEL="}, extra...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// With OPENAI_API_KEY and OPENAI_BASE_URL in the environment, `make dev` points the default
// ModelProvider at that endpoint and its sample session runs against it: here a second
// scripted model on another port that accepts only another key. The key is only in the
// Secret; the next plain `make dev` goes back to the built-in scripted model.
func TestMakeDevUsesTheModelInTheEnvironment(t *testing.T) {
	if os.Getenv("KUBECONFIG") != "/var/lib/agentry-cluster/admin.kubeconfig" || os.Geteuid() != 0 {
		t.Skip("make dev's own cluster only (E2E_CLUSTER=dev, as root)")
	}
	const key, model = "sk-e2e-real-endpoint-5b2f", "e2e-real-model"
	real, err := scriptedllm.Listen(net.JoinHostPort(env.hostIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer real.Close()
	real.RequireKey(key)
	real.Generate(func(_ int, r scriptedllm.Request) scriptedllm.Step {
		turns := 0
		for _, m := range r.Body.Messages {
			if m.Role == "assistant" {
				turns++
			}
		}
		if turns == 0 {
			return scriptedllm.Tools(scriptedllm.Call{Name: "write_file", Args: map[string]any{"path": "HELLO.md", "content": "hello from the endpoint in the environment\n"}})
		}
		return scriptedllm.Text("Wrote HELLO.md through the configured endpoint.")
	})
	t.Cleanup(func() {
		if out, err := devUp(t); err != nil {
			t.Errorf("make dev without a key did not restore the scripted model: %v\n%s", err, out)
		}
	})

	out, err := devUp(t, "OPENAI_API_KEY="+key, "OPENAI_BASE_URL="+real.URL, "AGENTRY_MODEL="+model)
	t.Logf("make dev:\n%s", out)
	if err != nil {
		t.Fatalf("make dev with a model endpoint in the environment failed: %v", err)
	}
	if strings.Contains(out, key) {
		t.Error("make dev printed the API key")
	}
	if !strings.Contains(out, "Model: "+model+" at "+strings.TrimSuffix(real.URL, "/")) || !strings.Contains(out, "Wrote HELLO.md through the configured endpoint.") {
		t.Error("make dev's summary does not show the configured endpoint's model and answer")
	}
	reqs := real.Requests()
	if len(reqs) < 2 {
		t.Fatalf("the configured endpoint got %d requests", len(reqs))
	}
	for _, r := range reqs {
		if r.Body.Model != model {
			t.Errorf("request for model %q, want %q", r.Body.Model, model)
		}
	}
	secret, err := kubectl("-n", operatorNS, "get", "secret", "openai-api-key", "-o", "jsonpath={.data.apiKey}")
	if err != nil || secret == "" {
		t.Errorf("the key is not in the Secret agentry-system/openai-api-key: %v", err)
	}
	if ann, _ := kubectl("-n", operatorNS, "get", "secret", "openai-api-key", "-o", "jsonpath={.metadata.annotations}"); strings.Contains(ann, "last-applied") {
		t.Error("the Secret keeps a last-applied copy of the key")
	}
}
