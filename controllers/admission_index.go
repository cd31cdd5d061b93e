package controllers

import (
	"context"
	"fmt"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

// indexAdmission indexes the cached AgentSessions by what admission weighs of them, so that
// admitting one session reads the sessions holding slots and those queued ahead of it, never
// the whole namespace (where finished sessions pile up until their TTL, and a long queue
// would make every admission cost as much as the queue).
//
// A session that holds a slot (not finished, pod named) is indexed under "active". A session
// without a pod is indexed under "waiting", and under one bucket per level of a base-4 tree
// over its creation second: the sessions created in an earlier second than t are exactly
// those in the buckets waitingBefore(t) names, a handful of index lookups whatever the queue.
// Finished sessions are not indexed.
const indexAdmission = "agentry.dev/admission"

const (
	admissionActive  = "active"
	admissionWaiting = "waiting"
	// queueLevels base-4 levels cover creation seconds up to 4^18 = 2^36 (the year 4147).
	queueLevels = 18
)

// AddIndexes registers the cache indexes the AgentSession reconciler reads with. It must run
// before the manager starts.
func AddIndexes(ctx context.Context, indexer client.FieldIndexer) error {
	if err := indexer.IndexField(ctx, &v1.AgentSession{}, indexAdmission, admissionIndexValues); err != nil {
		return fmt.Errorf("indexing AgentSessions for admission: %w", err)
	}
	return nil
}

// admissionIndexValues are the index keys of one session (none once it has finished).
func admissionIndexValues(o client.Object) []string {
	s, ok := o.(*v1.AgentSession)
	if !ok || s.Status.Phase.IsTerminal() {
		return nil
	}
	if s.Status.PodName != "" {
		return []string{admissionActive}
	}
	t := creationSecond(s)
	keys := make([]string, 0, 1+queueLevels)
	keys = append(keys, admissionWaiting)
	for level := range queueLevels {
		keys = append(keys, waitingKey(level, t>>(2*level)))
	}
	return keys
}

// waitingKey names a bucket of the queue tree: at level l, bucket b holds the sessions
// created in seconds [b·4^l, (b+1)·4^l).
func waitingKey(level int, bucket int64) string {
	return admissionWaiting + "/" + strconv.Itoa(level) + "/" + strconv.FormatInt(bucket, 10)
}

// waitingBefore names the buckets that together hold exactly the waiting sessions created
// before second t: at each level, the buckets left of t's own within their parent.
func waitingBefore(t int64) []string {
	var keys []string
	for level := range queueLevels {
		b := t >> (2 * level)
		for d := b & 3; d > 0; d-- {
			keys = append(keys, waitingKey(level, b-d))
		}
	}
	return keys
}

// creationSecond is the session's creation time in Unix seconds (the apiserver's resolution),
// never negative.
func creationSecond(s *v1.AgentSession) int64 {
	return max(s.CreationTimestamp.Unix(), 0)
}

// admissionSiblings reads, from the cache, the sessions of s's namespace that admission weighs
// for s: those holding a slot and those waiting that were created before it or in the same
// second (queuedBefore sorts those out by name). The items share the cache's memory: they are
// read, never written back, and admission changes only copies of their top-level fields.
func admissionSiblings(ctx context.Context, c client.Reader, s *v1.AgentSession) ([]v1.AgentSession, error) {
	t := creationSecond(s)
	keys := append([]string{admissionActive, waitingKey(0, t)}, waitingBefore(t)...)
	var siblings []v1.AgentSession
	for _, key := range keys {
		var list v1.AgentSessionList
		if err := c.List(ctx, &list, client.InNamespace(s.Namespace), client.MatchingFields{indexAdmission: key}, client.UnsafeDisableDeepCopy); err != nil {
			return nil, fmt.Errorf("listing the sessions of namespace %s for admission: %w", s.Namespace, err)
		}
		siblings = append(siblings, list.Items...)
	}
	return siblings, nil
}

// withAdmitted counts the sessions of s's namespace that this reconciler admitted but whose
// pod the cache has not shown yet: each holds a slot, and is added to the siblings as if its
// pod were there (the index files it as waiting, and it may have been created after s). The
// records the cache has caught up with are dropped. Called with admissionMu held; reads one
// cached session per admission in flight.
func (r *AgentSessionReconciler) withAdmitted(ctx context.Context, s *v1.AgentSession, siblings []v1.AgentSession) ([]v1.AgentSession, error) {
	listed := make(map[types.UID]int, len(siblings))
	for i := range siblings {
		listed[siblings[i].UID] = i
	}
	for uid, name := range r.admitted {
		if name.Namespace != s.Namespace || uid == s.UID {
			continue
		}
		o := &v1.AgentSession{}
		if i, ok := listed[uid]; ok {
			o = &siblings[i]
		} else if err := r.Get(ctx, name, o); apierrors.IsNotFound(err) || (err == nil && o.UID != uid) {
			delete(r.admitted, uid) // deleted (and perhaps recreated under the same name)
			continue
		} else if err != nil {
			return nil, fmt.Errorf("reading admitted session %s: %w", name.Name, err)
		}
		if o.Status.PodName != "" || o.Status.Phase.IsTerminal() {
			delete(r.admitted, uid) // the cache caught up
			continue
		}
		o.Status.PodName = podName(o) // admitted, pod on its way: it holds a slot
		if _, ok := listed[uid]; !ok {
			siblings = append(siblings, *o)
		}
	}
	return siblings, nil
}
