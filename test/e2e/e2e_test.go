//go:build e2e

// Package e2e runs Agentry end to end on a real cluster with the real kubectl: a session is
// applied, the operator starts a runner pod on a real node, the pod clones a repository served
// from this machine and talks to a scripted OpenAI-compatible model served from this machine.
//
// The cluster is the one `make dev` builds (hack/dev-up.sh), or any cluster with Agentry
// installed whose pods can reach E2E_HOST_IP (e.g. kind's docker network gateway). See
// docs/development.md.
//
//	E2E_HOST_IP   address this process serves git and the model on, reachable from pods
//	              (default 10.203.0.1, the dev cluster's bridge)
//	E2E_GIT_HOST, E2E_MODEL_HOST
//	              the names sessions use for those servers, as a user's would: by default
//	              git.agentry.test and model.agentry.test, which the dev cluster's DNS answers
//	              with 10.203.0.1; E2E_HOST_IP itself when E2E_HOST_IP is set (another cluster
//	              has no such names)
//	KUBECONFIG    the cluster
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentry-dev/agentry/test/scriptedllm"
	"github.com/agentry-dev/agentry/test/testutil"
)

const (
	namespace    = "agentry-e2e"
	operatorNS   = "agentry-system"
	manager      = "agentry-manager"
	providerName = "agentry-e2e"
	keySecret    = "agentry-e2e-provider-key"
)

// env is what TestMain set up, shared by the tests (which run one after another).
var env struct {
	hostIP      string
	repoURL     string // by name (E2E_GIT_HOST)
	repoAddr    string // the git server's address and port, for the tests about addresses
	modelURL    string // the scripted model's base URL by name (E2E_MODEL_HOST)
	providerKey string
	llm         *scriptedllm.Server
	firstCall   sync.Map // task marker -> time of its first model request
	gatewayURL  string   // the manager's --gateway-url, what runner pods are given
}

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	env.hostIP = getenv("E2E_HOST_IP", "10.203.0.1")
	gitHost, modelHost := "git.agentry.test", "model.agentry.test"
	if os.Getenv("E2E_HOST_IP") != "" {
		gitHost, modelHost = env.hostIP, env.hostIP
	}
	gitHost, modelHost = getenv("E2E_GIT_HOST", gitHost), getenv("E2E_MODEL_HOST", modelHost)
	env.providerKey = fmt.Sprintf("sk-e2e-provider-%d", time.Now().UnixNano())

	repoRoot, err := os.MkdirTemp("", "agentry-e2e-git-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(repoRoot)
	if err := makeRepo(filepath.Join(repoRoot, "tiny.git")); err != nil {
		return 0, err
	}
	gl, err := net.Listen("tcp", net.JoinHostPort(env.hostIP, "0"))
	if err != nil {
		return 0, fmt.Errorf("serving git on %s (is the cluster up? set E2E_HOST_IP): %w", env.hostIP, err)
	}
	gitSrv := &http.Server{Handler: &cgi.Handler{Path: gitPath(), Args: []string{"http-backend"},
		Env: []string{"GIT_PROJECT_ROOT=" + repoRoot, "GIT_HTTP_EXPORT_ALL=1"}}}
	go gitSrv.Serve(gl) //nolint:errcheck // ends with Close
	defer gitSrv.Close()
	env.repoAddr = gl.Addr().String()
	env.repoURL = "http://" + net.JoinHostPort(gitHost, portOf(env.repoAddr)) + "/tiny.git"

	env.llm, err = scriptedllm.Listen(net.JoinHostPort(env.hostIP, "0"))
	if err != nil {
		return 0, err
	}
	defer env.llm.Close()
	env.llm.Generate(script)
	llmURL, err := url.Parse(env.llm.URL)
	if err != nil {
		return 0, err
	}
	env.modelURL = "http://" + net.JoinHostPort(modelHost, llmURL.Port()) + "/v1"

	// Runner pods reach the model only through the session gateway the manager serves (the
	// apiserver's service proxy reaches it on any cluster, from anywhere).
	if _, err := kubectl("get", "--raw", "/api/v1/namespaces/"+operatorNS+"/services/https:agentry-gateway:8443/proxy/healthz"); err != nil {
		return 0, fmt.Errorf("the session gateway (Service %s/agentry-gateway) does not answer: %w", operatorNS, err)
	}
	fmt.Fprintf(os.Stderr, "e2e: model through the gateway; git %s (%s); model %s (%s)\n", env.repoURL, env.repoAddr, env.modelURL, env.llm.URL)

	env.gatewayURL, err = managerArg("--gateway-url=")
	if err != nil {
		return 0, err
	}
	restore, err := configureRoute()
	if err != nil {
		return 0, err
	}
	defer restore()
	if _, err := kubectlIn(manifest(`
apiVersion: v1
kind: Namespace
metadata:
  name: %s
  labels: {pod-security.kubernetes.io/enforce: restricted}`, namespace), "apply", "-f", "-"); err != nil {
		return 0, err
	}
	defer kubectl("delete", "namespace", namespace, "--wait=false") //nolint:errcheck // best effort
	return m.Run(), nil
}

// managerArg returns the value of the manager's flag with this prefix.
func managerArg(prefix string) (string, error) {
	out, err := kubectl("-n", operatorNS, "get", "deployment", manager, "-o", "jsonpath={.spec.template.spec.containers[0].args}")
	if err != nil {
		return "", err
	}
	var args []string
	if err := json.Unmarshal([]byte(out), &args); err != nil {
		return "", fmt.Errorf("reading the manager's args %q: %w", out, err)
	}
	for _, a := range args {
		if strings.HasPrefix(a, prefix) {
			return strings.TrimPrefix(a, prefix), nil
		}
	}
	return "", fmt.Errorf("the manager has no %s argument: %q", prefix, args)
}

// configureRoute points runner pods at the scripted model and returns how to undo it.
func configureRoute() (func(), error) {
	_, err := kubectlIn(manifest(`
apiVersion: v1
kind: Secret
metadata: {name: %s, namespace: %s}
stringData: {apiKey: %s}
---
apiVersion: agentry.dev/v1alpha1
kind: ModelProvider
metadata: {name: %s}
spec:
  api: OpenAI
  baseURL: %s
  apiKeySecretRef: {name: %s, key: apiKey}
  models: [scripted]
  defaultModel: scripted`, keySecret, operatorNS, env.providerKey, providerName, env.modelURL, keySecret), "apply", "-f", "-")
	if err != nil {
		return nil, err
	}
	deleteProvider := func() {
		kubectl("delete", "modelprovider", providerName, "--ignore-not-found")         //nolint:errcheck
		kubectl("-n", operatorNS, "delete", "secret", keySecret, "--ignore-not-found") //nolint:errcheck
	}
	env.llm.RequireKey(env.providerKey) // only the gateway has the key: a 200 proves injection
	return deleteProvider, nil
}

// waitForLeader waits until a running manager pod holds the leader lease: a replaced pod's
// lease only expires after its duration, and until then no session is reconciled.
func waitForLeader() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	leading := func() bool {
		holder, _ := kubectl("-n", operatorNS, "get", "lease", "agentry-manager.agentry.dev", "-o", "jsonpath={.spec.holderIdentity}")
		// A replaced pod still shows Running while it terminates: only pods not being deleted count.
		pods, _ := kubectl("-n", operatorNS, "get", "pods", "-l", "app.kubernetes.io/name=agentry-manager", "-o",
			`jsonpath={range .items[?(@.status.phase=="Running")]}{.metadata.name} {.metadata.deletionTimestamp}{"\n"}{end}`)
		for _, line := range strings.Split(pods, "\n") {
			f := strings.Fields(line)
			if len(f) == 1 && holder != "" && strings.HasPrefix(holder, f[0]+"_") {
				return true
			}
		}
		return false
	}
	if testutil.PollEvery(ctx, 500*time.Millisecond, testutil.Holds(leading)) != nil {
		return fmt.Errorf("no running manager pod became leader within 2m")
	}
	return nil
}

// script is the model: what it answers depends on the marker in the session's task.
func script(_ int, r scriptedllm.Request) scriptedllm.Step {
	task, turn := "", 0
	for _, m := range r.Body.Messages {
		switch m.Role {
		case "user":
			if task == "" {
				task = m.Content
			}
		case "assistant":
			turn++
		}
	}
	marker := "other"
	if i := strings.Index(task, "[e2e:"); i >= 0 {
		marker = task[i : i+strings.Index(task[i:], "]")+1]
	}
	env.firstCall.LoadOrStore(marker, time.Now())
	switch {
	case strings.HasPrefix(marker, "[e2e:success"):
		switch turn {
		case 0:
			return scriptedllm.Tools(scriptedllm.Call{Name: "list_dir", Args: map[string]any{"path": "."}})
		case 1:
			return scriptedllm.Tools(scriptedllm.Call{Name: "write_file", Args: map[string]any{"path": "NOTES.md", "content": "written by the e2e model\n"}})
		default:
			return scriptedllm.Text("Listed the workspace and wrote NOTES.md.")
		}
	case strings.HasPrefix(marker, "[e2e:steal"):
		switch turn {
		case 0:
			return scriptedllm.Tools(scriptedllm.Call{Name: "bash", Args: map[string]any{"command": "echo ran in $0 as uid $(id -u)"}})
		case 1:
			return scriptedllm.Tools(scriptedllm.Call{Name: "bash", Args: map[string]any{"command": stealCommand(env.gatewayURL)}})
		default:
			return scriptedllm.Text("Tried.")
		}
	case strings.HasPrefix(marker, "[e2e:bash"):
		if turn == 0 {
			return scriptedllm.Tools(scriptedllm.Call{Name: "bash", Args: map[string]any{"command": "echo ran in $0 as uid $(id -u)"}})
		}
		return scriptedllm.Text("Ran it.")
	case strings.HasPrefix(marker, "[e2e:hang"):
		return scriptedllm.Hang()
	case strings.HasPrefix(marker, "[e2e:failover"):
		return failoverStep(marker, turn)
	}
	return scriptedllm.Text("Nothing to do.")
}

// stealCommand is what hostile agent code does to act as its session: look for the
// gateway token in the files, the environments and command lines of every process it can
// see, then call the gateway with everything that looks like a token, and with none.
func stealCommand(gateway string) string {
	return strings.Join([]string{
		`echo "files:"; ls -la /var/run/secrets 2>&1; cat /var/run/secrets/agentry.dev/gateway/token 2>&1`,
		`cat /var/run/secrets/kubernetes.io/serviceaccount/token 2>&1`,
		`echo "processes: $(ls -d /proc/[0-9]* | wc -l)"`,
		`for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do tr '\0' ' ' <"$f"; echo; done 2>/dev/null`,
		`env`,
		`chat='{"model":"scripted","messages":[{"role":"user","content":"hi"}]}'`,
		`for t in $(grep -rhoE 'eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+' /proc/[0-9]*/environ /proc/[0-9]*/cmdline /var/run /agentry /tmp /home 2>/dev/null | sort -u); do ` +
			`echo "found a token: $t"; httpc -k -d "$chat" -H "Authorization: Bearer $t" ` + gateway + `/v1/chat/completions 2>&1 | head -c 300; echo; done`,
		`echo "no token:"; httpc -k -d "$chat" ` + gateway + `/v1/chat/completions 2>&1 | head -c 300; echo`,
		`echo "forged finish:"; httpc -k -d '{}' -H "Authorization: Bearer forged" ` + gateway + `/agentry/v1/finish 2>&1 | head -c 300; echo`,
	}, "; ")
}

func makeRepo(bare string) error {
	work, err := os.MkdirTemp("", "agentry-e2e-work-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	files := map[string]string{"README.md": "# tiny\n", "main.go": "package main\n\nfunc main() {}\n"}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(work, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	for _, args := range [][]string{
		{"-C", work, "init", "-q", "-b", "main"},
		{"-C", work, "add", "-A"},
		{"-C", work, "-c", "user.name=e2e", "-c", "user.email=e2e@agentry.invalid", "commit", "-qm", "Initial commit"},
		{"clone", "-q", "--bare", work, bare},
	} {
		if out, err := exec.Command(gitPath(), args...).CombinedOutput(); err != nil {
			return fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

func gitPath() string {
	if p, err := exec.LookPath("git"); err == nil {
		return p
	}
	return "/usr/bin/git"
}

// portOf returns the port of a host:port address.
func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func manifest(format string, a ...any) string {
	return strings.TrimSpace(fmt.Sprintf(format, a...)) + "\n"
}

func kubectl(args ...string) (string, error) { return kubectlIn("", args...) }

func kubectlIn(stdin string, args ...string) (string, error) {
	cmd := exec.Command("kubectl", args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
