package main

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// bucket is the chart's resolution.
const bucket = 500 * time.Millisecond

func report(o options, phases []*phase) {
	limits := "no client-side limit (the manager's default)"
	if o.qps > 0 {
		limits = fmt.Sprintf("QPS %g, burst %d", o.qps, o.burst)
	}
	fmt.Printf("# %d objects per controller, %d workers, client limits: %s; %s\n\n", o.n, o.workers, limits, time.Now().UTC().Format(time.RFC3339))
	var w, jobs *phase
	for _, p := range phases {
		switch {
		case strings.HasPrefix(p.name, "W"):
			w = p
		case strings.HasPrefix(p.name, "Kubernetes Job"):
			jobs = p
		}
	}
	fmt.Printf("| | pods/s | all %d pods after | all %d objects created after | writes per object | 409s | apiserver + etcd CPU per object | vs W | vs Job controller |\n", o.n, o.n)
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, p := range phases {
		if p.noPods {
			fmt.Printf("| %s | – (%.0f objects/s) | – | %.2f s | %.2f (%s) | – | %s | – | – |\n", p.name, p.podsPerSec(), p.inputs.Seconds(),
				p.writesPerObject(), breakdown(p), ms(p.cpuPerObject()))
			continue
		}
		fmt.Printf("| %s | %.0f | %.2f s | %.2f s | %.2f (%s) | %d | %s | %s | %s |\n", p.name, p.podsPerSec(), p.elapsed.Seconds(), p.inputs.Seconds(),
			p.writesPerObject(), breakdown(p), p.conflicts, ms(p.cpuPerObject()), ratio(p, w), ratio(p, jobs))
	}
}

// ratio is p's pods/s as a multiple of the peer's.
func ratio(p, peer *phase) string {
	if peer == nil {
		return "–"
	}
	return fmt.Sprintf("%.2f×", p.podsPerSec()/peer.podsPerSec())
}

func breakdown(p *phase) string {
	keys := make([]string, 0, len(p.writes))
	for k := range p.writes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %.2f", k, float64(p.writes[k])/float64(p.n))
	}
	return strings.Join(parts, ", ")
}

// perBucket counts the pods that appeared in each half second from the phase's start.
func perBucket(p *phase) plotter.XYs {
	counts := make([]int, int(p.elapsed/bucket)+1)
	for _, t := range p.created {
		counts[int(t/bucket)]++
	}
	pts := make(plotter.XYs, len(counts))
	for i, c := range counts {
		pts[i].X, pts[i].Y = (time.Duration(i) * bucket).Seconds(), float64(c)
	}
	return pts
}

var colors = []color.Color{
	color.RGBA{R: 120, G: 120, B: 120, A: 255},
	color.RGBA{R: 30, G: 100, B: 200, A: 255},
	color.RGBA{R: 200, G: 60, B: 40, A: 255},
}

// chart draws pods created per half second over time, one line per phase.
func chart(out string, phases []*phase) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Pods created per 0.5 s (%d objects each, one apiserver)", phases[0].n)
	p.X.Label.Text = "seconds since the first create"
	p.Y.Label.Text = "pods per 0.5 s"
	p.Legend.Top = true
	for i, ph := range phases {
		if ph.noPods {
			continue
		}
		l, err := plotter.NewLine(perBucket(ph))
		if err != nil {
			return err
		}
		l.Color, l.Width = colors[i%len(colors)], vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("%s: %.0f pods/s", ph.name, ph.podsPerSec()), l)
	}
	p.Add(plotter.NewGrid())
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	return p.Save(8*vg.Inch, 4*vg.Inch, out)
}

// reconcileStats summarises the AgentSession controller's own metrics: reconciles, their
// mean duration, and the mean time a request waited in the work queue.
func reconcileStats() string {
	families, err := metrics.Registry.Gather()
	if err != nil {
		return err.Error()
	}
	var parts []string
	for _, f := range families {
		for _, m := range f.GetMetric() {
			if !hasLabel(m, "controller", "agentsession") && !hasLabel(m, "name", "agentsession") {
				continue
			}
			switch f.GetName() {
			case "controller_runtime_reconcile_time_seconds", "workqueue_queue_duration_seconds", "workqueue_work_duration_seconds":
				h := m.GetHistogram()
				if h.GetSampleCount() > 0 {
					parts = append(parts, fmt.Sprintf("%s: %d, mean %.1f ms", f.GetName(), h.GetSampleCount(), 1000*h.GetSampleSum()/float64(h.GetSampleCount())))
				}
			case "controller_runtime_reconcile_total":
				if v := m.GetCounter().GetValue(); v > 0 {
					parts = append(parts, fmt.Sprintf("reconciles %s: %.0f", labelValue(m, "result"), v))
				}
			}
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

func hasLabel(m *dto.Metric, name, value string) bool { return labelValue(m, name) == value }

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
