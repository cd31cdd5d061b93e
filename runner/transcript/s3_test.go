package transcript_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner/internal/s3test"
	"github.com/agentry-dev/agentry/runner/transcript"
)

func TestS3SinkStoresSegmentsThenTheConsolidatedSession(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	cfg := transcript.S3Config{Endpoint: srv.Endpoint, Bucket: srv.Bucket, Prefix: "team-a/fix-flaky", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey}
	s3, err := transcript.NewS3(ctx, cfg, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir, err := transcript.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rec := transcript.NewRecorder(transcript.NewRedactor(), nil, dir, s3)
	rec.Emit(errorEvent("first batch"))
	if err := rec.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rec.Emit(errorEvent("second batch"))
	rec.Emit(errorEvent("token ghp_1234567890abcdefghijABCDEFGHIJ123456"))
	if err := rec.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Acknowledged batches are already durable in the bucket as segments.
	segs, _ := filepath.Glob(filepath.Join(srv.Dir, srv.Bucket, "team-a/fix-flaky/segments/*.jsonl"))
	if len(segs) != 2 {
		t.Fatalf("segments in the bucket: %v, want 2", segs)
	}

	stored, err := rec.Close(ctx, transcript.Final{Patch: []byte("diff --git a/f b/f\n"), Summary: contract.Summary{Outcome: contract.OutcomeCompleted, Message: "done"}})
	if err != nil {
		t.Fatal(err)
	}
	st := stored[1]
	if st.Transcript.URI != "s3://agentry-test/team-a/fix-flaky/transcript.jsonl" || st.Patch.URI != "s3://agentry-test/team-a/fix-flaky/result.patch" {
		t.Errorf("stored: %+v %+v", st.Transcript, st.Patch)
	}
	local, _ := os.ReadFile(dir.TranscriptPath())
	remote, err := os.ReadFile(filepath.Join(srv.Dir, srv.Bucket, "team-a/fix-flaky", transcript.TranscriptFile))
	if err != nil {
		t.Fatal(err)
	}
	if string(local) != string(remote) || st.Transcript.SHA256 != stored[0].Transcript.SHA256 {
		t.Errorf("S3 transcript differs from the local one")
	}
	if strings.Contains(string(remote), "ghp_") {
		t.Error("secret reached S3")
	}
	summary, _ := os.ReadFile(filepath.Join(srv.Dir, srv.Bucket, "team-a/fix-flaky", transcript.SummaryFile))
	if !strings.Contains(string(summary), `"uri":"s3://agentry-test/team-a/fix-flaky/transcript.jsonl"`) {
		t.Errorf("summary.json should point at the S3 copies: %s", summary)
	}
	if segs, _ := filepath.Glob(filepath.Join(srv.Dir, srv.Bucket, "team-a/fix-flaky/segments/*")); len(segs) != 0 {
		t.Errorf("segments left behind after consolidation: %v", segs)
	}
}

func TestS3SinkFailsFastOnAMissingBucket(t *testing.T) {
	srv := s3test.Start(t)
	_, err := transcript.NewS3(context.Background(), transcript.S3Config{Endpoint: srv.Endpoint, Bucket: "no-such-bucket", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey}, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), `"no-such-bucket" does not exist`) {
		t.Errorf("err = %v", err)
	}
	_, err = transcript.NewS3(context.Background(), transcript.S3Config{Endpoint: srv.Endpoint, Bucket: srv.Bucket, AccessKey: srv.AccessKey, SecretKey: "wrong-secret-key-000000"}, t.TempDir())
	if err == nil {
		t.Error("wrong credentials accepted")
	}
}
