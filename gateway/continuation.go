package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/minio/minio-go/v7"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/display"
)

// Bounds of what a follow-up session is given.
const (
	// maxContinuationPatch is the largest earlier patch served: what /finish accepts.
	maxContinuationPatch = maxFinishBody
	// maxContinuationTranscript bounds the earlier transcript read to build the history.
	maxContinuationTranscript = 64 << 20
	// maxContinuationHistory caps the carried-over history's text: the follow-up's model
	// gets the gist of the earlier session, not its full conversation.
	maxContinuationHistory = 64 << 10
)

// handleContinuation answers a follow-up session's runner with the patch and the compacted
// history of the session it continues. The request names nothing: the session comes from
// the token, and the earlier session from that session's status.continuedFrom, which only
// the reconciler writes. So a runner gets the archive of the one session its own session
// continues, and only what the reconciler checked (the patch's sha256) when it created
// the pod.
func (s *Server) handleContinuation(w http.ResponseWriter, r *http.Request, id identity) {
	ctx := r.Context()
	sess := &v1.AgentSession{}
	if err := s.auth.get(ctx, id.Session, sess); err != nil || sess.UID != id.UID {
		writeError(w, http.StatusForbidden, "session %s is gone", id.Session)
		return
	}
	cf := sess.Status.ContinuedFrom
	if sess.Spec.ContinueFrom == nil || cf == nil {
		writeError(w, http.StatusNotFound, "session %s does not continue another session (no spec.continueFrom)", id.Session)
		return
	}
	if err := checkContinuation(sess.Spec.ContinueFrom.Session, cf); err != nil {
		writeError(w, http.StatusConflict, "session %s: %v", id.Session, err)
		return
	}
	earlier := identity{Session: types.NamespacedName{Namespace: id.Session.Namespace, Name: cf.Session}, UID: types.UID(cf.UID)}
	resp, status, err := s.continuation(ctx, earlier, cf)
	if err != nil {
		writeError(w, status, "continuing session %s: %v", cf.Session, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// checkContinuation refuses a status.continuedFrom that does not match the spec or that
// could name objects outside the earlier session's own keys.
func checkContinuation(spec string, cf *v1.ContinuationStatus) error {
	switch {
	case cf.Session != spec:
		return fmt.Errorf("status.continuedFrom.session %q is not spec.continueFrom.session %q", cf.Session, spec)
	case len(validation.IsDNS1123Subdomain(cf.Session)) > 0:
		return fmt.Errorf("status.continuedFrom.session %q is not a session name", cf.Session)
	case cf.UID == "" || strings.ContainsAny(cf.UID, "/.\\") || len(cf.UID) > 64:
		return fmt.Errorf("status.continuedFrom.uid %q is not a UID", cf.UID)
	case len(cf.PatchSHA256) != 64:
		return errors.New("status.continuedFrom.patchSHA256 is not a sha256")
	}
	return nil
}

// continuation reads the earlier session's archived patch (checked against the recorded
// sha256) and transcript, under that session's own keys.
func (s *Server) continuation(ctx context.Context, earlier identity, cf *v1.ContinuationStatus) (*contract.ContinuationResponse, int, error) {
	patch, err := s.store.getMax(ctx, s.store.sessionKey(earlier, patchFile), maxContinuationPatch)
	if err != nil {
		return nil, storeStatus(err), fmt.Errorf("reading its archived patch: %w", err)
	}
	sum := sha256.Sum256(patch)
	if got := hex.EncodeToString(sum[:]); got != cf.PatchSHA256 {
		return nil, http.StatusBadGateway, fmt.Errorf("its archived patch has sha256 %s, not status.continuedFrom.patchSHA256 %s: it changed after the session finished, and is not applied", got, cf.PatchSHA256)
	}
	transcript, err := s.store.getMax(ctx, s.store.sessionKey(earlier, transcriptFile), maxContinuationTranscript)
	if err != nil {
		return nil, storeStatus(err), fmt.Errorf("reading its archived transcript: %w", err)
	}
	history, err := compactHistory(transcript, maxContinuationHistory)
	if err != nil {
		return nil, http.StatusBadGateway, fmt.Errorf("its archived transcript: %w", err)
	}
	return &contract.ContinuationResponse{
		Session: cf.Session, Commit: cf.Commit, PatchSHA256: cf.PatchSHA256, Patch: patch, History: history,
	}, http.StatusOK, nil
}

// storeStatus is 502 for an object that is not there (the archive was deleted: retrying
// will not help) and 503 for an object store that did not answer.
func storeStatus(err error) int {
	var resp minio.ErrorResponse
	if errors.As(err, &resp) && resp.Code == "NoSuchKey" {
		return http.StatusBadGateway
	}
	if errors.Is(err, errTooLarge) {
		return http.StatusBadGateway
	}
	return http.StatusServiceUnavailable
}

// compactHistory turns a transcript into the conversation a follow-up starts with: the
// earlier task as the user's message and, as the assistant's answer, its compaction
// summaries (older work it had summarised) and its final summary. At most max bytes of
// text: the task and the final summary are kept first, then the latest compaction
// summaries that fit.
func compactHistory(transcript []byte, max int) ([]contract.HistoryMessage, error) {
	var task, final string
	var outcome contract.Outcome
	var compactions []string
	sc := bufio.NewScanner(bytes.NewReader(transcript))
	sc.Buffer(make([]byte, 0, 1<<20), maxContinuationTranscript)
	for sc.Scan() {
		ev, err := contract.DecodeEvent(sc.Bytes())
		if err != nil {
			return nil, err
		}
		switch {
		case ev.SessionStart != nil:
			task = ev.SessionStart.Task
		case ev.Compaction != nil:
			compactions = append(compactions, ev.Compaction.Summary)
		case ev.Finish != nil:
			final, outcome = ev.Finish.Summary, ev.Finish.Outcome
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if task == "" {
		return nil, errors.New("it has no session-start event")
	}
	task = display.Truncate(task, max/4)
	if final == "" {
		final = "(The earlier session ended without a summary.)"
	}
	if outcome != "" && outcome != contract.OutcomeCompleted {
		final = fmt.Sprintf("%s\n\n(The earlier session ended with outcome %s.)", final, outcome)
	}
	final = display.Truncate(final, max/2)
	budget := max - len(task) - len(final)
	var kept []string
	for i := len(compactions) - 1; i >= 0 && budget > 0; i-- {
		c := display.Truncate(compactions[i], budget)
		kept = append([]string{c}, kept...)
		budget -= len(c)
	}
	answer := final
	if len(kept) > 0 {
		answer = "Summary of my earlier work:\n\n" + strings.Join(kept, "\n\n") + "\n\nFinal summary:\n\n" + final
	}
	return []contract.HistoryMessage{{Role: "user", Content: task}, {Role: "assistant", Content: answer}}, nil
}

// errTooLarge marks an object larger than its reader accepts.
var errTooLarge = errors.New("object is too large")

// getMax reads the object at key, refusing one larger than max bytes.
func (st *store) getMax(ctx context.Context, key string, max int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	obj, err := st.c.GetObject(ctx, st.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", st.uri(key), err)
	}
	defer obj.Close()
	b, err := io.ReadAll(io.LimitReader(obj, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", st.uri(key), err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: %w (more than %d bytes)", st.uri(key), errTooLarge, max)
	}
	return b, nil
}
