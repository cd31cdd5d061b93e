package controllers

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

var sessionsFinished = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "agentry_sessions_finished_total",
	Help: "AgentSessions that reached a terminal phase, by phase and reason.",
}, []string{"phase", "reason"})

func init() {
	metrics.Registry.MustRegister(sessionsFinished)
}

// phaseCollector reports how many sessions are in each phase, read from the manager's
// cache at scrape time so the number is never stale or double-counted across restarts.
type phaseCollector struct {
	reader client.Reader
	desc   *prometheus.Desc
}

// RegisterPhaseMetrics registers the agentry_sessions gauge, read through reader, with reg
// (the manager's metrics.Registry in production).
func RegisterPhaseMetrics(reg prometheus.Registerer, reader client.Reader) error {
	return reg.Register(&phaseCollector{
		reader: reader,
		desc:   prometheus.NewDesc("agentry_sessions", "AgentSessions by phase.", []string{"phase"}, nil),
	})
}

func (c *phaseCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *phaseCollector) Collect(ch chan<- prometheus.Metric) {
	var list v1.AgentSessionList
	if err := c.reader.List(context.Background(), &list); err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	counts := map[v1.SessionPhase]int{}
	for _, p := range []v1.SessionPhase{v1.PhasePending, v1.PhaseQueued, v1.PhaseRunning, v1.PhaseWaitingForApproval, v1.PhaseSucceeded, v1.PhaseFailed, v1.PhaseCancelled} {
		counts[p] = 0
	}
	for i := range list.Items {
		p := list.Items[i].Status.Phase
		if p == "" {
			p = v1.PhasePending
		}
		counts[p]++
	}
	for p, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), string(p))
	}
}
