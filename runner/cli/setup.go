package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner/procgroup"
	"github.com/agentry-dev/agentry/runner/transcript"
)

// SetupOutputBytes is how much of one setup command's output is kept: the end, where a
// failure explains itself.
const SetupOutputBytes = 64 << 10

// SetupTimedOutExitCode is recorded for a command the setup timeout killed (as timeout(1)).
const SetupTimedOutExitCode = 124

// setupOptions are the flags of `runner setup`.
type setupOptions struct {
	workspace, result string
	timeout           time.Duration
	secretEnv         []string
	commands          []string
	checkDirs         []string
}

// setupCommand runs spec.setup.commands. In a pod it is the setup init container: in the
// agent's image, with the setup egress and the setup Secrets, none of which the agent phase
// gets. A failing command is a result, not an error: it is written to --result and the
// command exits 0, so the runner records it and ends the session SetupFailed.
func setupCommand(ctx context.Context, std IO, code *contract.ExitCode) *cobra.Command {
	o := &setupOptions{}
	cmd := &cobra.Command{
		Use:   contract.RunnerCmdSetup + " --workspace DIR --result FILE [--timeout D] [--secret-env NAME]... --command CMD...",
		Short: "Run setup commands before the agent (the pod's setup step)",
		Long: `Run each --command with sh -c in the workspace, one after another, stopping at the first
that fails or when --timeout elapses (the command's whole process group is killed). Each
command's combined output is kept (the last 64 KiB), with the values of the --secret-env
variables redacted in every encoding, and the results are written to --result as a JSON
list. A failing command still exits 0: the failure is the result. A non-zero exit means
setup itself could not run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.workspace == "" || o.result == "" || len(o.commands) == 0 {
				*code = contract.ExitUsage
				return usagef("--workspace, --result and at least one --command are required")
			}
			if o.timeout <= 0 {
				*code = contract.ExitUsage
				return usagef("--timeout must be positive, got %s", o.timeout)
			}
			results := runSetup(ctx, o, std)
			if err := writeSetupResult(o.result, results); err != nil {
				*code = contract.ExitError
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.workspace, contract.FlagWorkspace, "", "directory the commands run in")
	f.StringVar(&o.result, contract.FlagSetupResult, "", "file the JSON results are written to")
	f.DurationVar(&o.timeout, contract.FlagTimeout, 10*time.Minute, "bound on all the commands together")
	f.StringArrayVar(&o.secretEnv, contract.FlagSetupSecretEnv, nil, "environment variable whose value is redacted from the output; repeatable")
	f.StringArrayVar(&o.commands, contract.FlagSetupCommand, nil, "a command, run with sh -c; repeatable, run in order")
	f.StringArrayVar(&o.checkDirs, contract.FlagSetupCheckDir, nil, "after the commands, a directory the agent will see that must hold no --secret-env value (in any file, raw, base64 or hex); a file that does is removed and setup fails; repeatable (default: --workspace)")
	return cmd
}

// runSetup runs the commands in order until one fails or the deadline passes.
func runSetup(ctx context.Context, o *setupOptions, std IO) []contract.Setup {
	var secrets []string
	for _, name := range o.secretEnv {
		if v := std.Getenv(name); v != "" {
			secrets = append(secrets, v)
		}
	}
	red := transcript.NewRedactor(secrets...)
	margin := 0
	for _, s := range secrets {
		margin = max(margin, 3*len(s)+16) // the longest encoded form, hex or URL-escaped
	}
	deadline, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	var results []contract.Setup
	for _, c := range o.commands {
		r := runSetupCommand(deadline, o.workspace, c, margin)
		r.Output = lastBytes(red.String(r.Output), SetupOutputBytes)
		fmt.Fprintf(std.Err, "setup: %q exited %d after %s\n", c, r.ExitCode, time.Duration(r.DurationMS)*time.Millisecond)
		results = append(results, r)
		if r.ExitCode != 0 {
			break
		}
	}
	// A command may have left a process outside its group (setsid); as the container's first
	// process, end them all before looking for leftovers, so none writes after the check.
	endOtherProcesses()
	dirs := o.checkDirs
	if len(dirs) == 0 {
		dirs = []string{o.workspace}
	}
	if leak := checkNoSecretLeft(dirs, o.secretEnv, std.Getenv); leak != nil {
		results = append(results, *leak)
	}
	return results
}

// runSetupCommand runs one command. Its output is kept to the last SetupOutputBytes plus
// margin, so a secret cut at the start of the kept part is still whole for the redactor.
func runSetupCommand(ctx context.Context, dir, command string, margin int) contract.Setup {
	out := &tailBuffer{max: SetupOutputBytes + margin}
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	cmd.Dir = dir
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	err := procgroup.Run(cmd) // the command's children die with it: nothing started in setup outlives it
	r := contract.Setup{Command: command, DurationMS: time.Since(start).Milliseconds()}
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		r.TimedOut, r.ExitCode = true, SetupTimedOutExitCode
		out.WriteString("\n[setup timed out; the command was killed]\n")
	case errors.As(err, &exitErr):
		r.ExitCode = exitErr.ExitCode()
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			r.ExitCode = 128 + int(ws.Signal())
		}
	case errors.Is(err, exec.ErrWaitDelay):
		// A background process kept the output open; it was killed with the group.
	case err != nil:
		r.ExitCode = 127
		out.WriteString("could not run the command: " + err.Error() + "\n")
	}
	r.Output = out.String()
	return r
}

// writeSetupResult writes the results where the runner reads them, atomically: the runner
// never sees half a file.
func writeSetupResult(path string, results []contract.Setup) error {
	b, err := json.Marshal(results)
	if err != nil {
		return fmt.Errorf("encoding the setup result: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".result-*")
	if err != nil {
		return fmt.Errorf("writing the setup result: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		_ = tmp.Close() // the write's error is the one to report
		return fmt.Errorf("writing the setup result: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		_ = tmp.Close() // the write's error is the one to report
		return fmt.Errorf("writing the setup result: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing the setup result: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing the setup result: %w", err)
	}
	return nil
}

// MaxSetupResultBytes bounds what the runner reads of the setup result: 32 commands of
// 64 KiB output each, escaped, with room to spare.
const MaxSetupResultBytes = 8 << 20

// ReadSetupResult reads what `runner setup` wrote. The file was written by code in the
// agent's image, so it is hostile input: size-capped, decoded strictly, each entry checked.
func ReadSetupResult(path string) ([]contract.Setup, error) {
	// Not followed if it is a symlink (towards a file only the runner may read), never blocked
	// on if it is a FIFO.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("reading the setup result: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("the setup result %s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxSetupResultBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the setup result: %w", err)
	}
	if len(b) > MaxSetupResultBytes {
		return nil, fmt.Errorf("the setup result %s is larger than %d bytes", path, MaxSetupResultBytes)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var results []contract.Setup
	if err := dec.Decode(&results); err != nil {
		return nil, fmt.Errorf("the setup result %s is not a JSON list of setup commands: %w", path, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("the setup result %s has data after its JSON list", path)
	}
	if len(results) == 0 {
		return nil, fmt.Errorf("the setup result %s lists no command", path)
	}
	for i := range results {
		r := &results[i]
		if len(r.Output) > SetupOutputBytes {
			r.Output = lastBytes(r.Output, SetupOutputBytes)
		}
		if len(r.Command) > 8192 {
			return nil, fmt.Errorf("the setup result %s: command %d is longer than 8192 bytes", path, i+1)
		}
	}
	return results, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= t.max {
		t.buf = append(t.buf[:0], p[len(p)-t.max:]...)
		return n, nil
	}
	if over := len(t.buf) + len(p) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	t.buf = append(t.buf, p...)
	return n, nil
}

func (t *tailBuffer) WriteString(s string) { _, _ = t.Write([]byte(s)) }

func (t *tailBuffer) String() string { return string(t.buf) }

// lastBytes returns the end of s, at most n bytes, starting at a character boundary.
func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	for i := 0; i < len(s) && i < 4; i++ {
		if s[i]&0xC0 != 0x80 {
			return s[i:]
		}
	}
	return s
}

// loadSetupResult reads --setup-result for the loop: the results, or why they could not be
// read (which ends the session SetupFailed: the agent never starts after a setup nobody can
// vouch for).
func loadSetupResult(path string) ([]contract.Setup, string) {
	if path == "" {
		return nil, ""
	}
	results, err := ReadSetupResult(path)
	if err != nil {
		return nil, err.Error()
	}
	return results, ""
}

// endOtherProcesses kills every other process of the container when `runner setup` is its
// first process (PID 1 of the pod's setup container, whose PID namespace is its own), and
// reaps them: orphans are re-parented to it. Anywhere else it does nothing, since kill(-1)
// would reach every process of the user.
func endOtherProcesses() {
	if os.Getpid() != 1 {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		// Again on every round: a process that was forking while the signal went out can be
		// missed by one kill(-1), and its child would outlive the check.
		_ = syscall.Kill(-1, syscall.SIGKILL)
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if errors.Is(err, syscall.ECHILD) {
				return
			}
			if pid <= 0 {
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}
