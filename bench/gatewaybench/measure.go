package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
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
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ps, err
	}
	// Fields after the command (which may hold spaces) start after the last ')'.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	ps.cpu = time.Duration(utime+stime) * time.Second / 100 // USER_HZ
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
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	counts := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev struct {
			Verb           string    `json:"verb"`
			UserAgent      string    `json:"userAgent"`
			RequestURI     string    `json:"requestURI"`
			StageTimestamp time.Time `json:"stageTimestamp"`
			ObjectRef      struct {
				Resource    string `json:"resource"`
				Subresource string `json:"subresource"`
			} `json:"objectRef"`
			ResponseStatus struct {
				Code int `json:"code"`
			} `json:"responseStatus"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, err
		}
		if ev.StageTimestamp.Before(from) || !ev.StageTimestamp.Before(to) {
			continue
		}
		who, _, _ := strings.Cut(ev.UserAgent, "/")
		if u, err := url.Parse(ev.RequestURI); err == nil && u.Query().Get("fieldManager") != "" {
			who += " (" + u.Query().Get("fieldManager") + ")"
		}
		res := ev.ObjectRef.Resource
		if ev.ObjectRef.Subresource != "" {
			res += "/" + ev.ObjectRef.Subresource
		}
		counts[fmt.Sprintf("%s|%s|%s|%d", who, ev.Verb, res, ev.ResponseStatus.Code)]++
	}
	return counts, sc.Err()
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
	w, err := c.Watch(ctx, &v1.AgentSessionList{})
	if err != nil {
		return nil, err
	}
	work := make(chan v1.AgentSession, 1024)
	for range 8 {
		go func() {
			for s := range work {
				u.decide(ctx, &s)
			}
		}()
	}
	go func() {
		defer close(work)
		for {
			select {
			case <-ctx.Done():
				w.Stop()
				return
			case ev, ok := <-w.ResultChan():
				if !ok {
					// Re-watch (it starts with every session again): a watch may end at any
					// time, and an overloaded apiserver may refuse a new one for a while.
					for w, err = c.Watch(ctx, &v1.AgentSessionList{}); err != nil; w, err = c.Watch(ctx, &v1.AgentSessionList{}) {
						if ctx.Err() != nil {
							return
						}
						time.Sleep(time.Second)
					}
					continue
				}
				if s, ok := ev.Object.(*v1.AgentSession); ok && len(s.Status.PendingApprovals) > 0 {
					work <- *s
				}
			}
		}
	}()
	return u, nil
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
