//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/test/scriptedllm"
)

// failover holds the "[e2e:failover" sessions' second model call until the test has
// killed a manager, so the kill lands while every session is mid-run.
var failover = struct {
	mu      sync.Mutex
	held    map[string]bool // marker -> its second call is waiting
	gate    chan struct{}
	release sync.Once
}{held: map[string]bool{}, gate: make(chan struct{})}

// releaseFailover answers the held calls; also when the test fails before the kill, so the
// model server can close.
func releaseFailover() { failover.release.Do(func() { close(failover.gate) }) }

// failoverStep is the script of a session that lives through a replica's death: list the
// workspace, (held) write NOTES.md, answer. Every answer carries a distinct usage, so a
// charge counted twice or lost shows in status.usage.
func failoverStep(marker string, turn int) scriptedllm.Step {
	var st scriptedllm.Step
	switch turn {
	case 0:
		st = scriptedllm.Tools(scriptedllm.Call{Name: "list_dir", Args: map[string]any{"path": "."}})
	case 1:
		// Held in Respond, which the model server runs outside its lock, so the other
		// sessions' calls go on.
		st = scriptedllm.Step{Respond: func(scriptedllm.Request) scriptedllm.Step {
			failover.mu.Lock()
			failover.held[marker] = true
			failover.mu.Unlock()
			<-failover.gate
			return scriptedllm.Tools(scriptedllm.Call{Name: "write_file", Args: map[string]any{"path": "NOTES.md", "content": "written across a failover\n"}})
		}}
	default:
		st = scriptedllm.Text("Wrote NOTES.md.")
	}
	u := &scriptedllm.Usage{PromptTokens: 1000 + 100*turn, CompletionTokens: 10 + turn, CachedTokens: turn}
	if held := st.Respond; held != nil {
		st.Respond = func(r scriptedllm.Request) scriptedllm.Step {
			out := held(r)
			out.Usage = u
			return out
		}
		return st
	}
	st.Usage = u
	return st
}

func heldCalls() int {
	failover.mu.Lock()
	defer failover.mu.Unlock()
	return len(failover.held)
}

// managerPods lists the running manager pods not being deleted.
func managerPods(t *testing.T) []string {
	t.Helper()
	out, err := kubectl("-n", operatorNS, "get", "pods", "-l", "app.kubernetes.io/name=agentry-manager", "-o",
		`jsonpath={range .items[?(@.status.phase=="Running")]}{.metadata.name} {.metadata.deletionTimestamp}{"\n"}{end}`)
	if err != nil {
		t.Fatal(err)
	}
	var pods []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 1 {
			pods = append(pods, f[0])
		}
	}
	return pods
}

func leader(t *testing.T) string {
	t.Helper()
	holder, err := kubectl("-n", operatorNS, "get", "lease", "agentry-manager.agentry.dev", "-o", "jsonpath={.spec.holderIdentity}")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(holder)
}

// managerPID finds the manager process of pod on this node (the e2e suite runs on the dev
// cluster's node), by the HOSTNAME its container was given.
func managerPID(t *testing.T, pod string) int {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/environ")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte("\x00HOSTNAME="+pod+"\x00")) && !bytes.HasPrefix(b, []byte("HOSTNAME="+pod+"\x00")) {
			continue
		}
		dir := filepath.Dir(p)
		if cmd, _ := os.ReadFile(filepath.Join(dir, "cmdline")); bytes.Contains(cmd, []byte("--gateway-url")) {
			pid, _ := strconv.Atoi(filepath.Base(dir))
			return pid
		}
	}
	t.Fatalf("no manager process of pod %s on this node: the e2e suite kills it with SIGKILL and must run on the node (make dev)", pod)
	return 0
}

// scaleManager sets the manager's replicas and waits until that many run and one leads.
func scaleManager(t *testing.T, n int) {
	t.Helper()
	if _, err := kubectl("-n", operatorNS, "scale", "deployment", manager, fmt.Sprintf("--replicas=%d", n)); err != nil {
		t.Fatal(err)
	}
	if out, err := kubectl("-n", operatorNS, "rollout", "status", "deployment/"+manager, "--timeout=3m"); err != nil {
		t.Fatalf("manager rollout: %v\n%s", err, out)
	}
	eventually(t, 2*time.Minute, fmt.Sprintf("%d running manager pods", n), func() bool { return len(managerPods(t)) == n })
	if err := waitForLeader(); err != nil {
		t.Fatal(err)
	}
}

// Two manager replicas, as the chart installs by default, and sessions in flight on both.
// The leader (which also serves the gateway) is killed with SIGKILL while every session
// waits on a model call: the other replica takes the lead and the runners' traffic, every
// session succeeds, no acknowledged event is lost and usage is exactly what the model
// billed for the answers the runners received.
func TestTwoReplicasSurviveTheLeaderBeingKilled(t *testing.T) {
	scaleManager(t, 2)
	t.Cleanup(func() { scaleManager(t, 1) })
	t.Cleanup(releaseFailover)

	const n = 4
	var names []string
	for i := range n {
		name := fmt.Sprintf("failover-%d", i)
		names = append(names, name)
		applySession(t, name, fmt.Sprintf("[e2e:failover-%d]", i), "")
	}
	eventually(t, 3*time.Minute, "every session's second model call to be waiting", func() bool { return heldCalls() == n })

	// The holder is <pod>_<a UUID per process>: the kubelet restarts the killed container,
	// and that new process, or the other replica, takes the lease.
	holder := leader(t)
	victim := strings.SplitN(holder, "_", 2)[0]
	pid := managerPID(t, victim)
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("killing the leader %s (pid %d): %v", victim, pid, err)
	}
	eventually(t, 2*time.Minute, "another manager process to take the lead", func() bool {
		h := leader(t)
		return h != "" && h != holder
	})
	reportTiming(t, "leader failover after SIGKILL", time.Since(killed))
	releaseFailover()

	for _, name := range names {
		if _, err := kubectl("-n", namespace, "wait", "--for=condition=Succeeded", "agentsession/"+name, "--timeout=4m"); err != nil {
			out, _ := kubectl("-n", namespace, "get", "agentsession", name, "-o", "yaml")
			t.Fatalf("session %s did not succeed after the failover: %v\n%s", name, err, out)
		}
	}
	for _, name := range names {
		checkFailoverSession(t, name)
	}
}

// checkFailoverSession compares a finished session's status with its archived transcript.
func checkFailoverSession(t *testing.T, name string) {
	t.Helper()
	tr, err := kubectlPlugin("agentry", "-n", namespace, "--console-via-apiserver", "agentry-system/agentry-console", "transcript", name, "--format", "json")
	if err != nil {
		t.Fatalf("kubectl agentry transcript %s: %v\n%.500s", name, err, tr)
	}
	var received contract.Usage
	var seqs []int64
	for _, line := range strings.Split(strings.TrimSpace(tr), "\n") {
		var ev contract.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("%s: transcript line %q: %v", name, line, err)
		}
		seqs = append(seqs, ev.Seq)
		if ev.ModelResponse != nil {
			received = received.Add(ev.ModelResponse.Usage)
		}
	}
	for i, seq := range seqs {
		if seq != int64(i+1) {
			t.Fatalf("%s: transcript seqs %v: an event is missing or repeated", name, seqs)
		}
	}
	// Three answers: list, write, the summary.
	want := contract.Usage{PromptTokens: 1000 + 1100 + 1200, CompletionTokens: 10 + 11 + 12, CachedTokens: 0 + 1 + 2}
	if received != want {
		t.Errorf("%s: the transcript records usage %+v, want the three answers' %+v", name, received, want)
	}
	eventually(t, 30*time.Second, name+"'s usage to be the three answers'", func() bool {
		u := getSession(t, name).Status.Usage
		return u != nil && u.PromptTokens == want.PromptTokens && u.CompletionTokens == want.CompletionTokens && u.CachedTokens == want.CachedTokens && u.TotalTokens == want.Total()
	})
	s := getSession(t, name)
	if s.Status.Transcript == nil || s.Status.Transcript.Events != int64(len(seqs)) || !strings.Contains(tr, `"type":"finish"`) {
		t.Errorf("%s: status.transcript %+v, the archive holds %d events", name, s.Status.Transcript, len(seqs))
	}
}
