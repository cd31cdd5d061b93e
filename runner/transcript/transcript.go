// Package transcript owns the session record: it numbers and redacts events,
// batches them to sinks (a local directory, S3 through the objectstore package, or
// the session gateway, which archives to S3 itself) and hands the final artifacts
// (patch, summary) to those sinks at the end.
package transcript

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/agentry-dev/agentry/contract"
)

// Sink stores the transcript.
//
// Write receives a batch of consecutive events. A nil error acknowledges the
// batch: the sink has stored it as durably as it promises, and the Recorder
// will not send it again. On error the Recorder keeps the batch and sends it
// again, possibly followed by newer events, on the next flush, so a sink must
// skip events whose Seq it has already stored. The gateway sink (runner →
// gateway → S3 segment, ack after the segment is written) relies on exactly
// this contract; a local directory simply appends.
//
// Close is called once, after the last Write, with the session's final
// artifacts, and reports where the sink stored them. Implementations may
// ignore what they do not store.
type Sink interface {
	Write(ctx context.Context, batch []contract.Event) error
	Close(ctx context.Context, final Final) (Stored, error)
}

// redeliverer is implemented by sinks that keep unacknowledged events
// themselves and keep trying to deliver them in Close.
type redeliverer interface{ RedeliversOnClose() bool }

// Final is what the session produced besides the event stream.
type Final struct {
	Summary contract.Summary
	// Patch is `git diff` of the workspace against the base commit (may be
	// empty). Recorder.Close redacts it, like the summary, before any sink
	// sees it, so a patch that held a secret no longer applies cleanly.
	Patch []byte
}

// Stored points at a sink's copies of the artifacts; nil fields were not stored.
type Stored struct {
	Transcript *contract.Object
	Patch      *contract.Object
	Summary    *contract.Object
}

// Recorder is the single entry point for events: it stamps version, sequence
// number and time, redacts, and fans out to every sink with per-sink
// retention of unacknowledged events.
type Recorder struct {
	mu     sync.Mutex
	now    func() time.Time
	redact *Redactor
	seq    int64
	sinks  []*sinkState
}

type sinkState struct {
	sink    Sink
	pending []contract.Event
	lastErr error
}

// maxPending bounds memory when a sink stays down; the oldest events are kept
// on the other sinks (the local directory always) and the broken sink reports
// its error at Close.
const maxPending = 100_000

// NewRecorder creates a recorder. now defaults to time.Now.
func NewRecorder(redact *Redactor, now func() time.Time, sinks ...Sink) *Recorder {
	if now == nil {
		now = time.Now
	}
	r := &Recorder{now: now, redact: redact}
	for _, s := range sinks {
		r.sinks = append(r.sinks, &sinkState{sink: s})
	}
	return r
}

// Emit stamps, redacts and queues one event, returning the recorded form.
// Callers must not share payload pointers between events.
func (r *Recorder) Emit(ev contract.Event) contract.Event {
	r.redact.Apply(&ev)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	ev.Version, ev.Seq, ev.Time = contract.SchemaVersion, r.seq, r.now().UTC()
	for _, s := range r.sinks {
		if len(s.pending) < maxPending {
			s.pending = append(s.pending, ev)
		} else if s.lastErr == nil {
			s.lastErr = fmt.Errorf("sink backlog exceeded %d events; later events dropped", maxPending)
		}
	}
	return ev
}

// Events is the number of events emitted so far.
func (r *Recorder) Events() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seq
}

// Flush sends pending events to every sink. A failing sink keeps its events
// for the next flush; the other sinks are not held back. The returned error
// joins the failures.
func (r *Recorder) Flush(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, s := range r.sinks {
		if len(s.pending) == 0 {
			continue
		}
		if err := s.sink.Write(ctx, s.pending); err != nil {
			s.lastErr = err
			errs = append(errs, err)
			continue
		}
		s.pending = s.pending[:0]
	}
	return errors.Join(errs...)
}

// Close flushes and closes every sink, returning what each stored, in sink
// order. A sink that could not take every event still gets Close, so it can
// store the artifacts it has.
func (r *Recorder) Close(ctx context.Context, final Final) ([]Stored, error) {
	_ = r.Flush(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	final.Summary.Events = r.seq
	r.redact.Apply(&final.Summary)
	// The patch is the model's work: it can hold any secret the model read
	// and copied into a file. Every sink gets the redacted copy.
	final.Patch = r.redact.redactBytes(final.Patch)
	stored := make([]Stored, len(r.sinks))
	var errs []error
	for _, s := range r.sinks {
		// A sink that redelivers at Close (the gateway) reports there whether
		// it finally stored everything; its earlier refusals are not failures.
		if rd, ok := s.sink.(redeliverer); ok && rd.RedeliversOnClose() {
			continue
		}
		if len(s.pending) > 0 && s.lastErr != nil {
			errs = append(errs, s.lastErr)
		}
	}
	for i, s := range r.sinks {
		st, err := s.sink.Close(ctx, final)
		if err != nil {
			errs = append(errs, err)
		}
		stored[i] = st
	}
	return stored, errors.Join(errs...)
}
