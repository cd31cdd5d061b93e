package gateway_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/test/scriptedllm"
	"github.com/agentry-dev/agentry/test/testutil"
)

// balancer is the agentry-gateway Service at its worst for the replicas: no affinity,
// each kind of request (model call, event batch, ...) to the next live replica in turn, so
// one session's calls, events and finish are spread over both.
type balancer struct {
	URL      string
	mu       sync.Mutex
	replicas []*url.URL
	down     []bool
	served   map[string][]int // by path
	next     map[string]int
}

func startBalancer(t *testing.T, replicas ...*gw) *balancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &balancer{URL: "https://" + ln.Addr().String(), down: make([]bool, len(replicas)), served: map[string][]int{}, next: map[string]int{}}
	for _, g := range replicas {
		u, _ := url.Parse(g.URL)
		b.replicas = append(b.replicas, u)
	}
	proxy := &httputil.ReverseProxy{
		Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(b.pick(pr.In.URL.Path)) },
		Transport:     gwClient.Transport,
		FlushInterval: -1,
		ErrorHandler:  func(w http.ResponseWriter, _ *http.Request, _ error) { w.WriteHeader(http.StatusBadGateway) },
	}
	srv := &http.Server{Handler: proxy, TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate}}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	return b
}

func (b *balancer) pick(path string) *url.URL {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.served[path] == nil {
		b.served[path] = make([]int, len(b.replicas))
	}
	for range b.replicas {
		i := b.next[path] % len(b.replicas)
		b.next[path]++
		if !b.down[i] {
			b.served[path][i]++
			return b.replicas[i]
		}
	}
	return b.replicas[0]
}

// remove takes replica i out of rotation, as endpoints drop a dead pod.
func (b *balancer) remove(i int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.down[i] = true
}

// calls is how many model calls each replica served.
func (b *balancer) calls() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append(make([]int, len(b.replicas)), b.served[contract.PathChatCompletions]...)[len(b.replicas):]
}

var errKilled = errors.New("replica killed")

// mortal is a replica's apiserver client that the test cuts as SIGKILL would: whatever
// the replica had not written by then is never written.
type mortal struct {
	client.Client
	dead atomic.Bool
}

func (m *mortal) Status() client.SubResourceWriter {
	return &mortalWriter{SubResourceWriter: m.Client.Status(), dead: &m.dead}
}

func (m *mortal) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	if m.dead.Load() {
		return errKilled
	}
	return m.Client.Patch(ctx, obj, patch, opts...)
}

type mortalWriter struct {
	client.SubResourceWriter
	dead *atomic.Bool
}

func (w *mortalWriter) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	if w.dead.Load() {
		return errKilled
	}
	return w.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}

func (w *mortalWriter) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	if w.dead.Load() {
		return errKilled
	}
	return w.SubResourceWriter.Update(ctx, obj, opts...)
}

// startReplica is one manager replica's gateway, with an apiserver client the test can
// cut, writing status every statusInterval (200ms when zero).
func startReplica(t *testing.T, statusInterval time.Duration) (*gw, *mortal) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &mortal{Client: env.Client}
	g := &gw{t: t, addr: ln.Addr().String(), URL: "https://" + ln.Addr().String(), client: m, statusInterval: statusInterval}
	g.serve(ln)
	t.Cleanup(g.stop)
	return g, m
}

// metered answers the writer's script with a fixed, distinct usage per call, and sums
// what it answered: the provider's bill.
type metered struct {
	w      *writer
	mu     sync.Mutex
	billed contract.Usage
	calls  int
}

func (m *metered) step(n int, r scriptedllm.Request) scriptedllm.Step {
	st := m.w.step(n, r)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	u := scriptedllm.Usage{PromptTokens: 1000 + 7*m.calls, CompletionTokens: 50 + m.calls, CachedTokens: m.calls}
	st.Usage = &u
	m.billed = m.billed.Add(contract.Usage{PromptTokens: int64(u.PromptTokens), CompletionTokens: int64(u.CompletionTokens), CachedTokens: int64(u.CachedTokens)})
	return st
}

func (m *metered) bill() contract.Usage {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.billed
}

// transcriptUsage sums the usage of the model responses the archived transcript records:
// what the runner received.
func transcriptUsage(t *testing.T, s *v1.AgentSession, f *fixture) contract.Usage {
	t.Helper()
	var sum contract.Usage
	for _, line := range bytes.Split(objectBytes(t, f.get(s).Status.Transcript.URI), []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		ev, err := contract.DecodeEvent(line)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == contract.EventModelResponse {
			sum = sum.Add(ev.ModelResponse.Usage)
		}
	}
	return sum
}

func usageIs(got *v1.Usage, want contract.Usage) error {
	if got == nil || got.PromptTokens != want.PromptTokens || got.CompletionTokens != want.CompletionTokens ||
		got.CachedTokens != want.CachedTokens || got.TotalTokens != want.Total() {
		return fmt.Errorf("status.usage = %+v, want %+v (total %d)", got, want, want.Total())
	}
	return nil
}

// assertUsage waits until status.usage is want (a replica's last charges are written
// within a few status intervals), then checks it stays so: nothing is counted twice late.
func assertUsage(t *testing.T, f *fixture, s *v1.AgentSession, what string, want contract.Usage) {
	t.Helper()
	testutil.Within(t, 10*time.Second, "status.usage to be "+what, func() error { return usageIs(f.get(s).Status.Usage, want) })
	time.Sleep(time.Second) // five status intervals: any late write would have landed
	if err := usageIs(f.get(s).Status.Usage, want); err != nil {
		t.Errorf("after a second: %v", err)
	}
}

// Two replicas serve one session turn about: every model call, event batch and the finish
// may land on either. Each replica adds only what it charged, under an optimistic lock, so
// the session's usage is exactly the provider's bill and the transcript is whole.
func TestTwoReplicasCountEveryTokenOnceAndKeepTheWholeTranscript(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	m := &metered{w: &writer{files: 8}}
	f := newFixture(t)
	f.llm.Generate(m.step)
	a, _ := startReplica(t, 0)
	b, _ := startReplica(t, 0)
	lb := startBalancer(t, a, b)
	s := f.session("replicas")
	r := runnerFor(t, s, &gw{URL: lb.URL}, f.tokenFile(f.runnerPod(s)))
	if code := r.run(context.Background()); code != 0 {
		t.Fatalf("runner exited %d:\n%s", code, r.stderr.String())
	}
	if c := lb.calls(); len(c) != 2 || c[0] < 4 || c[1] < 4 {
		t.Fatalf("model calls per replica = %v; the test needs both to serve the session", c)
	}
	assertCompleteTranscript(t, f, s, r)
	if m.calls != 9 {
		t.Errorf("the model answered %d calls, want 9 (8 writes and the answer)", m.calls)
	}
	assertUsage(t, f, s, "the provider's bill", m.bill())
}

// A replica dies (SIGKILL: nothing it had not written is ever written) in the middle of a
// session both replicas serve. The runner carries on through the other; the finished
// session's usage is what the model billed for the answers the runner received, and the
// transcript is whole.
func TestAReplicaKilledMidSessionLosesNoTokenAndNoEvent(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	atTurn4, killed := make(chan struct{}), make(chan struct{})
	m := &metered{w: &writer{files: 8, hold: map[int]func(){4: func() { close(atTurn4); <-killed }}}}
	f := newFixture(t)
	f.llm.Generate(m.step)
	// Replica a never gets to write its charges before it dies: everything it counted is
	// lost with it, the worst case of a SIGKILL.
	a, aClient := startReplica(t, time.Hour)
	b, _ := startReplica(t, 0)
	lb := startBalancer(t, a, b)
	s := f.session("replica-killed")
	r := runnerFor(t, s, &gw{URL: lb.URL}, f.tokenFile(f.runnerPod(s)))
	done := make(chan int, 1)
	go func() { done <- r.run(context.Background()) }()

	<-atTurn4 // a model call is in flight; replica a has charged calls it never wrote
	if c := lb.calls(); len(c) != 2 || c[0] < 2 {
		t.Fatalf("model calls per replica = %v; replica a must have served calls before it dies", c)
	}
	aClient.dead.Store(true)
	lb.remove(0)
	a.stop()
	close(killed)
	if code := <-done; code != 0 {
		t.Fatalf("runner exited %d:\n%s", code, r.stderr.String())
	}
	assertCompleteTranscript(t, f, s, r)
	received := transcriptUsage(t, s, f)
	if received.Total() == 0 {
		t.Fatal("the transcript records no model usage")
	}
	assertUsage(t, f, s, "the usage of every answer the runner received", received)
	if bill := m.bill(); bill.Total() < received.Total() {
		t.Errorf("the provider billed %d tokens, fewer than the runner received (%d)", bill.Total(), received.Total())
	}
}

// A runner's approval poll moves from one replica to another (the first one's poll window
// ended, or it died) and the user decides on the second. The second answers with the same
// entry and deadline the first listed, and the first, writing its view of the session
// later, does not list the decided call again.
func TestAnApprovalDecidedOnAnotherReplicaIsNotListedAgain(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	ctx := context.Background()
	f := newFixture(t)
	a, _ := startReplica(t, 0)
	b, _ := startReplica(t, 0)
	s := f.session("approval-moves", func(s *v1.AgentSession) {
		s.Spec.Approval = v1.ApprovalPolicy{Bash: v1.ApprovalAsk, Timeout: &metav1.Duration{Duration: time.Minute}}
	})
	tok := f.token(contract.GatewayAudience, boundTo(f.runnerPod(s)))
	if code, body := post(t, b.URL+contract.PathEvents, tok, batchOf(event(1, "one"))); code != http.StatusOK {
		t.Fatalf("events to b: %d %s", code, body)
	}
	ask := `{"id":"call_1","tool":"bash","class":"bash","summary":"go test ./...","command":"go test ./..."}`
	code, body := post(t, a.URL+contract.PathApprovals, tok, ask) // lists it, then its poll window ends
	var first contract.ApprovalAnswer
	if err := json.Unmarshal([]byte(body), &first); code != http.StatusOK || err != nil || !first.Pending || first.ExpiresAt == nil {
		t.Fatalf("asking a: %d %s", code, body)
	}
	listed := f.get(s).Status.PendingApprovals
	if len(listed) != 1 {
		t.Fatalf("status.pendingApprovals = %+v, want the call", listed)
	}

	answered := make(chan contract.ApprovalAnswer, 1)
	go func() {
		_, body := post(t, b.URL+contract.PathApprovals, tok, ask)
		var ans contract.ApprovalAnswer
		_ = json.Unmarshal([]byte(body), &ans)
		answered <- ans
	}()
	time.Sleep(500 * time.Millisecond) // b is polling
	if now := f.get(s).Status.PendingApprovals; len(now) != 1 || !now[0].ExpiresAt.Equal(listed[0].ExpiresAt) {
		t.Errorf("while b polls, status.pendingApprovals = %+v; want a's entry and deadline %s", now, listed[0].ExpiresAt)
	}
	decide := fmt.Sprintf(`{"spec":{"approvals":[{"id":"call_1","digest":%q,"decision":"Allow","decidedBy":"alice"}]}}`, listed[0].Digest)
	if err := env.Client.Patch(ctx, s, rawMerge(decide)); err != nil {
		t.Fatal(err)
	}
	if ans := <-answered; ans.Decision != contract.DecisionAllow {
		t.Fatalf("b answered %+v, want Allow", ans)
	}
	if got := f.get(s).Status.PendingApprovals; len(got) != 0 {
		t.Fatalf("status.pendingApprovals = %+v after the decision", got)
	}

	// a still holds the call as pending in its view; an event makes it write that view.
	if code, body := post(t, a.URL+contract.PathEvents, tok, batchOf(event(2, "two"))); code != http.StatusOK {
		t.Fatalf("events to a: %d %s", code, body)
	}
	testutil.Within(t, 10*time.Second, "a to write the session", func() error {
		if p := f.get(s).Status.Progress; p == nil || p.Message != "Error: two" {
			return fmt.Errorf("progress %+v", p)
		}
		return nil
	})
	if got := f.get(s).Status.PendingApprovals; len(got) != 0 {
		t.Errorf("a listed the decided call again: status.pendingApprovals = %+v", got)
	}
}

// When the apiserver does not take a replica's status writes, its charges pile up
// unwritten: a killed replica would take them with it and no other replica sees them. Once
// they are older than three status intervals, the session's next model call waits for them
// to be written, and is refused (503, the runner retries) while they cannot be.
func TestModelCallsWaitForOverdueChargesToBeWritten(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	usage := func(p, c int) *scriptedllm.Usage { return &scriptedllm.Usage{PromptTokens: p, CompletionTokens: c} }
	f := newFixture(t,
		scriptedllm.Step{Content: "one", Usage: usage(100, 10)},
		scriptedllm.Step{Content: "two", Usage: usage(200, 20)})
	g, api := startReplica(t, 0)
	s := f.session("overdue")
	tok := f.token(contract.GatewayAudience, boundTo(f.runnerPod(s)))

	api.dead.Store(true) // the apiserver refuses this replica's writes from now on
	if code, body := post(t, g.URL+contract.PathChatCompletions, tok, plainChat); code != http.StatusOK {
		t.Fatalf("first call: %d %s", code, body)
	}
	time.Sleep(700 * time.Millisecond) // more than three status intervals
	code, body := post(t, g.URL+contract.PathChatCompletions, tok, plainChat)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "token charges") {
		t.Fatalf("a call with 700 ms of unwritten charges: %d %s; want 503 naming the charges", code, body)
	}
	if n := len(f.llm.Requests()); n != 1 {
		t.Fatalf("the refused call reached the model (%d calls)", n)
	}

	api.dead.Store(false)
	if code, body := post(t, g.URL+contract.PathChatCompletions, tok, plainChat); code != http.StatusOK {
		t.Fatalf("the call after the apiserver takes writes again: %d %s", code, body)
	}
	testutil.Within(t, 10*time.Second, "both calls in status.usage", func() error {
		return usageIs(f.get(s).Status.Usage, contract.Usage{PromptTokens: 300, CompletionTokens: 30})
	})
}

// A replica stopped gracefully (a rolling update) while a model call is still open: the
// open call outlasts the shutdown timeout, the server cuts it, and the charges this
// replica had not written yet (a long status interval holds them) are still written.
// Before, the final writes ran on the shutdown's expired context and all failed.
func TestGracefulStopWritesChargesWhileACallIsOpen(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	f := newFixture(t)
	up := newUpstream(t, 100, 10)
	prov := f.upstreamProvider(up)
	g, _ := startReplica(t, 5*time.Second)
	s := f.session("rolling", usesProvider(prov))
	tok := f.token(contract.GatewayAudience, boundTo(f.runnerPod(s)))
	for i := range 2 {
		if code, body := post(t, g.URL+contract.PathChatCompletions, tok, chatBody("")); code != http.StatusOK {
			t.Fatalf("call %d: %d %s", i, code, body)
		}
	}
	up.hold = make(chan struct{})
	open := make(chan struct{})
	go func() {
		defer close(open)
		req, _ := http.NewRequest(http.MethodPost, g.URL+contract.PathChatCompletions, strings.NewReader(chatBody("")))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Close = true
		if resp, err := gwClient.Do(req); err == nil { // cut by the stop: an error is expected
			resp.Body.Close()
		}
	}()
	eventually(t, 10*time.Second, "the third call to reach the provider", func() bool { return len(up.calls()) == 3 })
	g.stop() // ShutdownTimeout 300ms: the open call is cut
	close(up.hold)
	<-open
	if got := usedTokens(f, s); got < 220 {
		t.Errorf("two calls of 110 tokens were charged before the stop; status.usage.totalTokens = %d", got)
	}
}
