package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
)

// upstream is a provider whose timing the test controls. It answers with a
// completion of min(max_tokens, completion) tokens and reports usage honestly.
type upstream struct {
	*httptest.Server
	prompt, completion int64
	// hold, when set, keeps each call open until it is closed.
	hold chan struct{}
	// afterContent, on streams, runs between the content and the usage chunk.
	afterContent func(r *http.Request) bool

	mu     sync.Mutex
	bodies []map[string]any
}

func newUpstream(t *testing.T, prompt, completion int64) *upstream {
	u := &upstream{prompt: prompt, completion: completion}
	u.Server = httptest.NewServer(http.HandlerFunc(u.handle))
	t.Cleanup(u.Close)
	return u
}

// maxOutput is the output bound a forwarded body carries, or def.
func maxOutput(body map[string]any, def int64) int64 {
	for _, k := range []string{"max_tokens", "max_completion_tokens"} {
		if m, ok := body[k].(float64); ok {
			def = min(def, int64(m))
		}
	}
	return def
}

func (u *upstream) calls() []map[string]any {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]map[string]any(nil), u.bodies...)
}

func (u *upstream) handle(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	u.mu.Lock()
	u.bodies = append(u.bodies, body)
	u.mu.Unlock()
	if u.hold != nil {
		select {
		case <-u.hold:
		case <-r.Context().Done():
			return
		}
	}
	out := min(u.completion, maxOutput(body, u.completion))
	usage := fmt.Sprintf(`{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}`, u.prompt, out, u.prompt+out)
	if s, _ := body["stream"].(bool); !s {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"done"},"finish_reason":"stop"}],"usage":%s}`, usage)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fmt.Fprint(w, "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"all the content\"}}]}\n\n")
	w.(http.Flusher).Flush()
	if u.afterContent != nil && !u.afterContent(r) {
		return
	}
	fmt.Fprintf(w, "data: {\"id\":\"c\",\"choices\":[],\"usage\":%s}\n\ndata: [DONE]\n\n", usage)
}

// provider registers a ModelProvider for u and returns its name.
func (f *fixture) upstreamProvider(u *upstream, mutate ...func(*v1.ModelProviderSpec)) string {
	f.t.Helper()
	p := &v1.ModelProvider{ObjectMeta: metav1.ObjectMeta{Name: f.ns + "-up"}, Spec: v1.ModelProviderSpec{BaseURL: u.URL}}
	for _, m := range mutate {
		m(&p.Spec)
	}
	if err := env.Client.Create(context.Background(), p); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = env.Client.Delete(context.Background(), p) })
	return p.Name
}

func usesProvider(name string) func(*v1.AgentSession) {
	return func(s *v1.AgentSession) { s.Spec.Model.Provider = name }
}

func chatBody(extra string) string {
	return `{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]` + extra + `}`
}

func usedTokens(f *fixture, s *v1.AgentSession) int64 {
	if u := f.get(s).Status.Usage; u != nil {
		return u.TotalTokens
	}
	return 0
}

// Attack: read the content of a stream and hang up before the usage chunk, so
// the call is never charged; repeat. The gateway now reads the stream to its
// end after the client left and charges what the provider reported.
func TestBudgetChargesStreamAbandonedBeforeUsage(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	f := newFixture(t)
	up := newUpstream(t, 100, 1700)
	// The provider sends the usage only if the gateway is still reading a moment
	// after the client hung up (the gateway before the fix cancelled at once).
	up.afterContent = func(r *http.Request) bool {
		select {
		case <-r.Context().Done():
			return false
		case <-time.After(500 * time.Millisecond):
			return true
		}
	}
	g := startGateway(t)
	s := f.session("abandoner", usesProvider(f.upstreamProvider(up)), func(s *v1.AgentSession) { s.Spec.Limits.MaxTokens = 1000 })
	tok := f.token(contract.GatewayAudience, boundTo(f.runnerPod(s)))

	req, _ := http.NewRequest(http.MethodPost, g.URL+contract.PathChatCompletions, strings.NewReader(chatBody(`,"stream":true`)))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Close = true
	resp, err := gwClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if _, err := io.ReadAtLeast(resp.Body, buf, 10); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %d %v", resp.StatusCode, err)
	}
	_ = resp.Body.Close() // hang up after the content, before the usage

	// The provider clamps to the forwarded max_tokens; whatever it reports is charged.
	calls := up.calls()
	maxOut := maxOutput(calls[0], up.completion)
	eventually(t, 10*time.Second, "the abandoned stream to be charged", func() bool { return usedTokens(f, s) == 100+maxOut })
	code, body := post(t, g.URL+contract.PathChatCompletions, tok, chatBody(`,"stream":true`))
	if code != http.StatusTooManyRequests || !strings.Contains(body, contract.ErrorCodeBudgetExceeded) {
		t.Errorf("second call after an abandoned stream: %d %s, want 429 budget_exceeded", code, body)
	}
	if n := len(up.calls()); n != 1 {
		t.Errorf("provider got %d calls, want 1", n)
	}
}

// A stream that ends without usage (the client left and the provider never
// sent it) is charged the call's whole reservation.
func TestBudgetChargesReservationWhenNoUsage(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	f := newFixture(t)
	up := newUpstream(t, 100, 1700)
	up.afterContent = func(*http.Request) bool { return false }
	g := startGateway(t)
	s := f.session("nousage", usesProvider(f.upstreamProvider(up)), func(s *v1.AgentSession) {
		s.Spec.Limits.MaxTokens = 1000
		s.Spec.Model.MaxOutputTokens = ptr.To[int32](200)
	})
	tok := f.token(contract.GatewayAudience, boundTo(f.runnerPod(s)))
	if code, body := post(t, g.URL+contract.PathChatCompletions, tok, chatBody(`,"stream":true`)); code != http.StatusOK {
		t.Fatalf("call: %d %s", code, body)
	}
	eventually(t, 10*time.Second, "the reservation to be charged", func() bool {
		n := usedTokens(f, s)
		return n > 200 && n < 300 // 200 output + the prompt estimate
	})
}

// Attack: ten calls at once against maxTokens 1,000, each checked before any
// was charged. Reservations let through only what fits.
func TestBudgetReservesParallelCalls(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	f := newFixture(t)
	up := newUpstream(t, 20, 300)
	up.hold = make(chan struct{})
	g := startGateway(t)
	s := f.session("parallel", usesProvider(f.upstreamProvider(up)), func(s *v1.AgentSession) { s.Spec.Limits.MaxTokens = 1000 })
	tok := f.token(contract.GatewayAudience, boundTo(f.runnerPod(s)))

	type result struct {
		code int
		body string
	}
	results := make(chan result, 10)
	for range 10 {
		go func() {
			code, body := post(t, g.URL+contract.PathChatCompletions, tok, chatBody(`,"max_tokens":300`))
			results <- result{code, body}
		}()
	}
	var refused []result
	eventually(t, 10*time.Second, "every call to reach the provider or be refused", func() bool {
		for len(results) > 0 {
			refused = append(refused, <-results)
		}
		return len(up.calls())+len(refused) == 10
	})
	close(up.hold)
	ok := 0
	for range 10 - len(refused) {
		if r := <-results; r.code == http.StatusOK {
			ok++
		}
	}
	var reserved, charged int64
	for _, c := range up.calls() {
		reserved += int64(c["max_tokens"].(float64))
		charged += 20 + int64(c["max_tokens"].(float64))
	}
	if reserved > 1000 {
		t.Errorf("%d calls forwarded with max_tokens summing to %d, over maxTokens 1000", len(up.calls()), reserved)
	}
	if ok == 0 || ok > 4 {
		t.Errorf("%d calls succeeded, want 1..4", ok)
	}
	eventually(t, 10*time.Second, "status.usage to show every forwarded call", func() bool { return usedTokens(f, s) == charged })
	if charged > 1000+320 {
		t.Errorf("charged %d tokens, more than maxTokens 1000 plus one call's reservation", charged)
	}
	if code, body := post(t, g.URL+contract.PathChatCompletions, tok, chatBody("")); code != http.StatusTooManyRequests || !strings.Contains(body, contract.ErrorCodeBudgetExceeded) {
		t.Errorf("call after the budget is spent: %d %s", code, body)
	}
}

// Attack: ask for n choices or a huge max_tokens to spend more than one
// call's bound. n > 1 is refused; max_tokens is clamped to the session's cap.
func TestProxyClampsNAndMaxTokens(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	f := newFixture(t)
	up := newUpstream(t, 10, 50)
	g := startGateway(t)
	prov := f.upstreamProvider(up)
	capped := f.session("capped", usesProvider(prov), func(s *v1.AgentSession) { s.Spec.Model.MaxOutputTokens = ptr.To[int32](100) })
	tok := f.token(contract.GatewayAudience, boundTo(f.runnerPod(capped)))
	if code, body := post(t, g.URL+contract.PathChatCompletions, tok, chatBody(`,"n":5`)); code != http.StatusBadRequest || !strings.Contains(body, "n must be 1") {
		t.Errorf("n=5: %d %s, want 400", code, body)
	}
	// Image parts cost a provider hundreds of tokens each for a few bytes of URL: the prompt
	// estimate could not bound them, so only text is taken; a text part passes.
	images := `{"model":"gpt-test","messages":[{"role":"user","content":[{"type":"text","text":"look"}` +
		strings.Repeat(`,{"type":"image_url","image_url":{"url":"https://x.test/a.png","detail":"high"}}`, 100) + `]}]}`
	if code, body := post(t, g.URL+contract.PathChatCompletions, tok, images); code != http.StatusBadRequest ||
		!strings.Contains(body, `messages[0].content[1] has type \"image_url\": the gateway budgets text only`) {
		t.Errorf("100 image parts: %d %s, want 400 naming the part", code, body)
	}
	if n := len(up.calls()); n != 0 {
		t.Fatalf("a refused call reached the provider")
	}
	cases := []struct {
		extra, field string
		want         float64
	}{
		{`,"n":1,"max_tokens":100000`, "max_tokens", 100},
		{``, "max_completion_tokens", 100},
		{`,"max_tokens":40`, "max_tokens", 40},
		{`,"max_completion_tokens":100000`, "max_completion_tokens", 100},
	}
	textParts := `{"model":"gpt-test","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`
	if code, body := post(t, g.URL+contract.PathChatCompletions, tok, textParts); code != http.StatusOK {
		t.Errorf("content as text parts: %d %s", code, body)
	}
	before := len(up.calls())
	for i, c := range cases {
		if code, body := post(t, g.URL+contract.PathChatCompletions, tok, chatBody(c.extra)); code != http.StatusOK {
			t.Fatalf("%s: %d %s", c.extra, code, body)
		}
		if calls := up.calls(); len(calls) <= before+i {
			t.Fatalf("%s: provider got %d calls", c.extra, len(calls))
		} else if got := calls[before+i][c.field]; got != c.want {
			t.Errorf("%s: provider got %s=%v, want %v", c.extra, c.field, got, c.want)
		}
	}
	open := f.session("uncapped", usesProvider(prov))
	tok = f.token(contract.GatewayAudience, boundTo(f.runnerPod(open)))
	if code, body := post(t, g.URL+contract.PathChatCompletions, tok, chatBody(`,"max_tokens":10000000`)); code != http.StatusOK {
		t.Fatalf("uncapped: %d %s", code, body)
	}
	calls := up.calls()
	if got := calls[len(calls)-1]["max_tokens"]; got != float64(8192) {
		t.Errorf("uncapped session: provider got max_tokens=%v, want the default cap 8192", got)
	}
}

// The gateway writes the namespace's token use to AgentPolicy status.
func TestAgentPolicyStatusShowsTokensUsed(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	ctx := context.Background()
	f := newFixture(t)
	up := newUpstream(t, 30, 12)
	g := startGateway(t)
	policy := &v1.AgentPolicy{ObjectMeta: metav1.ObjectMeta{Name: "budget", Namespace: f.ns},
		Spec: v1.AgentPolicySpec{TokenBudget: &v1.TokenBudget{Tokens: 100000, Window: &metav1.Duration{Duration: time.Hour}}}}
	if err := env.Client.Create(ctx, policy); err != nil {
		t.Fatal(err)
	}
	s := f.session("counted", usesProvider(f.upstreamProvider(up)))
	tok := f.token(contract.GatewayAudience, boundTo(f.runnerPod(s)))
	for range 2 {
		if code, body := post(t, g.URL+contract.PathChatCompletions, tok, chatBody("")); code != http.StatusOK {
			t.Fatalf("call: %d %s", code, body)
		}
	}
	got := &v1.AgentPolicy{}
	eventually(t, 10*time.Second, "AgentPolicy status.tokensUsed", func() bool {
		return env.Client.Get(ctx, client.ObjectKeyFromObject(policy), got) == nil && got.Status.TokensUsed == 84
	})
	if ws := got.Status.WindowStart; ws == nil || !ws.Time.Equal(ws.Time.Truncate(time.Hour)) || time.Since(ws.Time) > time.Hour {
		t.Errorf("windowStart = %v, want the start of this hour", ws)
	}
}

// spec.rateLimits: requests and tokens per minute, refused with 429 and Retry-After.
func TestProviderRateLimits(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	f := newFixture(t)
	up := newUpstream(t, 10, 50)
	g := startGateway(t)
	rpm := f.session("rpm", usesProvider(f.upstreamProvider(up, func(p *v1.ModelProviderSpec) {
		p.RateLimits = &v1.RateLimits{RequestsPerMinute: ptr.To[int32](2)}
	})))
	tok := f.token(contract.GatewayAudience, boundTo(f.runnerPod(rpm)))
	for range 2 {
		if code, body := post(t, g.URL+contract.PathChatCompletions, tok, chatBody("")); code != http.StatusOK {
			t.Fatalf("call within the limit: %d %s", code, body)
		}
	}
	resp := postResp(t, g.URL+contract.PathChatCompletions, tok, chatBody(""))
	if resp.code != http.StatusTooManyRequests || !strings.Contains(resp.body, "rate_limit_exceeded") || resp.retryAfter == "" || resp.retryAfter == "0" {
		t.Errorf("third call in a minute: %d Retry-After=%q %s", resp.code, resp.retryAfter, resp.body)
	}
	if strings.Contains(resp.body, contract.ErrorCodeBudgetExceeded) {
		t.Errorf("a rate limit must not read as a spent budget: %s", resp.body)
	}
	if n := len(up.calls()); n != 2 {
		t.Errorf("provider got %d calls, want 2", n)
	}

	// Tokens per minute: each call reserves its prompt estimate plus max_tokens.
	f2 := newFixture(t)
	up2 := newUpstream(t, 10, 300)
	tpm := f2.session("tpm", usesProvider(f2.upstreamProvider(up2, func(p *v1.ModelProviderSpec) {
		p.RateLimits = &v1.RateLimits{TokensPerMinute: ptr.To[int64](500)}
	})))
	tok2 := f2.token(contract.GatewayAudience, boundTo(f2.runnerPod(tpm)))
	if code, body := post(t, g.URL+contract.PathChatCompletions, tok2, chatBody(`,"max_tokens":300`)); code != http.StatusOK {
		t.Fatalf("first call: %d %s", code, body)
	}
	resp = postResp(t, g.URL+contract.PathChatCompletions, tok2, chatBody(`,"max_tokens":300`))
	if resp.code != http.StatusTooManyRequests || resp.retryAfter == "" {
		t.Errorf("call past tokensPerMinute: %d Retry-After=%q %s", resp.code, resp.retryAfter, resp.body)
	}
}

type response struct {
	code             int
	body, retryAfter string
}

func postResp(t *testing.T, url, token, body string) response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Close = true
	resp, err := gwClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, string(b), resp.Header.Get("Retry-After")}
}
