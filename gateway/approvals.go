package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"regexp"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/display"
)

var approvalIDPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// approvalDigest is the sha256 of the exact action, so a decision applies to
// what the user saw and nothing else.
func approvalDigest(r *contract.ApprovalRequest) string {
	h := sha256.New()
	for _, f := range []string{r.Tool, r.Class, r.Summary, r.Command} {
		h.Write([]byte(f))
		h.Write([]byte{0})
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// handleApproval lists the call in status.pendingApprovals (once), then waits
// for a decision in spec.approvals or the expiry, up to the poll window. All
// state is in the AgentSession, so a retried request after a gateway restart
// picks up the same entry and the same deadline.
//
// A decision binds the pair (id, digest) it names: it answers only a request
// with that id for that exact action. A request whose id is already decided,
// or pending, for another action is refused with 409 and never answered with
// that decision; the runner mints a fresh id per call, so only a confused or
// hostile runner reuses one.
func (s *Server) handleApproval(w http.ResponseWriter, r *http.Request, id identity) {
	var req contract.ApprovalRequest
	if !decodeBody(w, r, "approvals", &req) {
		return
	}
	if !approvalIDPattern.MatchString(req.ID) || req.Tool == "" || len(req.Tool) > 64 {
		writeError(w, http.StatusBadRequest, "approval request needs an id (1-64 of A-Za-z0-9_.-) and a tool (at most 64 bytes)")
		return
	}
	// What a person reads is what runs: a summary too long to show whole is refused, never cut.
	summary := display.Escape(req.Summary)
	if len(summary) > contract.MaxApprovalSummaryBytes {
		writeError(w, http.StatusRequestEntityTooLarge, "approval summary is %d bytes as shown (control characters escaped); the limit is %d so that a person reads all of it",
			len(summary), contract.MaxApprovalSummaryBytes)
		return
	}
	ctx := r.Context()
	ss, err := s.session(ctx, id)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "loading session state: %v", err)
		return
	}
	digest := approvalDigest(&req)
	deadline := s.now().Add(s.cfg.ApprovalPollWindow)
	listed := false
	for {
		sess := &v1.AgentSession{}
		if err := s.auth.get(ctx, id.Session, sess); err != nil {
			writeError(w, http.StatusServiceUnavailable, "reading the session: %v", err)
			return
		}
		if sess.UID != id.UID {
			writeError(w, http.StatusForbidden, "session %s was replaced", id.Session)
			return
		}
		if p := sess.Status.Phase; p.IsTerminal() {
			refusedTotal.WithLabelValues(refusedSessionEnded).Inc()
			writeError(w, http.StatusForbidden, "session %s has ended (phase %s): no approval applies any more", id.Session, p)
			return
		}
		for _, d := range sess.Spec.Approvals {
			if d.ID != req.ID {
				continue
			}
			if d.Digest != digest {
				approvalConflicts.Inc()
				writeError(w, http.StatusConflict, "approval %s was decided for a different action (digest %s, this one is %s); ask with a new id", req.ID, d.Digest, digest)
				return
			}
			s.resolveApproval(ctx, ss, sess, v1.DecidedApproval{ID: req.ID, Tool: req.Tool, Digest: digest, Decision: d.Decision,
				By: v1.DecidedByUser, DecidedBy: d.DecidedBy})
			writeJSON(w, http.StatusOK, contract.ApprovalAnswer{Decision: contract.Decision(d.Decision), By: decidedBy(d), Reason: d.Reason})
			return
		}
		now := s.now()
		ss.mu.Lock()
		var pending *v1.PendingApproval
		for i := range ss.status.PendingApprovals {
			if ss.status.PendingApprovals[i].ID == req.ID {
				pending = &ss.status.PendingApprovals[i]
			}
		}
		if pending == nil {
			// Listed by another replica (the runner's poll moved here): the same entry,
			// the same deadline.
			for _, p := range sess.Status.PendingApprovals {
				if p.ID == req.ID && p.Digest == digest {
					ss.status.PendingApprovals = append(ss.status.PendingApprovals, p)
					pending = &ss.status.PendingApprovals[len(ss.status.PendingApprovals)-1]
				}
			}
		}
		if pending == nil {
			if len(ss.status.PendingApprovals) >= 16 {
				ss.mu.Unlock()
				writeError(w, http.StatusTooManyRequests, "too many pending approvals")
				return
			}
			timeout := 10 * time.Minute
			if t := sess.Spec.Approval.Timeout; t != nil && t.Duration > 0 {
				timeout = t.Duration
			}
			at, exp := metav1.NewTime(now.Truncate(time.Second)), metav1.NewTime(now.Add(timeout).Truncate(time.Second))
			// A person decides from this summary in kubectl or a UI: control and
			// invisible characters are shown as escapes, and it is shown whole (the
			// request was refused above when it is longer). The digest covers the raw action.
			ss.status.PendingApprovals = append(ss.status.PendingApprovals, v1.PendingApproval{
				ID: req.ID, Tool: req.Tool, Summary: summary, Digest: digest, RequestedAt: &at, ExpiresAt: &exp,
			})
			pending = &ss.status.PendingApprovals[len(ss.status.PendingApprovals)-1]
			s.changed(ss)
		} else if pending.Digest != digest {
			ss.mu.Unlock()
			approvalConflicts.Inc()
			writeError(w, http.StatusConflict, "approval %s was requested for a different action; ask with a new id", req.ID)
			return
		}
		expires := pending.ExpiresAt.Time
		ss.mu.Unlock()
		if !listed {
			// Visible to users right away, not after the coalescing interval.
			if err := s.flush(ctx, ss); err != nil {
				writeError(w, http.StatusServiceUnavailable, "recording the pending approval: %v", err)
				return
			}
			listed = true
		}
		if !now.Before(expires) {
			decision := sess.Spec.Approval.OnTimeout
			if decision == "" {
				decision = v1.DecisionDeny
			}
			s.resolveApproval(ctx, ss, sess, v1.DecidedApproval{ID: req.ID, Tool: req.Tool, Digest: digest, Decision: decision, By: v1.DecidedByTimeout})
			writeJSON(w, http.StatusOK, contract.ApprovalAnswer{Decision: contract.Decision(decision), By: "timeout",
				Reason: "nobody decided before " + expires.UTC().Format(time.RFC3339) + "; approval.onTimeout applied"})
			return
		}
		if !now.Before(deadline) {
			e := expires
			writeJSON(w, http.StatusOK, contract.ApprovalAnswer{Pending: true, ExpiresAt: &e})
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(min(250*time.Millisecond, expires.Sub(now)+time.Millisecond)):
		}
	}
}

// decidedBy is the answer's By for a user's decision: "user:" and the name
// admission verified, escaped as it lands in the transcript.
func decidedBy(d v1.ApprovalDecision) string {
	if d.DecidedBy == "" {
		return "user"
	}
	return "user:" + display.Truncate(display.Escape(d.DecidedBy), 512)
}

// maxDecidedApprovals is how many answered approvals status.decidedApprovals keeps.
const maxDecidedApprovals = 50

// resolveApproval removes a decided call from status.pendingApprovals and records the
// decision, who made it and when in status.decidedApprovals (once per id). sess is the
// session as last read: entries another replica recorded are kept, not overwritten.
func (s *Server) resolveApproval(ctx context.Context, ss *session, sess *v1.AgentSession, rec v1.DecidedApproval) {
	ss.mu.Lock()
	kept := ss.status.PendingApprovals[:0]
	changed := false
	for _, p := range ss.status.PendingApprovals {
		if p.ID == rec.ID {
			changed = true
			continue
		}
		kept = append(kept, p)
	}
	ss.status.PendingApprovals = kept
	if decided, added := recordDecision(ss.status.DecidedApprovals, sess.Status.DecidedApprovals, rec, s.now()); added {
		ss.status.DecidedApprovals, changed = decided, true
	}
	if changed {
		s.changed(ss)
	}
	ss.mu.Unlock()
	if changed {
		_ = s.flush(ctx, ss)
	}
}

// recordDecision adds rec to the decided list (ours, merged with what status already shows)
// unless its id is there, keeping the newest maxDecidedApprovals.
func recordDecision(ours, stored []v1.DecidedApproval, rec v1.DecidedApproval, now time.Time) ([]v1.DecidedApproval, bool) {
	has := func(list []v1.DecidedApproval, id string) bool {
		return slices.ContainsFunc(list, func(d v1.DecidedApproval) bool { return d.ID == id })
	}
	out := slices.Clone(ours)
	for _, d := range stored {
		if !has(out, d.ID) {
			out = append(out, d)
		}
	}
	if has(out, rec.ID) {
		return out, len(out) != len(ours)
	}
	at := metav1.NewTime(now.Truncate(time.Second))
	rec.DecidedAt = &at
	out = append(out, rec)
	slices.SortStableFunc(out, func(a, b v1.DecidedApproval) int {
		if a.DecidedAt == nil || b.DecidedAt == nil {
			return 0
		}
		return a.DecidedAt.Compare(b.DecidedAt.Time)
	})
	if n := len(out) - maxDecidedApprovals; n > 0 {
		out = out[n:]
	}
	return out, true
}
