package gateway

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

// The index's sums must equal the List-and-sum they replace (a session counts in a window
// unless it completed before the window's start; the larger of its stored usage and this
// replica's count), across updates, deletions and window rollovers.
func TestUsageIndexMatchesSummingTheSessions(t *testing.T) {
	day := 24 * time.Hour
	t0 := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	type step struct {
		do   func(x *usageIndex)
		now  time.Time
		want int64
	}
	seen := func(uid string, stored int64, completed time.Time, local int64) func(*usageIndex) {
		return func(x *usageIndex) { x.sessionSeen("ns", types.UID(uid), stored, completed, local) }
	}
	cases := map[string][]step{
		"running sessions count in every window": {
			{seen("a", 100, time.Time{}, 0), t0.Add(time.Hour), 100},
			{seen("b", 50, time.Time{}, 70), t0.Add(time.Hour), 170},
			{func(*usageIndex) {}, t0.Add(day + time.Hour), 170},
		},
		"a session completed in a window stops counting when the next begins": {
			{seen("a", 100, time.Time{}, 0), t0.Add(time.Hour), 100},
			{seen("a", 120, t0.Add(2*time.Hour), 0), t0.Add(3 * time.Hour), 120},
			{seen("b", 5, time.Time{}, 0), t0.Add(3 * time.Hour), 125},
			{func(*usageIndex) {}, t0.Add(day), 5},
			// Stored usage written late (by the archiver) for the old window changes nothing now.
			{seen("a", 400, t0.Add(2*time.Hour), 0), t0.Add(day), 5},
		},
		"this replica's count is kept when a stale event arrives": {
			{seen("a", 10, time.Time{}, 0), t0, 10},
			{func(x *usageIndex) { x.countedLocally("ns", "a", 90) }, t0, 90},
			{seen("a", 40, time.Time{}, 0), t0, 90},
			{seen("a", 200, time.Time{}, 0), t0, 200},
		},
		"a deleted session is gone and not brought back by a late charge": {
			{seen("a", 10, time.Time{}, 0), t0, 10},
			{seen("b", 20, t0.Add(time.Minute), 0), t0.Add(time.Hour), 30},
			{func(x *usageIndex) { x.sessionGone("ns", "b") }, t0.Add(time.Hour), 10},
			{func(x *usageIndex) { x.sessionGone("ns", "a"); x.countedLocally("ns", "a", 99) }, t0.Add(time.Hour), 0},
		},
	}
	for name, steps := range cases {
		t.Run(name, func(t *testing.T) {
			x := newUsageIndex()
			x.policySeen("ns", "p", "uid-p", &v1.TokenBudget{Tokens: 1000, Window: &metav1.Duration{Duration: day}})
			for i, st := range steps {
				st.do(x)
				var got []budgetUse
				x.check("ns", st.now, func(b []budgetUse) { got = b })
				if len(got) != 1 || got[0].used != st.want || !got[0].start.Equal(st.now.Truncate(day)) {
					t.Fatalf("step %d: budgets %+v, want one with %d used from %v", i, got, st.want, st.now.Truncate(day))
				}
			}
		})
	}
}

// Two budgets with different windows count the same sessions in their own windows; a
// removed budget no longer applies.
func TestUsageIndexBudgetsHaveTheirOwnWindows(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 10, 30, 0, 0, time.UTC)
	x := newUsageIndex()
	x.policySeen("ns", "hourly", "u1", &v1.TokenBudget{Tokens: 100, Window: &metav1.Duration{Duration: time.Hour}})
	x.policySeen("ns", "daily", "u2", &v1.TokenBudget{Tokens: 1000})
	x.sessionSeen("ns", "a", 30, t0.Add(-time.Hour), 0) // completed at 9:30
	x.sessionSeen("ns", "b", 7, time.Time{}, 0)
	var got []budgetUse
	x.check("ns", t0, func(b []budgetUse) { got = b })
	if len(got) != 2 || got[0].name != "daily" || got[0].used != 37 || got[1].name != "hourly" || got[1].used != 7 {
		t.Fatalf("budgets = %+v, want daily 37 and hourly 7", got)
	}
	x.policySeen("ns", "hourly", "u1", nil)
	x.check("ns", t0, func(b []budgetUse) { got = b })
	if len(got) != 1 || got[0].name != "daily" {
		t.Fatalf("budgets after the hourly one was removed = %+v", got)
	}
	x.check("other", t0, func(b []budgetUse) { got = b })
	if got != nil {
		t.Fatalf("a namespace without policies has budgets %+v", got)
	}
}
