package transcript

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"os"
	"path"
	"strings"

	"github.com/minio/minio-go/v7"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/objectstore"
)

// S3Config locates the bucket. Credentials come from the caller (the CLI reads them from
// the environment: objectstore.Config.CredentialsFromEnv), never flags.
type S3Config = objectstore.Config

// S3 stores the session in a bucket, following the same layout the gateway
// uses: each acknowledged batch is a segment object under
// <prefix>/segments/, so a killed runner loses nothing it acknowledged; Close
// writes the consolidated transcript.jsonl, result.patch and summary.json and
// then removes the segments.
type S3 struct {
	client   *minio.Client
	bucket   string
	prefix   string
	spool    *os.File // local copy for the consolidated object
	sum      hash.Hash
	size     int64
	lastSeq  int64
	segments []string
}

// NewS3 connects and checks the bucket exists, so a typo fails the session
// before any model tokens are spent. spoolDir holds the local copy.
func NewS3(ctx context.Context, cfg S3Config, spoolDir string) (*S3, error) {
	client, err := objectstore.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("S3 sink: %w", err)
	}
	if cfg.AccessKey == "" || cfg.SecretKey == "" {
		return nil, errors.New("S3 sink needs credentials: set " + objectstore.EnvAccessKey + " and " + objectstore.EnvSecretKey)
	}
	endpoint, _ := cfg.Host()
	ok, err := client.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("checking S3 bucket %q at %s: %w", cfg.Bucket, endpoint, err)
	}
	if !ok {
		return nil, fmt.Errorf("S3 bucket %q does not exist at %s", cfg.Bucket, endpoint)
	}
	if err := os.MkdirAll(spoolDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating S3 spool directory: %w", err)
	}
	spool, err := os.CreateTemp(spoolDir, ".s3-transcript-*.jsonl")
	if err != nil {
		return nil, fmt.Errorf("creating S3 spool file: %w", err)
	}
	return &S3{client: client, bucket: cfg.Bucket, prefix: strings.Trim(cfg.Prefix, "/"), spool: spool, sum: sha256.New()}, nil
}

func (s *S3) key(name string) string { return path.Join(s.prefix, name) }

// URI is the s3:// address of an object name under the prefix.
func (s *S3) URI(name string) string { return "s3://" + s.bucket + "/" + s.key(name) }

// Write uploads new events as one segment object; it acknowledges only after
// the upload succeeded.
func (s *S3) Write(ctx context.Context, batch []contract.Event) error {
	var buf bytes.Buffer
	first, last := int64(0), int64(0)
	for i := range batch {
		if batch[i].Seq <= s.lastSeq {
			continue
		}
		line, err := json.Marshal(&batch[i])
		if err != nil {
			return fmt.Errorf("encoding event %d: %w", batch[i].Seq, err)
		}
		buf.Write(line)
		buf.WriteByte('\n')
		if first == 0 {
			first = batch[i].Seq
		}
		last = batch[i].Seq
	}
	if buf.Len() == 0 {
		return nil
	}
	name := fmt.Sprintf("segments/%012d-%012d.jsonl", first, last)
	if _, err := s.client.PutObject(ctx, s.bucket, s.key(name), bytes.NewReader(buf.Bytes()), int64(buf.Len()),
		minio.PutObjectOptions{ContentType: "application/x-ndjson"}); err != nil {
		return fmt.Errorf("uploading transcript segment to %s: %w", s.URI(name), err)
	}
	if _, err := s.spool.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("spooling transcript: %w", err)
	}
	s.sum.Write(buf.Bytes())
	s.size += int64(buf.Len())
	s.lastSeq = last
	s.segments = append(s.segments, s.key(name))
	return nil
}

// Close uploads the consolidated transcript, the patch and the summary, then
// deletes the segments they supersede.
func (s *S3) Close(ctx context.Context, final Final) (Stored, error) {
	defer func() {
		_ = s.spool.Close()
		_ = os.Remove(s.spool.Name())
	}()
	var st Stored
	if _, err := s.client.FPutObject(ctx, s.bucket, s.key(TranscriptFile), s.spool.Name(),
		minio.PutObjectOptions{ContentType: "application/x-ndjson"}); err != nil {
		return st, fmt.Errorf("uploading %s: %w", s.URI(TranscriptFile), err)
	}
	st.Transcript = &contract.Object{URI: s.URI(TranscriptFile), SizeBytes: s.size, SHA256: hex.EncodeToString(s.sum.Sum(nil))}
	if err := s.put(ctx, PatchFile, final.Patch, "text/x-diff"); err != nil {
		return st, err
	}
	st.Patch = objectOf(s.URI(PatchFile), final.Patch)
	sum := final.Summary
	sum.Transcript, sum.Patch = st.Transcript, st.Patch
	b, err := sum.Encode()
	if err != nil {
		return st, err
	}
	if err := s.put(ctx, SummaryFile, b, "application/json"); err != nil {
		return st, err
	}
	st.Summary = objectOf(s.URI(SummaryFile), b)

	objs := make(chan minio.ObjectInfo, len(s.segments))
	for _, k := range s.segments {
		objs <- minio.ObjectInfo{Key: k}
	}
	close(objs)
	var errs []error
	for e := range s.client.RemoveObjects(ctx, s.bucket, objs, minio.RemoveObjectsOptions{}) {
		errs = append(errs, fmt.Errorf("removing segment %s: %w", e.ObjectName, e.Err))
	}
	return st, errors.Join(errs...)
}

func (s *S3) put(ctx context.Context, name string, b []byte, contentType string) error {
	if _, err := s.client.PutObject(ctx, s.bucket, s.key(name), bytes.NewReader(b), int64(len(b)),
		minio.PutObjectOptions{ContentType: contentType}); err != nil {
		return fmt.Errorf("uploading %s: %w", s.URI(name), err)
	}
	return nil
}
