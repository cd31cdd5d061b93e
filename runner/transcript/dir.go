package transcript

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"os"
	"path/filepath"

	"github.com/agentry-dev/agentry/contract"
)

// File names inside a session directory (local sink) or prefix (S3 sink).
const (
	TranscriptFile = "transcript.jsonl"
	PatchFile      = "result.patch"
	SummaryFile    = "summary.json"
)

// Dir writes a session to a local directory: transcript.jsonl appended batch
// by batch, then result.patch and summary.json at Close.
type Dir struct {
	path    string
	f       *os.File
	w       *bufio.Writer
	sum     hash.Hash
	size    int64
	lastSeq int64
}

// NewDir creates dir (and parents) and starts a fresh transcript in it.
func NewDir(dir string) (*Dir, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolving transcript directory: %w", err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("creating transcript directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(abs, TranscriptFile), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating transcript: %w", err)
	}
	return &Dir{path: abs, f: f, w: bufio.NewWriterSize(f, 64<<10), sum: sha256.New()}, nil
}

// Path is the directory holding the session's files.
func (d *Dir) Path() string { return d.path }

// TranscriptPath is the JSONL file.
func (d *Dir) TranscriptPath() string { return filepath.Join(d.path, TranscriptFile) }

// Write appends events it has not seen yet. The data reaches the OS before
// Write returns, so it survives the runner being killed; it is fsynced at Close.
func (d *Dir) Write(_ context.Context, batch []contract.Event) error {
	if d.f == nil {
		return errors.New("transcript directory sink is closed")
	}
	for i := range batch {
		if batch[i].Seq <= d.lastSeq {
			continue
		}
		line, err := json.Marshal(&batch[i])
		if err != nil {
			return fmt.Errorf("encoding event %d: %w", batch[i].Seq, err)
		}
		line = append(line, '\n')
		if _, err := d.w.Write(line); err != nil {
			return fmt.Errorf("writing transcript: %w", err)
		}
		d.sum.Write(line)
		d.size += int64(len(line))
		d.lastSeq = batch[i].Seq
	}
	if err := d.w.Flush(); err != nil {
		return fmt.Errorf("writing transcript: %w", err)
	}
	return nil
}

// Close finishes the transcript and writes the patch and summary beside it.
func (d *Dir) Close(_ context.Context, final Final) (Stored, error) {
	if d.f == nil {
		return Stored{}, errors.New("transcript directory sink already closed")
	}
	var errs []error
	if err := d.w.Flush(); err != nil {
		errs = append(errs, err)
	}
	if err := d.f.Sync(); err != nil {
		errs = append(errs, err)
	}
	if err := d.f.Close(); err != nil {
		errs = append(errs, err)
	}
	d.f = nil
	st := Stored{Transcript: &contract.Object{URI: "file://" + d.TranscriptPath(), SizeBytes: d.size, SHA256: hex.EncodeToString(d.sum.Sum(nil))}}
	patchPath := filepath.Join(d.path, PatchFile)
	if err := os.WriteFile(patchPath, final.Patch, 0o644); err != nil {
		errs = append(errs, fmt.Errorf("writing patch: %w", err))
	} else {
		st.Patch = objectOf("file://"+patchPath, final.Patch)
	}
	s := final.Summary
	s.Transcript, s.Patch = st.Transcript, st.Patch
	b, err := s.Encode()
	if err != nil {
		errs = append(errs, err)
	} else {
		summaryPath := filepath.Join(d.path, SummaryFile)
		if err := os.WriteFile(summaryPath, append(b, '\n'), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("writing summary: %w", err))
		} else {
			st.Summary = objectOf("file://"+summaryPath, b)
		}
	}
	return st, errors.Join(errs...)
}

func objectOf(uri string, b []byte) *contract.Object {
	sum := sha256.Sum256(b)
	return &contract.Object{URI: uri, SizeBytes: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}
}

// ReadFile decodes and validates a transcript.jsonl, checking that sequence
// numbers are consecutive from 1.
func ReadFile(path string) ([]contract.Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening transcript: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	var evs []contract.Event
	for sc.Scan() {
		ev, err := contract.DecodeEvent(sc.Bytes())
		if err != nil {
			return evs, fmt.Errorf("%s line %d: %w", path, len(evs)+1, err)
		}
		if ev.Seq != int64(len(evs))+1 {
			return evs, fmt.Errorf("%s line %d: seq %d, want %d", path, len(evs)+1, ev.Seq, len(evs)+1)
		}
		evs = append(evs, ev)
	}
	if err := sc.Err(); err != nil {
		return evs, fmt.Errorf("reading transcript: %w", err)
	}
	return evs, nil
}
