package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner/procgroup"
	"github.com/agentry-dev/agentry/runner/workspace"
)

// BashConfig bounds shell commands.
type BashConfig struct {
	// DefaultTimeout applies when the model gives none; 0 means 2 minutes.
	DefaultTimeout time.Duration
	// MaxTimeout caps what the model may ask for; 0 means 10 minutes.
	MaxTimeout time.Duration
	// OutputBytes caps the returned output (head and tail are kept); 0 means 32 KiB.
	OutputBytes int
	// Env is the environment of commands; nil means the runner's own
	// environment minus the secrets listed in SecretEnv.
	Env []string
	// Shell is the interpreter: "bash" or "sh" (see DetectShell); "" means
	// bash.
	Shell string
}

// SecretEnv are variables the runner needs but commands must not see: the
// model could print them, or a compromised dependency could send them away.
var SecretEnv = []string{
	"OPENAI_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
	"AGENTRY_GATEWAY_TOKEN",
}

// Bash runs a shell command in the workspace.
type Bash struct {
	typed[bashArgs] // Schema is Bash's own: it depends on the shell and the timeouts
	WS              *workspace.Root
	Config          BashConfig
}

func (*Bash) Name() string { return "bash" }
func (*Bash) Kind() Kind   { return KindShell }
func (t *Bash) Description() string {
	d := doc("bash")
	if t.shell() == "sh" {
		d += " The shell is a POSIX sh, not bash: no arrays, [[ ]] or other bash extensions."
	}
	return strings.ReplaceAll(d, "{shell}", t.shell())
}

// DetectShell is the shell the bash tool uses in this environment: bash when
// the image has it, sh otherwise.
func DetectShell() string {
	if _, err := exec.LookPath("bash"); err == nil {
		return "bash"
	}
	return "sh"
}

func (t *Bash) shell() string {
	if t.Config.Shell == "" {
		return "bash"
	}
	return t.Config.Shell
}
func (t *Bash) Schema() json.RawMessage {
	def, max := t.timeouts()
	return schemaOf[bashArgs](bounds{
		"command":         {maxLength: MaxCommandBytes, description: "The command line, run with " + t.shell() + " -c"},
		"timeout_seconds": {min: 1, max: int(max.Seconds()), description: fmt.Sprintf("Kill the command after this many seconds. Default %d", int(def.Seconds()))},
	})
}

func (t *Bash) timeouts() (def, max time.Duration) {
	def, max = t.Config.DefaultTimeout, t.Config.MaxTimeout
	if def == 0 {
		def = 2 * time.Minute
	}
	if max == 0 {
		max = 10 * time.Minute
	}
	return def, max
}

// MaxCommandBytes bounds a command line: a person approving it reads all of
// it. The loop refuses, before asking, any action longer than that once
// escaped for display, so status.pendingApprovals shows it whole, never cut.
const MaxCommandBytes = contract.MaxApprovalSummaryBytes

// bashArgs' descriptions depend on the shell and the configured timeouts: Schema sets them.
type bashArgs struct {
	Command        string `json:"command"`
	TimeoutSeconds int    `json:"timeout_seconds,omitempty"`
}

func (a *bashArgs) check() error {
	if strings.TrimSpace(a.Command) == "" {
		return errors.New(`bash: "command" is required`)
	}
	if len(a.Command) > MaxCommandBytes {
		return fmt.Errorf("bash: the command is %d bytes; the limit is %d so that a person can read all of it before approving. "+
			"Shorten it: write a script with write_file and run that", len(a.Command), MaxCommandBytes)
	}
	if a.TimeoutSeconds < 0 {
		return errors.New(`bash: "timeout_seconds" must be positive`)
	}
	return nil
}

func (t *Bash) Describe(args json.RawMessage) string { return describeArg(args, "command") }

// Command extracts the command line for approval patterns.
func (t *Bash) Command(args json.RawMessage) string { return describeArg(args, "command") }

func (t *Bash) Execute(ctx context.Context, raw json.RawMessage) (string, error) {
	a, err := parse[bashArgs](t, raw)
	if err != nil {
		return "", err
	}
	timeout, maxTimeout := t.timeouts()
	if a.TimeoutSeconds > 0 {
		timeout = time.Duration(a.TimeoutSeconds) * time.Second
	}
	timeout = min(timeout, maxTimeout)
	shell := t.shell()

	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, shell, "-c", a.Command)
	cmd.Dir = t.WS.Dir()
	cmd.Env = t.env()
	cmd.Stdin = nil
	out := newCapped(or(t.Config.OutputBytes, 32<<10))
	cmd.Stdout, cmd.Stderr = out, out

	start := time.Now()
	err = procgroup.Run(cmd) // the timeout kills the command's children too
	elapsed := time.Since(start)
	if ctx.Err() != nil {
		return "", context.Cause(ctx)
	}
	var b strings.Builder
	b.WriteString(out.String())
	if b.Len() > 0 && !strings.HasSuffix(b.String(), "\n") {
		b.WriteByte('\n')
	}
	var exitErr *exec.ExitError
	switch {
	case cctx.Err() != nil:
		fmt.Fprintf(&b, "[command timed out after %s and was killed; pass a larger timeout_seconds (max %d) or run something shorter]\n",
			timeout, int(maxTimeout.Seconds()))
		b.WriteString("exit code: killed")
	case errors.As(err, &exitErr):
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			fmt.Fprintf(&b, "exit code: killed by signal %s", ws.Signal())
		} else {
			fmt.Fprintf(&b, "exit code: %d", exitErr.ExitCode())
		}
	case errors.Is(err, exec.ErrWaitDelay):
		b.WriteString("exit code: 0 (a background process kept the output open and was killed)")
	case err != nil:
		return "", fmt.Errorf("bash: could not run the command: %w", err)
	default:
		b.WriteString("exit code: 0")
	}
	if elapsed > 10*time.Second {
		fmt.Fprintf(&b, " (after %s)", elapsed.Round(time.Second))
	}
	return b.String(), nil
}

func (t *Bash) env() []string {
	if t.Config.Env != nil {
		return t.Config.Env
	}
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		secret := false
		for _, s := range SecretEnv {
			if name == s {
				secret = true
			}
		}
		if !secret {
			env = append(env, kv)
		}
	}
	// Non-interactive defaults: no pager, no credential prompts.
	return append(env, "GIT_TERMINAL_PROMPT=0", "GIT_PAGER=cat", "PAGER=cat", "TERM=dumb")
}

// capped keeps the first and last half of a stream, counting what it drops,
// so a command printing gigabytes costs constant memory.
type capped struct {
	mu      sync.Mutex
	half    int
	head    []byte
	tail    []byte // ring buffer once full
	tailPos int
	total   int64
}

func newCapped(limit int) *capped { return &capped{half: limit / 2} }

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total += int64(len(p))
	rest := p
	if room := c.half - len(c.head); room > 0 {
		n := min(room, len(rest))
		c.head = append(c.head, rest[:n]...)
		rest = rest[n:]
	}
	for len(rest) > 0 {
		if len(c.tail) < c.half {
			n := min(c.half-len(c.tail), len(rest))
			c.tail = append(c.tail, rest[:n]...)
			rest = rest[n:]
			continue
		}
		n := copy(c.tail[c.tailPos:], rest)
		c.tailPos = (c.tailPos + n) % c.half
		rest = rest[n:]
	}
	return len(p), nil
}

func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	tail := append(append([]byte{}, c.tail[c.tailPos:]...), c.tail[:c.tailPos]...)
	kept := int64(len(c.head) + len(tail))
	if kept >= c.total {
		return string(c.head) + string(tail)
	}
	return fmt.Sprintf("%s\n[… %d bytes of output omitted …]\n%s", c.head, c.total-kept, tail)
}
