package main

import (
	"errors"
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

func printRow(w io.Writer, r *result) {
	fmt.Fprintf(w, "  n=%d calls=%d (%.1f/s) gw p50/p99 %s/%s ms direct %s/%s ms paired %s/%s ms; events %d (%.1f/s); cpu %.1fs runq wait %.1fs load %.1f rss %d MiB; status writes gw %d ctrl %d conflicts %d; s3 %v; errors %v\n",
		r.n, r.calls, r.callsPerSec(), ms(r.gwP50), ms(r.gwP99), ms(r.dirP50), ms(r.dirP99), ms(r.pairP50), ms(r.pairP99),
		r.events, r.eventsPerSec(), r.cpu.Seconds(), r.runqWait.Seconds(), r.load, r.rss>>20, r.gwStatusWrites, r.ctrlStatusWrites, r.conflicts, r.s3, r.errors)
}

func (r *result) callsPerSec() float64  { return float64(r.calls) / r.window.Seconds() }
func (r *result) eventsPerSec() float64 { return float64(r.events) / r.window.Seconds() }
func (r *result) cores() float64        { return r.cpu.Seconds() / r.window.Seconds() }

func (r *result) s3Total() int64 {
	var t int64
	for _, v := range r.s3 {
		t += v
	}
	return t
}

func sorted(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// report writes the markdown tables to stdout.
func report(o options, rs []*result) {
	fmt.Printf("# Session gateway under load, %s\n\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Printf("%s per run, think time %s (mean), an approval every %d turns, %d namespaces, token budgets %v.\n\n",
		o.duration, o.think, o.approvalEvery, o.namespaces, o.budget)
	fmt.Println("| runners | model calls/s | direct p50 / p99 (ms) | via gateway p50 / p99 (ms) | overhead p50 / p99 (ms) | paired overhead p50 / p99 (ms) | calls/s per manager core | events acked/s | event batch ack p50 / p99 (ms) | gateway status writes per session per s | S3 requests per event | manager CPU (cores) | manager CPU ms per session per s | manager RSS (MiB) | RSS per session (KiB) | status conflicts (409) |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rs {
		perCore := 0.0
		if r.cores() > 0 {
			perCore = r.callsPerSec() / r.cores()
		}
		fmt.Printf("| %d | %.0f | %s / %s | %s / %s | %s / %s | %s / %s | %.0f | %.0f | %s / %s | %.3f | %.2f | %.2f | %.2f | %d | %.0f | %d |\n",
			r.n, r.callsPerSec(), ms(r.dirP50), ms(r.dirP99), ms(r.gwP50), ms(r.gwP99), ms(r.gwP50-r.dirP50), ms(r.gwP99-r.dirP99),
			ms(r.pairP50), ms(r.pairP99), perCore, r.eventsPerSec(), ms(r.eventsP50), ms(r.eventsP99),
			float64(r.gwStatusWrites)/float64(r.n)/r.window.Seconds(), float64(r.s3Total())/float64(max(r.events, 1)),
			r.cores(), r.cpu.Seconds()*1000/float64(r.n)/r.window.Seconds(), r.rss>>20, float64(r.rss-r.rssIdle)/1024/float64(r.n), r.conflicts)
	}
	fmt.Println()
	fmt.Println("The machine while it ran: the manager's threads' time ready to run but waiting for a CPU (run-queue wait, from schedstat), against the CPU time they got, and the load average at the end of the window:")
	fmt.Println()
	fmt.Println("| runners | manager CPU (s) | manager run-queue wait (s) | wait per CPU second | load average (1 min) |")
	fmt.Println("| --- | --- | --- | --- | --- |")
	for _, r := range rs {
		fmt.Printf("| %d | %.1f | %.1f | %.2f | %.1f |\n", r.n, r.cpu.Seconds(), r.runqWait.Seconds(), r.runqWait.Seconds()/max(r.cpu.Seconds(), 0.001), r.load)
	}
	fmt.Println()
	fmt.Println("Where the machine's CPU went in the window, in cores (CPU seconds per second; the machine has 2): the manager, this process (the simulated runners with their TLS, the direct baseline calls, the scripted model, the S3 counting proxy), the control plane, the S3 server, and everything else on the machine:")
	fmt.Println()
	fmt.Println("| runners | manager | bench: runners + scripted model | kube-apiserver | etcd | versitygw | everything else | machine busy |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rs {
		c := func(k string) float64 { return r.cpuSplit[k].Seconds() / r.window.Seconds() }
		known := c(managerBinary) + c("bench") + c("kube-apiserver") + c("etcd") + c("versitygw")
		fmt.Printf("| %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n", r.n, c(managerBinary), c("bench"), c("kube-apiserver"), c("etcd"),
			c("versitygw"), max(c("machine")-known, 0), c("machine"))
	}
	fmt.Println()
	fmt.Println("| runners | approvals (p50 request→decision) | finishes (p50) | reconciler status writes in the window | S3 requests in the window | S3 requests of the finishes | errors seen by runners |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rs {
		errs := "none"
		if len(r.errors) > 0 {
			errs = fmt.Sprint(r.errors)
		}
		fmt.Printf("| %d | %d (%s ms) | %d (%s ms) | %d | %s | %s | %s |\n", r.n, r.approvals, ms(r.approvalP50), r.finishes, ms(r.finishP50),
			r.ctrlStatusWrites, sorted(r.s3), sorted(r.s3Finish), errs)
	}
	for _, r := range rs {
		if len(r.profile) == 0 {
			continue
		}
		fmt.Printf("\nManager CPU profile at %d runners (Go pprof, top entries):\n\n```\n", r.n)
		for _, l := range r.profile {
			fmt.Println(l)
		}
		fmt.Println("```")
		if o.profileOut != "" {
			_ = os.WriteFile(o.profileOut, []byte(strings.Join(r.profile, "\n")+"\n"), 0o644)
		}
	}
	fmt.Println("\nWhere a proxied call's time goes (means over the window, ms): the runner's whole call, the gateway's handler, the upstream call inside it:")
	fmt.Println()
	fmt.Println("| runners | runner → gateway → model (client) | gateway chat handler | upstream model call | handler minus upstream | events handler | apiserver GET p50 / p99 (bench probe) |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rs {
		mean := func(sum, count string) float64 {
			if c := r.metrics[count]; c > 0 {
				return r.metrics[sum] / c * 1000
			}
			return 0
		}
		chat := mean(`agentry_gateway_request_duration_seconds_sum{handler="chat"}`, `agentry_gateway_request_duration_seconds_count{handler="chat"}`)
		up := mean("agentry_llm_request_duration_seconds_sum", "agentry_llm_request_duration_seconds_count")
		ev := mean(`agentry_gateway_request_duration_seconds_sum{handler="events"}`, `agentry_gateway_request_duration_seconds_count{handler="events"}`)
		fmt.Printf("| %d | %.2f | %.2f | %.2f | %.2f | %.2f | %s / %s |\n", r.n, r.gwMean, chat, up, chat-up, ev, ms(r.apiP50), ms(r.apiP99))
	}
	fmt.Println("\nApiserver writes in the window (audit log: client|verb|resource|code):")
	for _, r := range rs {
		keys := make([]string, 0, len(r.audit))
		for k := range r.audit {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		fmt.Printf("\n%d runners:\n", r.n)
		for _, k := range keys {
			fmt.Printf("- %s: %d\n", k, r.audit[k])
		}
	}
}

// chart draws the proxy overhead (p50 and p99) against the number of runners.
func chart(out string, rs []*result) error {
	p := plot.New()
	p.Title.Text = "Session gateway: proxy overhead per streamed model call, and the direct call"
	p.X.Label.Text = "concurrent runners"
	p.Y.Label.Text = "ms (log scale)"
	p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	// The legend sits under the lines, above the axis: room from 0.01 ms up.
	p.Legend.Top, p.Legend.Left = false, false
	p.Y.Min = 0.01
	// A log axis takes no zero: an overhead at or below 0.01 ms is drawn there.
	ms := func(d time.Duration) float64 { return max(float64(d)/float64(time.Millisecond), 0.01) }
	series := func(name string, v func(*result) time.Duration, c color.Color, dashes ...vg.Length) error {
		pts := make(plotter.XYs, len(rs))
		for i, r := range rs {
			pts[i].X, pts[i].Y = float64(r.n), ms(v(r))
		}
		l, s, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		l.Color, l.Width, l.Dashes, s.Color = c, vg.Points(1.5), dashes, c
		p.Add(l, s)
		p.Legend.Add(name, l, s)
		return nil
	}
	target := func(name string, d time.Duration, c color.Color) error {
		pts := plotter.XYs{{X: float64(rs[0].n), Y: ms(d)}, {X: float64(rs[len(rs)-1].n), Y: ms(d)}}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		l.Color, l.Width, l.Dashes = c, vg.Points(1), []vg.Length{vg.Points(2), vg.Points(3)}
		p.Add(l)
		p.Legend.Add(name, l)
		return nil
	}
	blue, red := color.RGBA{R: 30, G: 100, B: 200, A: 255}, color.RGBA{R: 200, G: 60, B: 40, A: 255}
	dashed := []vg.Length{vg.Points(6), vg.Points(3)}
	overheadP50 := func(r *result) time.Duration { return r.gwP50 - r.dirP50 }
	overheadP99 := func(r *result) time.Duration { return r.gwP99 - r.dirP99 }
	directP50 := func(r *result) time.Duration { return r.dirP50 }
	directP99 := func(r *result) time.Duration { return r.dirP99 }
	errs := []error{
		series("overhead p50", overheadP50, blue),
		series("overhead p99", overheadP99, red),
		series("direct call p50", directP50, blue, dashed...),
		series("direct call p99", directP99, red, dashed...),
		target("target: overhead p50 1 ms", time.Millisecond, blue),
		target("target: overhead p99 5 ms", 5*time.Millisecond, red),
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	p.Add(plotter.NewGrid())
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	return p.Save(7*vg.Inch, 5*vg.Inch, out)
}
