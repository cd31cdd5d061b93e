// Command memorybench measures the peak memory (maximum resident set size) of
// the runner's work on large workspace files against peers doing the same
// job, in the same run. Every case runs in a child process of its own (this
// program re-executed, or the peer's binary) and its peak is the child's
// ru_maxrss. Results go to docs/benchmarks.md ("Memory bounds").
//
//	apt-get install -y ripgrep
//	go run ./bench/memorybench
//
// Cases:
//
//	patch: gitrepo's patch of a checkout holding one untracked text file of
//	       -patch-mb MB; peers `git diff --no-index --stat` and
//	       `git add -N` + `git diff`.
//	grep:  -greps concurrent search.Grep calls (as the grep tool makes them),
//	       one per text file of -grep-mb MB; peers as many concurrent ripgrep
//	       and GNU grep processes, whose peaks are summed.
//
// The generated files live in a temporary directory removed at the end.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/agentry-dev/agentry/runner/gitrepo"
	"github.com/agentry-dev/agentry/runner/search"
	"github.com/agentry-dev/agentry/runner/workspace"
)

// budget is the memory the runner is meant to stay under.
const budget = 256 << 20

// pattern is what every grep looks for: a literal with a regexp around it,
// matching a few lines per file.
const pattern = `needle-\d+ in the haystack`

func main() {
	child := flag.String("child", "", "internal: run one case in this process (patch or grep)")
	dir := flag.String("dir", "", "internal: the case's directory")
	rssFile := flag.String("rss-file", "", "internal: where the launcher writes the peak")
	greps := flag.Int("greps", 8, "concurrent greps, one file each")
	patchMB := flag.Int("patch-mb", 200, "size of the untracked file in the patch case, in MB")
	grepMB := flag.Int("grep-mb", 250, "size of each grepped file, in MB")
	flag.Parse()
	var err error
	switch *child {
	case "":
		err = run(*patchMB, *grepMB, *greps)
	case "patch":
		err = childPatch(*dir)
	case "grep":
		err = childGrep(*dir, *greps)
	case "idle":
		err = json.NewEncoder(os.Stdout).Encode(map[string]string{"detail": "starts and exits"})
	case "launch":
		err = launch(*rssFile, flag.Args())
	default:
		err = fmt.Errorf("unknown case %q", *child)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "memorybench:", err)
		os.Exit(1)
	}
}

// --- children -----------------------------------------------------------------

func childPatch(dir string) error {
	r, err := gitrepo.Open(dir)
	if err != nil {
		return err
	}
	p, err := r.Diff()
	if err != nil {
		return err
	}
	files, _, _ := p.Totals()
	detail := fmt.Sprintf("patch %s, %d file(s) changed", humanBytes(int64(len(p.Text))), files)
	for _, o := range p.Omitted {
		detail += fmt.Sprintf("; omitted %s (%s)", o.Path, humanBytes(o.Size))
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]string{"detail": detail})
}

func childGrep(dir string, greps int) error {
	ws, err := workspace.Open(dir)
	if err != nil {
		return err
	}
	defer ws.Close()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		matches int
		errs    []error
	)
	for i := range greps {
		wg.Go(func() {
			// The grep tool's call: a result limit, default line shortening.
			res, err := search.Grep(context.Background(), ws, search.Options{Pattern: pattern, Path: fileName(i), MaxMatches: 200})
			mu.Lock()
			defer mu.Unlock()
			errs = append(errs, err)
			matches += len(res.Matches)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]string{"detail": fmt.Sprintf("%d matching lines", matches)})
}

// --- parent -------------------------------------------------------------------

type row struct {
	task, tool, detail string
	peak               int64 // bytes
	wall               time.Duration
}

func run(patchMB, grepMB, greps int) error {
	tmp, err := os.MkdirTemp("", "memorybench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var rows []row

	floor, err := measure("true")
	if err != nil {
		return err
	}
	floor.task, floor.tool, floor.detail = "—", "`true` (the measurement's floor: a smaller peak reads as this)", ""
	idle, err := measure(self, "-child", "idle")
	if err != nil {
		return err
	}
	idle.task, idle.tool = "—", "memorybench child that only starts (Go baseline)"
	rows = append(rows, floor, idle)

	// (a) The patch of a workspace with a large untracked file.
	ws := filepath.Join(tmp, "ws")
	if err := patchWorkspace(ws, int64(patchMB)*1e6); err != nil {
		return err
	}
	task := fmt.Sprintf("patch of a checkout with a %d MB untracked text file", patchMB)
	r, err := measure(self, "-child", "patch", "-dir", ws)
	if err != nil {
		return err
	}
	r.task, r.tool = task, "agentry `gitrepo` Diff"
	rows = append(rows, r)
	if _, err := exec.LookPath("git"); err == nil {
		r, err := measureIn(ws, "git", "diff", "--no-index", "--stat", "/dev/null", "big.txt")
		if err != nil {
			return err
		}
		r.task, r.tool = task, "`git diff --no-index --stat /dev/null big.txt`"
		rows = append(rows, r)
		add, err := measureIn(ws, "git", "add", "-N", "big.txt")
		if err != nil {
			return err
		}
		r, err = measureIn(ws, "git", "diff")
		if err != nil {
			return err
		}
		r.task, r.tool = task, "`git add -N big.txt && git diff`"
		r.peak = max(r.peak, add.peak)
		r.wall += add.wall
		rows = append(rows, r)
	}
	if err := os.RemoveAll(ws); err != nil {
		return err
	}

	// (b) Concurrent greps over large files.
	gdir := filepath.Join(tmp, "grep")
	if err := grepFiles(gdir, greps, int64(grepMB)*1e6); err != nil {
		return err
	}
	task = fmt.Sprintf("%d concurrent greps, one %d MB file each", greps, grepMB)
	r, err = measure(self, "-child", "grep", "-dir", gdir, "-greps", fmt.Sprint(greps))
	if err != nil {
		return err
	}
	r.task, r.tool = task, "agentry `search.Grep` (one process)"
	rows = append(rows, r)
	peers := []struct {
		name string
		args []string
	}{
		{"ripgrep `rg -n` (mmap), sum of processes", []string{"rg", "-n", "--no-heading", "-m", "200", "-e", pattern}},
		{"ripgrep `rg -n --no-mmap`, sum of processes", []string{"rg", "-n", "--no-heading", "--no-mmap", "-m", "200", "-e", pattern}},
		{"GNU grep `grep -n -E`, sum of processes", []string{"grep", "-n", "-E", "-m", "200", "-e", strings.ReplaceAll(pattern, `\d`, `[0-9]`)}},
	}
	for _, p := range peers {
		if _, err := exec.LookPath(p.args[0]); err != nil {
			fmt.Fprintf(os.Stderr, "memorybench: %s not found, skipped\n", p.args[0])
			continue
		}
		r, err := concurrently(gdir, greps, p.args)
		if err != nil {
			return err
		}
		r.task, r.tool = task, p.name
		rows = append(rows, r)
	}

	printTable(rows)
	return nil
}

// patchWorkspace makes a checkout with a few committed files and one
// untracked text file of size bytes.
func patchWorkspace(dir string, size int64) error {
	repo, err := git.PlainInit(dir, false)
	if err != nil {
		return err
	}
	for i := range 20 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d.go", i)), []byte(fmt.Sprintf("package x\n\nconst c%d = %d\n", i, i)), 0o644); err != nil {
			return err
		}
	}
	wt, err := repo.Worktree()
	if err != nil {
		return err
	}
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		return err
	}
	sig := &object.Signature{Name: "bench", Email: "bench@example.com", When: time.Unix(1700000000, 0)}
	if _, err := wt.Commit("base", &git.CommitOptions{Author: sig, Committer: sig}); err != nil {
		return err
	}
	return writeText(filepath.Join(dir, "big.txt"), size, 0)
}

func grepFiles(dir string, n int, size int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := range n {
		if err := writeText(filepath.Join(dir, fileName(i)), size, i); err != nil {
			return err
		}
	}
	return nil
}

func fileName(i int) string { return fmt.Sprintf("big-%d.log", i) }

// writeText writes size bytes of log-like lines; one line in every 25 MiB
// holds the pattern.
func writeText(path string, size int64, seed int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	var plain, needle strings.Builder
	for i := 0; plain.Len() < 1<<20; i++ {
		line := fmt.Sprintf("2025-01-01T00:00:%02dZ INFO request %d served in %d ms by worker %d\n", i%60, i, i%977, i%16)
		plain.WriteString(line)
		if i == 5000 {
			line = fmt.Sprintf("2025-01-01T00:00:%02dZ WARN needle-%d in the haystack\n", i%60, seed)
		}
		needle.WriteString(line)
	}
	for written, n := int64(0), 0; written < size; n++ {
		b := plain.String()
		if n%25 == 12 {
			b = needle.String()
		}
		k, err := f.WriteString(b[:min(int64(len(b)), size-written)])
		written += int64(k)
		if err != nil {
			_ = f.Close()
			return err
		}
	}
	return f.Close()
}

// measure runs a command and returns its peak RSS. Its stdout, a JSON object
// with a "detail" string for this program's children, is read; anything else
// is counted and discarded.
func measure(name string, args ...string) (row, error) { return measureIn("", name, args...) }

// measureIn runs the command in dir and returns its peak RSS, as reported by
// GNU time (`/usr/bin/time -f %M`) or, without it, by a launcher (this
// program with -child launch). Either way the command is started by a small
// process: Go starts processes with vfork, and Linux counts the parent's
// resident pages into the peak of a vforked child, so measuring straight from
// this process (which has written the test files) would inflate small peaks.
// The floor left is shown in the first row of the table.
func measureIn(dir, name string, args ...string) (row, error) {
	self, err := os.Executable()
	if err != nil {
		return row{}, err
	}
	rssFile, err := os.CreateTemp("", "memorybench-rss-")
	if err != nil {
		return row{}, err
	}
	_ = rssFile.Close()
	defer os.Remove(rssFile.Name())
	var cmd *exec.Cmd
	if gnuTime != "" {
		cmd = exec.Command(gnuTime, append([]string{"-f", "%M", "-o", rssFile.Name(), "--", name}, args...)...)
	} else {
		cmd = exec.Command(self, append([]string{"-child", "launch", "-rss-file", rssFile.Name(), "--", name}, args...)...)
	}
	cmd.Dir = dir
	var out countingWriter
	cmd.Stdout = &out
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	err = cmd.Run()
	wall := time.Since(start)
	var exit *exec.ExitError
	// git diff --no-index and grep exit 1 for "differences"/"no match".
	if err != nil && (!errors.As(err, &exit) || exit.ExitCode() != 1) {
		return row{}, fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	r := row{wall: wall}
	b, err := os.ReadFile(rssFile.Name())
	if err != nil {
		return row{}, err
	}
	// GNU time writes "Command exited with non-zero status 1" first then.
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return row{}, fmt.Errorf("%s: no peak reported\n%s", name, stderr.String())
	}
	if _, err := fmt.Sscan(fields[len(fields)-1], &r.peak); err != nil {
		return row{}, fmt.Errorf("%s: peak %q: %w", name, b, err)
	}
	r.peak <<= 10 // KiB
	var d struct{ Detail string }
	if json.Unmarshal(out.head, &d) == nil && d.Detail != "" {
		r.detail = d.Detail
	} else {
		r.detail = "output " + humanBytes(out.n)
	}
	return r, nil
}

// gnuTime is GNU time's path, "" when it is not installed.
var gnuTime, _ = exec.LookPath("/usr/bin/time")

// launch runs args, passing its output through, then writes the command's
// peak RSS in KiB to rssFile and exits with its status.
func launch(rssFile string, args []string) error {
	if len(args) == 0 {
		return errors.New("launch: no command")
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	err := cmd.Run()
	if cmd.ProcessState == nil {
		return err
	}
	if err := os.WriteFile(rssFile, []byte(fmt.Sprint(maxRSS(cmd.ProcessState)>>10)), 0o644); err != nil {
		return err
	}
	os.Exit(cmd.ProcessState.ExitCode())
	return nil
}

// concurrently runs one process per file at once and sums their peaks, the
// memory they hold together at worst.
func concurrently(dir string, n int, args []string) (row, error) {
	rows := make([]row, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			rows[i], errs[i] = measureIn(dir, args[0], append(args[1:], fileName(i))...)
		})
	}
	wg.Wait()
	r := row{wall: time.Since(start)}
	var biggest int64
	for _, x := range rows {
		r.peak += x.peak
		biggest = max(biggest, x.peak)
	}
	r.detail = fmt.Sprintf("largest process %s", humanBytes(biggest))
	return r, errors.Join(errs...)
}

func maxRSS(ps *os.ProcessState) int64 {
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss << 10 // KiB on Linux
	}
	return 0
}

type countingWriter struct {
	n    int64
	head []byte
}

func (w *countingWriter) Write(p []byte) (int, error) {
	if len(w.head) < 4096 {
		w.head = append(w.head, p[:min(len(p), 4096-len(w.head))]...)
	}
	w.n += int64(len(p))
	return len(p), nil
}

var _ io.Writer = (*countingWriter)(nil)

func printTable(rows []row) {
	fmt.Printf("GOMAXPROCS=%d, %s/%s, %s, %s, %s\n\n", runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, runtime.Version(), version("git", "--version"), version("rg", "--version"))
	fmt.Println("| task | tool | peak RSS | of 256 MiB | ÷ agentry | wall | detail |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- |")
	var ours int64
	for _, r := range rows {
		if strings.HasPrefix(r.tool, "agentry") {
			ours = r.peak
		}
		ratio := "—"
		if ours > 0 && r.task != "—" && !strings.HasPrefix(r.tool, "agentry") {
			ratio = fmt.Sprintf("%.1f×", float64(r.peak)/float64(ours))
		}
		fmt.Printf("| %s | %s | %s | %.0f %% | %s | %.1f s | %s |\n", r.task, r.tool, humanBytes(r.peak), 100*float64(r.peak)/budget, ratio, r.wall.Seconds(), r.detail)
	}
}

func version(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return name + " not found"
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
