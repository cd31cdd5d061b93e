package controllers

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/test/testutil"
)

const mcpToken = "mcp-token-83c1-DO-NOT-LEAK"

// startMCP serves a real MCP server (the official Go SDK) that refuses requests without
// the token in X-Api-Key.
func startMCP(t *testing.T) *httptest.Server {
	t.Helper()
	srv := mcp.NewServer(&mcp.Implementation{Name: "status-test", Version: "v1"}, nil)
	type none struct{}
	for _, name := range []string{"search", "create_issue", "hidden"} {
		mcp.AddTool(srv, &mcp.Tool{Name: name, Description: "Does " + name + ".\nSecond line, not in status."},
			func(context.Context, *mcp.CallToolRequest, none) (*mcp.CallToolResult, any, error) {
				return &mcp.CallToolResult{}, nil, nil
			})
	}
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Api-Key") != mcpToken {
			http.Error(w, "bad key "+r.Header.Get("X-Api-Key"), http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	return hs
}

func TestMCPServerReadyFollowsItsSecretAndServer(t *testing.T) {
	ctx := testContext(t, 90*time.Second)
	hs := startMCP(t)
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := (&MCPServerReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), OperatorNamespace: operatorNS, Interval: 600 * time.Millisecond}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() { cancel(); <-done })

	name := fmt.Sprintf("tracker-%d", time.Now().UnixNano()%100000)
	m := &v1.MCPServer{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.MCPServerSpec{
		URL:     hs.URL + "/mcp",
		Headers: []v1.MCPHeader{{Name: "X-Api-Key", ValueFrom: v1.SecretKeySelector{Name: name, Key: "key"}}},
		Tools:   []string{"search", "create_issue"},
	}}
	if err := env.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), m) })
	ready := func(reason string, check func(*v1.MCPServer) error) func() error {
		return func() error {
			got := &v1.MCPServer{}
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(m), got); err != nil {
				return err
			}
			c := meta.FindStatusCondition(got.Status.Conditions, ConditionReady)
			if c == nil || c.Reason != reason {
				return fmt.Errorf("Ready = %+v, want reason %s", c, reason)
			}
			if strings.Contains(c.Message, mcpToken) {
				t.Fatalf("Ready quotes the credential: %s", c.Message)
			}
			if check != nil {
				return check(got)
			}
			return nil
		}
	}
	eventually(t, ctx, "Ready=False naming the missing Secret", ready(ReasonHeaderSecretMissing, func(got *v1.MCPServer) error {
		if c := meta.FindStatusCondition(got.Status.Conditions, ConditionReady); !strings.Contains(c.Message, "spec.headers[0]") || !strings.Contains(c.Message, operatorNS+"/"+name) {
			return fmt.Errorf("message %q does not name spec.headers[0] and the Secret", c.Message)
		}
		return nil
	}))
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: operatorNS}, Data: map[string][]byte{"key": []byte(mcpToken)}}
	if err := env.Client.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), sec) })
	eventually(t, ctx, "Ready=True with the allowed tools listed", ready(ReasonToolsListed, func(got *v1.MCPServer) error {
		want := []v1.MCPToolStatus{{Name: "create_issue", Description: "Does create_issue. …"}, {Name: "search", Description: "Does search. …"}}
		tools := slices.Clone(got.Status.Tools)
		slices.SortFunc(tools, func(a, b v1.MCPToolStatus) int { return strings.Compare(a.Name, b.Name) })
		if !slices.Equal(tools, want) {
			return fmt.Errorf("status.tools = %+v, want %+v", tools, want)
		}
		if got.Status.ObservedGeneration != got.Generation {
			return fmt.Errorf("observedGeneration %d, generation %d", got.Status.ObservedGeneration, got.Generation)
		}
		return nil
	}))
	// The server goes away: Ready turns False on the next look; the last list stays.
	hs.Close()
	eventually(t, ctx, "Ready=False Unreachable, tools kept", ready(ReasonUnreachable, func(got *v1.MCPServer) error {
		if len(got.Status.Tools) != 2 {
			return fmt.Errorf("status.tools = %+v, want the last list kept", got.Status.Tools)
		}
		return nil
	}))
}

func TestRunnerPodNamesTheMCPServersAndHoldsNoneOfTheirSecrets(t *testing.T) {
	s := testutil.Session("with-mcp", "team-a").Obj()
	s.UID = "uid-mcp"
	s.Spec.MCPServers = []v1.MCPServerReference{{Name: "tracker"}, {Name: "docs"}}
	pod := buildRunnerPod(s, testRunnerConfig, defaultSettings(t, s))
	runner := containerByName(pod, contract.ContainerRunner)
	if args := strings.Join(runner.Args, " "); !strings.Contains(args, "--mcp-server tracker --mcp-server docs") {
		t.Errorf("runner args lack the MCP servers: %s", args)
	}
	for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				t.Errorf("container %s reads Secret %s", c.Name, e.ValueFrom.SecretKeyRef.Name)
			}
		}
	}
	for _, v := range pod.Spec.Volumes {
		if v.Secret != nil {
			t.Errorf("volume %s mounts Secret %s", v.Name, v.Secret.SecretName)
		}
	}
}
