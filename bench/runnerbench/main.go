// Command runnerbench measures the runner against its peers in the same run,
// so ratios stay meaningful on a noisy machine. Results go to docs/benchmarks.md.
//
//	go run ./bench/runnerbench grep -tree /root/go/pkg/mod/k8s.io/kubernetes@v1.37.2
//	go run ./bench/runnerbench loop -steps 3000
//	go run ./bench/runnerbench parallel
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner"
	"github.com/agentry-dev/agentry/runner/approval"
	"github.com/agentry-dev/agentry/runner/executor"
	"github.com/agentry-dev/agentry/runner/gitrepo"
	"github.com/agentry-dev/agentry/runner/llm"
	"github.com/agentry-dev/agentry/runner/search"
	"github.com/agentry-dev/agentry/runner/tools"
	"github.com/agentry-dev/agentry/runner/transcript"
	"github.com/agentry-dev/agentry/runner/workspace"
	"github.com/agentry-dev/agentry/test/scriptedllm"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: runnerbench grep|loop|parallel [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "grep":
		err = benchGrep(os.Args[2:])
	case "loop":
		err = benchLoop(os.Args[2:])
	case "parallel":
		err = benchParallel(os.Args[2:])
	default:
		err = fmt.Errorf("unknown benchmark %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "runnerbench:", err)
		os.Exit(1)
	}
}

// --- grep -------------------------------------------------------------------

type grepCase struct {
	name, pattern string
	ignoreCase    bool
}

var grepCases = []grepCase{
	{"rare literal", "NewSharedInformerFactory", false},
	{"common literal", "context.Context", false},
	{"regex with literal", `func \(\w+ \*\w+\) Validate\w*\(`, false},
	{"case-insensitive", "deprecated", true},
	{"regex, no literal", `[A-Z][a-z]+Controller\b`, false},
}

func benchGrep(args []string) error {
	fs := flag.NewFlagSet("grep", flag.ExitOnError)
	tree := fs.String("tree", "", "directory to search (a large source tree)")
	runs := fs.Int("runs", 7, "timed runs per tool and pattern (interleaved); the median is reported")
	_ = fs.Parse(args)
	if *tree == "" {
		return fmt.Errorf("-tree is required")
	}
	if _, err := exec.LookPath("rg"); err != nil {
		return fmt.Errorf("ripgrep (rg) not found: apt-get install -y ripgrep")
	}
	ws, err := workspace.Open(*tree)
	if err != nil {
		return err
	}
	defer ws.Close()
	rgArgs := func(c grepCase) []string {
		a := []string{"-n", "--no-heading", "--hidden", "--no-require-git"}
		if c.ignoreCase {
			a = append(a, "-i")
		}
		return append(a, "-e", c.pattern, *tree)
	}
	grepArgs := func(c grepCase) []string {
		a := []string{"-rn", "-E"}
		if c.ignoreCase {
			a = append(a, "-i")
		}
		// GNU grep has no \w in ERE bracket-free form issues; it supports \w and \b.
		return append(a, "-e", c.pattern, *tree)
	}
	ours := func(c grepCase, w io.Writer) (int, error) {
		res, err := search.Grep(context.Background(), ws, search.Options{Pattern: c.pattern, IgnoreCase: c.ignoreCase, MaxLineBytes: 1 << 20})
		if err != nil {
			return 0, err
		}
		bw := bufio.NewWriterSize(w, 64<<10)
		for _, m := range res.Matches {
			fmt.Fprintf(bw, "%s:%d:%s\n", m.Path, m.Line, m.Text)
		}
		return len(res.Matches), bw.Flush()
	}
	external := func(name string, args []string, w io.Writer) (int, error) {
		cmd := exec.Command(name, args...)
		cmd.Stdout = w
		err := cmd.Run()
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) && ee.ExitCode() == 1 { // no match
			err = nil
		}
		return 0, err
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer devnull.Close()

	fmt.Printf("tree: %s (%s), GOMAXPROCS=%d, %d runs each, median wall time\n\n", *tree, treeSize(*tree), runtime.GOMAXPROCS(0), *runs)
	fmt.Println("| pattern | matching lines (agentry / rg / grep) | agentry grep | rg | GNU grep -rn | agentry ÷ rg | grep ÷ agentry |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- |")
	for _, c := range grepCases {
		// Correctness first: the same lines are found.
		n, err := ours(c, io.Discard)
		if err != nil {
			return err
		}
		nrg, err := countLines("rg", rgArgs(c))
		if err != nil {
			return err
		}
		ngrep, err := countLines("grep", grepArgs(c))
		if err != nil {
			return err
		}
		var tOurs, tRg, tGrep []time.Duration
		for range *runs {
			tOurs = append(tOurs, timeIt(func() error { _, err := ours(c, devnull); return err }))
			tRg = append(tRg, timeIt(func() error { _, err := external("rg", rgArgs(c), devnull); return err }))
			tGrep = append(tGrep, timeIt(func() error { _, err := external("grep", grepArgs(c), devnull); return err }))
		}
		mo, mr, mg := median(tOurs), median(tRg), median(tGrep)
		pat := strings.ReplaceAll(c.pattern, "|", `\|`)
		if c.ignoreCase {
			pat += " (-i)"
		}
		fmt.Printf("| %s `%s` | %d / %d / %d | %s | %s | %s | %.2f× | %.1f× |\n", c.name, pat, n, nrg, ngrep,
			ms(mo), ms(mr), ms(mg), float64(mo)/float64(mr), float64(mg)/float64(mo))
	}
	return nil
}

func countLines(name string, args []string) (int, error) {
	cmd := exec.Command(name, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	n := 0
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		if !strings.HasPrefix(sc.Text(), "Binary file ") && !strings.HasPrefix(sc.Text(), "grep: ") {
			n++
		}
	}
	err = cmd.Wait()
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) && ee.ExitCode() == 1 {
		err = nil
	}
	return n, err
}

func treeSize(dir string) string {
	var files, bytes int64
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files++
			if fi, err := d.Info(); err == nil {
				bytes += fi.Size()
			}
		}
		return nil
	})
	return fmt.Sprintf("%d files, %.0f MB", files, float64(bytes)/1e6)
}

// --- loop -------------------------------------------------------------------

// timedModel records when each model call starts and returns.
type timedModel struct {
	llm.Client
	starts, ends []time.Time
}

func (m *timedModel) Complete(ctx context.Context, r llm.Request) (llm.Response, error) {
	m.starts = append(m.starts, time.Now())
	resp, err := m.Client.Complete(ctx, r)
	m.ends = append(m.ends, time.Now())
	return resp, err
}

// benchLoop runs many sessions of a realistic length against a zero-latency
// scripted model. Each step is one model turn calling read_file, with the
// transcript written to a local directory. It reports the whole step (model
// round trip over loopback HTTP included) and the loop's own overhead (from a
// response arriving to the next request leaving: tool, events, history).
func benchLoop(args []string) error {
	fs := flag.NewFlagSet("loop", flag.ExitOnError)
	steps := fs.Int("steps", 50, "model turns per session")
	sessions := fs.Int("sessions", 40, "sessions per mode")
	_ = fs.Parse(args)
	fmt.Printf("GOMAXPROCS=%d, %d sessions × %d steps per mode; each step: model turn → read_file → transcript\n\n", runtime.GOMAXPROCS(0), *sessions, *steps)
	fmt.Println("| mode | measure | p50 | p90 | p99 |")
	fmt.Println("| --- | --- | --- | --- | --- |")
	type mode struct{ stream, executor bool }
	for _, m := range []mode{{true, false}, {false, false}, {true, true}, {false, true}} {
		var step, overhead []time.Duration
		for range *sessions {
			st, ov, err := loopSession(*steps, m.stream, m.executor)
			if err != nil {
				return err
			}
			step, overhead = append(step, st...), append(overhead, ov...)
		}
		slices.Sort(step)
		slices.Sort(overhead)
		mode := "streaming (SSE)"
		if !m.stream {
			mode = "non-streaming"
		}
		if m.executor {
			mode += ", tools through the executor"
		} else {
			mode += ", tools in-process"
		}
		fmt.Printf("| %s | step (incl. model HTTP round trip) | %s | %s | %s |\n", mode, us(pct(step, 50)), us(pct(step, 90)), us(pct(step, 99)))
		fmt.Printf("| %s | loop overhead (excl. model call) | %s | %s | %s |\n", mode, us(pct(overhead, 50)), us(pct(overhead, 90)), us(pct(overhead, 99)))
	}
	return nil
}

// loopSession runs one session; with viaExecutor the tools run behind an executor on a
// Unix socket, as in a pod (HTTP over the socket, canonical arguments, bounded answers).
func loopSession(steps int, stream, viaExecutor bool) (step, overhead []time.Duration, err error) {
	ws, repo, cleanup, err := benchRepo(map[string]string{"README.md": strings.Repeat("a line of documentation\n", 40)})
	if err != nil {
		return nil, nil, err
	}
	defer cleanup()
	srv := scriptedllm.New()
	defer srv.Close()
	srv.Generate(func(n int, _ scriptedllm.Request) scriptedllm.Step {
		if n >= steps-1 {
			return scriptedllm.Text("done")
		}
		return scriptedllm.Tools(scriptedllm.Call{Name: "read_file", Args: map[string]any{"path": "README.md", "limit": 5}})
	})
	dir, err := os.MkdirTemp("", "runnerbench-transcript-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	sink, err := transcript.NewDir(dir)
	if err != nil {
		return nil, nil, err
	}
	model := &timedModel{Client: llm.NewOpenAI(llm.Config{BaseURL: srv.URL, APIKey: "k", Stream: stream})}
	set := tools.All(tools.Env{Workspace: ws, Repo: repo})
	if viaExecutor {
		sock := filepath.Join(dir, "executor.sock")
		l, err := executor.Listen(sock)
		if err != nil {
			return nil, nil, err
		}
		hs := &http.Server{Handler: (&executor.Server{Tools: set, Shell: "bash"}).Handler()}
		go hs.Serve(l) //nolint:errcheck // ends with Close
		defer hs.Close()
		set = executor.Remote(set, executor.NewClient(sock))
	}
	loop := &runner.Loop{
		Model: model, Tools: set,
		Transcript: transcript.NewRecorder(transcript.NewRedactor("k-not-a-real-key"), nil, sink),
		Policy:     approval.Policy{Bash: approval.Allow}, Diff: repo,
		Config: runner.Config{Model: "scripted", MaxTurns: steps + 1},
	}
	res, err := loop.Run(context.Background(), "benchmark")
	if err != nil {
		return nil, nil, err
	}
	if res.Outcome != contract.OutcomeCompleted {
		return nil, nil, fmt.Errorf("loop ended with %s: %s", res.Outcome, res.Summary)
	}
	// The first step opens the connection; the steady state starts after it.
	for i := 1; i+1 < len(model.starts); i++ {
		step = append(step, model.starts[i+1].Sub(model.starts[i]))
		overhead = append(overhead, model.starts[i+1].Sub(model.ends[i]))
	}
	return step, overhead, nil
}

// --- parallel ---------------------------------------------------------------

func benchParallel(args []string) error {
	fs := flag.NewFlagSet("parallel", flag.ExitOnError)
	rounds := fs.Int("rounds", 20, "batches per setting")
	_ = fs.Parse(args)
	files := map[string]string{}
	var line strings.Builder
	for i := range 200_000 {
		fmt.Fprintf(&line, "generated line %d with some words to scan\n", i)
	}
	for i := range 8 {
		files[fmt.Sprintf("data/f%d.txt", i)] = line.String()
	}
	// The batch a model typically sends while exploring: reads and searches.
	var calls []scriptedllm.Call
	for i := range 4 {
		calls = append(calls, scriptedllm.Call{Name: "read_file", Args: map[string]any{"path": fmt.Sprintf("data/f%d.txt", i), "offset": 150000, "limit": 50}})
		calls = append(calls, scriptedllm.Call{Name: "grep", Args: map[string]any{"pattern": fmt.Sprintf("line 1%d99", i), "path": fmt.Sprintf("data/f%d.txt", i+4)}})
	}
	fmt.Printf("GOMAXPROCS=%d, batch of 8 read-only calls (4 read_file deep into 9 MB files, 4 grep over 9 MB files), %d batches\n\n", runtime.GOMAXPROCS(0), *rounds)
	fmt.Println("| parallelism | median batch | speedup |")
	fmt.Println("| --- | --- | --- |")
	var base time.Duration
	for _, par := range []int{1, 2, 8} {
		ws, repo, cleanup, err := benchRepo(files)
		if err != nil {
			return err
		}
		srv := scriptedllm.New()
		srv.Generate(func(n int, _ scriptedllm.Request) scriptedllm.Step {
			if n >= *rounds {
				return scriptedllm.Text("done")
			}
			return scriptedllm.Tools(calls...)
		})
		rec := &batchTimes{}
		dir, _ := os.MkdirTemp("", "runnerbench-transcript-")
		sink, _ := transcript.NewDir(dir)
		loop := &runner.Loop{
			Model: llm.NewOpenAI(llm.Config{BaseURL: srv.URL, APIKey: "k", Stream: true}),
			Tools: tools.All(tools.Env{Workspace: ws, Repo: repo}), Transcript: &observer{Recorder: transcript.NewRecorder(nil, nil, sink), rec: rec},
			Config: runner.Config{Model: "scripted", Parallelism: par, MaxTurns: *rounds + 2},
		}
		if _, err := loop.Run(context.Background(), "bench"); err != nil {
			return err
		}
		srv.Close()
		cleanup()
		_ = os.RemoveAll(dir)
		m := median(rec.batches)
		if par == 1 {
			base = m
		}
		fmt.Printf("| %d | %s | %.2f× |\n", par, ms(m), float64(base)/float64(m))
	}
	return nil
}

// observer times each batch from its first toolCall event to its last toolResult.
type observer struct {
	*transcript.Recorder
	rec *batchTimes
}

type batchTimes struct {
	mu      sync.Mutex
	start   time.Time
	pending int
	batches []time.Duration
}

func (o *observer) Emit(ev contract.Event) contract.Event {
	o.rec.mu.Lock()
	switch ev.Type {
	case contract.EventToolCall:
		if o.rec.pending == 0 {
			o.rec.start = time.Now()
		}
		o.rec.pending++
	case contract.EventToolResult:
		o.rec.pending--
		if o.rec.pending == 0 {
			o.rec.batches = append(o.rec.batches, time.Since(o.rec.start))
		}
	}
	o.rec.mu.Unlock()
	return o.Recorder.Emit(ev)
}

// --- helpers ----------------------------------------------------------------

func benchRepo(files map[string]string) (*workspace.Root, *gitrepo.Repo, func(), error) {
	dir, err := os.MkdirTemp("", "runnerbench-ws-")
	if err != nil {
		return nil, nil, nil, err
	}
	r, err := git.PlainInit(dir, false)
	if err != nil {
		return nil, nil, nil, err
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return nil, nil, nil, err
		}
	}
	wt, _ := r.Worktree()
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		return nil, nil, nil, err
	}
	sig := &object.Signature{Name: "bench", Email: "bench@example.com", When: time.Now()}
	if _, err := wt.Commit("bench", &git.CommitOptions{Author: sig, Committer: sig}); err != nil {
		return nil, nil, nil, err
	}
	ws, err := workspace.Open(dir)
	if err != nil {
		return nil, nil, nil, err
	}
	repo, err := gitrepo.Open(dir)
	if err != nil {
		return nil, nil, nil, err
	}
	return ws, repo, func() { ws.Close(); _ = os.RemoveAll(dir) }, nil
}

func timeIt(f func() error) time.Duration {
	start := time.Now()
	if err := f(); err != nil {
		fmt.Fprintln(os.Stderr, "runnerbench:", err)
		os.Exit(1)
	}
	return time.Since(start)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func pct(sorted []time.Duration, p int) time.Duration { return sorted[(len(sorted)-1)*p/100] }

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d.Microseconds())/1000) }
func us(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
