// Command compactionbench measures context compaction: the same 300-turn scripted session
// (each turn reads a 2-4 KB source file, the session finishes at turn 300) runs through the
// real runner Loop once without and once with compaction, and the prompt size of every model
// call is recorded. The scripted model server counts prompt tokens from the request as
// about four bytes a token, like the runner's own estimate; a real tokenizer differs by
// a constant factor, which changes neither the shape nor the ratio.
//
//	go run ./bench/compactionbench -out docs/images/compaction-prompt-tokens.png
//
// It prints a markdown table for docs/benchmarks.md and writes the chart.
package main

import (
	"context"
	"flag"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner"
	"github.com/agentry-dev/agentry/runner/approval"
	"github.com/agentry-dev/agentry/runner/gitrepo"
	"github.com/agentry-dev/agentry/runner/llm"
	"github.com/agentry-dev/agentry/runner/tools"
	"github.com/agentry-dev/agentry/runner/transcript"
	"github.com/agentry-dev/agentry/runner/workspace"
	"github.com/agentry-dev/agentry/test/scriptedllm"
)

func main() {
	out := flag.String("out", "docs/images/compaction-prompt-tokens.png", "where to write the chart (PNG)")
	turns := flag.Int("turns", 300, "model turns per session")
	window := flag.Int64("window", 32_000, "context window in tokens for the compacting run")
	flag.Parse()
	if err := run(*out, *turns, *window); err != nil {
		fmt.Fprintln(os.Stderr, "compactionbench:", err)
		os.Exit(1)
	}
}

func run(out string, turns int, window int64) error {
	ws, repo, cleanup, err := sourceRepo(60)
	if err != nil {
		return err
	}
	defer cleanup()
	without, err := session(ws, repo, turns, 0)
	if err != nil {
		return fmt.Errorf("without compaction: %w", err)
	}
	with, err := session(ws, repo, turns, window)
	if err != nil {
		return fmt.Errorf("with compaction: %w", err)
	}
	fmt.Printf("%d turns, each reading a 2-4 KB source file; prompt tokens ≈ request bytes / 4\n\n", turns)
	fmt.Println("| run | total prompt tokens | largest prompt | last prompt | compactions | summary calls' tokens | wall time |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	without.row("without compaction")
	with.row(fmt.Sprintf("with compaction (window %s, at 80%%)", thousands(window)))
	return chart(out, without, with, window)
}

// measured is one session's record.
type measured struct {
	prompts     []int64 // per model turn
	total       int64   // every call's prompt tokens, summary calls included
	summaryUse  int64
	compactions int
	wall        time.Duration
}

func (m measured) row(name string) {
	var largest int64
	for _, p := range m.prompts {
		largest = max(largest, p)
	}
	fmt.Printf("| %s | %s | %s | %s | %d | %s | %s |\n", name, thousands(m.total), thousands(largest),
		thousands(m.prompts[len(m.prompts)-1]), m.compactions, thousands(m.summaryUse), m.wall.Round(10*time.Millisecond))
}

// recording notes the prompt tokens of each call; summary calls are the ones without tools.
type recording struct {
	llm.Client
	mu      sync.Mutex
	turns   []int64
	summary contract.Usage
	total   int64
}

func (r *recording) Complete(ctx context.Context, req llm.Request) (llm.Response, error) {
	resp, err := r.Client.Complete(ctx, req)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total += resp.Usage.PromptTokens
	if len(req.Tools) == 0 {
		r.summary = r.summary.Add(resp.Usage)
	} else {
		r.turns = append(r.turns, resp.Usage.PromptTokens)
	}
	return resp, err
}

func session(ws *workspace.Root, repo *gitrepo.Repo, turns int, window int64) (measured, error) {
	srv := scriptedllm.New()
	defer srv.Close()
	n := 0
	srv.Generate(func(_ int, r scriptedllm.Request) scriptedllm.Step {
		if len(r.Body.Tools) == 0 {
			return scriptedllm.Text(summaryText(n))
		}
		if n++; n >= turns {
			return scriptedllm.Text("Reviewed the package; no change needed.")
		}
		return scriptedllm.Step{Content: "Reading the next file.", ToolCalls: []scriptedllm.Call{
			{Name: "read_file", Args: map[string]any{"path": fmt.Sprintf("pkg/file%02d.go", n%60)}},
		}}
	})
	dir, err := os.MkdirTemp("", "compactionbench-")
	if err != nil {
		return measured{}, err
	}
	defer os.RemoveAll(dir)
	sink, err := transcript.NewDir(dir)
	if err != nil {
		return measured{}, err
	}
	model := &recording{Client: llm.NewOpenAI(llm.Config{BaseURL: srv.URL, APIKey: "k", Stream: true})}
	loop := &runner.Loop{
		Model: model, Tools: tools.All(tools.Env{Workspace: ws, Repo: repo}),
		Transcript: transcript.NewRecorder(transcript.NewRedactor("k-not-a-real-key"), nil, sink),
		Policy:     approval.Policy{Bash: approval.Allow}, Diff: repo,
		Config: runner.Config{Model: "scripted", MaxTurns: turns + 1, MaxTokens: 0, ContextWindow: window},
	}
	start := time.Now()
	res, err := loop.Run(context.Background(), "Review every file of package pkg for error handling; change nothing unless it is wrong.")
	if err != nil {
		return measured{}, err
	}
	wall := time.Since(start)
	if res.Outcome != contract.OutcomeCompleted || res.Turns != turns {
		return measured{}, fmt.Errorf("ended %s after %d turns: %s", res.Outcome, res.Turns, res.Summary)
	}
	evs, err := transcript.ReadFile(sink.TranscriptPath())
	if err != nil {
		return measured{}, err
	}
	m := measured{prompts: model.turns, total: model.total, summaryUse: model.summary.Total(), wall: wall}
	for _, e := range evs {
		if e.Type == contract.EventCompaction {
			m.compactions++
		}
	}
	return m, nil
}

// summaryText is what the scripted model writes when asked to summarise: about 1.5 KB,
// the size a real model writes for such a session.
func summaryText(read int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Progress: reviewed %d files of package pkg for error handling so far; no change made.\n", read)
	for i := range 12 {
		fmt.Fprintf(&b, "- pkg/file%02d.go: handlers wrap errors with context; Close errors are checked; nothing to fix.\n", (read+i)%60)
	}
	b.WriteString("Remaining: the files not listed above. Plan: keep reading in order, then report.\n")
	return b.String()
}

// sourceRepo is a git repository of files 2-4 KB long that look like Go source.
func sourceRepo(files int) (*workspace.Root, *gitrepo.Repo, func(), error) {
	dir, err := os.MkdirTemp("", "compactionbench-ws-")
	if err != nil {
		return nil, nil, nil, err
	}
	r, err := git.PlainInit(dir, false)
	if err != nil {
		return nil, nil, nil, err
	}
	for i := range files {
		var b strings.Builder
		fmt.Fprintf(&b, "package pkg\n\nimport (\n\t\"errors\"\n\t\"fmt\"\n)\n\n")
		for f := 0; b.Len() < 2048+(i*37)%2048; f++ {
			fmt.Fprintf(&b, "// Handler%d_%d processes one request and reports what went wrong.\nfunc Handler%d_%d(in []byte) (int, error) {\n\tif len(in) == 0 {\n\t\treturn 0, errors.New(\"empty input\")\n\t}\n\tn, err := parse(in)\n\tif err != nil {\n\t\treturn 0, fmt.Errorf(\"parsing: %%w\", err)\n\t}\n\treturn n, nil\n}\n\n", i, f, i, f)
		}
		p := filepath.Join(dir, "pkg", fmt.Sprintf("file%02d.go", i))
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
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

func chart(out string, without, with measured, window int64) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Prompt tokens per turn, %d-turn scripted session", len(without.prompts))
	p.X.Label.Text = "model turn"
	p.Y.Label.Text = "prompt tokens"
	p.Y.Tick.Marker = plot.TickerFunc(func(lo, hi float64) []plot.Tick {
		ticks := plot.DefaultTicks{}.Ticks(lo, hi)
		for i := range ticks {
			if ticks[i].Label != "" {
				ticks[i].Label = fmt.Sprintf("%.0fk", ticks[i].Value/1000)
			}
		}
		return ticks
	})
	p.Legend.Top, p.Legend.Left = true, true
	series := func(name string, prompts []int64, c color.Color) error {
		pts := make(plotter.XYs, len(prompts))
		for i, v := range prompts {
			pts[i].X, pts[i].Y = float64(i+1), float64(v)
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		l.Color, l.Width = c, vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(name, l)
		return nil
	}
	if err := series("without compaction", without.prompts, color.RGBA{R: 200, G: 60, B: 40, A: 255}); err != nil {
		return err
	}
	if err := series(fmt.Sprintf("with compaction (window %s)", thousands(window)), with.prompts, color.RGBA{R: 30, G: 100, B: 200, A: 255}); err != nil {
		return err
	}
	limit, err := plotter.NewLine(plotter.XYs{{X: 1, Y: float64(window)}, {X: float64(len(without.prompts)), Y: float64(window)}})
	if err != nil {
		return err
	}
	limit.Color, limit.Dashes = color.Gray{Y: 110}, []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(limit)
	p.Legend.Add("context window", limit)
	p.Legend.Padding = vg.Points(2)
	p.Add(plotter.NewGrid())
	p.Legend.ThumbnailWidth = vg.Points(20)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	return p.Save(8*vg.Inch, 4.5*vg.Inch, out)
}

// thousands formats n with comma separators, as docs/benchmarks.md does.
func thousands(n int64) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
