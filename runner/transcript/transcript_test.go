package transcript_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner/transcript"
)

// flaky fails its first n writes, like a gateway that is restarting, and
// keeps what it acknowledged.
type flaky struct {
	fails  int
	stored []int64
	calls  int
}

func (f *flaky) Write(_ context.Context, batch []contract.Event) error {
	f.calls++
	if f.fails > 0 {
		f.fails--
		return errors.New("gateway unavailable")
	}
	for _, e := range batch {
		if len(f.stored) == 0 || e.Seq > f.stored[len(f.stored)-1] {
			f.stored = append(f.stored, e.Seq)
		}
	}
	return nil
}

func (f *flaky) Close(context.Context, transcript.Final) (transcript.Stored, error) {
	return transcript.Stored{}, nil
}

func errorEvent(msg string) contract.Event {
	return contract.Event{Type: contract.EventError, Error: &contract.ErrorInfo{Source: "test", Message: msg}}
}

func TestRecorderRetriesUnacknowledgedBatches(t *testing.T) {
	dir, err := transcript.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := &flaky{fails: 2}
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	rec := transcript.NewRecorder(nil, func() time.Time { return now }, f, dir)
	ctx := context.Background()

	rec.Emit(errorEvent("one"))
	if err := rec.Flush(ctx); err == nil {
		t.Fatal("flush to a failing sink reported success")
	}
	rec.Emit(errorEvent("two"))
	_ = rec.Flush(ctx) // fails again: events 1-2 stay queued for the flaky sink
	rec.Emit(errorEvent("three"))
	if err := rec.Flush(ctx); err != nil {
		t.Fatalf("third flush: %v", err)
	}
	if diff := cmp.Diff([]int64{1, 2, 3}, f.stored); diff != "" {
		t.Errorf("flaky sink received (-want +got):\n%s", diff)
	}
	if _, err := rec.Close(ctx, transcript.Final{}); err != nil {
		t.Fatal(err)
	}
	evs, err := transcript.ReadFile(dir.TranscriptPath())
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, e := range evs {
		msgs = append(msgs, e.Error.Message)
		if !e.Time.Equal(now) || e.Version != contract.SchemaVersion {
			t.Errorf("event %d not stamped: %+v", e.Seq, e)
		}
	}
	if diff := cmp.Diff([]string{"one", "two", "three"}, msgs); diff != "" {
		t.Errorf("the healthy sink must not be held back by the failing one (-want +got):\n%s", diff)
	}
}

func TestDirSinkIgnoresRedeliveredEvents(t *testing.T) {
	d, err := transcript.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	batch := []contract.Event{
		{Version: 1, Seq: 1, Type: contract.EventError, Error: &contract.ErrorInfo{Message: "a"}},
		{Version: 1, Seq: 2, Type: contract.EventError, Error: &contract.ErrorInfo{Message: "b"}},
	}
	ctx := context.Background()
	if err := d.Write(ctx, batch); err != nil {
		t.Fatal(err)
	}
	more := append(batch, contract.Event{Version: 1, Seq: 3, Type: contract.EventError, Error: &contract.ErrorInfo{Message: "c"}})
	if err := d.Write(ctx, more); err != nil {
		t.Fatal(err)
	}
	st, err := d.Close(ctx, transcript.Final{Patch: []byte("diff --git a/x b/x\n"), Summary: contract.Summary{Outcome: contract.OutcomeCompleted}})
	if err != nil {
		t.Fatal(err)
	}
	evs, err := transcript.ReadFile(d.TranscriptPath())
	if err != nil || len(evs) != 3 {
		t.Fatalf("%d events, err %v; want 3 without duplicates", len(evs), err)
	}
	b, _ := os.ReadFile(d.TranscriptPath())
	if st.Transcript.SizeBytes != int64(len(b)) || !strings.HasPrefix(st.Transcript.URI, "file://") || len(st.Transcript.SHA256) != 64 {
		t.Errorf("stored transcript pointer: %+v", st.Transcript)
	}
	if p, _ := os.ReadFile(filepath.Join(d.Path(), transcript.PatchFile)); string(p) != "diff --git a/x b/x\n" {
		t.Errorf("patch: %q", p)
	}
}

func TestReadFileRejectsGapsAndUnknownVersions(t *testing.T) {
	cases := map[string]string{
		"gap":             `{"v":1,"seq":1,"time":"2030-01-01T00:00:00Z","type":"error","error":{"message":"a","source":"x"}}` + "\n" + `{"v":1,"seq":3,"time":"2030-01-01T00:00:00Z","type":"error","error":{"message":"b","source":"x"}}`,
		"version":         `{"v":2,"seq":1,"time":"2030-01-01T00:00:00Z","type":"error","error":{"message":"a","source":"x"}}`,
		"missing payload": `{"v":1,"seq":1,"time":"2030-01-01T00:00:00Z","type":"finish"}`,
		"two payloads":    `{"v":1,"seq":1,"time":"2030-01-01T00:00:00Z","type":"error","error":{"message":"a","source":"x"},"limitHit":{"limit":"maxTurns","max":1,"used":1}}`,
		"unknown type":    `{"v":1,"seq":1,"time":"2030-01-01T00:00:00Z","type":"telepathy"}`,
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "t.jsonl")
			if err := os.WriteFile(p, []byte(content+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := transcript.ReadFile(p); err == nil {
				t.Error("accepted an invalid transcript")
			}
		})
	}
}
