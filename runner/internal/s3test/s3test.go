// Package s3test gives runner tests a real S3 server (versitygw, see test/s3server) with
// one bucket ready. A missing server binary fails the test: `make test` always builds it.
package s3test

import (
	"context"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/agentry-dev/agentry/test/s3server"
)

// Server is a running versitygw with one bucket.
type Server struct {
	Endpoint  string // http://127.0.0.1:port
	Bucket    string
	AccessKey string
	SecretKey string
	// Dir is the posix backend root; objects are files under Dir/Bucket.
	Dir string
}

// Start runs versitygw until the test ends.
func Start(t *testing.T) *Server {
	t.Helper()
	srv, err := s3server.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	s := &Server{Endpoint: "http://" + srv.Endpoint, Bucket: "agentry-test", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Dir: srv.Dir}
	c, err := minio.New(srv.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.MakeBucket(ctx, s.Bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("creating bucket: %v", err)
	}
	return s
}
