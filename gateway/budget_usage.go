package gateway

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
)

// Informers is where the gateway follows AgentSessions and AgentPolicies: the
// manager's cache.
type Informers interface {
	GetInformer(ctx context.Context, obj client.Object, opts ...cache.InformerGetOption) (cache.Informer, error)
}

// usageIndex holds, per namespace, its AgentPolicies' token budgets and the
// tokens each of its sessions counts against them, kept current from the
// informers (or, without them, rebuilt from a List on every check). A model
// call then checks its namespace's budgets in constant time instead of listing
// and copying every session of the namespace.
type usageIndex struct {
	mu sync.Mutex
	ns map[string]*nsUsage
}

// policyBudget is one AgentPolicy's tokenBudget, with the use its status last recorded.
type policyBudget struct {
	name   string
	uid    types.UID
	tokens int64
	window time.Duration
	// recorded is status.tokensUsed for the window that began at recordedStart: a floor
	// for that window's use. It keeps counting what sessions deleted since then used,
	// across a restart, where the sessions alone would give their tokens back.
	recorded      int64
	recordedStart time.Time
}

// newPolicyBudget reads a policy's budget (nil: it has none) and recorded use.
func newPolicyBudget(p *v1.AgentPolicy) *policyBudget {
	b := p.Spec.TokenBudget
	if b == nil {
		return nil
	}
	pb := &policyBudget{name: p.Name, uid: p.UID, tokens: b.Tokens, window: budgetWindow(b), recorded: min(max(p.Status.TokensUsed, 0), b.Tokens)}
	if p.Status.WindowStart != nil {
		pb.recordedStart = p.Status.WindowStart.Time
	}
	return pb
}

// windowStart is the start of the window of length window that holds now, windows
// being aligned to the Unix epoch (a 168h window starts on a Thursday, 00:00 UTC).
func windowStart(now time.Time, window time.Duration) time.Time {
	ns, w := now.UnixNano(), window.Nanoseconds()
	off := ns % w
	if off < 0 {
		off += w
	}
	return time.Unix(0, ns-off).UTC()
}

// sessionUsage is what one session counts: the larger of its stored
// status.usage and this replica's own count, while it is active in the window
// (not completed before the window's start).
type sessionUsage struct {
	stored, local int64
	completed     time.Time // zero while running
}

func (u sessionUsage) counted() int64 { return max(u.stored, u.local) }

// windowSum is the counted tokens of the completed sessions that still count
// in the window that starts at start.
type windowSum struct {
	start time.Time
	sum   int64
}

type nsUsage struct {
	budgets  []policyBudget // by name
	sessions map[types.UID]sessionUsage
	// open is the counted tokens of the sessions not completed: they count in every window.
	open    int64
	windows map[time.Duration]*windowSum
}

func newUsageIndex() *usageIndex { return &usageIndex{ns: map[string]*nsUsage{}} }

// space returns the namespace's entry, creating it. Callers hold mu.
func (x *usageIndex) space(ns string) *nsUsage {
	n := x.ns[ns]
	if n == nil {
		n = &nsUsage{sessions: map[types.UID]sessionUsage{}, windows: map[time.Duration]*windowSum{}}
		x.ns[ns] = n
	}
	return n
}

// prune drops an empty namespace. Callers hold mu.
func (x *usageIndex) prune(ns string) {
	if n := x.ns[ns]; n != nil && len(n.budgets) == 0 && len(n.sessions) == 0 {
		delete(x.ns, ns)
	}
}

// account adds (sign 1) or removes (sign -1) a session's tokens from the sums.
func (n *nsUsage) account(u sessionUsage, sign int64) {
	c := sign * u.counted()
	if u.completed.IsZero() {
		n.open += c
		return
	}
	for _, w := range n.windows {
		if !u.completed.Before(w.start) {
			w.sum += c
		}
	}
}

func (n *nsUsage) set(uid types.UID, u sessionUsage) {
	if old, ok := n.sessions[uid]; ok {
		n.account(old, -1)
	}
	n.sessions[uid] = u
	n.account(u, 1)
}

// sessionSeen records a session's stored usage and completion. local is this
// replica's count; a count never goes down, so a late event cannot undo a
// settle that raised it in between.
func (x *usageIndex) sessionSeen(ns string, uid types.UID, stored int64, completed time.Time, local int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := x.space(ns)
	u := sessionUsage{stored: stored, local: local, completed: completed}
	if old, ok := n.sessions[uid]; ok {
		u.local = max(u.local, old.local)
	}
	n.set(uid, u)
}

// sessionGone forgets a deleted session without giving its tokens back: they still
// count in the windows they counted in (a running session's, in the window it was
// deleted in), until those windows end. Deleting sessions is no way around a budget.
func (x *usageIndex) sessionGone(ns string, uid types.UID, now time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := x.ns[ns]
	if n == nil {
		return
	}
	if old, ok := n.sessions[uid]; ok {
		if old.completed.IsZero() {
			n.open -= old.counted()
			for _, w := range n.windows {
				if !now.Before(w.start) {
					w.sum += old.counted()
				}
			}
		}
		delete(n.sessions, uid)
	}
	x.prune(ns)
}

// countedLocally raises this replica's count of a session the index knows. A session
// it does not know yet takes its count when the informer delivers it; one that
// was deleted is not brought back.
func (x *usageIndex) countedLocally(ns string, uid types.UID, local int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := x.ns[ns]
	if n == nil {
		return
	}
	if u, ok := n.sessions[uid]; ok && local > u.local {
		u.local = local
		n.set(uid, u)
	}
}

// policySeen records an AgentPolicy's budget and recorded use (nil: the policy has no
// budget, or was deleted).
func (x *usageIndex) policySeen(ns, name string, b *policyBudget) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := x.space(ns)
	budgets := slices.DeleteFunc(slices.Clone(n.budgets), func(p policyBudget) bool { return p.name == name })
	if b != nil {
		budgets = append(budgets, *b)
		slices.SortFunc(budgets, func(a, b policyBudget) int { return strings.Compare(a.name, b.name) })
	}
	n.setBudgets(budgets)
	x.prune(ns)
}

// setBudgets replaces the budgets and drops the sums of windows no budget has.
func (n *nsUsage) setBudgets(budgets []policyBudget) {
	n.budgets = budgets
	for d := range n.windows {
		if !slices.ContainsFunc(budgets, func(p policyBudget) bool { return p.window == d }) {
			delete(n.windows, d)
		}
	}
}

// replace sets a namespace's budgets and sessions from lists (the gateway
// without informers). locals are this replica's counts by session.
func (x *usageIndex) replace(ns string, policies []v1.AgentPolicy, sessions []v1.AgentSession, locals map[types.UID]int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := &nsUsage{sessions: map[types.UID]sessionUsage{}, windows: map[time.Duration]*windowSum{}}
	var budgets []policyBudget
	for i := range policies {
		if b := newPolicyBudget(&policies[i]); b != nil {
			budgets = append(budgets, *b)
		}
	}
	slices.SortFunc(budgets, func(a, b policyBudget) int { return strings.Compare(a.name, b.name) })
	n.setBudgets(budgets)
	for i := range sessions {
		stored, completed := storedUsage(&sessions[i])
		n.set(sessions[i].UID, sessionUsage{stored: stored, local: locals[sessions[i].UID], completed: completed})
	}
	x.ns[ns] = n
	x.prune(ns)
}

// used is the namespace's tokens counted in the window of length window that
// holds now. A window that has rolled over since the last check is summed
// afresh, once; every other check is constant time. Callers hold mu.
func (n *nsUsage) used(window time.Duration, now time.Time) int64 {
	start := windowStart(now, window)
	w := n.windows[window]
	if w == nil || !w.start.Equal(start) {
		w = &windowSum{start: start}
		for _, u := range n.sessions {
			if !u.completed.IsZero() && !u.completed.Before(start) {
				w.sum += u.counted()
			}
		}
		n.windows[window] = w
	}
	return n.open + w.sum
}

// budgetUse is one budget with the namespace's tokens counted in its window.
type budgetUse struct {
	policyBudget
	start time.Time
	used  int64
}

// check calls f with the namespace's budgets and their use, under the index's
// lock, so the check and what f holds against it are one step.
func (x *usageIndex) check(ns string, now time.Time, f func([]budgetUse)) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := x.ns[ns]
	if n == nil || len(n.budgets) == 0 {
		f(nil)
		return
	}
	uses := make([]budgetUse, len(n.budgets))
	for i, b := range n.budgets {
		u := budgetUse{policyBudget: b, start: windowStart(now, b.window), used: n.used(b.window, now)}
		if b.recordedStart.Equal(u.start) {
			u.used = max(u.used, b.recorded)
		}
		uses[i] = u
	}
	f(uses)
}

// storedUsage reads what a session's status counts against budgets.
func storedUsage(s *v1.AgentSession) (int64, time.Time) {
	var stored int64
	if s.Status.Usage != nil {
		stored = min(max(s.Status.Usage.TotalTokens, 0), 2*contract.MaxTokenCount) // prompt + completion, each bounded
	}
	var completed time.Time
	if c := s.Status.CompletionTime; c != nil {
		completed = c.Time
	}
	return stored, completed
}

// localTokens is this replica's count of a session it serves, or 0.
func (s *Server) localTokens(uid types.UID) int64 {
	s.mu.Lock()
	ss := s.sessions[uid]
	s.mu.Unlock()
	if ss == nil {
		return 0
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.tokens().Total()
}

// watchUsage keeps the usage index current from the informers; Serve waits
// until they have delivered what they hold before it answers a call.
func (s *Server) watchUsage(ctx context.Context, inf Informers) error {
	si, err := inf.GetInformer(ctx, &v1.AgentSession{})
	if err != nil {
		return fmt.Errorf("getting the AgentSession informer: %w", err)
	}
	sreg, err := si.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    s.sessionEvent,
		UpdateFunc: func(_, obj any) { s.sessionEvent(obj) },
		DeleteFunc: s.sessionDeleted,
	})
	if err != nil {
		return fmt.Errorf("watching AgentSessions for token usage: %w", err)
	}
	pi, err := inf.GetInformer(ctx, &v1.AgentPolicy{})
	if err != nil {
		return fmt.Errorf("getting the AgentPolicy informer: %w", err)
	}
	preg, err := pi.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    s.policyEvent,
		UpdateFunc: func(_, obj any) { s.policyEvent(obj) },
		DeleteFunc: s.policyDeleted,
	})
	if err != nil {
		return fmt.Errorf("watching AgentPolicies for token budgets: %w", err)
	}
	s.usageSynced = []toolscache.InformerSynced{sreg.HasSynced, preg.HasSynced}
	return nil
}

func (s *Server) sessionEvent(obj any) {
	sess, ok := obj.(*v1.AgentSession)
	if !ok {
		return
	}
	stored, completed := storedUsage(sess)
	s.usage.sessionSeen(sess.Namespace, sess.UID, stored, completed, s.localTokens(sess.UID))
}

func (s *Server) sessionDeleted(obj any) {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if sess, ok := obj.(*v1.AgentSession); ok {
		s.usage.sessionGone(sess.Namespace, sess.UID, s.now())
		// The policies' status.tokensUsed keeps what the session used once nothing else
		// does: a replica that starts later counts it from there.
		s.policyChanged(sess.Namespace)
	}
}

func (s *Server) policyEvent(obj any) {
	if p, ok := obj.(*v1.AgentPolicy); ok {
		s.usage.policySeen(p.Namespace, p.Name, newPolicyBudget(p))
	}
}

func (s *Server) policyDeleted(obj any) {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if p, ok := obj.(*v1.AgentPolicy); ok {
		s.usage.policySeen(p.Namespace, p.Name, nil)
	}
}

// refreshUsage rebuilds a namespace's entry from Lists when the gateway has no
// informers (an embedding without a cache): the same figures at the cost of a
// List per check.
func (s *Server) refreshUsage(ctx context.Context, ns string) error {
	if s.usageSynced != nil {
		return nil
	}
	var policies v1.AgentPolicyList
	if err := s.client.List(ctx, &policies, client.InNamespace(ns)); err != nil {
		return fmt.Errorf("listing AgentPolicies in %s: %w", ns, err)
	}
	var sessions v1.AgentSessionList
	if slices.ContainsFunc(policies.Items, func(p v1.AgentPolicy) bool { return p.Spec.TokenBudget != nil }) {
		if err := s.client.List(ctx, &sessions, client.InNamespace(ns)); err != nil {
			return fmt.Errorf("listing AgentSessions in %s: %w", ns, err)
		}
	}
	locals := map[types.UID]int64{}
	for i := range sessions.Items {
		locals[sessions.Items[i].UID] = s.localTokens(sessions.Items[i].UID)
	}
	s.usage.replace(ns, policies.Items, sessions.Items, locals)
	return nil
}
