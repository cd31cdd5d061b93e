// Command gatewaybench measures the session gateway under N concurrent runners: the real
// manager binary (reconciler and gateway, one replica, managed TLS) as a child process
// against a real kube-apiserver and etcd, a real S3 server (versitygw, behind a proxy
// that counts its requests) and the scripted OpenAI-compatible model.
//
// Each simulated runner owns an AgentSession whose pod the real reconciler created (the
// bench writes the pod's status as a kubelet would and mints the pod's projected token with
// the TokenRequest API), and loops as runner/loop.go does: a streamed chat completion
// through the gateway (and the same call straight to the scripted model, in random order,
// for the baseline), a batch of transcript events, now and then an approval that a watching
// user allows by patching spec.approvals, a think time; at the end the last events and
// /finish. Every namespace has an AgentPolicy with a token budget, so accounting and
// budgets are on.
//
// It reports proxy overhead per model call, calls per second (and per core of the
// manager), events acknowledged per second, status writes per session per second (from the
// apiserver's audit log), S3 requests per event, and the manager's CPU and RSS per
// session; it draws the overhead against N.
//
//	go run ./bench/gatewaybench [-n 100,300,1000] [-quick] [-duration 40s] [-profile]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/agentry-dev/agentry/bench/internal/audit"
	"github.com/agentry-dev/agentry/test/controlplane"
	"github.com/agentry-dev/agentry/test/scriptedllm"
)

type options struct {
	sizes         []int
	duration      time.Duration
	think         time.Duration
	approvalEvery int
	namespaces    int
	budget        bool
	key           bool
	profile       bool
	// statusInterval is the manager's --gateway-status-interval.
	statusInterval time.Duration
	chart          string
	profileOut     string
	keep           bool
	failover       bool
}

func main() {
	var o options
	sizes := flag.String("n", "100,300,1000", "concurrent runners, a comma-separated list: one run each")
	quick := flag.Bool("quick", false, "one short run with 20 runners (a smoke test)")
	flag.DurationVar(&o.duration, "duration", 40*time.Second, "how long runners loop in each run")
	flag.DurationVar(&o.think, "think", 2*time.Second, "mean pause between a runner's turns (tool time); 1000 runners at 2s make about 500 model calls/s")
	flag.IntVar(&o.approvalEvery, "approval-every", 10, "a runner asks for an approval every this many turns (0: never)")
	flag.IntVar(&o.namespaces, "namespaces", 10, "namespaces the sessions are spread over")
	flag.DurationVar(&o.statusInterval, "status-interval", time.Second, "the manager's --gateway-status-interval (least time between two status writes for one session)")
	flag.BoolVar(&o.budget, "budget", true, "an AgentPolicy tokenBudget in every namespace")
	flag.BoolVar(&o.key, "provider-key", true, "the ModelProvider has an API key Secret (the gateway reads it on every call)")
	flag.BoolVar(&o.profile, "profile", true, "record a CPU profile of the manager (its /debug/pprof) in the largest run")
	flag.StringVar(&o.chart, "chart", "docs/images/gateway-overhead.png", "PNG chart of overhead against N (\"\" for none)")
	flag.StringVar(&o.profileOut, "profile-out", "", "where to write the profile report (default: a temporary file)")
	flag.BoolVar(&o.keep, "keep", false, "keep each run's directory (manager log, audit log) and print where it is")
	flag.BoolVar(&o.failover, "failover", false, "instead: two manager replicas, the leader and then the other killed (SIGKILL) mid-run (failover.go; -n 200, -duration 150s unless given)")
	flag.Parse()
	ctrl.SetLogger(logr.Discard())
	if *quick {
		*sizes, o.duration, o.namespaces = "20", 15*time.Second, 2
	}
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "gatewaybench: -n: %q is not a positive number\n", s)
			os.Exit(2)
		}
		o.sizes = append(o.sizes, n)
	}
	if o.failover {
		if err := runFailover(o); err != nil {
			fmt.Fprintln(os.Stderr, "gatewaybench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "gatewaybench:", err)
		os.Exit(1)
	}
}

// result is one run's measurements.
type result struct {
	n                                int
	window                           time.Duration
	gwP50, gwP99, dirP50, dirP99     time.Duration
	pairP50, pairP99                 time.Duration
	eventsP50, eventsP99             time.Duration
	approvalP50, finishP50           time.Duration
	calls, events                    int64
	cpu                              time.Duration
	cpuSplit                         map[string]time.Duration // by process over the window (cpuSplit)
	runqWait                         time.Duration            // the manager's threads waiting for a CPU
	load                             float64                  // the machine's load average at the end
	rssIdle, rss, hwm                int64
	gwStatusWrites, ctrlStatusWrites int
	conflicts                        int
	s3                               map[string]int64
	s3Finish                         map[string]int64
	metrics                          map[string]float64
	errors                           map[string]int
	approvals, finishes              int
	gwMean                           float64 // ms, mean of the calls through the gateway
	// apiP50, apiP99: a live GET of the provider Secret from the bench, every 200ms in the window.
	apiP50, apiP99 time.Duration
	profile        []string
	audit          map[string]int
}

func run(o options) error {
	dir, err := os.MkdirTemp("", "gatewaybench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin, err := buildManager(dir)
	if err != nil {
		return err
	}
	var results []*result
	largest := slices.Max(o.sizes)
	for _, n := range o.sizes {
		fmt.Fprintf(os.Stderr, "gatewaybench: %d runners for %s\n", n, o.duration)
		r, err := runOne(o, bin, n, o.profile && n == largest)
		if err != nil {
			return fmt.Errorf("%d runners: %w", n, err)
		}
		results = append(results, r)
		printRow(os.Stderr, r)
	}
	report(o, results)
	if o.chart != "" {
		out := o.chart
		if !filepath.IsAbs(out) {
			out = filepath.Join(controlplane.RepoRoot(), out)
		}
		if err := chart(out, results); err != nil {
			return fmt.Errorf("drawing %s: %w", out, err)
		}
		fmt.Printf("\nChart: %s\n", o.chart)
	}
	return nil
}

func runOne(o options, bin string, n int, profile bool) (*result, error) {
	dir, err := os.MkdirTemp("", "gatewaybench-run-")
	if err != nil {
		return nil, err
	}
	if o.keep {
		fmt.Fprintf(os.Stderr, "gatewaybench: run directory %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	env, auditLog, err := audit.Start(dir)
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
	counter, err := startS3Counter(s3.Endpoint)
	if err != nil {
		return nil, err
	}
	defer counter.srv.Close()

	llm, err := scriptedllm.Listen("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer llm.Close()
	if o.key {
		llm.RequireKey(providerKey)
	}
	// A tool-calling turn with the usage of a mid-session prompt (mostly cached).
	llm.Generate(func(int, scriptedllm.Request) scriptedllm.Step {
		return scriptedllm.Step{Content: "Reading the parser to find the off-by-one.",
			ToolCalls: []scriptedllm.Call{{Name: "read_file", Args: map[string]string{"path": "pkg/parse/parse.go"}}},
			Usage:     &scriptedllm.Usage{PromptTokens: 3000, CompletionTokens: 120, CachedTokens: 2500}}
	})
	if err := installOperator(ctx, env, llm.URL, o.key); err != nil {
		return nil, err
	}
	mgr, err := startManager(bin, dir, env, s3, counter.addr, "--gateway-status-interval", o.statusInterval.String())
	if err != nil {
		return nil, err
	}
	defer mgr.stop()
	tr, err := mgr.waitGateway(ctx, env, dir, n+16)
	if err != nil {
		return nil, err
	}
	r := &result{n: n, window: o.duration}
	idle, err := readProc(mgr.pid())
	if err != nil {
		return nil, err
	}
	r.rssIdle = idle.rss

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
	sessions, err := createSessions(ctx, setup, kube, n, o.namespaces, o.budget)
	if err != nil {
		return nil, err
	}
	userCtx, stopUser := context.WithCancel(ctx)
	defer stopUser()
	if _, err := startUser(userCtx, env.Config, client.Options{Scheme: env.Scheme}); err != nil {
		return nil, err
	}
	time.Sleep(3 * time.Second) // let the reconciler's last writes settle

	out := newSamples()
	start := time.Now()
	rc := &runnerConfig{
		gatewayURL: mgr.gatewayURL, llmURL: llm.URL,
		gw:     &http.Client{Transport: tr, Timeout: 2 * time.Minute},
		direct: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n + 16}, Timeout: 2 * time.Minute},
		think:  o.think, approvalEvery: o.approvalEvery, deadline: start.Add(o.duration), out: out,
	}
	p0, err := readProc(mgr.pid())
	if err != nil {
		return nil, err
	}
	split0 := cpuSplit()
	m0, err := scrape(mgr.metricsURL)
	if err != nil {
		return nil, err
	}
	counter.reset()
	counter.on.Store(true)

	var prof profileRun
	if profile {
		prof.start(mgr.pprofURL, dir, o.duration)
	}
	var atDeadline sync.WaitGroup
	atDeadline.Add(1)
	var p1 procSample
	var m1 map[string]float64
	time.AfterFunc(o.duration, func() {
		defer atDeadline.Done()
		p1, _ = readProc(mgr.pid())
		split1 := cpuSplit()
		r.cpuSplit = map[string]time.Duration{}
		for k, v := range split1 {
			r.cpuSplit[k] = v - split0[k]
		}
		m1, _ = scrape(mgr.metricsURL)
		r.s3 = counter.snapshot()
		counter.reset()
	})
	var api []time.Duration
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		for time.Now().Before(rc.deadline) {
			t := time.Now()
			if err := setup.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: "llm-key"}, &corev1.Secret{}); err == nil {
				api = append(api, time.Since(t))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	var wg sync.WaitGroup
	for i, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			(&runner{cfg: rc, s: s, idx: i, rng: rand.New(rand.NewPCG(uint64(i), 7))}).run(ctx)
		}()
	}
	wg.Wait()
	atDeadline.Wait()
	<-probeDone
	r.apiP50, r.apiP99 = pct(api, 50), pct(api, 99)
	end := start.Add(o.duration)
	time.Sleep(2 * time.Second) // the coalesced status writes after the last events
	r.s3Finish = counter.snapshot()
	if profile {
		r.profile = prof.wait()
	}

	r.cpu, r.rss, r.hwm = p1.cpu-p0.cpu, p1.rss, p1.hwm
	r.runqWait, r.load = p1.runqWait-p0.runqWait, p1.load
	r.metrics = map[string]float64{}
	for k, v := range m1 {
		r.metrics[k] = v - m0[k]
	}
	out.mu.Lock()
	r.gwP50, r.gwP99, r.dirP50, r.dirP99 = pct(out.gateway, 50), pct(out.gateway, 99), pct(out.direct, 50), pct(out.direct, 99)
	r.pairP50, r.pairP99 = pct(out.paired, 50), pct(out.paired, 99)
	r.gwMean = mean(out.gateway)
	r.eventsP50, r.eventsP99 = pct(out.events, 50), pct(out.events, 99)
	r.approvalP50, r.finishP50 = pct(out.approvals, 50), pct(out.finishes, 50)
	r.calls, r.events, r.errors = int64(len(out.gateway)), out.eventsAcked, out.errors
	r.approvals, r.finishes = len(out.approvals), len(out.finishes)
	out.mu.Unlock()

	r.audit, err = auditCounts(auditLog, start, end)
	if err != nil {
		return nil, err
	}
	for k, v := range r.audit {
		who, verb, res, code := splitAudit(k)
		if res != "agentsessions/status" || (verb != "patch" && verb != "update") {
			continue
		}
		if code == 409 {
			r.conflicts += v
			continue
		}
		if code >= 300 {
			continue
		}
		if strings.Contains(who, "agentry-gateway") {
			r.gwStatusWrites += v
		} else if strings.HasPrefix(who, managerBinary) {
			r.ctrlStatusWrites += v
		}
	}
	return r, nil
}

func splitAudit(k string) (who, verb, res string, code int) {
	p := strings.Split(k, "|")
	code, _ = strconv.Atoi(p[3])
	return p[0], p[1], p[2], code
}

// profileRun records a Go CPU profile of the manager (its --pprof-bind-address endpoint)
// for the middle half of the window and summarises it with go tool pprof.
type profileRun struct {
	done chan []string
}

func (p *profileRun) start(pprofURL, dir string, window time.Duration) {
	p.done = make(chan []string, 1)
	go func() {
		time.Sleep(window / 4)
		data := filepath.Join(dir, "manager-cpu.pprof")
		if err := fetchProfile(fmt.Sprintf("%s/profile?seconds=%d", pprofURL, int(window.Seconds()/2)), data); err != nil {
			p.done <- []string{"profile failed: " + err.Error()}
			return
		}
		self, err := pprofTop(data)
		if err != nil {
			p.done <- []string{"go tool pprof failed: " + err.Error()}
			return
		}
		incl, err := pprofTop(data, "-cum")
		if err != nil {
			p.done <- []string{"go tool pprof failed: " + err.Error()}
			return
		}
		lines := append([]string{"self time (top 25):"}, first(self, 25)...)
		lines = append(lines, "", "inclusive time, Agentry and library functions (top 45):")
		var kept []string
		for _, l := range incl {
			if strings.Contains(l, "agentry-dev") || strings.Contains(l, "net/http") || strings.Contains(l, "crypto/") ||
				strings.Contains(l, "encoding/json") || strings.Contains(l, "k8s.io") || strings.Contains(l, "minio") || strings.Contains(l, "runtime.gcBgMarkWorker") {
				kept = append(kept, l)
			}
		}
		lines = append(lines, first(kept, 45)...)
		lines = append(lines, "", "profile: "+data)
		p.done <- lines
	}()
}

// fetchProfile saves what url (a /debug/pprof endpoint) answers to path.
func fetchProfile(url, path string) error {
	resp, err := http.Get(url) //nolint:noctx // bounded by the profile's own seconds
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	return errors.Join(err, f.Close())
}

// pprofTop is go tool pprof's -top listing of a profile, one entry per line.
func pprofTop(data string, extra ...string) ([]string, error) {
	args := append([]string{"tool", "pprof", "-top", "-nodecount=400"}, extra...)
	b, err := exec.Command("go", append(args, data)...).Output()
	if err != nil {
		return nil, err
	}
	var lines []string
	inTable := false
	for _, l := range strings.Split(string(b), "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "flat ") {
			inTable = true
			continue
		}
		if inTable && t != "" {
			lines = append(lines, strings.Join(strings.Fields(t), " "))
		}
	}
	return lines, nil
}

func first(l []string, n int) []string { return l[:min(n, len(l))] }

func (p *profileRun) wait() []string { return <-p.done }
