package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"k8s.io/apimachinery/pkg/types"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/objectstore"
)

// S3Config locates the archive bucket. Prefix is prepended to every key:
// <prefix>/<namespace>/<session>/<uid>/... OpTimeout bounds one object operation (default
// 10s), so an outage turns into a quick refusal the runner retries rather than a hung
// request.
type S3Config = objectstore.Config

// Object names under a session's prefix.
const (
	segmentsDir    = "segments"
	transcriptFile = "transcript.jsonl"
	patchFile      = "result.patch"
	summaryFile    = "summary.json"
)

type store struct {
	c       *minio.Client
	bucket  string
	prefix  string
	timeout time.Duration

	// whether the object store honours If-None-Match on PUT, once known
	condMu          sync.Mutex
	cond, condKnown bool
}

func newStore(ctx context.Context, cfg S3Config) (*store, error) {
	// The runner retries; a long internal retry loop would only hold its request.
	cfg.MaxRetries = 2
	c, err := objectstore.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	timeout := cfg.OpTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return &store{c: c, bucket: cfg.Bucket, prefix: strings.Trim(cfg.Prefix, "/"), timeout: timeout}, nil
}

// ensureBucket creates the bucket when it does not exist, so a fresh object store works
// without a manual step. Credentials without that permission only get the error logged:
// the bucket may exist already and be merely unlistable.
func (st *store) ensureBucket(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	ok, err := st.c.BucketExists(ctx, st.bucket)
	if err != nil || ok {
		return err
	}
	if err := st.c.MakeBucket(ctx, st.bucket, minio.MakeBucketOptions{}); err != nil {
		return fmt.Errorf("creating bucket %s: %w", st.bucket, err)
	}
	return nil
}

func (st *store) sessionKey(id identity, name string) string {
	return path.Join(st.prefix, id.Session.Namespace, id.Session.Name, string(id.UID), name)
}

func (st *store) uri(key string) string { return "s3://" + st.bucket + "/" + key }

func (st *store) put(ctx context.Context, key string, b []byte, contentType string) error {
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	if _, err := st.c.PutObject(ctx, st.bucket, key, bytes.NewReader(b), int64(len(b)),
		minio.PutObjectOptions{ContentType: contentType}); err != nil {
		return fmt.Errorf("storing %s: %w", st.uri(key), err)
	}
	return nil
}

// segmentName is the object of a batch, named by its first seq only: two replicas that
// store a batch at the same place (a runner's retry that landed elsewhere, re-batched with
// newer events) write the same key, and the conditional PUT lets only the first one in. Its
// last seq is in the object's metadata, and is the next segment's first minus one.
func segmentName(first int64) string {
	return fmt.Sprintf("%s/%012d.jsonl", segmentsDir, first)
}

// legacySegmentName is how segments were named before: by first and last seq.
func legacySegmentName(first, last int64) string {
	return fmt.Sprintf("%s/%012d-%012d.jsonl", segmentsDir, first, last)
}

// lastSeqMeta is the user metadata that records a segment's last seq.
const lastSeqMeta = "Last-Seq"

// errSegmentExists is a segment PUT refused because a segment is stored under its key.
var errSegmentExists = errors.New("a transcript segment is already stored under that key")

// putSegment stores a batch as the segment that starts at first. Where the object store
// honours If-None-Match (conditionalPuts), it never replaces a stored segment: it returns
// errSegmentExists instead.
func (st *store) putSegment(ctx context.Context, id identity, first, last int64, b []byte, conditional bool) error {
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	key := st.sessionKey(id, segmentName(first))
	opts := minio.PutObjectOptions{ContentType: "application/x-ndjson", DisableMultipart: true,
		UserMetadata: map[string]string{lastSeqMeta: strconv.FormatInt(last, 10)}}
	if conditional {
		opts.SetMatchETagExcept("*")
	}
	if _, err := st.c.PutObject(ctx, st.bucket, key, bytes.NewReader(b), int64(len(b)), opts); err != nil {
		if minio.ToErrorResponse(err).StatusCode == http.StatusPreconditionFailed {
			return errSegmentExists
		}
		return fmt.Errorf("storing %s: %w", st.uri(key), err)
	}
	return nil
}

// conditionalPuts says whether the object store refuses a PUT with If-None-Match: "*" over
// an existing object (versitygw and S3 do), found out once by trying it. Until it is known
// (the store unreachable), and for a store that ignores the header, it is false: every
// batch is then checked against a listing of the stored segments first.
func (st *store) conditionalPuts(ctx context.Context) bool {
	st.condMu.Lock()
	defer st.condMu.Unlock()
	if st.condKnown {
		return st.cond
	}
	cond, err := st.probeConditionalPut(ctx)
	if err != nil {
		return false
	}
	st.cond, st.condKnown = cond, true
	return cond
}

func (st *store) probeConditionalPut(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	key := path.Join(st.prefix, ".conditional-put-probe", hex.EncodeToString(nonce[:]))
	put := func(conditional bool) error {
		opts := minio.PutObjectOptions{DisableMultipart: true}
		if conditional {
			opts.SetMatchETagExcept("*")
		}
		_, err := st.c.PutObject(ctx, st.bucket, key, bytes.NewReader(nil), 0, opts)
		return err
	}
	if err := put(false); err != nil {
		return false, fmt.Errorf("probing conditional PUTs at %s: %w", st.uri(key), err)
	}
	defer func() { _ = st.c.RemoveObject(ctx, st.bucket, key, minio.RemoveObjectOptions{}) }()
	err := put(true)
	if err == nil {
		return false, nil
	}
	if minio.ToErrorResponse(err).StatusCode == http.StatusPreconditionFailed {
		return true, nil
	}
	return false, fmt.Errorf("probing conditional PUTs at %s: %w", st.uri(key), err)
}

// segment is a stored batch, by its key's sequence range.
type segment struct {
	key         string
	first, last int64
}

// segments lists a session's stored segments in order. A segment named by its first seq
// alone ends where the next one starts; the last one's end is read from its metadata.
func (st *store) segments(ctx context.Context, id identity) ([]segment, error) {
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	var out []segment
	prefix := st.sessionKey(id, segmentsDir) + "/"
	for obj := range st.c.ListObjects(ctx, st.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("listing %s: %w", st.uri(prefix), obj.Err)
		}
		if seg, ok := parseSegment(obj.Key[len(prefix):]); ok {
			seg.key = obj.Key
			out = append(out, seg)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].first < out[j].first })
	for i := range out {
		if out[i].last >= 0 {
			continue
		}
		if i+1 < len(out) {
			out[i].last = max(out[i].first, out[i+1].first) - 1
			continue
		}
		last, err := st.segmentLast(ctx, out[i].key)
		if err != nil {
			return nil, err
		}
		out[i].last = last
	}
	return out, nil
}

// parseSegment reads a segment's range from its name; last is -1 when the name holds
// only the first seq.
func parseSegment(name string) (segment, bool) {
	var seg segment
	if _, err := fmt.Sscanf(name, "%012d-%012d.jsonl", &seg.first, &seg.last); err == nil && segmentsDir+"/"+name == legacySegmentName(seg.first, seg.last) {
		return seg, true
	}
	if _, err := fmt.Sscanf(name, "%012d.jsonl", &seg.first); err == nil && segmentsDir+"/"+name == segmentName(seg.first) {
		seg.last = -1
		return seg, true
	}
	return segment{}, false
}

// segmentLast is a segment's last seq: from its metadata, or, without it, its last event.
func (st *store) segmentLast(ctx context.Context, key string) (int64, error) {
	info, err := st.c.StatObject(ctx, st.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return 0, fmt.Errorf("reading the metadata of %s: %w", st.uri(key), err)
	}
	if v, ok := info.UserMetadata[lastSeqMeta]; ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n, nil
		}
	}
	b, err := st.get(ctx, key)
	if err != nil {
		return 0, err
	}
	var last int64
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		if ev, err := contract.DecodeEvent(line); err == nil {
			last = max(last, ev.Seq)
		}
	}
	return last, nil
}

// lastSeq is the highest sequence number stored contiguously from 1.
func lastContiguous(segs []segment) int64 {
	var last int64
	for _, s := range segs {
		if s.first > last+1 {
			break
		}
		last = max(last, s.last)
	}
	return last
}

// consolidate reads every segment in order and returns the transcript: each
// sequence number once, consecutive from 1.
func (st *store) consolidate(ctx context.Context, id identity) ([]byte, int64, error) {
	segs, err := st.segments(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	var buf bytes.Buffer
	var last int64
	for _, seg := range segs {
		if seg.last <= last {
			continue
		}
		b, err := st.get(ctx, seg.key)
		if err != nil {
			return nil, 0, err
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
		for sc.Scan() {
			ev, err := contract.DecodeEvent(sc.Bytes())
			if err != nil {
				return nil, 0, fmt.Errorf("%s: %w", st.uri(seg.key), err)
			}
			if ev.Seq <= last {
				continue
			}
			if ev.Seq != last+1 {
				return nil, 0, fmt.Errorf("transcript of %s misses events %d to %d", id.Session, last+1, ev.Seq-1)
			}
			buf.Write(sc.Bytes())
			buf.WriteByte('\n')
			last = ev.Seq
		}
		if err := sc.Err(); err != nil {
			return nil, 0, fmt.Errorf("reading %s: %w", st.uri(seg.key), err)
		}
	}
	return buf.Bytes(), last, nil
}

func (st *store) get(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	obj, err := st.c.GetObject(ctx, st.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", st.uri(key), err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", st.uri(key), err)
	}
	return b, nil
}

func objectRef(uri string, b []byte) *contract.Object {
	sum := sha256.Sum256(b)
	return &contract.Object{URI: uri, SizeBytes: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}
}

// ReadArtifact returns the archived object at uri (s3://<bucket>/<key>, as in a session's
// status) when it is in this gateway's bucket and under its prefix, and no larger than max
// bytes. The delivery controller reads the patch it pushes with it.
func (s *Server) ReadArtifact(ctx context.Context, uri string, max int64) ([]byte, error) {
	st := s.store
	key, ok := strings.CutPrefix(uri, "s3://"+st.bucket+"/")
	if !ok || (st.prefix != "" && !strings.HasPrefix(key, st.prefix+"/")) || strings.Contains(key, "..") {
		return nil, fmt.Errorf("%s is not an object Agentry archived", uri)
	}
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	obj, err := st.c.GetObject(ctx, st.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", uri, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(io.LimitReader(obj, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", uri, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", uri, max)
	}
	return b, nil
}

// ReadLiveTranscript returns the events a running session's runner has stored so far, in
// order and each once, up to the first gap (a batch still being written): the share
// viewer follows a live session with it.
func (s *Server) ReadLiveTranscript(ctx context.Context, namespace, name string, uid types.UID) ([]byte, error) {
	st := s.store
	id := identity{Session: types.NamespacedName{Namespace: namespace, Name: name}, UID: uid}
	segs, err := st.segments(ctx, id)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	var last int64
	for _, seg := range segs {
		if seg.first > last+1 {
			break
		}
		if seg.last <= last {
			continue
		}
		b, err := st.get(ctx, seg.key)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
		for sc.Scan() {
			ev, err := contract.DecodeEvent(sc.Bytes())
			if err != nil || ev.Seq <= last {
				continue
			}
			if ev.Seq != last+1 {
				break
			}
			buf.Write(sc.Bytes())
			buf.WriteByte('\n')
			last = ev.Seq
		}
	}
	return buf.Bytes(), nil
}
