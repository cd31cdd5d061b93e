package s3server_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/agentry-dev/agentry/test/s3server"
)

func client(t *testing.T, s *s3server.Server, access, secret string) *minio.Client {
	t.Helper()
	c, err := minio.New(s.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(access, secret, ""), Secure: false})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPutGetSurvivesRestart stores an object in a real versitygw, reads it back, and reads
// it again after the server restarts: what tests and local mode rely on.
func TestPutGetSurvivesRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := s3server.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	c := client(t, s, s.AccessKey, s.SecretKey)

	if err := c.MakeBucket(ctx, "transcripts", minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("MakeBucket: %v", err)
	}
	body := []byte(`{"type":"session.start","seq":1}` + "\n")
	if _, err := c.PutObject(ctx, "transcripts", "team-a/s1/transcript.jsonl", bytes.NewReader(body), int64(len(body)),
		minio.PutObjectOptions{ContentType: "application/x-ndjson"}); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	read := func() []byte {
		obj, err := c.GetObject(ctx, "transcripts", "team-a/s1/transcript.jsonl", minio.GetObjectOptions{})
		if err != nil {
			t.Fatalf("GetObject: %v", err)
		}
		defer obj.Close()
		got, err := io.ReadAll(obj)
		if err != nil {
			t.Fatalf("reading object: %v", err)
		}
		return got
	}
	if got := read(); !bytes.Equal(got, body) {
		t.Fatalf("object = %q, want %q", got, body)
	}

	if err := s.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if got := read(); !bytes.Equal(got, body) {
		t.Fatalf("after restart object = %q, want %q", got, body)
	}
}

// TestWrongKeyIsRefused checks that the server really authenticates: a client with a wrong
// secret cannot write.
func TestWrongKeyIsRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := s3server.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	if err := client(t, s, s.AccessKey, s.SecretKey).MakeBucket(ctx, "bucket", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	bad := client(t, s, s.AccessKey, "not-the-secret-0000000000")
	_, err = bad.PutObject(ctx, "bucket", "k", bytes.NewReader([]byte("x")), 1, minio.PutObjectOptions{})
	if err == nil {
		t.Fatal("PutObject with a wrong secret succeeded; want an authentication error")
	}
	if exists, _ := client(t, s, s.AccessKey, s.SecretKey).StatObject(ctx, "bucket", "k", minio.StatObjectOptions{}); exists.Key != "" {
		t.Fatalf("object written despite the wrong secret: %+v", exists)
	}
}
