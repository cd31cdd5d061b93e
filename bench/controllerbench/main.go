// Command controllerbench measures, on one real kube-apiserver in one run, how fast pods
// appear when
//
//   - a client with the manager's client rate limits does nothing but create runner pods
//     (W, the raw limit: what the apiserver accepts from such a client),
//   - the AgentSession controller turns N new sessions into N runner pods, and
//   - the Kubernetes Job controller turns N new Jobs into N pods (when a
//     kube-controller-manager binary is given),
//
// with the write requests each sends per object, counted from the apiserver's own audit log
// by user agent, so all three are measured the same way. It prints a Markdown table and, with
// -png, charts the pods created per half second.
//
// With -admission it measures instead what admitting one queued session costs as a
// namespace's queue grows (admission.go).
//
//	go run ./bench/controllerbench -n 1000 -kcm bin/k8s/1.37.2-linux-amd64/kube-controller-manager -png docs/images/controller-pods-per-second.png
//	go run ./bench/controllerbench -admission 1000,10000
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"
)

// options are the command line.
type options struct {
	n       int
	workers int
	kcm     string
	png     string
	// cpuprofile receives a CPU profile of the Agentry phase.
	cpuprofile string
	// apiserverProfile is a directory that receives a CPU profile of the kube-apiserver for the
	// first apiserverProfileSeconds of each phase (its /debug/pprof endpoint).
	apiserverProfile        string
	apiserverProfileSeconds int
	// keep keeps the audit log.
	keep bool
	// qps and burst are the client rate limits of the manager and its peers; the manager's
	// own (cmd/main.go) are controller-runtime's: no client-side limit, the apiserver's
	// priority and fairness decides.
	qps   float64
	burst int
	// admission lists queue lengths for the admission benchmark; empty runs the throughput one.
	admission []int
}

func main() {
	var o options
	var admission string
	flag.IntVar(&o.n, "n", 1000, "objects to create per controller")
	flag.IntVar(&o.workers, "workers", 8, "AgentSession reconciles and Job syncs in parallel (the manager's --max-concurrent-reconciles default)")
	flag.StringVar(&o.kcm, "kcm", "", "kube-controller-manager binary; runs its Job controller as the peer")
	flag.StringVar(&o.png, "png", "", "write the chart of pods created per 0.5 s to this PNG file")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of this process during the Agentry phase to this file")
	flag.StringVar(&o.apiserverProfile, "apiserver-profile", "", "write a CPU profile of the kube-apiserver during each phase to <dir>/<phase>.pprof")
	flag.IntVar(&o.apiserverProfileSeconds, "apiserver-profile-seconds", 4, "how much of each phase's start -apiserver-profile covers")
	flag.BoolVar(&o.keep, "keep", false, "keep the apiserver's audit log (its directory is printed)")
	flag.Float64Var(&o.qps, "qps", -1, "client QPS of the manager, the raw creator and kube-controller-manager (negative: no client-side limit, as the manager runs)")
	flag.IntVar(&o.burst, "burst", 0, "client burst (with a positive -qps)")
	flag.StringVar(&admission, "admission", "", "comma-separated queue lengths: measure the cost of admitting one queued session at each instead")
	flag.Parse()
	ctrl.SetLogger(logr.Discard())
	var err error
	if admission != "" {
		if o.admission, err = parseInts(admission); err == nil {
			err = runAdmission(o)
		}
	} else {
		err = runThroughput(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "controllerbench:", err)
		os.Exit(1)
	}
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("-admission: %q is not a positive number", f)
		}
		out = append(out, v)
	}
	return out, nil
}
