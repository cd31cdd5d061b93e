package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner/executor"
	"github.com/agentry-dev/agentry/runner/gitrepo"
	"github.com/agentry-dev/agentry/runner/tools"
	"github.com/agentry-dev/agentry/runner/workspace"
)

// executorCommand is `runner executor`: the untrusted side of the pod, serving
// tool calls for the runner over a Unix socket. It holds no secret.
func executorCommand(ctx context.Context, std IO, code *contract.ExitCode) *cobra.Command {
	var socket, dir string
	var mountProc bool
	var bash tools.BashConfig
	cmd := &cobra.Command{
		Use:   contract.RunnerCmdExecutor + " --socket PATH --workspace DIR",
		Short: "Run the runner's tool calls on the agent's side of the trust boundary",
		Long: `Serve tool calls (file tools, grep, glob, bash, git status and diff) over a Unix socket
for a runner in another container or process. It holds no credential; every process a
call starts ends with the call. The runner starts it itself in local mode; in a pod it
is the agent container's only process.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			*code = contract.ExitError
			if mountProc {
				if err := executor.MountProc(); err != nil {
					return err
				}
			}
			ws, err := workspace.Open(dir)
			if err != nil {
				return err
			}
			defer ws.Close()
			// Read once, from the checkout as it is now: the agent rewriting the file later
			// does not unhide anything.
			if _, err := ws.HideAgentryIgnored(); err != nil {
				fmt.Fprintf(std.Err, "executor: %v: nothing is hidden from the file tools\n", err)
			}
			repo, _ := gitrepo.Open(ws.Dir()) // git tools report the absence themselves
			bash.Shell = tools.DetectShell()
			srv := &executor.Server{
				Tools: tools.All(tools.Env{Workspace: ws, Repo: repo, Bash: bash}),
				Shell: bash.Shell,
			}
			l, err := executor.Listen(socket)
			if err != nil {
				return err
			}
			if err := srv.Serve(ctx, l); err != nil {
				return err
			}
			*code = contract.ExitOK
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&socket, contract.FlagExecutorSocket, "", "Unix socket to listen on")
	f.StringVar(&dir, contract.FlagWorkspace, "", "the workspace the tools act on")
	f.DurationVar(&bash.DefaultTimeout, "bash-timeout", 2*time.Minute, "default timeout of one bash command")
	f.DurationVar(&bash.MaxTimeout, "bash-max-timeout", 10*time.Minute, "longest timeout the model may request for one bash command")
	f.BoolVar(&mountProc, "mount-proc", false, "mount a new /proc first (the runner passes it when it starts the executor in new namespaces)")
	_ = f.MarkHidden("mount-proc")
	_ = cmd.MarkFlagRequired("socket")
	_ = cmd.MarkFlagRequired("workspace")
	return cmd
}

// toolSet connects the loop's tools to an executor: the one at --executor (a
// pod's agent container), or a child process started here without the
// runner's secrets (local mode). stop ends what was started.
func toolSet(ctx context.Context, std IO, o *options, wsDir string, p *progress) (set tools.Set, stop func(), err error) {
	stop = func() {}
	// The web tools run in the gateway, not in the executor.
	names, webNames := tools.SplitWeb(o.tools)
	webSet, err := webTools(o, webNames)
	if err != nil {
		return nil, stop, err
	}
	var client *executor.Client
	var info executor.Info
	if o.executor != "" {
		client = executor.NewClient(o.executor)
		wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if info, err = client.Wait(wctx); err != nil {
			return nil, stop, fmt.Errorf("--executor %s: %w", o.executor, err)
		}
	} else {
		exe, err := os.Executable()
		if err != nil {
			return nil, stop, fmt.Errorf("finding the runner binary to start the tool executor: %w", err)
		}
		env := executorEnv(os.Environ())
		var stderr io.Writer = std.Err
		if _, ok := std.Err.(*os.File); !ok {
			stderr = lockedWriter{p} // the child's output is copied by another goroutine
		}
		var proc *executor.Process
		if !o.noNamespaces {
			// A refusal (proc nil) falls back to a plain child below.
			proc, client, info, _ = startExecutor(ctx, exe, wsDir, env, stderr, true)
		}
		if proc == nil {
			// Asked to, or the kernel refused new namespaces (or /proc in them): a
			// plain child still holds no secret, but can list other processes.
			if proc, client, info, err = startExecutor(ctx, exe, wsDir, env, stderr, false); err != nil {
				return nil, stop, err
			}
		}
		stop = proc.Stop
		if !proc.Isolated && !o.noNamespaces {
			p.warn("the kernel refused new user/PID namespaces: tools run as a separate process without the runner's secrets, but can list other processes")
		}
	}
	set, err = tools.All(tools.Env{Bash: tools.BashConfig{
		DefaultTimeout: o.bashTimeout, MaxTimeout: o.bashMaxTimeout, Shell: info.Shell,
	}}).Select(names)
	if err != nil {
		stop()
		return nil, func() {}, usagef("--tools: %v", err)
	}
	return append(executor.Remote(set, client), webSet...), stop, nil
}

// webTools returns the named gateway-backed tools, which call the gateway with
// the runner's token; without --gateway they are a usage error.
func webTools(o *options, names []string) (tools.Set, error) {
	if len(names) == 0 {
		return nil, nil
	}
	if o.gateway == "" {
		return nil, usagef("--tools: %s run in the session gateway and need --gateway", strings.Join(names, " and "))
	}
	gw, _, err := gatewayClients(o)
	if err != nil {
		return nil, usageError{err}
	}
	return tools.Web(gw).Select(names)
}

// startExecutor starts a local executor and waits until it answers.
func startExecutor(ctx context.Context, exe, wsDir string, env []string, stderr io.Writer, isolate bool) (*executor.Process, *executor.Client, executor.Info, error) {
	proc, err := executor.Start(exe, wsDir, env, stderr, isolate)
	if err != nil {
		return nil, nil, executor.Info{}, err
	}
	client := executor.NewClient(proc.Socket)
	info, err := proc.WaitReady(ctx, client)
	if err != nil {
		proc.Stop()
		return nil, nil, executor.Info{}, err
	}
	return proc, client, info, nil
}

// executorEnv is the runner's environment without anything secret.
func executorEnv(env []string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		return name == secretsFDEnv || slices.Contains(tools.SecretEnv, name)
	})
}

// lockedWriter writes through the progress printer's lock.
type lockedWriter struct{ p *progress }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.w.Write(b)
}

// ServeExecutorIfChild lets a test binary stand in for the runner binary. The
// runner starts its executor by running its own executable with `executor`
// as the first argument; a test's TestMain calls this first so that the test
// binary, run that way, becomes the executor.
func ServeExecutorIfChild() {
	if len(os.Args) > 1 && os.Args[1] == "executor" {
		os.Exit(Main(os.Args[1:]))
	}
}
