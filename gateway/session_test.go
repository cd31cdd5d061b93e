package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/test/scriptedllm"
)

// waitStep blocks the model's answer until the test saw what it waits for, so "during
// the run" is a fact, not a race.
func waitStep(t *testing.T, ch <-chan struct{}, then scriptedllm.Step) scriptedllm.Step {
	return scriptedllm.Step{Respond: func(scriptedllm.Request) scriptedllm.Step {
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			t.Error("the test never released the model's answer")
		}
		return then
	}}
}

func TestFullSessionThroughGateway(t *testing.T) {
	s3Lock.RLock()
	defer s3Lock.RUnlock()
	ctx := context.Background()
	progressSeen := make(chan struct{})
	f := newFixture(t,
		scriptedllm.Tools(scriptedllm.Call{Name: "write_file", Args: map[string]any{"path": "greeting.txt", "content": "hello\n"}}),
		waitStep(t, progressSeen, scriptedllm.Text("Added greeting.txt.")),
	)
	g := startGateway(t)
	s := f.session("full")
	pod := f.runnerPod(s)
	r := runnerFor(t, s, g, f.tokenFile(pod))

	done := make(chan int, 1)
	go func() { done <- r.run(ctx) }()

	eventually(t, 20*time.Second, "status.progress to show the write_file call while the runner waits for the model", func() bool {
		p := f.get(s).Status.Progress
		return p != nil && p.LastTool == "write_file" && p.Turn >= 1 && p.LastActivityTime != nil
	})
	if tr := f.get(s).Status.Transcript; tr != nil {
		t.Errorf("transcript recorded before the session finished: %+v", tr)
	}
	close(progressSeen)
	if code := <-done; code != 0 {
		t.Fatalf("runner exited %d:\n%s", code, r.stderr.String())
	}

	got := f.get(s)
	st := got.Status
	if st.Transcript == nil || st.Patch == nil || st.Result == nil || st.Usage == nil {
		t.Fatalf("status misses the archive: %+v", st)
	}
	if c := meta.FindStatusCondition(st.Conditions, v1.ConditionArchived); c == nil || c.Status != metav1.ConditionTrue || c.Reason != v1.ReasonUploaded {
		t.Errorf("Archived condition = %+v, want True/Uploaded", c)
	}
	transcript := objectBytes(t, st.Transcript.URI)
	if sha(transcript) != st.Transcript.SHA256 || int64(len(transcript)) != st.Transcript.SizeBytes {
		t.Errorf("status.transcript %+v does not describe the stored object (%d bytes, sha256 %s)", st.Transcript, len(transcript), sha(transcript))
	}
	local, err := os.ReadFile(filepath.Join(r.transcript, "transcript.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(local, transcript) {
		t.Errorf("archived transcript differs from the runner's local copy:\n%s\n---\n%s", transcript, local)
	}
	if n := int64(bytes.Count(transcript, []byte("\n"))); n != st.Transcript.Events || n < 6 {
		t.Errorf("status.transcript.events = %d, transcript has %d lines", st.Transcript.Events, n)
	}
	if !strings.HasPrefix(st.Transcript.URI, "s3://"+bucket+"/sessions/"+f.ns+"/full/"+string(s.UID)+"/") {
		t.Errorf("transcript URI %s is not under <prefix>/<namespace>/<session>/<uid>/", st.Transcript.URI)
	}
	patch := objectBytes(t, st.Patch.URI)
	if sha(patch) != st.Patch.SHA256 || !strings.Contains(string(patch), "+hello") {
		t.Errorf("patch object (sha256 %s) vs status %+v:\n%s", sha(patch), st.Patch, patch)
	}
	var sum contract.Summary
	if err := json.Unmarshal(objectBytes(t, strings.Replace(st.Transcript.URI, "transcript.jsonl", "summary.json", 1)), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Outcome != contract.OutcomeCompleted || sum.Transcript == nil || sum.Transcript.SHA256 != st.Transcript.SHA256 {
		t.Errorf("summary.json = %+v", sum)
	}
	if st.Result.Summary != "Added greeting.txt." || st.Result.FilesChanged != 1 || st.Result.Additions != 1 {
		t.Errorf("status.result = %+v", st.Result)
	}
	// The gateway counted what the provider reported; the runner saw the same usage.
	if st.Usage.TotalTokens == 0 || st.Usage.PromptTokens != sum.Usage.PromptTokens || st.Usage.CompletionTokens != sum.Usage.CompletionTokens || st.Usage.ToolCalls != 1 {
		t.Errorf("status.usage = %+v, runner counted %+v", st.Usage, sum.Usage)
	}
	if len(st.PendingApprovals) != 0 {
		t.Errorf("pending approvals left: %+v", st.PendingApprovals)
	}

	// The proxy asked for usage on the stream and the provider saw its key, the runner did not.
	reqs := f.llm.Requests()
	if len(reqs) != 2 {
		t.Fatalf("provider got %d requests, want 2", len(reqs))
	}
	for _, rq := range reqs {
		if rq.Body.StreamOptions == nil || !rq.Body.StreamOptions.IncludeUsage {
			t.Errorf("streamed request without stream_options.include_usage: %s", rq.Raw)
		}
	}
	assertNoKey(t, r)

	// An operator sees the session in the metrics.
	m := gather(t)
	for name, min := range map[string]float64{
		`agentry_llm_tokens_total{kind="prompt",namespace="` + f.ns + `"}`:                                float64(st.Usage.PromptTokens),
		`agentry_llm_request_duration_seconds_count{code="200",model="gpt-test",provider="` + f.ns + `"}`: 2,
		`agentry_tool_duration_seconds_count{tool="write_file"}`:                                          1,
		`agentry_session_turns_count`:                                                                     1,
		`agentry_gateway_requests_total{code="200",handler="events"}`:                                     1,
	} {
		if m[name] < min {
			t.Errorf("metric %s = %v, want at least %v", name, m[name], min)
		}
	}
}

// gather flattens the metrics registry to "name{labels}" → value (histograms as _count).
func gather(t *testing.T) map[string]float64 {
	t.Helper()
	mfs, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			key := mf.GetName()
			suffix := ""
			if len(labels) > 0 {
				suffix = "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.GetCounter() != nil:
				out[key+suffix] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[key+suffix] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				out[key+"_count"+suffix] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// assertNoKey checks the provider key is nowhere the runner could see it.
func assertNoKey(t *testing.T, r *runner) {
	t.Helper()
	for _, a := range r.args {
		if strings.Contains(a, providerKey) {
			t.Errorf("provider key in runner argument %q", a)
		}
	}
	for k, v := range r.env {
		if strings.Contains(v, providerKey) {
			t.Errorf("provider key in runner environment %s", k)
		}
	}
	if strings.Contains(r.stderr.String(), providerKey) {
		t.Error("provider key in runner output")
	}
	for _, dir := range []string{r.transcript, r.workspace} {
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(providerKey)) {
				t.Errorf("provider key in runner file %s", p)
			}
			return nil
		})
	}
}
