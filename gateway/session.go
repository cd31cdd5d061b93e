package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/display"
)

// ownedStatus is exactly the part of AgentSession status the gateway writes.
// It is applied whole each time (server-side apply drops fields the gateway
// owned and no longer sends), so it must always hold the gateway's full view.
type ownedStatus struct {
	Progress         *v1.Progress         `json:"progress,omitempty"`
	Usage            *v1.Usage            `json:"usage,omitempty"`
	PendingApprovals []v1.PendingApproval `json:"pendingApprovals,omitempty"`
	DecidedApprovals []v1.DecidedApproval `json:"decidedApprovals,omitempty"`
	Result           *v1.SessionResult    `json:"result,omitempty"`
	Transcript       *v1.ArtifactRef      `json:"transcript,omitempty"`
	Patch            *v1.ArtifactRef      `json:"patch,omitempty"`
	Conditions       []metav1.Condition   `json:"conditions,omitempty"`
}

// applyBody is the status to apply. An all-zero usage is left out rather than sent as {}:
// the apiserver turns an applied empty object whose fields this manager owned into null and
// refuses the whole write ("usage in body must be of type object"), and the retry would be
// refused forever. That happens when this replica's state began below what is stored (a
// session loaded from a lagging read after an idle eviction).
func (o ownedStatus) applyBody() ([]byte, error) {
	if o.Usage != nil && *o.Usage == (v1.Usage{}) {
		o.Usage = nil
	}
	return json.Marshal(o)
}

// session is the gateway's view of one AgentSession, rebuilt from its status
// and the stored segments the first time a replica sees it.
type session struct {
	id identity

	mu      sync.Mutex
	status  ownedStatus
	lastSeq int64 // events stored in object storage, contiguous from 1
	// Token accounting. The count every replica agrees on is status.usage in the API;
	// each replica only ever adds what it charged itself, so two replicas serving one
	// session never overwrite each other's calls. stored is status.usage as last read
	// or written, pending what this replica charged since; their sum (tokens()) is the
	// figure the budgets check. rv is the resourceVersion the next status write is
	// conditioned on, so a write based on a stale stored count fails and is redone.
	stored  contract.Usage
	pending contract.Usage
	rv      string
	// writing is set while a status write is at the apiserver; seenWhileWriting is the
	// largest count observed meanwhile. The cache can deliver this replica's own write
	// before the write returns: taken in at once, that count (which already holds the
	// pending charges it sent) plus pending would count those charges twice, and the
	// budgets would refuse calls they have room for. It is taken in when the write ends.
	writing          bool
	seenWhileWriting contract.Usage
	// pendingSince is when the oldest charge not yet written was made (zero when none is).
	pendingSince time.Time
	// writeMu orders status writes so an older snapshot never lands after a newer one.
	writeMu sync.Mutex
	// appendMu serialises event batches: segments must not interleave.
	appendMu  sync.Mutex
	lastUsed  time.Time
	dirty     bool
	timer     *time.Timer
	lastWrite time.Time
	// finished is set once /finish archived the transcript; it is never unset.
	finished bool
}

// session returns the state of the caller's session, loading it on first use.
func (s *Server) session(ctx context.Context, id identity) (*session, error) {
	s.mu.Lock()
	ss, ok := s.sessions[id.UID]
	if ok {
		ss.lastUsed = s.now()
	}
	s.mu.Unlock()
	if ok {
		return ss, nil
	}
	obj := &v1.AgentSession{}
	if err := s.auth.get(ctx, id.Session, obj); err != nil {
		return nil, fmt.Errorf("getting session %s: %w", id.Session, err)
	}
	segs, err := s.store.segments(ctx, id)
	if err != nil {
		return nil, err
	}
	st := obj.Status
	// A transcript in status means the runner finished (or the session ended
	// and was archived): nothing may be added or replaced.
	ss = &session{id: id, lastSeq: lastContiguous(segs), lastUsed: s.now(), finished: st.Transcript != nil}
	ss.status = ownedStatus{
		Progress: st.Progress, Usage: st.Usage, PendingApprovals: st.PendingApprovals, DecidedApprovals: st.DecidedApprovals,
		Result: st.Result, Transcript: st.Transcript, Patch: st.Patch,
	}
	if c := meta.FindStatusCondition(st.Conditions, v1.ConditionArchived); c != nil {
		ss.status.Conditions = []metav1.Condition{*c}
	}
	if ss.status.Result != nil {
		// The reconciler owns exitCode (from the pod); the gateway never sends it.
		r := *ss.status.Result
		r.ExitCode = nil
		ss.status.Result = &r
	}
	ss.stored, ss.rv = usageOf(st.Usage), obj.ResourceVersion
	s.mu.Lock()
	defer s.mu.Unlock()
	if existing, ok := s.sessions[id.UID]; ok {
		return existing, nil
	}
	s.sessions[id.UID] = ss
	activeSessions.Set(float64(len(s.sessions)))
	return ss, nil
}

// evictIdle drops the state of sessions nobody used for idle (a runner that
// died, a session another replica archived), after writing what is pending.
func (s *Server) evictIdle(ctx context.Context, idle time.Duration) {
	s.mu.Lock()
	var stale []*session
	for _, ss := range s.sessions {
		if s.now().Sub(ss.lastUsed) > idle {
			stale = append(stale, ss)
		}
	}
	s.mu.Unlock()
	for _, ss := range stale {
		if err := s.flush(ctx, ss); err == nil {
			s.forget(ss.id.UID)
		}
	}
}

// forget drops a finished session's state once its last status write is done.
func (s *Server) forget(uid types.UID) {
	s.mu.Lock()
	delete(s.sessions, uid)
	delete(s.conflicts, uid)
	activeSessions.Set(float64(len(s.sessions)))
	s.mu.Unlock()
}

// changed marks the status dirty and schedules a write at most once per
// StatusInterval. Callers hold ss.mu.
func (s *Server) changed(ss *session) {
	ss.dirty = true
	if ss.timer != nil {
		return
	}
	delay := max(ss.lastWrite.Add(s.cfg.StatusInterval).Sub(s.now()), 0)
	ss.timer = time.AfterFunc(delay, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.flush(ctx, ss); err != nil {
			log.Log.WithName("gateway").Error(err, "Writing session status", "AgentSession", ss.id.Session)
		}
	})
}

// flush writes the status now if it changed since the last write. The write outlives a
// caller that goes away (a runner hanging up on its model call or its finish): a write
// cut short after the apiserver took it would leave its charges pending here, and they
// would be written a second time.
func (s *Server) flush(ctx context.Context, ss *session) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), statusWriteTimeout)
	defer cancel()
	ss.writeMu.Lock()
	defer ss.writeMu.Unlock()
	ss.mu.Lock()
	if ss.timer != nil {
		ss.timer.Stop()
		ss.timer = nil
	}
	if !ss.dirty {
		ss.mu.Unlock()
		return nil
	}
	ss.dirty = false
	ss.mu.Unlock()
	err := s.writeStatus(ctx, ss)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.lastWrite = s.now()
	if err != nil {
		statusWriteErrors.Inc()
		if apierrors.IsNotFound(err) {
			// The session was deleted: nothing left to write to.
			go s.forget(ss.id.UID)
			return nil
		}
		// Try again later; the state in memory is still the truth.
		s.changed(ss)
		return err
	}
	statusWrites.Inc()
	return nil
}

// readFresh reads the session from the apiserver, not the cache; NotFound when it is
// gone or is another session of the same name.
func (s *Server) readFresh(ctx context.Context, ss *session, why string) (*v1.AgentSession, error) {
	fresh := &v1.AgentSession{}
	if err := s.fresh().Get(ctx, ss.id.Session, fresh); err != nil {
		return nil, fmt.Errorf("reading %s %s: %w", ss.id.Session, why, err)
	}
	if fresh.UID != ss.id.UID {
		return nil, apierrors.NewNotFound(v1.GroupVersion.WithResource("agentsessions").GroupResource(), ss.id.Session.Name)
	}
	return fresh, nil
}

// statusWriteTimeout bounds one status write, with its rereads after conflicts.
const statusWriteTimeout = 30 * time.Second

// maxStatusConflicts bounds the rereads of one status write. A conflict means someone
// else wrote the session in between (the reconciler, another replica), which is rare
// per session, so a handful of tries always suffices unless the apiserver misbehaves.
const maxStatusConflicts = 5

// writeStatus applies this replica's view, with usage = the stored count + what this
// replica charged since, conditioned on the resourceVersion that stored count was read
// at. When another writer got in between, the apiserver refuses the write (409); the
// stored count is read again and the write redone, so no charge is lost or counted twice.
// Callers hold writeMu.
func (s *Server) writeStatus(ctx context.Context, ss *session) error {
	for try := 1; ; try++ {
		ss.mu.Lock()
		sent, base, rv, snapshotAt := ss.pending, ss.stored, ss.rv, time.Now()
		ss.setUsageLocked()
		snapshot, err := ss.status.applyBody()
		ss.writing = err == nil
		ss.mu.Unlock()
		if err != nil {
			return err
		}
		newRV, err := s.applyStatus(ctx, ss.id, rv, snapshot)
		ss.mu.Lock()
		ss.wrote(base, sent, snapshotAt, newRV, err == nil)
		ss.mu.Unlock()
		if err == nil {
			return nil
		}
		if !apierrors.IsConflict(err) || try == maxStatusConflicts {
			return err
		}
		statusConflicts.Inc()
		fresh, err := s.readFresh(ctx, ss, "again after a conflicting write")
		if err != nil {
			return err
		}
		ss.mu.Lock()
		ss.observeStored(fresh.Status.Usage)
		ss.rv = fresh.ResourceVersion
		ss.takeIn(fresh)
		ss.mu.Unlock()
	}
}

// takeIn merges what another replica wrote into this replica's view before it is applied
// again whole, so a replica that served the session earlier never puts back what another
// has since changed: pending approvals the other listed are kept and those decided in
// spec.approvals dropped, and an archive the other recorded is adopted (the session is
// then finished here too). Callers hold ss.mu.
func (ss *session) takeIn(fresh *v1.AgentSession) {
	decided := map[string]bool{}
	for _, d := range fresh.Spec.Approvals {
		decided[d.ID] = true
	}
	seen := map[string]bool{}
	var pending []v1.PendingApproval
	for _, list := range [][]v1.PendingApproval{ss.status.PendingApprovals, fresh.Status.PendingApprovals} {
		for _, p := range list {
			if !decided[p.ID] && !seen[p.ID] {
				seen[p.ID] = true
				pending = append(pending, p)
			}
		}
	}
	ss.status.PendingApprovals = pending
	st := fresh.Status
	if st.Transcript != nil && ss.status.Transcript == nil {
		ss.finished = true
		ss.status.Transcript, ss.status.Patch = st.Transcript, st.Patch
		if st.Result != nil {
			r := *st.Result
			r.ExitCode = nil // the reconciler's
			ss.status.Result = &r
		}
		if c := meta.FindStatusCondition(st.Conditions, v1.ConditionArchived); c != nil {
			meta.SetStatusCondition(&ss.status.Conditions, *c)
		}
		ss.status.PendingApprovals = nil
	}
	if p := st.Progress; p != nil && p.LastActivityTime != nil && (ss.status.Progress == nil || ss.status.Progress.LastActivityTime == nil ||
		ss.status.Progress.LastActivityTime.Before(p.LastActivityTime)) {
		ss.status.Progress = p.DeepCopy()
	}
}

// applyStatus applies status under the gateway's field manager, conditioned on rv when
// it is set, and returns the resourceVersion written.
func (s *Server) applyStatus(ctx context.Context, id identity, rv string, status json.RawMessage) (string, error) {
	md := map[string]any{"name": id.Session.Name, "namespace": id.Session.Namespace, "uid": string(id.UID)}
	if rv != "" {
		md["resourceVersion"] = rv
	}
	body, err := json.Marshal(map[string]any{
		"apiVersion": v1.GroupVersion.String(),
		"kind":       "AgentSession",
		"metadata":   md,
		"status":     status,
	})
	if err != nil {
		return "", err
	}
	obj := &v1.AgentSession{}
	obj.Name, obj.Namespace = id.Session.Name, id.Session.Namespace
	if err := s.client.Status().Patch(ctx, obj, client.RawPatch(types.ApplyPatchType, body), FieldOwner, client.ForceOwnership); err != nil {
		return "", fmt.Errorf("applying status of %s: %w", id.Session, err)
	}
	return obj.ResourceVersion, nil
}

// fresh reads around the cache.
func (s *Server) fresh() client.Reader {
	if s.auth.live != nil {
		return s.auth.live
	}
	return s.client
}

// flushAll writes every pending status update, at shutdown.
func (s *Server) flushAll(ctx context.Context) error {
	s.mu.Lock()
	all := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		all = append(all, ss)
	}
	s.mu.Unlock()
	var errs []error
	for _, ss := range all {
		errs = append(errs, s.flush(ctx, ss))
	}
	return errors.Join(errs...)
}

// observe folds stored events into progress and counters. Callers hold ss.mu.
func (ss *session) observe(evs []contract.Event) {
	st := &ss.status
	if st.Progress == nil {
		st.Progress = &v1.Progress{}
	}
	if st.Usage == nil {
		st.Usage = &v1.Usage{}
	}
	p := st.Progress
	for i := range evs {
		ev := &evs[i]
		t := metav1.NewTime(ev.Time)
		p.LastActivityTime = &t
		if ev.Turn > int(p.Turn) {
			p.Turn = int32(ev.Turn)
		}
		switch ev.Type {
		case contract.EventSessionStart:
			p.Message = "Starting: " + ev.SessionStart.Task
		case contract.EventModelRequest:
			p.Message = fmt.Sprintf("Waiting for the model (turn %d)", ev.Turn)
		case contract.EventModelResponse:
			if c := strings.TrimSpace(ev.ModelResponse.Content); c != "" {
				p.Message = c
			}
		case contract.EventToolCall:
			p.LastTool = display.Truncate(ev.ToolCall.Name, 60)
			p.Message = "Running " + ev.ToolCall.Name + " " + ev.ToolCall.Arguments
			st.Usage.ToolCalls++
		case contract.EventToolResult:
			toolDuration.WithLabelValues(ev.ToolResult.Name).Observe(float64(ev.ToolResult.DurationMS) / 1000)
			if ev.ToolResult.IsError {
				toolErrors.WithLabelValues(ev.ToolResult.Name).Inc()
			}
		case contract.EventApproval:
			p.Message = fmt.Sprintf("%s %s: %s", ev.Approval.Tool, strings.ToLower(string(ev.Approval.Decision))+"ed", ev.Approval.Summary)
		case contract.EventLimitHit:
			p.Message = fmt.Sprintf("Stopped at limit %s (%d of %d)", ev.LimitHit.Limit, ev.LimitHit.Used, ev.LimitHit.Max)
		case contract.EventError:
			p.Message = "Error: " + ev.Error.Message
		case contract.EventFinish:
			p.Message = "Finished: " + string(ev.Finish.Outcome)
			sessionTurns.Observe(float64(ev.Finish.Turns))
		}
	}
	p.Message = display.Truncate(display.Headline(p.Message), 1000)
}

// addTokens records usage counted by the proxy. Callers hold ss.mu.
func (ss *session) addTokens(u contract.Usage) {
	if ss.pendingSince.IsZero() && u != (contract.Usage{}) {
		ss.pendingSince = time.Now()
	}
	ss.pending = ss.pending.Add(u)
	ss.setUsageLocked()
}

// overdueAfter is how long charges may stay unwritten before the session's next model
// call waits for them to be written: what a killed replica can take with it, and what
// other replicas cannot see, stays bounded by it even when the apiserver is slow to take
// the coalesced writes (the timer writes them after one status interval).
func (s *Server) overdueAfter() time.Duration { return 3 * s.cfg.StatusInterval }

// writeOverdueCharges writes this session's status now when charges have waited longer
// than overdueAfter; the call is refused (503, the runner retries) when that write fails.
func (s *Server) writeOverdueCharges(ctx context.Context, ss *session) error {
	since, ok := s.overdueSince(ss)
	if !ok {
		return nil
	}
	chargesOverdue.Inc()
	msg := "this session's token charges since %s are not written to its status yet; retry"
	if err := s.flush(ctx, ss); err != nil {
		return fmt.Errorf(msg+": %w", since.UTC().Format(time.RFC3339), err)
	}
	if since, ok := s.overdueSince(ss); ok {
		return fmt.Errorf(msg, since.UTC().Format(time.RFC3339))
	}
	return nil
}

// overdueSince is when the session's oldest unwritten charge was made, and whether that
// is longer ago than overdueAfter.
func (s *Server) overdueSince(ss *session) (time.Time, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.pendingSince, !ss.pendingSince.IsZero() && time.Since(ss.pendingSince) >= s.overdueAfter()
}

// floorUsageLater makes the finished session's usage at least the runner's own count,
// field by field, once every live replica has written what it charged (a few status
// intervals: a call is charged before its answer reaches the runner, so before the
// finish). The runner's count covers calls that never went through the proxy (a runner
// pointed elsewhere) and calls whose charge died unwritten with a killed replica. Raising
// earlier could count a call twice: once here and once when the replica that charged it
// writes.
func (s *Server) floorUsageLater(ss *session, runner contract.Usage) {
	time.AfterFunc(3*s.cfg.StatusInterval, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = s.raiseToRunner(ctx, ss, runner) // deleted, or the apiserver is away: the proxy's count stands
	})
}

// raiseToRunner makes the session's usage at least the runner's own count, against the
// count as the API holds it now. No status write of this replica is in flight meanwhile,
// and the count is read fresh: raised against an older one, what another replica wrote
// in between would be added a second time.
func (s *Server) raiseToRunner(ctx context.Context, ss *session, runner contract.Usage) error {
	ss.writeMu.Lock()
	defer ss.writeMu.Unlock()
	fresh, err := s.readFresh(ctx, ss, "before raising its usage to the runner's count")
	if err != nil {
		return err
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.observeStored(fresh.Status.Usage)
	if missing := ss.raiseTokens(runner); missing != (contract.Usage{}) {
		log.Log.WithName("gateway").Info("Raising usage to the runner's count: some calls' charges were never written (a replica died)",
			"AgentSession", ss.id.Session, "tokens", missing.Total())
		s.changed(ss)
	}
	return nil
}

// observeStored takes in a count read from the API (the cache's copy of the session):
// other replicas' charges become part of what the budgets check. Usage only grows, so
// the larger figure is the fresher. Callers hold ss.mu.
func (ss *session) observeStored(u *v1.Usage) {
	if ss.writing {
		ss.seenWhileWriting = maxUsage(ss.seenWhileWriting, usageOf(u))
		return
	}
	ss.stored = maxUsage(ss.stored, usageOf(u))
}

// wrote ends a status write that sent base+sent. When it landed, what is stored is at
// least base+sent, and what was observed meanwhile is either older (at most base) or
// holds this write, so neither is counted on top of it. When it did not land, nothing
// observed holds sent, but an observation may hold this write all the same (a timeout
// after the apiserver took it): it is left to the next read (the caller rereads on a
// conflict), which keeps the count from holding the charges twice. Callers hold ss.mu.
func (ss *session) wrote(base, sent contract.Usage, snapshotAt time.Time, rv string, landed bool) {
	seen := ss.seenWhileWriting
	ss.writing, ss.seenWhileWriting = false, contract.Usage{}
	if !landed {
		return
	}
	ss.stored = maxUsage(ss.stored, maxUsage(base.Add(sent), seen))
	ss.pending = subUsage(ss.pending, sent)
	if ss.pending == (contract.Usage{}) {
		ss.pendingSince = time.Time{}
	} else if ss.pendingSince.Before(snapshotAt) {
		// What is left was charged while the write was out: no earlier than its snapshot.
		ss.pendingSince = snapshotAt
	}
	ss.rv = rv
}

// tokens is the session's count as this replica knows it. Callers hold ss.mu.
func (ss *session) tokens() contract.Usage { return ss.stored.Add(ss.pending) }

// raiseTokens makes the count at least u, field by field, and returns what it added: the
// runner's own count covers calls whose charge was never written (see floorUsageLater).
// Callers hold ss.mu.
func (ss *session) raiseTokens(u contract.Usage) contract.Usage {
	u = u.Bounded() // the runner's claim: hostile input
	missing := subUsage(maxUsage(ss.tokens(), u), ss.tokens())
	if missing != (contract.Usage{}) {
		ss.addTokens(missing)
	}
	return missing
}

// setUsageLocked mirrors the count into the status to apply. Callers hold ss.mu.
func (ss *session) setUsageLocked() {
	total := ss.tokens()
	if total == (contract.Usage{}) && ss.status.Usage == nil {
		return
	}
	if ss.status.Usage == nil {
		ss.status.Usage = &v1.Usage{}
	}
	us := ss.status.Usage
	us.PromptTokens, us.CompletionTokens, us.CachedTokens = total.PromptTokens, total.CompletionTokens, total.CachedTokens
	us.TotalTokens = total.Total()
}

func usageOf(u *v1.Usage) contract.Usage {
	if u == nil {
		return contract.Usage{}
	}
	return contract.Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, CachedTokens: u.CachedTokens}.Bounded()
}

func maxUsage(a, b contract.Usage) contract.Usage {
	return contract.Usage{PromptTokens: max(a.PromptTokens, b.PromptTokens), CompletionTokens: max(a.CompletionTokens, b.CompletionTokens), CachedTokens: max(a.CachedTokens, b.CachedTokens)}
}

func subUsage(a, b contract.Usage) contract.Usage {
	return contract.Usage{PromptTokens: a.PromptTokens - b.PromptTokens, CompletionTokens: a.CompletionTokens - b.CompletionTokens, CachedTokens: a.CachedTokens - b.CachedTokens}
}
