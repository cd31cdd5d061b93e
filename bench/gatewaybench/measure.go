package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/bench/internal/audit"
	"github.com/agentry-dev/agentry/bench/internal/proc"
)

// procSample is a process's CPU time and memory from /proc.
type procSample struct {
	cpu      time.Duration // user + system
	rss, hwm int64         // bytes
	// runqWait is the time the process's threads were ready to run but waited for a CPU
	// (schedstat, summed over threads alive at the sample): on a shared machine it is
	// the part of the latency no change to the gateway removes.
	runqWait time.Duration
	// load is the machine's 1-minute load average.
	load float64
}

func readProc(pid int) (procSample, error) {
	var ps procSample
	st, err := proc.Read(pid)
	if err != nil {
		return ps, err
	}
	ps.cpu = st.CPU
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ps, err
	}
	ps.runqWait = runqWait(pid)
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		ps.load, _ = strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			ps.rss = kb << 10
		case "VmHWM":
			ps.hwm = kb << 10
		}
	}
	return ps, nil
}

// runqWait sums the run-queue wait of pid's threads (the second field of schedstat, ns).
func runqWait(pid int) time.Duration {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var total time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) >= 2 {
			ns, _ := strconv.ParseInt(f[1], 10, 64)
			total += time.Duration(ns)
		}
	}
	return total
}

// scrape reads the counters of the manager's Prometheus endpoint, summed over labels.
func scrape(metricsURL string) (map[string]float64, error) {
	resp, err := http.Get(metricsURL)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		name := line[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			// Keep the labels that matter here: handler and code of the gateway's requests.
			if strings.HasPrefix(name, "agentry_gateway_requests_total") || strings.HasPrefix(name, "agentry_gateway_refused_total") ||
				strings.HasPrefix(name, "agentry_gateway_request_duration_seconds_sum") || strings.HasPrefix(name, "agentry_gateway_request_duration_seconds_count") {
				out[name] += parseFloat(line[i+1:])
			}
			name = name[:j]
		}
		out[name] += parseFloat(line[i+1:])
	}
	return out, nil
}

func parseFloat(s string) float64 {
	f, _ := strconv.ParseFloat(strings.TrimSpace(s), 64)
	return f
}

// auditCounts counts the apiserver's write requests in [from, to) by who sent them
// (user agent's program, and the fieldManager of server-side applies), verb, resource and
// response code, from its audit log.
func auditCounts(path string, from, to time.Time) (map[string]int, error) {
	counts := map[string]int{}
	err := audit.Each(path, func(ev *audit.Event) {
		if ev.StageTimestamp.Before(from) || !ev.StageTimestamp.Before(to) {
			return
		}
		who := audit.Agent(ev.UserAgent)
		if m := ev.FieldManager(); m != "" {
			who += " (" + m + ")"
		}
		counts[fmt.Sprintf("%s|%s|%s|%d", who, ev.Verb, ev.Resource(), ev.ResponseStatus.Code)]++
	})
	return counts, err
}

// user decides every pending approval at once, as a person watching with kubectl would:
// it watches AgentSessions and adds an Allow to spec.approvals.
type user struct {
	c       client.WithWatch
	mu      sync.Mutex
	decided map[types.UID][]v1.ApprovalDecision
	seen    map[string]bool
}

func startUser(ctx context.Context, cfg *rest.Config, scheme client.Options) (*user, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "bench-user"
	c, err := client.NewWithWatch(cfg, scheme)
	if err != nil {
		return nil, err
	}
	u := &user{c: c, decided: map[types.UID][]v1.ApprovalDecision{}, seen: map[string]bool{}}
	work := make(chan v1.AgentSession, 1024)
	for range 8 {
		go func() {
			for s := range work {
				u.decide(ctx, &s)
			}
		}()
	}
	err = followSessions(ctx, c, func(s *v1.AgentSession) {
		if len(s.Status.PendingApprovals) > 0 {
			work <- *s
		}
	}, func() { close(work) })
	if err != nil {
		return nil, err
	}
	return u, nil
}

// followSessions calls seen with every AgentSession the watch delivers until ctx ends, then
// done. It watches again whenever the watch ends (it starts with every session again): a
// watch may end at any time, and an overloaded apiserver may refuse a new one for a while.
func followSessions(ctx context.Context, c client.WithWatch, seen func(*v1.AgentSession), done func()) error {
	w, err := c.Watch(ctx, &v1.AgentSessionList{})
	if err != nil {
		return err
	}
	go func() {
		defer done()
		for {
			select {
			case <-ctx.Done():
				w.Stop()
				return
			case ev, ok := <-w.ResultChan():
				if !ok {
					for w, err = c.Watch(ctx, &v1.AgentSessionList{}); err != nil; w, err = c.Watch(ctx, &v1.AgentSessionList{}) {
						if ctx.Err() != nil {
							return
						}
						time.Sleep(time.Second)
					}
					continue
				}
				if s, ok := ev.Object.(*v1.AgentSession); ok {
					seen(s)
				}
			}
		}
	}()
	return nil
}

func (u *user) decide(ctx context.Context, s *v1.AgentSession) {
	u.mu.Lock()
	var fresh []v1.ApprovalDecision
	for _, p := range s.Status.PendingApprovals {
		k := string(s.UID) + "/" + p.ID
		if !u.seen[k] {
			u.seen[k] = true
			fresh = append(fresh, v1.ApprovalDecision{ID: p.ID, Digest: p.Digest, Decision: v1.DecisionAllow, DecidedBy: "bench-user"})
		}
	}
	if len(fresh) == 0 {
		u.mu.Unlock()
		return
	}
	all := append(slices.Clone(u.decided[s.UID]), fresh...)
	u.decided[s.UID] = all
	u.mu.Unlock()
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"approvals": all}})
	obj := &v1.AgentSession{}
	obj.Name, obj.Namespace = s.Name, s.Namespace
	_ = u.c.Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch))
}

// pct is the p-th percentile (0..100) of d.
func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

func mean(d []time.Duration) float64 {
	if len(d) == 0 {
		return 0
	}
	var t time.Duration
	for _, v := range d {
		t += v
	}
	return float64(t) / float64(len(d)) / float64(time.Millisecond)
}

// cpuSplit is the CPU time used so far by this process (the simulated runners, the scripted
// model and the S3 counter) and by each of its child processes, by command name (the
// manager, kube-apiserver, etcd, versitygw), and the machine's busy time in all, from /proc.
func cpuSplit() map[string]time.Duration {
	out := map[string]time.Duration{}
	if self, err := proc.Read(os.Getpid()); err == nil {
		out["bench"] = self.CPU
	}
	children, _ := proc.Children(os.Getpid())
	for _, c := range children {
		name := c.Comm
		if strings.HasPrefix(name, "versitygw") { // versitygw-v1.8.0, cut to 15 characters
			name = "versitygw"
		}
		out[name] += c.CPU
	}
	if busy, err := proc.MachineBusy(); err == nil {
		out["machine"] = busy
	}
	return out
}
