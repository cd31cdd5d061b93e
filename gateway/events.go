package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/display"
)

// handleEvents stores a batch as one segment object, then acknowledges it.
// A batch is consecutive seqs. Events the gateway already stored are compared
// with what is stored: an identical re-send is acknowledged (so retries are
// harmless), a different event under a stored seq is a conflict (409, and the
// refused events are kept under conflicts/ for whoever investigates). A batch
// that would leave a gap is refused with the last stored seq, so the runner
// resends from there; nothing beyond the next expected seq is ever stored.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request, id identity) {
	var batch contract.EventBatch
	if !decodeBody(w, r, "events", &batch) {
		return
	}
	ctx := r.Context()
	for i := range batch.Events {
		ev := &batch.Events[i]
		if err := ev.Validate(); err != nil {
			writeError(w, http.StatusBadRequest, "%v", err)
			return
		}
		if i > 0 && ev.Seq != batch.Events[i-1].Seq+1 {
			writeError(w, http.StatusBadRequest, "a batch holds consecutive events: seq %d follows %d", ev.Seq, batch.Events[i-1].Seq)
			return
		}
	}
	ss, err := s.session(ctx, id)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "loading session state: %v", err)
		return
	}
	// One batch at a time per session: segments must not interleave.
	ss.appendMu.Lock()
	defer ss.appendMu.Unlock()
	ss.mu.Lock()
	last, finished := ss.lastSeq, ss.finished
	ss.mu.Unlock()
	if finished {
		refusedTotal.WithLabelValues(refusedFinished).Inc()
		writeError(w, http.StatusForbidden, "session %s already finished: its transcript is archived", id.Session)
		return
	}
	lines := make([][]byte, len(batch.Events))
	for i := range batch.Events {
		if lines[i], err = json.Marshal(&batch.Events[i]); err != nil {
			writeError(w, http.StatusBadRequest, "encoding event %d: %v", batch.Events[i].Seq, err)
			return
		}
	}
	o := s.appendEvents(ctx, ss, batch.Events, lines, last)
	if o.status != 0 {
		writeJSON(w, o.status, contract.GatewayError{Error: o.msg, LastSeq: o.last})
		return
	}
	ss.mu.Lock()
	ss.lastSeq = max(ss.lastSeq, o.last)
	if len(o.fresh) > 0 {
		eventsStored.Add(float64(len(o.fresh)))
		ss.observe(o.fresh)
		s.changed(ss)
	}
	ss.mu.Unlock()
	writeJSON(w, http.StatusOK, contract.EventAck{LastSeq: o.last})
}

// appendOutcome is how a batch ended: stored or found stored up to last (fresh are the
// events this call stored), or refused with status.
type appendOutcome struct {
	last   int64
	fresh  []contract.Event
	status int
	msg    string
}

// appendAttempts bounds how often one batch re-reads the stored segments because another
// replica stored a segment where this one was about to.
const appendAttempts = 3

// appendEvents stores evs (encoded as lines) after the last stored event. last is this
// replica's view of it, which another replica may have moved on since.
//
// A batch that directly follows that view is stored with one conditional PUT under its
// first seq: if another replica stored a segment there (the runner's earlier try of the
// same batch, or a longer one), the PUT is refused and nothing is replaced. Every other
// batch (a gap, a re-send, or that refused PUT) is checked against a listing of the stored
// segments first.
func (s *Server) appendEvents(ctx context.Context, ss *session, evs []contract.Event, lines [][]byte, last int64) appendOutcome {
	conditional := s.store.conditionalPuts(ctx)
	if conditional && len(evs) > 0 && evs[0].Seq == last+1 {
		end := evs[len(evs)-1].Seq
		err := s.store.putSegment(ctx, ss.id, evs[0].Seq, end, joinLines(lines), true)
		if err == nil {
			return appendOutcome{last: end, fresh: evs}
		}
		if !errors.Is(err, errSegmentExists) {
			return storeFailure(ctx, ss.id, err)
		}
	}
	for range appendAttempts {
		if o, again := s.appendAfterListing(ctx, ss, evs, lines, last, conditional); !again {
			return o
		}
	}
	return appendOutcome{status: http.StatusServiceUnavailable, msg: "other requests keep storing this session's events at the same place; keep the batch and retry"}
}

// appendAfterListing is appendEvents from the stored segments: it acknowledges what is
// stored already if it is identical, refuses a gap or a different event, and stores the
// rest. again is true when another replica stored a segment where this one was to go.
func (s *Server) appendAfterListing(ctx context.Context, ss *session, evs []contract.Event, lines [][]byte, last int64, conditional bool) (o appendOutcome, again bool) {
	id := ss.id
	segs, err := s.store.segments(ctx, id)
	if err != nil {
		return storeFailure(ctx, id, err), false
	}
	if stored := lastContiguous(segs); stored > last {
		last = stored
		ss.mu.Lock()
		ss.lastSeq = max(ss.lastSeq, last)
		ss.mu.Unlock()
	}
	if len(evs) == 0 {
		return appendOutcome{last: last}, false
	}
	if evs[0].Seq > last+1 {
		return appendOutcome{last: last, status: http.StatusConflict, msg: fmt.Sprintf("events %d to %d are missing before this batch; resend from lastSeq+1", last+1, evs[0].Seq-1)}, false
	}
	n := 0 // events already stored, a prefix of the batch
	for n < len(evs) && evs[n].Seq <= last {
		n++
	}
	if n > 0 {
		if seq, err := s.checkResent(ctx, segs, evs[:n], lines[:n]); err != nil {
			return appendOutcome{status: http.StatusServiceUnavailable, msg: fmt.Sprintf("reading stored events to compare a re-sent batch: %v", err)}, false
		} else if seq > 0 {
			s.recordConflict(ctx, id, seq, lines[:n])
			return appendOutcome{last: last, status: http.StatusConflict, msg: fmt.Sprintf("event seq %d differs from the event already stored under that seq; stored events are never replaced", seq)}, false
		}
	}
	fresh := evs[n:]
	if len(fresh) == 0 {
		return appendOutcome{last: last}, false
	}
	end := fresh[len(fresh)-1].Seq
	if err := s.store.putSegment(ctx, id, fresh[0].Seq, end, joinLines(lines[n:]), conditional); err != nil {
		if errors.Is(err, errSegmentExists) {
			return appendOutcome{}, true
		}
		return storeFailure(ctx, id, err), false
	}
	return appendOutcome{last: end, fresh: fresh}, false
}

// storeFailure answers an object storage error: the runner keeps the batch and retries.
func storeFailure(ctx context.Context, id identity, err error) appendOutcome {
	storeErrors.Inc()
	log.FromContext(ctx).Error(err, "Storing transcript segment", "AgentSession", id.Session)
	return appendOutcome{status: http.StatusServiceUnavailable, msg: fmt.Sprintf("object storage unavailable; keep the batch and retry: %v", err)}
}

func joinLines(lines [][]byte) []byte {
	n := 0
	for _, l := range lines {
		n += len(l) + 1
	}
	buf := make([]byte, 0, n)
	for _, l := range lines {
		buf = append(buf, l...)
		buf = append(buf, '\n')
	}
	return buf
}

// checkResent compares re-sent events (encoded as they would be stored) with
// the stored ones and returns the first seq whose content differs, or 0.
// Re-sends follow a lost acknowledgement, so this read is rare.
func (s *Server) checkResent(ctx context.Context, segs []segment, evs []contract.Event, lines [][]byte) (int64, error) {
	from, to := evs[0].Seq, evs[len(evs)-1].Seq
	stored, err := s.storedEvents(ctx, segs, from, to)
	if err != nil {
		return 0, err
	}
	for i, ev := range evs {
		old, ok := stored[ev.Seq]
		if !ok {
			return 0, fmt.Errorf("event %d is acknowledged but not in any stored segment", ev.Seq)
		}
		if !bytes.Equal(old, lines[i]) {
			return ev.Seq, nil
		}
	}
	return 0, nil
}

// storedEvents reads the stored lines of seqs from..to from the segments,
// the first stored version of each (the one consolidation keeps).
func (s *Server) storedEvents(ctx context.Context, segs []segment, from, to int64) (map[int64][]byte, error) {
	out := map[int64][]byte{}
	for _, seg := range segs {
		if seg.last < from || seg.first > to {
			continue
		}
		b, err := s.store.get(ctx, seg.key)
		if err != nil {
			return nil, err
		}
		for _, line := range bytes.Split(b, []byte{'\n'}) {
			if len(line) == 0 {
				continue
			}
			ev, err := contract.DecodeEvent(line)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.store.uri(seg.key), err)
			}
			if _, seen := out[ev.Seq]; !seen && ev.Seq >= from && ev.Seq <= to {
				out[ev.Seq] = line
			}
		}
	}
	return out, nil
}

// maxConflictsKept bounds the conflicting batches one replica keeps per
// session, so a runner that keeps colliding cannot fill the bucket; past it
// the log and the counter still record each one.
const maxConflictsKept = 32

// recordConflict keeps refused events under conflicts/ beside the segments
// (never read by consolidation), logs and counts them.
func (s *Server) recordConflict(ctx context.Context, id identity, seq int64, lines [][]byte) {
	eventConflicts.Inc()
	logger := log.FromContext(ctx)
	logger.Info("Refusing a transcript event that differs from the stored one", "AgentSession", id.Session, "Pod", id.Pod, "seq", seq)
	s.mu.Lock()
	s.conflicts[id.UID]++
	n := s.conflicts[id.UID]
	s.mu.Unlock()
	if n > maxConflictsKept {
		return
	}
	key := s.store.sessionKey(id, fmt.Sprintf("%s/%012d-%d.jsonl", conflictsDir, seq, s.now().UnixNano()))
	if err := s.store.put(ctx, key, append(bytes.Join(lines, []byte{'\n'}), '\n'), "application/x-ndjson"); err != nil {
		storeErrors.Inc()
		logger.Error(err, "Storing conflicting transcript events", "AgentSession", id.Session)
	}
}

// conflictsDir holds, under a session's prefix, re-sent events that differed
// from the stored ones.
const conflictsDir = "conflicts"

// handleFinish writes the consolidated transcript (from the stored segments,
// not from memory, so it is right after a gateway restart), the patch and the
// summary, and records them in status. It is accepted once: the middleware
// refuses a session whose status already has a transcript, and appendMu plus
// the finished flag refuse a concurrent second call on this replica (409).
func (s *Server) handleFinish(w http.ResponseWriter, r *http.Request, id identity) {
	var req contract.FinishRequest
	if !decodeBody(w, r, "finish", &req) {
		return
	}
	ss, err := s.session(r.Context(), id)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "loading session state: %v", err)
		return
	}
	// No event batch and no other finish while this one archives.
	ss.appendMu.Lock()
	defer ss.appendMu.Unlock()
	ss.mu.Lock()
	last, finished := ss.lastSeq, ss.finished
	ss.mu.Unlock()
	if finished {
		refusedTotal.WithLabelValues(refusedFinished).Inc()
		writeError(w, http.StatusConflict, "session %s already finished: its transcript is archived and cannot be replaced", id.Session)
		return
	}
	if last < req.LastSeq {
		// Another replica may have stored the missing events.
		if segs, err := s.store.segments(r.Context(), id); err == nil {
			last = max(last, lastContiguous(segs))
		}
	}
	if last < req.LastSeq {
		writeJSON(w, http.StatusConflict, contract.GatewayError{Error: "events are missing; send them before finishing", LastSeq: last})
		return
	}
	resp, err := s.archive(r, ss, &req)
	if err != nil {
		storeErrors.Inc()
		log.FromContext(r.Context()).Error(err, "Archiving session", "AgentSession", id.Session)
		ss.mu.Lock()
		setArchived(&ss.status, metav1.ConditionFalse, v1.ReasonUploadFailed, display.Truncate(err.Error(), 1000), s.now())
		s.changed(ss)
		ss.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "archiving the session: %v", err)
		return
	}
	// From here the archive exists: whatever happens to the status write, a
	// second finish must not replace it.
	ss.mu.Lock()
	ss.finished = true
	ss.mu.Unlock()
	if err := s.flush(r.Context(), ss); err != nil {
		// The archive is stored and cannot be replaced, so a retry could not do
		// better: the write is retried in the background (flush rescheduled it).
		log.FromContext(r.Context()).Error(err, "Recording the archive in status; retrying in the background", "AgentSession", id.Session)
	}
	s.floorUsageLater(ss, req.Summary.Usage)
	// The state stays (finished) until it is idle, so this replica refuses a
	// second finish even before its cache shows status.transcript.
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) archive(r *http.Request, ss *session, req *contract.FinishRequest) (*contract.FinishResponse, error) {
	ctx, id := r.Context(), ss.id
	transcript, events, err := s.store.consolidate(ctx, id)
	if err != nil {
		return nil, err
	}
	tKey, pKey, sKey := s.store.sessionKey(id, transcriptFile), s.store.sessionKey(id, patchFile), s.store.sessionKey(id, summaryFile)
	if err := s.store.put(ctx, tKey, transcript, "application/x-ndjson"); err != nil {
		return nil, err
	}
	if err := s.store.put(ctx, pKey, req.Patch, "text/x-diff"); err != nil {
		return nil, err
	}
	resp := &contract.FinishResponse{Transcript: objectRef(s.store.uri(tKey), transcript), Patch: objectRef(s.store.uri(pKey), req.Patch)}
	sum := req.Summary
	sum.Events, sum.Transcript, sum.Patch = events, resp.Transcript, resp.Patch
	sb, err := sum.Encode()
	if err != nil {
		return nil, err
	}
	if err := s.store.put(ctx, sKey, sb, "application/json"); err != nil {
		return nil, err
	}
	resp.Summary = objectRef(s.store.uri(sKey), sb)

	ss.mu.Lock()
	defer ss.mu.Unlock()
	st := &ss.status
	st.Transcript = &v1.ArtifactRef{URI: resp.Transcript.URI, SizeBytes: resp.Transcript.SizeBytes, SHA256: resp.Transcript.SHA256, Events: events}
	st.Patch = &v1.ArtifactRef{URI: resp.Patch.URI, SizeBytes: resp.Patch.SizeBytes, SHA256: resp.Patch.SHA256}
	st.Result = &v1.SessionResult{
		Summary:      display.Truncate(req.Summary.Message, 4000),
		FilesChanged: int32(req.Summary.Diff.FilesChanged),
		Additions:    int32(req.Summary.Diff.Additions),
		Deletions:    int32(req.Summary.Diff.Deletions),
		OmittedFiles: v1.OmittedFilesFrom(req.Summary.Diff.Omitted),
	}
	if st.Usage == nil {
		st.Usage = &v1.Usage{}
	}
	st.Usage.ToolCalls = int32(req.Summary.ToolCalls)
	st.PendingApprovals = nil
	setArchived(st, metav1.ConditionTrue, v1.ReasonUploaded, "Transcript, patch and summary are in object storage.", s.now())
	s.changed(ss)
	return resp, nil
}

func setArchived(st *ownedStatus, status metav1.ConditionStatus, reason, msg string, now time.Time) {
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: v1.ConditionArchived, Status: status, Reason: reason, Message: msg, LastTransitionTime: metav1.NewTime(now),
	})
}
