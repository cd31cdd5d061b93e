package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/test/controlplane"
	"github.com/agentry-dev/agentry/test/scriptedllm"
	"github.com/agentry-dev/agentry/test/testutil"
)

// writer is a model that writes files until it has seen `files` tool results, then
// answers. Its answer depends only on the conversation, so a model call retried after a
// fault gets the same answer. hold, when set, runs before the answer for a given number
// of tool results seen (once per number).
type writer struct {
	files int
	mu    sync.Mutex
	hold  map[int]func()
}

func (w *writer) step(_ int, r scriptedllm.Request) scriptedllm.Step {
	k := 0
	for _, m := range r.Body.Messages {
		if m.Role == "tool" {
			k++
		}
	}
	w.mu.Lock()
	h := w.hold[k]
	delete(w.hold, k)
	w.mu.Unlock()
	if h != nil {
		h()
	}
	if k >= w.files {
		return scriptedllm.Text("Wrote the files.")
	}
	name := filepath.Join("out", string(rune('a'+k))+".txt")
	return scriptedllm.Tools(scriptedllm.Call{Name: "write_file", Args: map[string]any{"path": name, "content": strings.Repeat("line\n", k+1)}})
}

// assertCompleteTranscript checks the archived transcript is the runner's whole record.
func assertCompleteTranscript(t *testing.T, f *fixture, s *v1.AgentSession, r *runner) {
	t.Helper()
	st := f.get(s).Status
	if st.Transcript == nil || !meta.IsStatusConditionTrue(st.Conditions, v1.ConditionArchived) {
		t.Fatalf("session not archived: %+v", st)
	}
	archived := objectBytes(t, st.Transcript.URI)
	local, err := os.ReadFile(filepath.Join(r.transcript, "transcript.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(archived, local) || sha(archived) != st.Transcript.SHA256 {
		t.Errorf("archived transcript (%d events) differs from the runner's (%d events)", bytes.Count(archived, []byte("\n")), bytes.Count(local, []byte("\n")))
	}
	if !bytes.Contains(archived, []byte(`"type":"finish"`)) {
		t.Error("archived transcript has no finish event")
	}
}

func TestGatewayRestartMidSessionLosesNothing(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	ctx := context.Background()
	atTurn3, restarted := make(chan struct{}), make(chan struct{})
	w := &writer{files: 4, hold: map[int]func(){2: func() { close(atTurn3); <-restarted }}}
	f := newFixture(t)
	f.llm.Generate(w.step)
	g := startGateway(t)
	s := f.session("restart")
	r := runnerFor(t, s, g, f.tokenFile(f.runnerPod(s)))
	done := make(chan int, 1)
	go func() { done <- r.run(ctx) }()

	<-atTurn3 // a model call is in flight through the gateway
	g.restart()
	close(restarted)
	if code := <-done; code != 0 {
		t.Fatalf("runner exited %d:\n%s", code, r.stderr.String())
	}
	assertCompleteTranscript(t, f, s, r)
	if u := f.get(s).Status.Usage; u == nil || u.ToolCalls != 4 || u.TotalTokens == 0 {
		t.Errorf("usage after a restart = %+v", u)
	}
}

func storeErrors(t *testing.T) float64 {
	t.Helper()
	mfs, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "agentry_gateway_store_errors_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

func TestObjectStorageOutageMidSessionLosesNothing(t *testing.T) {
	s3Lock.Lock() // the outage is shared: no other test runs meanwhile
	defer s3Lock.Unlock()
	ctx := context.Background()
	const outage = 3 * time.Second // the 30 s, scaled down
	before := storeErrors(t)
	back := make(chan error, 1)
	w := &writer{files: 5, hold: map[int]func(){
		1: func() {
			if err := s3.Stop(); err != nil {
				t.Error(err)
			}
			go func() {
				start := time.Now()
				// The outage lasts at least `outage` and until the gateway has refused a batch.
				_ = testutil.Poll(ctx, testutil.Holds(func() bool { return time.Since(start) >= outage && storeErrors(t) >= before+1 }))
				back <- s3.Restart(ctx)
			}()
		},
	}}
	f := newFixture(t)
	f.llm.Generate(w.step)
	g := startGateway(t)
	s := f.session("outage")
	r := runnerFor(t, s, g, f.tokenFile(f.runnerPod(s)))
	code := r.run(ctx)
	if err := <-back; err != nil {
		t.Fatalf("restarting S3: %v", err)
	}
	if code != 0 {
		t.Fatalf("runner exited %d:\n%s", code, r.stderr.String())
	}
	if storeErrors(t) == before {
		t.Fatal("the outage never reached the gateway; the test proves nothing")
	}
	assertCompleteTranscript(t, f, s, r)
}

func buildRunner(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "runner")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/runner")
	cmd.Dir = controlplane.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the runner: %v\n%s", err, out)
	}
	return bin
}

func TestKilledRunnerLosesNoAcknowledgedEvent(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	ctx := context.Background()
	bin := buildRunner(t)
	const ackedBatches = 3
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) })
	w := &writer{files: 100, hold: map[int]func(){ackedBatches + 1: func() { <-stuck }}}
	f := newFixture(t)
	f.llm.Generate(w.step)
	g := startOperator(t, f.ns)
	s := f.session("killed")
	pod := &corev1.Pod{}
	eventually(t, 20*time.Second, "the reconciler to create the runner pod", func() bool {
		return env.Client.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "killed-runner"}, pod) == nil
	})
	f.recordPod(s, pod) // what the reconciler writes when it creates the pod
	kubeletRun(t, pod)
	r := runnerFor(t, s, g, f.tokenFile(pod))
	cmd := exec.Command(bin, r.args...)
	cmd.Env = []string{"HOME=" + r.env["HOME"], "PATH=" + os.Getenv("PATH")}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	segPrefix := "sessions/" + f.ns + "/killed/" + string(s.UID) + "/segments/"
	var acked []string
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if testutil.Poll(wctx, testutil.Holds(func() bool {
		acked = acked[:0]
		for o := range s3c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: segPrefix, Recursive: true}) {
			acked = append(acked, o.Key)
		}
		return len(acked) >= ackedBatches
	})) != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("the gateway acknowledged %d batches in 30s; runner said:\n%s", len(acked), stderr.String())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	// Everything acknowledged is in storage; read it now, after the last possible ack.
	var ackedEvents []string
	for o := range s3c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: segPrefix, Recursive: true}) {
		sc := bufio.NewScanner(bytes.NewReader(objectBytes(t, "s3://"+bucket+"/"+o.Key)))
		for sc.Scan() {
			ackedEvents = append(ackedEvents, sc.Text())
		}
	}
	kubeletExit(t, pod, 137, "")

	var st v1.AgentSessionStatus
	eventually(t, 30*time.Second, "the session to fail and its acknowledged transcript to be archived", func() bool {
		got := f.get(s)
		st = got.Status
		return st.Phase == v1.PhaseFailed && meta.IsStatusConditionTrue(st.Conditions, v1.ConditionArchived) && st.Transcript != nil
	})
	archived := objectBytes(t, st.Transcript.URI)
	if sha(archived) != st.Transcript.SHA256 {
		t.Error("status sha256 does not match the archived transcript")
	}
	lines := strings.Split(strings.TrimSpace(string(archived)), "\n")
	have := map[string]bool{}
	for _, l := range lines {
		have[l] = true
	}
	for _, e := range ackedEvents {
		if !have[e] {
			t.Errorf("acknowledged event missing from the archived transcript: %s", e)
		}
	}
	if int64(len(lines)) != st.Transcript.Events || len(lines) < len(ackedEvents) {
		t.Errorf("archived %d lines, status says %d events, %d were acknowledged", len(lines), st.Transcript.Events, len(ackedEvents))
	}
	for i, l := range lines {
		ev, err := contract.DecodeEvent([]byte(l))
		if err != nil || ev.Seq != int64(i+1) {
			t.Fatalf("archived line %d: seq %d, %v", i+1, ev.Seq, err)
		}
	}
	c := meta.FindStatusCondition(st.Conditions, v1.ConditionArchived)
	if c == nil || c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "did not finish") {
		t.Errorf("Archived condition = %+v", c)
	}
}
