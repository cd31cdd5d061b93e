package main

// The -failover mode: two manager replicas (both --leader-elect), N live sessions, the
// leader killed with SIGKILL mid-run and then the other replica (by then the leader too),
// each restarted on its own ports as a kubelet would. Every runner then finishes, and the
// bench checks each session's archived transcript against what its runner saw
// acknowledged, its status.usage against what its runner received, the namespaces' totals
// against their budgets, and reports the failover times.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/test/controlplane"
	"github.com/agentry-dev/agentry/test/s3server"
	"github.com/agentry-dev/agentry/test/scriptedllm"
)

const (
	// callUsage is what the scripted model reports for every call; callTokens is what
	// budgets count of it (prompt plus completion).
	callPrompt, callCompletion, callCached = 3000, 120, 2500
	callTokens                             = callPrompt + callCompletion
	// budgetAt is when each namespace's tokenBudget is set, from what its runners
	// received so far, to be reached at budgetReach of the run (this machine's call rate
	// is not known in advance).
	budgetAt, budgetReach = 0.4, 0.8
	// statusInterval is the manager's --gateway-status-interval (its default).
	statusInterval = time.Second
	// giveUp bounds how long one runner request is retried.
	giveUp = 3 * time.Minute
)

// runFailover is the -failover run. -n and -duration default to 200 and 150s here.
func runFailover(o options) error {
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	n := 200
	if set["n"] || set["quick"] {
		n = o.sizes[0]
	}
	if !set["duration"] {
		o.duration = 150 * time.Second
	}
	if o.duration < 60*time.Second {
		return fmt.Errorf("-duration %s: the two kills and restarts need at least 60s", o.duration)
	}
	dir, err := os.MkdirTemp("", "gatewaybench-failover-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintf(os.Stderr, "gatewaybench: run directory %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	bin, err := buildManager(dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "gatewaybench: failover: %d runners for %s, two replicas\n", n, o.duration)
	r, err := failoverRun(o, bin, dir, n)
	if err != nil {
		return err
	}
	r.print(os.Stdout, o, n)
	if r.lost+r.stuck+r.usageWrong > 0 {
		return fmt.Errorf("%d sessions lost acknowledged events, %d are stuck, %d have a wrong usage", r.lost, r.stuck, r.usageWrong)
	}
	return nil
}

// replica is one manager process, restartable on the same ports as a kubelet restarts a
// container in the same pod.
type replica struct {
	name   string
	launch func() (*manager, error)
	mu     sync.Mutex
	m      *manager
}

func (r *replica) start() error {
	m, err := r.launch()
	if err != nil {
		return fmt.Errorf("starting replica %s: %w", r.name, err)
	}
	r.mu.Lock()
	r.m = m
	r.mu.Unlock()
	return nil
}

func (r *replica) cur() *manager {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m
}

func (r *replica) kill() {
	m := r.cur()
	_ = m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.done
}

// leader reads leader_election_master_status from the replica's /metrics.
func (r *replica) leader() bool {
	m, err := scrape(r.cur().metricsURL)
	return err == nil && m["leader_election_master_status"] == 1
}

// fault is one SIGKILL and what followed it.
type fault struct {
	what, replica string
	at            time.Time
	newLeader     time.Duration // kill → another replica reports leader
	restarted     time.Duration // kill → the restarted replica serves the gateway again
}

// foRun is what the failover run measured.
type foRun struct {
	start                           time.Time
	lag                             []lagSample
	window                          time.Duration
	faults                          []fault
	runners                         []*foRunner
	failures                        map[string]int
	moves                           int
	archive                         []time.Duration // runner's finish answered → Archived=True seen
	terminal                        []time.Duration // runner's finish answered → a terminal phase seen
	lost, stuck, usageWrong, broken int
	lostDetail, usageDetail         []string
	nss                             []nsBudget
	raised                          int64 // tokens the finish floor added (manager logs)
	raisedSessions                  int
	calls                           int
	events                          int64
	budgetRefused                   int
}

type nsBudget struct {
	ns              string
	budget, used    int64
	sessions, calls int
	bound           int64
	byBudget        int
}

// foShared is what every failover runner shares.
type foShared struct {
	urls          [2]string
	c             *http.Client
	think         time.Duration
	approvalEvery int
	mu            sync.Mutex
	deadline      time.Time
	kube          client.Client
	failures      map[string]int
	moves         int
}

// end is when runners stop starting turns; the faults push it so both happen mid-run.
func (s *foShared) end() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deadline
}

func (s *foShared) extend(t time.Time) {
	s.mu.Lock()
	s.deadline = later(s.deadline, t)
	s.mu.Unlock()
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (s *foShared) fail(what, kind string) {
	s.mu.Lock()
	s.failures[what+": "+kind]++
	s.mu.Unlock()
}

func failoverRun(o options, bin, dir string, n int) (*foRun, error) {
	env, err := controlplane.StartWith(controlplane.Options{})
	if err != nil {
		return nil, err
	}
	defer env.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	s3, err := startS3(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer s3.Stop()
	llm, err := scriptedllm.Listen("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer llm.Close()
	llm.RequireKey(providerKey)
	llm.Generate(func(int, scriptedllm.Request) scriptedllm.Step {
		return scriptedllm.Step{Content: "Reading the parser to find the off-by-one.",
			ToolCalls: []scriptedllm.Call{{Name: "read_file", Args: map[string]string{"path": "pkg/parse/parse.go"}}},
			Usage:     &scriptedllm.Usage{PromptTokens: callPrompt, CompletionTokens: callCompletion, CachedTokens: callCached}}
	})
	if err := installOperator(ctx, env, llm.URL, true); err != nil {
		return nil, err
	}
	reps, err := startReplicas(ctx, bin, dir, env, s3)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, r := range reps {
			r.cur().stop()
		}
	}()
	tr, err := reps[0].cur().waitGateway(ctx, env, dir, n+16)
	if err != nil {
		return nil, err
	}

	cfg := rest.CopyConfig(env.Config)
	cfg.UserAgent = "bench-setup"
	setup, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	sessions, err := createSessions(ctx, setup, kube, n, o.namespaces, false)
	if err != nil {
		return nil, err
	}
	nss, err := setBudgets(ctx, setup, n, o)
	if err != nil {
		return nil, err
	}
	userCtx, stopUser := context.WithCancel(ctx)
	defer stopUser()
	if _, err := startUser(userCtx, env.Config, client.Options{Scheme: env.Scheme}); err != nil {
		return nil, err
	}
	seen, err := watchSessions(userCtx, env.Config, env.Scheme)
	if err != nil {
		return nil, err
	}

	start := time.Now()
	sh := &foShared{
		urls:  [2]string{reps[0].cur().gatewayURL, reps[1].cur().gatewayURL},
		c:     &http.Client{Transport: tr, Timeout: time.Minute},
		think: o.think, approvalEvery: o.approvalEvery, deadline: start.Add(o.duration),
		kube: setup, failures: map[string]int{},
	}
	runners := make([]*foRunner, len(sessions))
	var wg sync.WaitGroup
	for i, s := range sessions {
		// Each namespace's sessions on both replicas, so its budget is checked by two.
		runners[i] = &foRunner{sh: sh, s: s, idx: i, at: (i / o.namespaces) % 2, rng: rand.New(rand.NewPCG(uint64(i), 11))}
		wg.Add(1)
		go func() {
			defer wg.Done()
			runners[i].run(ctx)
		}()
	}
	budgetsSet := make(chan error, 1)
	go func() {
		sleepCtx(ctx, time.Until(start.Add(time.Duration(budgetAt*float64(o.duration)))))
		budgetsSet <- sizeBudgets(ctx, setup, nss, runners, time.Since(start), time.Duration(budgetReach*float64(o.duration)))
	}()
	lagCtx, stopLag := context.WithCancel(ctx)
	lag := sampleLag(lagCtx, setup, runners)
	faults, ferr := injectFaults(ctx, env, dir, reps, sh, start, o.duration)
	wg.Wait()
	stopLag()
	if ferr != nil {
		return nil, ferr
	}
	if err := <-budgetsSet; err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "gatewaybench: every runner finished %s after the start; checking\n", time.Since(start).Round(time.Second))

	r := &foRun{start: start, window: sh.end().Sub(start), lag: <-lag, faults: faults, runners: runners, nss: nss}
	sh.mu.Lock()
	r.failures, r.moves = sh.failures, sh.moves
	sh.mu.Unlock()
	if err := r.check(ctx, setup, s3, seen); err != nil {
		return nil, err
	}
	r.raised, r.raisedSessions = raisedTokens(dir)
	return r, nil
}

// startReplicas starts replica A, waits until it published the gateway CA, then B, so the
// two share one CA as two pods of a Deployment do.
func startReplicas(ctx context.Context, bin, dir string, env *controlplane.Env, s3 *s3server.Server) ([]*replica, error) {
	var reps []*replica
	for _, name := range []string{"A", "B"} {
		var ports [3]int
		for i := range ports {
			p, err := freePort()
			if err != nil {
				return nil, err
			}
			ports[i] = p
		}
		logPath := filepath.Join(dir, "manager-"+name+".log")
		r := &replica{name: name, launch: func() (*manager, error) {
			return launchManager(bin, logPath, ports, env, s3, s3.Endpoint, "--leader-elect=true", "--zap-log-level=info")
		}}
		if err := r.start(); err != nil {
			return nil, err
		}
		if _, err := r.cur().waitGateway(ctx, env, dir, 4); err != nil {
			return nil, fmt.Errorf("replica %s: %w", name, err)
		}
		reps = append(reps, r)
	}
	return reps, nil
}

// setBudgets gives every namespace an AgentPolicy tokenBudget the run reaches partway.
func setBudgets(ctx context.Context, c client.Client, n int, o options) ([]nsBudget, error) {
	var out []nsBudget
	for i := range o.namespaces {
		ns := fmt.Sprintf("team-%02d", i)
		sessions := 0
		for j := range n {
			if j%o.namespaces == i {
				sessions++
			}
		}
		budget := int64(1) << 50
		if err := c.Create(ctx, &v1.AgentPolicy{ObjectMeta: metav1.ObjectMeta{Name: "budget", Namespace: ns},
			Spec: v1.AgentPolicySpec{TokenBudget: &v1.TokenBudget{Tokens: budget}}}); err != nil {
			return nil, fmt.Errorf("creating the budget of %s: %w", ns, err)
		}
		out = append(out, nsBudget{ns: ns, budget: budget, sessions: sessions})
	}
	// The replicas' caches see the policies before the first call.
	time.Sleep(2 * time.Second)
	return out, nil
}

// injectFaults kills the leader at a fifth of the run and, once it is back, the other
// replica (by then the leader) at half of the run; each is restarted once another replica
// leads.
func injectFaults(ctx context.Context, env *controlplane.Env, dir string, reps []*replica, sh *foShared, start time.Time, d time.Duration) ([]fault, error) {
	var out []fault
	for k, at := range []time.Duration{d / 5, d / 2} {
		sleepCtx(ctx, time.Until(start.Add(at)))
		victim, other, err := leaderPair(ctx, reps)
		if err != nil {
			return out, err
		}
		f := fault{what: "leader (and gateway replica)", replica: victim.name}
		if k == 1 {
			f.what = "the other gateway replica (the new leader)"
		}
		fmt.Fprintf(os.Stderr, "gatewaybench: %s: SIGKILL replica %s (the leader)\n", time.Since(start).Round(time.Second), victim.name)
		f.at = time.Now()
		victim.kill()
		if err := waitFor(ctx, 2*time.Minute, "replica "+other.name+" to lead", func() (bool, error) { return other.leader(), nil }); err != nil {
			return out, err
		}
		f.newLeader = time.Since(f.at)
		if err := victim.start(); err != nil {
			return out, err
		}
		if _, err := victim.cur().waitGateway(ctx, env, dir, 4); err != nil {
			return out, err
		}
		f.restarted = time.Since(f.at)
		fmt.Fprintf(os.Stderr, "gatewaybench: replica %s leads %s after the kill; %s serves again after %s\n",
			other.name, f.newLeader.Round(100*time.Millisecond), victim.name, f.restarted.Round(100*time.Millisecond))
		out = append(out, f)
		// Runners go on for a while after each replica is back.
		sh.extend(time.Now().Add(d / 5))
	}
	return out, nil
}

// sizeBudgets sets each namespace's tokenBudget to what its runners would have received
// at reach if they went on at the rate they had over elapsed.
func sizeBudgets(ctx context.Context, c client.Client, nss []nsBudget, runners []*foRunner, elapsed, reach time.Duration) error {
	recv := map[string]int64{}
	for _, fr := range runners {
		recv[fr.s.key.Namespace] += fr.recv.Load()
	}
	for i := range nss {
		nb := &nss[i]
		nb.budget = int64(float64(recv[nb.ns]) * reach.Seconds() / elapsed.Seconds())
		patch := fmt.Appendf(nil, `{"spec":{"tokenBudget":{"tokens":%d}}}`, nb.budget)
		pol := &v1.AgentPolicy{ObjectMeta: metav1.ObjectMeta{Name: "budget", Namespace: nb.ns}}
		if err := c.Patch(ctx, pol, client.RawPatch(types.MergePatchType, patch)); err != nil {
			return fmt.Errorf("setting the budget of %s: %w", nb.ns, err)
		}
	}
	fmt.Fprintf(os.Stderr, "gatewaybench: %s: budgets set (%d tokens in %s)\n", elapsed.Round(time.Second), nss[0].budget, nss[0].ns)
	return nil
}

// lagSample is how far the sessions' status.usage was behind what their runners had
// received, summed over the running sessions.
type lagSample struct {
	at     time.Time
	behind int64
}

// sampleLag lists the sessions every 2s and compares their status.usage with the
// runners' counts: the charges a replica killed at that moment would take with it.
func sampleLag(ctx context.Context, c client.Client, runners []*foRunner) <-chan []lagSample {
	out := make(chan []lagSample, 1)
	byKey := map[string]*foRunner{}
	for _, fr := range runners {
		byKey[fr.s.key.String()] = fr
	}
	go func() {
		var samples []lagSample
		defer func() { out <- samples }()
		for ctx.Err() == nil {
			before := map[*foRunner]int64{}
			for _, fr := range runners {
				before[fr] = fr.recv.Load() // read first: the status can only be behind this
			}
			var l v1.AgentSessionList
			if err := c.List(ctx, &l); err == nil {
				var behind int64
				for i := range l.Items {
					s := &l.Items[i]
					if fr := byKey[s.Namespace+"/"+s.Name]; fr != nil && !fr.done.Load() {
						behind += max(0, before[fr]-usageOf(s.Status.Usage).Total())
					}
				}
				samples = append(samples, lagSample{at: time.Now(), behind: behind})
			}
			sleepCtx(ctx, 2*time.Second)
		}
	}()
	return out
}

// leaderPair waits until exactly one replica leads and returns it and the other.
func leaderPair(ctx context.Context, reps []*replica) (lead, other *replica, err error) {
	err = waitFor(ctx, 2*time.Minute, "a leader", func() (bool, error) {
		a, b := reps[0].leader(), reps[1].leader()
		switch {
		case a && !b:
			lead, other = reps[0], reps[1]
		case b && !a:
			lead, other = reps[1], reps[0]
		default:
			return false, nil
		}
		return true, nil
	})
	return lead, other, err
}

// sessionSeen is when the bench's watch first saw a session archived and terminal.
type sessionSeen struct {
	mu       sync.Mutex
	archived map[string]time.Time
	terminal map[string]time.Time
}

func watchSessions(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme) (*sessionSeen, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "bench-watch"
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	s := &sessionSeen{archived: map[string]time.Time{}, terminal: map[string]time.Time{}}
	if err := followSessions(ctx, c, s.observe, func() {}); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *sessionSeen) observe(as *v1.AgentSession) {
	now, k := time.Now(), as.Namespace+"/"+as.Name
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.archived[k]; !ok && as.Status.Transcript != nil && meta.IsStatusConditionTrue(as.Status.Conditions, v1.ConditionArchived) {
		s.archived[k] = now
	}
	if _, ok := s.terminal[k]; !ok && as.Status.Phase.IsTerminal() {
		s.terminal[k] = now
	}
}

func (s *sessionSeen) get(k string) (archived, terminal time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.archived[k], s.terminal[k]
}

// episode is a run of failed requests of one runner: from the first failure to the next
// answer. An approval's answer waits for the user's decision too, so approvals are told
// apart.
type episode struct {
	from, to time.Time
	approval bool
}

// foRunner is one simulated runner: runner/loop.go's order of requests with the real
// runner's delivery rules (events kept until acknowledged, resent from the gateway's
// lastSeq on a 409; a failed request retried with backoff; /finish with the runner's own
// usage). It talks to one replica and moves to the other only when its replica refuses
// connections, as ClientIP affinity does once the endpoints drop a dead pod; it does not
// move back when the killed replica returns (the affinity stays with the live one).
type foRunner struct {
	sh  *foShared
	s   *benchSession
	idx int
	at  int
	rng *rand.Rand

	recv       atomic.Int64 // the tokens received, for the bench's samplers
	done       atomic.Bool  // the finish was answered
	seq, acked int64
	queue      []contract.Event
	turn       int
	usage      contract.Usage
	calls      int
	outcome    contract.Outcome
	budgetHit  bool
	broken     string // why the runner stopped early, if it did

	lastOK   time.Time
	maxGap   time.Duration
	failing  time.Time
	episodes []episode
	finished time.Time // the finish answered
	eventsOK int64
}

func (r *foRunner) event(typ contract.EventType, set func(*contract.Event)) {
	r.seq++
	ev := contract.Event{Version: contract.SchemaVersion, Seq: r.seq, Time: time.Now().UTC(), Type: typ, Turn: r.turn}
	set(&ev)
	r.queue = append(r.queue, ev)
}

func (r *foRunner) run(ctx context.Context) {
	sh := r.sh
	r.lastOK = time.Now()
	r.event(contract.EventSessionStart, func(e *contract.Event) {
		e.SessionStart = &contract.SessionStart{Session: r.s.key.Name, Task: "Fix the failing test in pkg/parse.", Model: "bench-model",
			Tools: []string{"read_file", "write_file", "run_command"}, Workspace: "/workspace"}
	})
	r.outcome = contract.OutcomeCompleted
	sleepCtx(ctx, time.Duration(r.rng.Int64N(int64(sh.think)+1)))
	for time.Now().Before(sh.end()) && ctx.Err() == nil && r.broken == "" {
		r.turn++
		u, ok := r.modelCall(ctx)
		if !ok {
			break
		}
		r.usage = r.usage.Add(u)
		r.recv.Add(u.Total())
		r.calls++
		r.turnEvents(ctx, u)
		if !r.flush(ctx) {
			break
		}
		sleepCtx(ctx, sh.think/2+time.Duration(r.rng.Int64N(int64(sh.think)+1)))
	}
	if r.broken != "" {
		return
	}
	r.event(contract.EventFinish, func(e *contract.Event) {
		e.Finish = &contract.Finish{Outcome: r.outcome, ExitCode: r.outcome.ExitCode(), Turns: r.turn, Usage: r.usage, Summary: "Fixed."}
	})
	if !r.flush(ctx) {
		return
	}
	r.finish(ctx)
}

func (r *foRunner) turnEvents(ctx context.Context, u contract.Usage) {
	call := fmt.Sprintf("call_%d", r.turn)
	r.event(contract.EventModelRequest, func(e *contract.Event) {
		e.ModelRequest = &contract.ModelRequest{Model: "bench-model", Messages: 2 + 2*r.turn, Tools: 4}
	})
	r.event(contract.EventModelResponse, func(e *contract.Event) {
		e.ModelResponse = &contract.ModelResponse{ToolCalls: []contract.ToolCallSpec{{ID: call, Name: "read_file", Arguments: `{"path":"pkg/parse/parse.go"}`}},
			FinishReason: "tool_calls", Usage: u, Attempts: 1, DurationMS: 40}
	})
	r.event(contract.EventToolCall, func(e *contract.Event) {
		e.ToolCall = &contract.ToolCall{ID: call, Name: "read_file", Arguments: `{"path":"pkg/parse/parse.go"}`, ReadOnly: true}
	})
	if r.sh.approvalEvery > 0 && (r.turn+r.idx)%r.sh.approvalEvery == 0 {
		r.approve(ctx)
	}
	r.event(contract.EventToolResult, func(e *contract.Event) {
		e.ToolResult = &contract.ToolResult{ID: call, Name: "read_file", Output: strings.Repeat("func parse(s string) (int, error) { return strconv.Atoi(s) }\n", 24), DurationMS: 2}
	})
}

// answer is one HTTP exchange's outcome; code is 0 when no complete answer came.
type answer struct {
	code int
	body []byte
	err  error
}

func (r *foRunner) send(ctx context.Context, path string, body []byte) answer {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.sh.urls[r.at]+path, bytes.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+r.s.token)
	resp, err := r.sh.c.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{err: fmt.Errorf("reading the answer: %w", err)} // cut mid-stream
	}
	return answer{code: resp.StatusCode, body: b}
}

// do sends until an answer retrying cannot change: transport failures, 5xx and 429s
// other than the budget's are retried after a jittered backoff (250ms doubling to 2s);
// a refused connection moves the runner to the other replica first.
func (r *foRunner) do(ctx context.Context, what, path string, body []byte) answer {
	backoff, first := 250*time.Millisecond, time.Now()
	for {
		a := r.send(ctx, path, body)
		if ctx.Err() != nil {
			return answer{err: ctx.Err()}
		}
		if what == "chat" && a.code == http.StatusOK && !bytes.Contains(a.body, []byte("[DONE]")) {
			a = answer{err: errors.New("stream ended without [DONE]")}
		}
		if a.err == nil && a.code < 500 && (a.code != http.StatusTooManyRequests || budgetRefusal(a.body)) {
			r.answered(what == "approval")
			return a
		}
		r.sh.fail(what, failKind(a))
		if r.failing.IsZero() {
			r.failing = time.Now()
		}
		if errors.Is(a.err, syscall.ECONNREFUSED) {
			r.at = 1 - r.at
			r.sh.mu.Lock()
			r.sh.moves++
			r.sh.mu.Unlock()
		}
		if time.Since(first) > giveUp {
			return a
		}
		sleepCtx(ctx, backoff/2+time.Duration(r.rng.Int64N(int64(backoff/2))))
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (r *foRunner) answered(approval bool) {
	now := time.Now()
	r.maxGap = max(r.maxGap, now.Sub(r.lastOK))
	r.lastOK = now
	if !r.failing.IsZero() {
		r.episodes = append(r.episodes, episode{from: r.failing, to: now, approval: approval})
		r.failing = time.Time{}
	}
}

func budgetRefusal(b []byte) bool {
	return bytes.Contains(b, []byte(contract.ErrorCodeBudgetExceeded))
}

func failKind(a answer) string {
	switch {
	case errors.Is(a.err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(a.err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(a.err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(a.err, io.ErrUnexpectedEOF), errors.Is(a.err, io.EOF):
		return "connection closed"
	case a.err != nil && strings.Contains(a.err.Error(), "reading the answer"):
		return "answer cut"
	case a.err != nil:
		return short(a.err)
	}
	return strconv.Itoa(a.code)
}

// modelCall streams one chat completion and returns the usage the stream reported; ok is
// false when the runner must stop (the budget refused the call, or it gave up).
func (r *foRunner) modelCall(ctx context.Context) (contract.Usage, bool) {
	a := r.do(ctx, "chat", contract.PathChatCompletions, chatBody)
	switch {
	case a.code == http.StatusTooManyRequests:
		r.outcome, r.budgetHit = contract.OutcomeBudgetExceeded, true
		return contract.Usage{}, false
	case a.code != http.StatusOK:
		r.outcome = contract.OutcomeModelError
		r.sh.fail("chat", "gave up: "+failKind(a))
		return contract.Usage{}, false
	}
	u, ok := streamUsage(a.body)
	if !ok {
		r.sh.fail("chat", "no usage chunk")
	}
	return u, true
}

// streamUsage reads the usage chunk of an OpenAI stream.
func streamUsage(b []byte) (contract.Usage, bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		data, ok := bytes.CutPrefix(sc.Bytes(), []byte("data: "))
		if !ok {
			continue
		}
		var c struct {
			Usage *struct {
				PromptTokens        int64 `json:"prompt_tokens"`
				CompletionTokens    int64 `json:"completion_tokens"`
				PromptTokensDetails *struct {
					CachedTokens int64 `json:"cached_tokens"`
				} `json:"prompt_tokens_details"`
			} `json:"usage"`
		}
		if json.Unmarshal(data, &c) != nil || c.Usage == nil {
			continue
		}
		u := contract.Usage{PromptTokens: c.Usage.PromptTokens, CompletionTokens: c.Usage.CompletionTokens}
		if d := c.Usage.PromptTokensDetails; d != nil {
			u.CachedTokens = d.CachedTokens
		}
		return u, true
	}
	return contract.Usage{}, false
}

// flush sends the queued events until every one is acknowledged; false when the runner
// stopped (it gave up, or the gateway no longer has what it acknowledged).
func (r *foRunner) flush(ctx context.Context) bool {
	for len(r.queue) > 0 && ctx.Err() == nil {
		body, _ := json.Marshal(contract.EventBatch{Events: r.queue})
		a := r.do(ctx, "events", contract.PathEvents, body)
		var ack struct {
			LastSeq int64 `json:"lastSeq"`
		}
		_ = json.Unmarshal(a.body, &ack)
		switch a.code {
		case http.StatusOK:
			r.eventsOK += max(0, ack.LastSeq-r.acked)
			r.ackUpTo(ack.LastSeq)
		case http.StatusConflict:
			if ack.LastSeq < r.acked {
				r.broken = fmt.Sprintf("the gateway's lastSeq %d is below the acknowledged %d", ack.LastSeq, r.acked)
				return false
			}
			r.sh.fail("events", "409 (resent from lastSeq)")
			r.ackUpTo(ack.LastSeq)
		default:
			r.broken = fmt.Sprintf("events: %s", failKind(a))
			return false
		}
	}
	return ctx.Err() == nil
}

func (r *foRunner) ackUpTo(seq int64) {
	if seq <= r.acked {
		return
	}
	r.acked = seq
	i := 0
	for i < len(r.queue) && r.queue[i].Seq <= seq {
		i++
	}
	r.queue = append(r.queue[:0], r.queue[i:]...)
}

// approve asks for an approval and long-polls until the bench's user decides.
func (r *foRunner) approve(ctx context.Context) {
	id := fmt.Sprintf("ap-%d", r.turn)
	req := contract.ApprovalRequest{ID: id, Tool: "run_command", Class: "exec", Summary: "go test ./pkg/parse/...", Command: "go test ./pkg/parse/..."}
	body, _ := json.Marshal(req)
	var ans contract.ApprovalAnswer
	for ctx.Err() == nil {
		a := r.do(ctx, "approval", contract.PathApprovals, body)
		if a.code != http.StatusOK {
			r.sh.fail("approval", "gave up: "+failKind(a))
			return
		}
		ans = contract.ApprovalAnswer{}
		if json.Unmarshal(a.body, &ans) != nil || !ans.Pending {
			break
		}
	}
	r.event(contract.EventApproval, func(e *contract.Event) {
		e.Approval = &contract.Approval{ID: id, Tool: "run_command", Summary: req.Summary, Decision: ans.Decision, By: ans.By}
	})
}

// finish posts /finish with the runner's own usage, then plays the kubelet: the runner
// container ends with the outcome's exit code and the summary as termination message.
func (r *foRunner) finish(ctx context.Context) {
	sum := contract.Summary{Version: contract.SchemaVersion, Outcome: r.outcome, ExitCode: r.outcome.ExitCode(), Message: "Fixed.",
		Turns: r.turn, ToolCalls: r.turn, Usage: r.usage, Events: r.seq}
	body, _ := json.Marshal(contract.FinishRequest{LastSeq: r.seq, Summary: sum})
	a := r.do(ctx, "finish", contract.PathFinish, body)
	switch {
	case a.code == http.StatusOK:
	case a.code == http.StatusConflict && bytes.Contains(a.body, []byte("already finished")):
		// An earlier try was archived, its answer lost with the replica.
		r.sh.fail("finish", "409 already finished (earlier try archived)")
	default:
		r.broken = "finish: " + failKind(a) + ": " + string(a.body)
		return
	}
	r.finished = time.Now()
	r.done.Store(true)
	msg, _ := sum.Encode()
	if err := endPod(ctx, r.sh.kube, r.s, int32(r.outcome.ExitCode()), string(msg)); err != nil {
		r.broken = err.Error()
	}
}

// endPod writes the pod status a kubelet writes when the runner exits.
func endPod(ctx context.Context, c client.Client, s *benchSession, code int32, msg string) error {
	for range 10 {
		pod := &corev1.Pod{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: s.key.Namespace, Name: s.pod}, pod); err != nil {
			return fmt.Errorf("reading pod %s: %w", s.pod, err)
		}
		now := metav1.Now()
		pod.Status.Phase = corev1.PodSucceeded
		if code != 0 {
			pod.Status.Phase = corev1.PodFailed
		}
		for i := range pod.Status.ContainerStatuses {
			cs := &pod.Status.ContainerStatuses[i]
			started := now
			if cs.State.Running != nil {
				started = cs.State.Running.StartedAt
			}
			cs.Ready = false
			cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Message: msg, StartedAt: started, FinishedAt: now,
				Reason: map[bool]string{true: "Completed", false: "Error"}[code == 0]}}
		}
		pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, LastTransitionTime: now}}
		err := c.Status().Update(ctx, pod)
		if err == nil || !apierrors.IsConflict(err) {
			return err
		}
	}
	return fmt.Errorf("pod %s: status update kept conflicting", s.pod)
}

// check waits for every finished session to be archived, terminal and at its runner's
// usage (the finish floor comes a few status intervals after /finish), then reads each
// archived transcript from object storage.
func (r *foRun) check(ctx context.Context, c client.Client, s3 *s3server.Server, seen *sessionSeen) error {
	want := map[string]*foRunner{}
	for _, fr := range r.runners {
		want[fr.s.key.String()] = fr
		r.calls += fr.calls
		r.events += fr.eventsOK
		if fr.broken != "" {
			r.broken++
		}
	}
	got := map[string]*v1.AgentSession{}
	settled := func() (bool, error) {
		var l v1.AgentSessionList
		if err := c.List(ctx, &l); err != nil {
			return false, err
		}
		done := true
		for i := range l.Items {
			s := &l.Items[i]
			got[s.Namespace+"/"+s.Name] = s
			seen.observe(s)
			fr := want[s.Namespace+"/"+s.Name]
			if fr == nil || fr.finished.IsZero() {
				continue
			}
			a, t := seen.get(s.Namespace + "/" + s.Name)
			if a.IsZero() || t.IsZero() || usageOf(s.Status.Usage) != fr.usage {
				done = false
			}
		}
		return done, nil
	}
	if err := waitFor(ctx, 2*time.Minute, "every finished session archived, terminal and at its runner's usage", settled); err != nil {
		fmt.Fprintln(os.Stderr, "gatewaybench:", err, "(reported as stuck or wrong below)")
	}
	mc, err := minio.New(s3.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s3.AccessKey, s3.SecretKey, "")})
	if err != nil {
		return err
	}
	byNS := map[string]*nsBudget{}
	for i := range r.nss {
		byNS[r.nss[i].ns] = &r.nss[i]
	}
	for _, fr := range r.runners {
		k := fr.s.key.String()
		s, nb := got[k], byNS[fr.s.key.Namespace]
		nb.calls += fr.calls
		if fr.budgetHit {
			nb.byBudget++
		}
		if s == nil {
			r.stuck++
			continue
		}
		nb.used += usageOf(s.Status.Usage).Total()
		a, t := seen.get(k)
		if fr.finished.IsZero() || a.IsZero() || t.IsZero() {
			r.stuck++
		} else {
			r.archive = append(r.archive, max(0, a.Sub(fr.finished)))
			r.terminal = append(r.terminal, max(0, t.Sub(fr.finished)))
		}
		if u := usageOf(s.Status.Usage); u != fr.usage {
			r.usageWrong++
			r.usageDetail = append(r.usageDetail, fmt.Sprintf("%s: status.usage %+v, runner received %+v", k, u, fr.usage))
		}
		if msg := transcriptProblem(ctx, mc, s, fr); msg != "" {
			r.lost++
			r.lostDetail = append(r.lostDetail, k+": "+msg)
		}
	}
	for _, fr := range r.runners {
		if fr.budgetHit {
			r.budgetRefused++
		}
	}
	for i := range r.nss {
		nb := &r.nss[i]
		rate := float64(nb.calls) / r.window.Seconds()
		nb.bound = int64(nb.sessions)*callTokens + int64(rate*statusInterval.Seconds()*callTokens)
	}
	return nil
}

func usageOf(u *v1.Usage) contract.Usage {
	if u == nil {
		return contract.Usage{}
	}
	return contract.Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, CachedTokens: u.CachedTokens}
}

// transcriptProblem says what is wrong with a session's archived transcript: the status
// and the stored object must hold seqs 1..k, none repeated, k at least what the runner
// saw acknowledged.
func transcriptProblem(ctx context.Context, mc *minio.Client, s *v1.AgentSession, fr *foRunner) string {
	if s.Status.Transcript == nil {
		if fr.acked > 0 {
			return fmt.Sprintf("no archived transcript; %d events acknowledged", fr.acked)
		}
		return ""
	}
	if s.Status.Transcript.Events < fr.acked {
		return fmt.Sprintf("status.transcript.events %d < %d acknowledged", s.Status.Transcript.Events, fr.acked)
	}
	key, ok := strings.CutPrefix(s.Status.Transcript.URI, "s3://"+bucket+"/")
	if !ok {
		return "transcript URI " + s.Status.Transcript.URI + " is not in the bucket"
	}
	obj, err := mc.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return "reading the transcript: " + err.Error()
	}
	defer obj.Close()
	sc := bufio.NewScanner(obj)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	var next int64 = 1
	for sc.Scan() {
		var ev struct {
			Seq int64 `json:"seq"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return "an unreadable line: " + err.Error()
		}
		if ev.Seq != next {
			return fmt.Sprintf("seq %d where %d was due (missing or repeated)", ev.Seq, next)
		}
		next++
	}
	if err := sc.Err(); err != nil {
		return "reading the transcript: " + err.Error()
	}
	if next-1 < fr.acked {
		return fmt.Sprintf("the stored transcript ends at %d, %d acknowledged", next-1, fr.acked)
	}
	if next-1 != s.Status.Transcript.Events {
		return fmt.Sprintf("the stored transcript has %d events, status says %d", next-1, s.Status.Transcript.Events)
	}
	return ""
}

var raisedRE = regexp.MustCompile(`Raising usage to the runner's count.*"tokens":\s*(\d+)`)

// raisedTokens sums what the finish floor added, from both replicas' logs.
func raisedTokens(dir string) (tokens int64, sessions int) {
	logs, _ := filepath.Glob(filepath.Join(dir, "manager-*.log"))
	for _, p := range logs {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if m := raisedRE.FindSubmatch(sc.Bytes()); m != nil {
				n, _ := strconv.ParseInt(string(m[1]), 10, 64)
				tokens += n
				sessions++
			}
		}
		f.Close()
	}
	return tokens, sessions
}

// recoveries are, per fault, how long after the kill the runners that saw a failure got
// an answer again (after and blocked: from the kill, and from their first failure).
func (r *foRun) recoveries(k int, approvals bool) (after, blocked []time.Duration) {
	from := r.faults[k].at
	until := from.Add(time.Minute)
	if k+1 < len(r.faults) {
		until = r.faults[k+1].at
	}
	for _, fr := range r.runners {
		var worst, longest time.Duration
		for _, e := range fr.episodes {
			if !e.from.Before(from) && e.from.Before(until) && e.approval == approvals {
				worst, longest = max(worst, e.to.Sub(from)), max(longest, e.to.Sub(e.from))
			}
		}
		if worst > 0 {
			after, blocked = append(after, worst), append(blocked, longest)
		}
	}
	return after, blocked
}

func (r *foRun) print(w io.Writer, o options, n int) {
	sec := func(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }
	fmt.Fprintf(w, "\nReplica faults: %d sessions in %d namespaces, two manager replicas, %s of runner time, think %s\n\n", n, o.namespaces, r.window, o.think)
	fmt.Fprintf(w, "| fault | at | new leader after | killed replica serves again after | runners whose model call, events or finish failed | their first answer after the kill, p50 / max | first failure → answer, p50 / max | runners whose approval poll was cut | its answer (incl. the user's decision) after the kill, p50 / max |\n|---|---|---|---|---|---|---|---|---|\n")
	for k, f := range r.faults {
		after, blocked := r.recoveries(k, false)
		apAfter, _ := r.recoveries(k, true)
		fmt.Fprintf(w, "| SIGKILL %s (replica %s) | %s | %s | %s | %d | %s / %s | %s / %s | %d | %s / %s |\n", f.what, f.replica,
			sec(f.at.Sub(r.start)), sec(f.newLeader), sec(f.restarted), len(after), sec(pct(after, 50)), sec(pct(after, 100)), sec(pct(blocked, 50)), sec(pct(blocked, 100)),
			len(apAfter), sec(pct(apAfter, 50)), sec(pct(apAfter, 100)))
	}
	rate := float64(r.calls) / r.window.Seconds()
	var behind []int64
	for _, l := range r.lag {
		behind = append(behind, l.behind)
	}
	slices.Sort(behind)
	at := func(p float64) int64 {
		if len(behind) == 0 {
			return 0
		}
		return behind[int(float64(len(behind)-1)*p)]
	}
	calls := func(tok int64) string {
		return fmt.Sprintf("%d tokens = %.0f calls = %.1f s of calls", tok, float64(tok)/callTokens, float64(tok)/callTokens/rate)
	}
	fmt.Fprintf(w, "\nstatus.usage behind the runners' received count (all running sessions, sampled every 2 s; %.1f calls/s in the run): p50 %s; max %s\n",
		rate, calls(at(0.5)), calls(at(1)))
	for _, f := range r.faults {
		var last int64
		for _, l := range r.lag {
			if l.at.Before(f.at) {
				last = l.behind
			}
		}
		fmt.Fprintf(w, "  last sample before the SIGKILL of replica %s: %s\n", f.replica, calls(last))
	}
	var gaps []time.Duration
	for _, fr := range r.runners {
		gaps = append(gaps, fr.maxGap)
	}
	fmt.Fprintf(w, "\nLongest gap any runner saw between two answers: %s (p50 of the runners' longest: %s; think time and approvals included)\n", sec(pct(gaps, 100)), sec(pct(gaps, 50)))
	fmt.Fprintf(w, "Model calls answered: %d; events acknowledged: %d; runners moved to the other replica: %d times; runners stopped by a budget: %d\n",
		r.calls, r.events, r.moves, r.budgetRefused)
	fmt.Fprintf(w, "\n| check | result |\n|---|---|\n")
	fmt.Fprintf(w, "| acknowledged events lost (transcript in status and in S3: seqs 1..k contiguous, none repeated, k ≥ acknowledged) | %d of %d sessions |\n", r.lost, n)
	fmt.Fprintf(w, "| sessions stuck (not archived and terminal within 2 min of the runner's finish) | %d of %d |\n", r.stuck, n)
	fmt.Fprintf(w, "| runner's finish answered → Archived=True seen, p50 / p99 / max | %s / %s / %s |\n", ms(pct(r.archive, 50))+" ms", ms(pct(r.archive, 99))+" ms", ms(pct(r.archive, 100))+" ms")
	fmt.Fprintf(w, "| runner's finish answered → pod ended (bench as kubelet) → terminal phase seen, p50 / p99 / max | %s / %s / %s |\n", ms(pct(r.terminal, 50))+" ms", ms(pct(r.terminal, 99))+" ms", ms(pct(r.terminal, 100))+" ms")
	fmt.Fprintf(w, "| status.usage ≠ the usage the runner received | %d of %d sessions |\n", r.usageWrong, n)
	fmt.Fprintf(w, "| tokens the finish floor added (charges that died unwritten with a killed replica) | %d tokens in %d sessions |\n", r.raised, r.raisedSessions)
	fmt.Fprintf(w, "| runners that stopped early (gave up / gateway lost state) | %d |\n", r.broken)
	fmt.Fprintf(w, "\n| namespace | budget | used (sum of status.usage) | overshoot | overshoot / budget | documented bound | runners stopped by the budget |\n|---|---|---|---|---|---|---|\n")
	for _, nb := range r.nss {
		over := nb.used - nb.budget
		fmt.Fprintf(w, "| %s | %d | %d | %d | %.2f%% | %d | %d of %d |\n", nb.ns, nb.budget, nb.used, over, 100*float64(over)/float64(nb.budget), nb.bound, nb.byBudget, nb.sessions)
	}
	fmt.Fprintf(w, "\n(The bound: every session of the namespace with one call in flight on the other replica, plus one status interval of the namespace's calls charged by a killed replica and not yet written: sessions × %d + calls/s × %s × %d.)\n",
		callTokens, statusInterval, callTokens)
	kinds := make([]string, 0, len(r.failures))
	for k := range r.failures {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	fmt.Fprintf(w, "\nFailed requests, retried (by request and failure):\n")
	for _, k := range kinds {
		fmt.Fprintf(w, "  %6d  %s\n", r.failures[k], k)
	}
	for _, d := range first(r.lostDetail, 20) {
		fmt.Fprintln(w, "LOST:", d)
	}
	for _, d := range first(r.usageDetail, 20) {
		fmt.Fprintln(w, "USAGE:", d)
	}
	for _, fr := range r.runners {
		if fr.broken != "" {
			fmt.Fprintf(w, "STOPPED: %s: %s\n", fr.s.key, fr.broken)
		}
	}
}
