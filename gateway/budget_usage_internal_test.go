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
		// Deleting sessions is no way around a budget: what they used counts until the
		// window it counted in ends; a late charge does not bring the session back.
		"a deleted session keeps counting in its window only": {
			{seen("a", 10, time.Time{}, 0), t0, 10},
			{seen("b", 20, t0.Add(time.Minute), 0), t0.Add(time.Hour), 30},
			{func(x *usageIndex) { x.sessionGone("ns", "b", t0.Add(time.Hour)) }, t0.Add(time.Hour), 30},
			{func(x *usageIndex) { x.sessionGone("ns", "a", t0.Add(time.Hour)); x.countedLocally("ns", "a", 99) }, t0.Add(time.Hour), 30},
			{seen("c", 5, time.Time{}, 0), t0.Add(2 * time.Hour), 35},
			{func(*usageIndex) {}, t0.Add(day), 5},
		},
	}
	for name, steps := range cases {
		t.Run(name, func(t *testing.T) {
			x := newUsageIndex()
			x.policySeen("ns", "p", budget("p", 1000, day))
			for i, st := range steps {
				st.do(x)
				var got []budgetUse
				x.check("ns", st.now, func(b []budgetUse) { got = b })
				if len(got) != 1 || got[0].used != st.want || !got[0].start.Equal(windowStart(st.now, day)) {
					t.Fatalf("step %d: budgets %+v, want one with %d used from %v", i, got, st.want, windowStart(st.now, day))
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
	x.policySeen("ns", "hourly", budget("hourly", 100, time.Hour))
	x.policySeen("ns", "daily", budget("daily", 1000, 0))
	x.sessionSeen("ns", "a", 30, t0.Add(-time.Hour), 0) // completed at 9:30
	x.sessionSeen("ns", "b", 7, time.Time{}, 0)
	var got []budgetUse
	x.check("ns", t0, func(b []budgetUse) { got = b })
	if len(got) != 2 || got[0].name != "daily" || got[0].used != 37 || got[1].name != "hourly" || got[1].used != 7 {
		t.Fatalf("budgets = %+v, want daily 37 and hourly 7", got)
	}
	x.policySeen("ns", "hourly", nil)
	x.check("ns", t0, func(b []budgetUse) { got = b })
	if len(got) != 1 || got[0].name != "daily" {
		t.Fatalf("budgets after the hourly one was removed = %+v", got)
	}
	x.check("other", t0, func(b []budgetUse) { got = b })
	if got != nil {
		t.Fatalf("a namespace without policies has budgets %+v", got)
	}
}

// budget is an AgentPolicy's budget as the index takes it (window 0: the default, 24h).
func budget(name string, tokens int64, window time.Duration) *policyBudget {
	p := &v1.AgentPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name)},
		Spec: v1.AgentPolicySpec{TokenBudget: &v1.TokenBudget{Tokens: tokens}}}
	if window > 0 {
		p.Spec.TokenBudget.Window = &metav1.Duration{Duration: window}
	}
	return newPolicyBudget(p)
}

// The use an AgentPolicy's status recorded for the current window is a floor: a gateway
// that restarted after sessions were deleted does not give their tokens back. A figure
// recorded for another window does not count.
func TestRecordedUseIsAFloorForItsWindow(t *testing.T) {
	day := 24 * time.Hour
	now := time.Date(2026, 11, 28, 15, 0, 0, 0, time.UTC)
	x := newUsageIndex()
	b := budget("p", 1000, day)
	b.recorded, b.recordedStart = 900, windowStart(now, day)
	x.policySeen("ns", "p", b)
	x.sessionSeen("ns", "a", 50, time.Time{}, 0)
	var got []budgetUse
	x.check("ns", now, func(u []budgetUse) { got = u })
	if len(got) != 1 || got[0].used != 900 {
		t.Fatalf("use with 900 recorded for this window and 50 in live sessions = %+v, want 900", got)
	}
	x.sessionSeen("ns", "a", 950, time.Time{}, 0)
	x.check("ns", now, func(u []budgetUse) { got = u })
	if got[0].used != 950 {
		t.Errorf("use once the sessions pass the recorded figure = %d, want 950", got[0].used)
	}
	x.check("ns", now.Add(day), func(u []budgetUse) { got = u })
	if got[0].used != 950 { // a running session counts whole in the next window; the floor does not
		t.Errorf("use in the next window = %d, want the running session's 950", got[0].used)
	}
	x.sessionSeen("ns", "a", 950, now.Add(time.Hour), 0)
	x.check("ns", now.Add(day), func(u []budgetUse) { got = u })
	if got[0].used != 0 {
		t.Errorf("use in the next window after the session completed in this one = %d, want 0 (the old floor does not carry over)", got[0].used)
	}
}

// Windows are aligned to the Unix epoch, as docs/gateway.md says: a week starts on a
// Thursday, a day at midnight UTC.
func TestBudgetWindowsAreAlignedToTheEpoch(t *testing.T) {
	now := time.Date(2026, 11, 28, 15, 4, 5, 0, time.UTC) // a Saturday
	cases := []struct {
		window time.Duration
		want   time.Time
	}{
		{time.Hour, time.Date(2026, 11, 28, 15, 0, 0, 0, time.UTC)},
		{24 * time.Hour, time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)},
		{7 * 24 * time.Hour, time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)}, // Thursday
	}
	for _, tc := range cases {
		got := windowStart(now, tc.window)
		if !got.Equal(tc.want) || got.Unix()%int64(tc.window.Seconds()) != 0 {
			t.Errorf("window %v: starts %v, want %v", tc.window, got, tc.want)
		}
	}
}
