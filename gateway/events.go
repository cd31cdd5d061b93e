package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
)

// handleEvents stores a batch as one segment object, then acknowledges it.
// Events the gateway already stored are skipped, so retries are harmless; a
// batch that would leave a gap is refused with the last stored seq, so the
// runner resends from there.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request, id identity) {
	var batch contract.EventBatch
	if !decodeBody(w, r, &batch) {
		return
	}
	ss, err := s.session(r.Context(), id)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "loading session state: %v", err)
		return
	}
	// One batch at a time per session: segments must not interleave.
	ss.appendMu.Lock()
	defer ss.appendMu.Unlock()
	ss.mu.Lock()
	last := ss.lastSeq
	ss.mu.Unlock()

	var fresh []contract.Event
	var buf bytes.Buffer
	for i := range batch.Events {
		ev := batch.Events[i]
		if err := ev.Validate(); err != nil {
			writeError(w, http.StatusBadRequest, "%v", err)
			return
		}
		if ev.Seq <= last {
			continue
		}
		if ev.Seq != last+1 {
			writeJSON(w, http.StatusConflict, contract.GatewayError{Error: "events are missing before this batch; resend from lastSeq+1", LastSeq: last})
			return
		}
		line, err := json.Marshal(&ev)
		if err != nil {
			writeError(w, http.StatusBadRequest, "encoding event %d: %v", ev.Seq, err)
			return
		}
		buf.Write(line)
		buf.WriteByte('\n')
		fresh = append(fresh, ev)
		last = ev.Seq
	}
	if len(fresh) > 0 {
		key := s.store.sessionKey(id, segmentName(fresh[0].Seq, last))
		if err := s.store.put(r.Context(), key, buf.Bytes(), "application/x-ndjson"); err != nil {
			storeErrors.Inc()
			log.FromContext(r.Context()).Error(err, "Storing transcript segment", "AgentSession", id.Session)
			writeError(w, http.StatusServiceUnavailable, "object storage unavailable; keep the batch and retry: %v", err)
			return
		}
		eventsStored.Add(float64(len(fresh)))
	}
	ss.mu.Lock()
	ss.lastSeq = last
	if len(fresh) > 0 {
		ss.observe(fresh)
		s.changed(ss)
	}
	ss.mu.Unlock()
	writeJSON(w, http.StatusOK, contract.EventAck{LastSeq: last})
}

// handleFinish writes the consolidated transcript (from the stored segments,
// not from memory, so it is right after a gateway restart), the patch and the
// summary, and records them in status.
func (s *Server) handleFinish(w http.ResponseWriter, r *http.Request, id identity) {
	var req contract.FinishRequest
	if !decodeBody(w, r, &req) {
		return
	}
	ss, err := s.session(r.Context(), id)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "loading session state: %v", err)
		return
	}
	ss.mu.Lock()
	last := ss.lastSeq
	ss.mu.Unlock()
	if last < req.LastSeq {
		writeJSON(w, http.StatusConflict, contract.GatewayError{Error: "events are missing; send them before finishing", LastSeq: last})
		return
	}
	resp, err := s.archive(r, ss, &req)
	if err != nil {
		storeErrors.Inc()
		log.FromContext(r.Context()).Error(err, "Archiving session", "AgentSession", id.Session)
		ss.mu.Lock()
		setArchived(&ss.status, metav1.ConditionFalse, v1.ReasonUploadFailed, truncate(err.Error(), 1000), s.now())
		s.changed(ss)
		ss.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "archiving the session: %v", err)
		return
	}
	if err := s.flush(r.Context(), ss); err != nil {
		writeError(w, http.StatusServiceUnavailable, "recording the archive in status: %v", err)
		return
	}
	ss.mu.Lock()
	ss.finished = true
	ss.mu.Unlock()
	s.forget(id.UID)
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
		Summary:      truncate(req.Summary.Message, 4000),
		FilesChanged: int32(req.Summary.Diff.FilesChanged),
		Additions:    int32(req.Summary.Diff.Additions),
		Deletions:    int32(req.Summary.Diff.Deletions),
		OmittedFiles: v1.OmittedFilesFrom(req.Summary.Diff.Omitted),
	}
	if st.Usage == nil {
		st.Usage = &v1.Usage{}
	}
	if st.Usage.TotalTokens == 0 {
		// Nothing went through the proxy (a runner pointed elsewhere): the runner's count.
		u := req.Summary.Usage
		st.Usage.PromptTokens, st.Usage.CompletionTokens, st.Usage.CachedTokens, st.Usage.TotalTokens = u.PromptTokens, u.CompletionTokens, u.CachedTokens, u.Total()
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
