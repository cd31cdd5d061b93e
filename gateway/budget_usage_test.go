package gateway_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/gateway"
)

// startCachedGateway serves a gateway as cmd/main.go wires it: reads from an informer
// cache of ns (and the operator's namespace) and token budgets kept from its informers.
func startCachedGateway(t *testing.T, ns string) *gw {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	informers, err := cache.New(env.Config, cache.Options{Scheme: env.Scheme,
		DefaultNamespaces: map[string]cache.Config{ns: {}, operatorNS: {}}})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme, Cache: &client.CacheOptions{Reader: informers}})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	srv, err := gateway.New(ctx, gateway.Config{
		OperatorNamespace: operatorNS, StatusInterval: 200 * time.Millisecond, GetCertificate: certs.GetCertificate,
		ShutdownTimeout: 300 * time.Millisecond, Informers: informers,
		S3: gateway.S3Config{Endpoint: "http://" + s3.Endpoint, Bucket: bucket, Prefix: "sessions", AccessKey: s3.AccessKey, SecretKey: s3.SecretKey, OpTimeout: 3 * time.Second},
	}, c, env.Client)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cacheDone, done := make(chan error, 1), make(chan error, 1)
	go func() { cacheDone <- informers.Start(ctx) }()
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done; <-cacheDone })
	return &gw{t: t, addr: ln.Addr().String(), URL: "https://" + srv.Addr(), srv: srv}
}

// applyUsage writes a session's status.usage as another gateway replica does: server-side
// apply under the gateway's field manager, straight to the apiserver.
func applyUsage(t *testing.T, s *v1.AgentSession, total int64) {
	t.Helper()
	applyUsageOf(t, s, contract.Usage{PromptTokens: total})
}

// applyUsageOf is applyUsage with prompt and completion tokens.
func applyUsageOf(t *testing.T, s *v1.AgentSession, u contract.Usage) {
	t.Helper()
	body := fmt.Sprintf(`{"apiVersion":%q,"kind":"AgentSession","metadata":{"name":%q,"namespace":%q,"uid":%q},"status":{"usage":{"promptTokens":%d,"completionTokens":%d,"totalTokens":%d}}}`,
		v1.GroupVersion.String(), s.Name, s.Namespace, s.UID, u.PromptTokens, u.CompletionTokens, u.Total())
	obj := &v1.AgentSession{ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace}}
	if err := env.Client.Status().Patch(context.Background(), obj, client.RawPatch(types.ApplyPatchType, []byte(body)), gateway.FieldOwner, client.ForceOwnership); err != nil {
		t.Fatalf("applying usage of %s as another replica: %v", s.Name, err)
	}
}

// budgetedNamespace is a fixture whose namespace has an AgentPolicy with a token budget of
// the given size and window, served by a cached gateway, with a provider that reports 42
// tokens (30 + 12) a call.
func budgetedNamespace(t *testing.T, budget int64, window time.Duration) (f *fixture, up *upstream, g *gw, policy *v1.AgentPolicy, prov string) {
	t.Helper()
	f = newFixture(t)
	up = newUpstream(t, 30, 12)
	policy = &v1.AgentPolicy{ObjectMeta: metav1.ObjectMeta{Name: "budget", Namespace: f.ns},
		Spec: v1.AgentPolicySpec{TokenBudget: &v1.TokenBudget{Tokens: budget, Window: &metav1.Duration{Duration: window}}}}
	if err := env.Client.Create(context.Background(), policy); err != nil {
		t.Fatal(err)
	}
	return f, up, startCachedGateway(t, f.ns), policy, f.upstreamProvider(up)
}

// Another replica charged a session of the namespace almost the whole budget and wrote it
// to status. This replica never served that session; its next call for another session of
// the namespace must be refused. The budget is large, so this replica's own calls could not
// spend it while the test waits: only the other replica's write can refuse the call.
func TestNamespaceBudgetCountsUsageAnotherReplicaWrote(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	ctx := context.Background()
	const budget = 1_000_000
	f, _, g, policy, prov := budgetedNamespace(t, budget, 24*time.Hour)
	here := f.session("here", usesProvider(prov))
	elsewhere := f.session("elsewhere", usesProvider(prov))
	tok := f.token(contract.GatewayAudience, boundTo(f.runnerPod(here)))

	if code, body := post(t, g.URL+contract.PathChatCompletions, tok, chatBody("")); code != http.StatusOK {
		t.Fatalf("first call, with the budget unspent: %d %s", code, body)
	}
	applyUsage(t, elsewhere, budget-10)
	var code int
	var body string
	eventually(t, 10*time.Second, "a call to be refused for the usage another replica wrote", func() bool {
		code, body = post(t, g.URL+contract.PathChatCompletions, tok, chatBody(""))
		return code != http.StatusOK
	})
	if code != http.StatusTooManyRequests || !strings.Contains(body, contract.ErrorCodeBudgetExceeded) || !strings.Contains(body, "AgentPolicy budget") {
		t.Errorf("call after another replica spent the budget: %d %s, want 429 budget_exceeded naming AgentPolicy budget", code, body)
	}

	// The budget follows the policy: raised, the same call passes again.
	fresh := &v1.AgentPolicy{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(policy), fresh); err != nil {
		t.Fatal(err)
	}
	fresh.Spec.TokenBudget.Tokens = 2 * budget
	if err := env.Client.Update(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a call to pass once the budget is raised", func() bool {
		code, body = post(t, g.URL+contract.PathChatCompletions, tok, chatBody(""))
		return code == http.StatusOK
	})
}

// Deleting sessions is no way around a namespace budget. A session that spent the budget
// is deleted (as ttlSecondsAfterFinished or kubectl delete would) within the window: the
// gateway keeps counting what it used, records it in the AgentPolicy's status, and a
// gateway started afterwards, which never saw the session, refuses the next call too.
func TestDeletingSessionsDoesNotGiveTheirTokensBack(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	ctx := context.Background()
	const budget = 1_000_000
	f, up, g, policy, prov := budgetedNamespace(t, budget, 168*time.Hour)
	here := f.session("here", usesProvider(prov))
	spent := f.session("spent", usesProvider(prov))
	tok := f.token(contract.GatewayAudience, boundTo(f.runnerPod(here)))
	applyUsage(t, spent, budget-10)
	f.setStatus(spent, `{"status":{"phase":"Succeeded","completionTime":"`+time.Now().UTC().Format(time.RFC3339)+`"}}`)
	refused := func(g *gw) func() bool {
		return func() bool {
			code, body := post(t, g.URL+contract.PathChatCompletions, tok, chatBody(""))
			return code == http.StatusTooManyRequests && strings.Contains(body, "budget")
		}
	}
	eventually(t, 10*time.Second, "the spent budget to refuse calls", refused(g))
	before := len(up.calls()) // calls sent before this gateway's cache had the spent session

	if err := env.Client.Delete(ctx, spent); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the AgentPolicy's status to record the deleted session's tokens", func() bool {
		p := &v1.AgentPolicy{}
		return env.Client.Get(ctx, client.ObjectKeyFromObject(policy), p) == nil && p.Status.TokensUsed >= budget-10
	})
	for i := range 5 {
		if !refused(g)() {
			t.Fatalf("call %d after the spent session was deleted passed: its tokens were given back", i)
		}
	}
	if n := len(up.calls()) - before; n != 0 {
		t.Errorf("the provider received %d calls after the deletion", n)
	}

	// A replica started now has never seen the deleted session.
	if !refused(startCachedGateway(t, f.ns))() {
		t.Error("a gateway started after the deletion let a call through: the recorded use was not a floor")
	}
}

// A runner's finish summary is its claim, and the gateway raises a session's usage to it
// (calls a killed replica charged and never wrote). Claims near the int64 limit from two
// sessions once wrapped the namespace's sum negative and let a spent budget pass calls
// again; every count taken from outside is now bounded, and no sum overflows.
func TestRunnerUsageClaimsCannotWrapTheNamespaceBudget(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	const budget = 1000
	f, _, g, _, prov := budgetedNamespace(t, budget, 24*time.Hour)
	other := f.session("other", usesProvider(prov))
	applyUsage(t, other, budget-5)
	otherTok := f.token(contract.GatewayAudience, boundTo(f.runnerPod(other)))
	eventually(t, 10*time.Second, "the spent budget to refuse calls", func() bool {
		code, _ := post(t, g.URL+contract.PathChatCompletions, otherTok, chatBody(""))
		return code == http.StatusTooManyRequests
	})
	var evil []*v1.AgentSession
	for _, name := range []string{"evil1", "evil2"} {
		s := f.session(name, usesProvider(prov))
		tok := f.token(contract.GatewayAudience, boundTo(f.runnerPod(s)))
		if code, body := post(t, g.URL+contract.PathFinish, tok, `{"lastSeq":0,"summary":{"outcome":"completed","usage":{"promptTokens":9223372036854775000,"completionTokens":9223372036854775000}}}`); code != http.StatusOK {
			t.Fatalf("finish of %s: %d %s", name, code, body)
		}
		evil = append(evil, s)
	}
	for _, s := range evil {
		eventually(t, 10*time.Second, s.Name+"'s usage to be raised to its bounded claim", func() bool {
			return usedTokens(f, s) == 2*contract.MaxTokenCount
		})
	}
	if code, body := post(t, g.URL+contract.PathChatCompletions, otherTok, chatBody("")); code != http.StatusTooManyRequests {
		t.Errorf("the spent budget after two huge claims: %d %s, want 429", code, body)
	}
}
