// Package cli is the runner's command line: `runner run` turns flags and
// environment into a workspace, a model client, sinks and a Loop, runs it and
// maps the result to the published exit code.
package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner"
	"github.com/agentry-dev/agentry/runner/approval"
	"github.com/agentry-dev/agentry/runner/gatewayclient"
	"github.com/agentry-dev/agentry/runner/gatewaytls"
	"github.com/agentry-dev/agentry/runner/gitrepo"
	"github.com/agentry-dev/agentry/runner/instructions"
	"github.com/agentry-dev/agentry/runner/llm"
	"github.com/agentry-dev/agentry/runner/tools"
	"github.com/agentry-dev/agentry/runner/transcript"
	"github.com/agentry-dev/agentry/runner/workspace"
)

// Version is set at build time (-ldflags "-X .../runner/cli.Version=...").
var Version = "dev"

// IO is the process's standard streams and environment, injectable for tests.
type IO struct {
	In     io.Reader
	Out    io.Writer // final result
	Err    io.Writer // progress and diagnostics
	Getenv func(string) string
	// IsTerminal reports whether In is interactive (for Ask approvals).
	IsTerminal func() bool
}

// Main runs the command line with the process's streams and signals and
// returns the exit code.
func Main(args []string) int {
	if len(args) > 0 && args[0] == "run" {
		// Before anything else runs: the secrets leave the environment the
		// kernel shows in /proc (this re-executes the binary once).
		if err := hideSecrets(); err != nil {
			fmt.Fprintf(os.Stderr, "runner: warning: could not hide the secrets from other processes: %v\n", err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first signal cancels the session, which still writes its patch and
	// transcript; a second one kills the process the default way.
	go func() { <-ctx.Done(); stop() }()
	return Run(ctx, args, IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, Getenv: os.Getenv, IsTerminal: func() bool { return isTerminal(os.Stdin) }})
}

// Run executes args and returns the exit code.
func Run(ctx context.Context, args []string, std IO) int {
	if std.Getenv == nil {
		std.Getenv = func(string) string { return "" }
	}
	if std.IsTerminal == nil {
		std.IsTerminal = func() bool { return false }
	}
	code := contract.ExitOK
	root := &cobra.Command{
		Use:           "runner",
		Short:         "Agentry runner: an LLM coding agent working in a git checkout",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetIn(std.In)
	root.SetOut(std.Out)
	root.SetErr(std.Err)
	root.AddCommand(runCommand(ctx, std, &code), executorCommand(ctx, std, &code), checkoutCommand(std, &code), setupCommand(ctx, std, &code), versionCommand(std))
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(std.Err, "runner: %v\n", err)
		var ue usageError
		if errors.As(err, &ue) || strings.Contains(err.Error(), "unknown flag") || strings.Contains(err.Error(), "unknown command") ||
			strings.Contains(err.Error(), "invalid argument") || strings.Contains(err.Error(), "flag needs an argument") {
			return int(contract.ExitUsage)
		}
		if code == contract.ExitOK {
			code = contract.ExitError
		}
	}
	return int(code)
}

type usageError struct{ error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

func versionCommand(std IO) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the runner version and the transcript schema version",
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintf(std.Out, "runner %s (transcript schema v%d)\n", Version, contract.SchemaVersion)
			return nil
		},
	}
}

// options are the parsed flags of `runner run`.
type options struct {
	repo, ref, task, taskFile, workspace, session string
	model, baseURL, apiKeyFile                    string
	temperature                                   float32
	maxOutputTokens, maxTurns, parallelism        int
	maxTokens                                     int64
	contextWindow                                 int64
	compactAt                                     float64
	timeout, bashTimeout, bashMaxTimeout          time.Duration
	stream                                        bool
	tools                                         []string
	approvalBash, approvalWrites                  string
	allowCommands, denyCommands                   []string
	yes, quiet                                    bool
	transcriptDir                                 string
	s3                                            transcript.S3Config
	terminationPath                               string
	systemPromptFile                              string
	gateway, gatewaySpool, gatewayCAFile          string
	allowPlainHTTPGateway                         bool
	continuation                                  bool
	approvalTimeout                               time.Duration
	approvalOnTimeout                             string
	executor                                      string
	mcpServers                                    []string
	noNamespaces                                  bool
	setupResult                                   string
	instructions                                  []string
	instructionsFiles                             []string
}

func runCommand(ctx context.Context, std IO, code *contract.ExitCode) *cobra.Command {
	o := &options{}
	all := tools.All(tools.Env{}).Names()
	cmd := &cobra.Command{
		Use:   contract.RunnerCmdRun + " --task TEXT (--repo DIR|URL | --workspace DIR) [flags]",
		Short: "Run one agent session over a repository",
		Long: `Run one agent session: clone (or reuse) a repository, let the model work on the task with
the tools, then write the transcript, the patch and a summary.

The API key is read from OPENAI_API_KEY (or --api-key-file), never from a flag, so it
does not appear in process listings. S3 credentials come from AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY.

Exit codes: 0 completed, 1 runner error, 2 usage, 3 max turns, 4 token budget,
5 cancelled, 6 timeout, 7 model provider error, 8 setup failed.`,
		Example: `  export OPENAI_API_KEY=sk-...
  runner run --repo https://github.com/org/repo --ref main \
    --task "Make TestFoo deterministic; run go test ./... before you finish." --yes

  # in a pod: the checkout already exists, the gateway is the model endpoint
  runner run --workspace /workspace --task-file /etc/agentry/task \
    --base-url http://agentry-gateway.agentry-system:8080/v1 --api-key-file /var/run/secrets/agentry/token`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed(contract.FlagRunTemperature) {
				t := o.temperature
				return execute(ctx, std, o, &t, code)
			}
			return execute(ctx, std, o, nil, code)
		},
	}
	env := func(name, def string) string {
		if v := std.Getenv(name); v != "" {
			return v
		}
		return def
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.StringVar(&o.repo, "repo", "", "repository to clone: a URL or a local directory (committed state at --ref)")
	f.StringVar(&o.ref, "ref", "", "branch, tag or commit to check out (default: the remote's default branch)")
	f.StringVar(&o.task, contract.FlagRunTask, "", "the task for the model")
	f.StringVar(&o.taskFile, "task-file", "", "read the task from a file (- for stdin)")
	f.StringVar(&o.workspace, contract.FlagWorkspace, "", "working directory; an existing git checkout there is used as is (the pod case), otherwise --repo is cloned into it (default: a new temporary directory)")
	f.StringVar(&o.session, contract.FlagRunSession, env("AGENTRY_SESSION", ""), "session name recorded in the transcript (default: generated; env AGENTRY_SESSION)")
	f.StringVar(&o.model, contract.FlagRunModel, env("AGENTRY_MODEL", "gpt-4.1"), "model name (env AGENTRY_MODEL)")
	f.StringVar(&o.baseURL, contract.FlagRunBaseURL, env("OPENAI_BASE_URL", "https://api.openai.com/v1"), "OpenAI-compatible API base URL (env OPENAI_BASE_URL)")
	f.StringVar(&o.apiKeyFile, contract.FlagRunAPIKeyFile, "", "read the API key from this file before every request (a rotated token); overrides OPENAI_API_KEY")
	f.Float32Var(&o.temperature, contract.FlagRunTemperature, 0, "sampling temperature (default: the provider's)")
	f.IntVar(&o.maxOutputTokens, contract.FlagRunMaxOutputTokens, 0, "max_completion_tokens per model call (0: provider default)")
	f.IntVar(&o.maxTurns, contract.FlagRunMaxTurns, 60, "stop after this many model turns (0: unlimited)")
	f.Int64Var(&o.maxTokens, contract.FlagRunMaxTokens, 2_000_000, "stop once prompt+completion tokens reach this total (0: unlimited)")
	f.Int64Var(&o.contextWindow, contract.FlagRunContextWindow, 0, "the model's context window in tokens: older turns are replaced by a model-written summary when a prompt approaches it (0: unknown, no compaction)")
	f.Float64Var(&o.compactAt, "compact-at", 0.8, "with --context-window: compact when the next prompt would exceed this share of the window")
	f.DurationVar(&o.timeout, contract.FlagTimeout, 30*time.Minute, "wall-clock limit for the session (0: none)")
	f.BoolVar(&o.stream, "stream", true, "stream responses (SSE with usage)")
	f.StringSliceVar(&o.tools, contract.FlagRunTools, all, "tools offered to the model, comma-separated")
	f.StringVar(&o.approvalBash, contract.FlagRunApprovalBash, "Ask", "bash commands: Allow, Ask or Deny")
	f.StringVar(&o.approvalWrites, contract.FlagRunApprovalWrites, "Allow", "file writes and edits: Allow, Ask or Deny")
	f.StringArrayVar(&o.allowCommands, contract.FlagRunAllowCommand, nil, "always allow bash commands matching this pattern (* is a wildcard; simple commands only); repeatable")
	f.StringArrayVar(&o.denyCommands, contract.FlagRunDenyCommand, nil, "always deny bash commands matching this pattern; wins over --allow-command; repeatable")
	f.BoolVarP(&o.yes, "yes", "y", false, "answer yes to every Ask approval")
	f.DurationVar(&o.bashTimeout, "bash-timeout", 2*time.Minute, "default timeout of one bash command")
	f.DurationVar(&o.bashMaxTimeout, "bash-max-timeout", 10*time.Minute, "longest timeout the model may request for one bash command")
	f.IntVar(&o.parallelism, "parallelism", 8, "concurrent read-only tool calls")
	f.StringVar(&o.transcriptDir, "transcript-dir", "", "directory for transcript.jsonl, result.patch and summary.json (default: <user cache dir>/agentry/sessions/<session>)")
	f.StringVar(&o.s3.Endpoint, "s3-endpoint", env("AGENTRY_S3_ENDPOINT", ""), "also store the session in S3 at this endpoint (host:port or URL)")
	f.StringVar(&o.s3.Bucket, "s3-bucket", env("AGENTRY_S3_BUCKET", ""), "S3 bucket")
	f.StringVar(&o.s3.Prefix, "s3-prefix", "", "S3 key prefix (default: sessions/<session>)")
	f.StringVar(&o.s3.Region, "s3-region", env("AWS_REGION", ""), "S3 region")
	f.BoolVar(&o.s3.Insecure, "s3-insecure", false, "use plain HTTP for a host:port S3 endpoint")
	f.StringVar(&o.s3.CAFile, "s3-ca-file", "", "trust only the CAs in this PEM bundle for an https S3 endpoint (an object store with a private CA)")
	f.StringVar(&o.gateway, contract.FlagRunGateway, env("AGENTRY_GATEWAY_URL", ""), "send the transcript to the Agentry session gateway at this URL and ask it for approvals; the --api-key-file token is the bearer (env AGENTRY_GATEWAY_URL)")
	f.StringVar(&o.gatewayCAFile, contract.FlagGatewayCAFile, "", "with --gateway: trust only the CAs in this PEM bundle for the gateway (and for --base-url on the gateway's host); re-read for every new connection, so a rotated bundle is picked up")
	f.BoolVar(&o.allowPlainHTTPGateway, contract.FlagAllowPlainHTTPGateway, false, "with --gateway: accept http:// gateway and --base-url URLs, sending the token unencrypted (refused by default)")
	f.BoolVar(&o.continuation, contract.FlagRunContinuation, false, "with --gateway: start with the history of the session this one continues (spec.continueFrom), fetched from the gateway")
	f.StringVar(&o.gatewaySpool, contract.FlagRunGatewaySpoolDir, "", "where events not yet acknowledged by the gateway are kept (default: <transcript-dir>/gateway-spool)")
	f.DurationVar(&o.approvalTimeout, contract.FlagRunApprovalTimeout, 0, "with --gateway: decide by --approval-on-timeout when the gateway cannot be reached for this long while waiting for an approval (0: wait for the gateway)")
	f.StringVar(&o.approvalOnTimeout, contract.FlagRunApprovalOnTimeout, "Deny", "with --gateway: the decision (Allow or Deny) when --approval-timeout elapses")
	f.StringVar(&o.terminationPath, "termination-message-path", "", "write the JSON summary (≤4 KiB) here (default: /dev/termination-log when it exists)")
	f.StringVar(&o.systemPromptFile, "system-prompt-file", "", "replace the built-in system prompt with this file's content")
	f.StringArrayVar(&o.instructionsFiles, "instructions-file", nil, "add this file's content to the system prompt as the session's instructions (after the repository's AGENTS.md); repeatable")
	f.StringArrayVar(&o.instructions, contract.FlagRunInstruction, nil, `add instructions as JSON {"source": "...", "text": "..."}; a source starting with "AgentPolicy " goes before the repository's AGENTS.md (the pod form); repeatable`)
	f.StringArrayVar(&o.mcpServers, contract.FlagRunMCPServer, nil, "with --gateway: offer the tools of this MCPServer, reached through the gateway, as mcp__NAME__TOOL; repeatable")
	f.StringVar(&o.executor, contract.FlagRunExecutor, "", "Unix socket of a running `runner executor` to run tools through (a pod's agent container); by default the runner starts one as a child process without its secrets")
	f.BoolVar(&o.noNamespaces, "no-executor-namespaces", false, "start the local tool executor without new user/PID/mount namespaces (as on kernels that refuse them)")
	_ = f.MarkHidden("no-executor-namespaces")
	f.StringVar(&o.setupResult, contract.FlagRunSetupResult, "", "the results `runner setup` wrote: recorded as setup events; a failed command ends the session SetupFailed without calling the model")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "no progress output")
	return cmd
}

// execute runs one session, step by step: check the options, open the workspace, build the
// tools, the sinks and the loop, run it and report. Each step leaves what the next needs in
// the session; what must be undone at the end (the executor, the workspace) is undone in
// reverse order whatever happens.
func execute(ctx context.Context, std IO, o *options, temperature *float32, code *contract.ExitCode) error {
	*code = contract.ExitUsage
	s := &session{o: o, std: std, temperature: temperature}
	if err := s.parseOptions(); err != nil {
		return err
	}
	*code = contract.ExitError
	defer s.close()
	s.progress = newProgress(std.Err, o.quiet)
	if err := s.openWorkspace(ctx); err != nil {
		if ctx.Err() != nil {
			*code = contract.ExitCancelled
		}
		return err
	}
	steps := []func(context.Context) error{s.buildTools, s.buildSinks, s.buildLoop}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return err // a usageError still exits ExitUsage (see Run)
		}
	}
	res, err := s.run(ctx)
	if err != nil {
		return err
	}
	*code = s.report(res)
	return nil
}

// session is one `runner run` being assembled.
type session struct {
	o           *options
	std         IO
	temperature *float32
	undo        []func()

	// parseOptions
	task, apiKey, systemPrompt      string
	bashMode, writesMode, onTimeout approval.Mode
	gw                              *gatewayclient.Client // nil without --gateway
	modelHTTP                       http.RoundTripper
	progress                        *progress

	// openWorkspace
	ws         *workspace.Root
	differ     runner.Differ
	baseCommit string
	ignored    []string
	guide      *instructions.Guide

	// buildTools, buildSinks, buildLoop
	tools   tools.Set
	dirSink *transcript.Dir
	rec     *transcript.Recorder
	loop    *runner.Loop
}

// close undoes what the steps set up, last first.
func (s *session) close() {
	for i := len(s.undo) - 1; i >= 0; i-- {
		s.undo[i]()
	}
}

// parseOptions checks the flags and reads the task; every failure is a usage error.
func (s *session) parseOptions() error {
	o := s.o
	task, err := readTask(o, s.std.In)
	if err != nil {
		return err
	}
	s.task = task
	if o.repo == "" && o.workspace == "" {
		return usagef("give --repo (to clone) or --workspace (an existing checkout)")
	}
	if o.contextWindow != 0 && o.contextWindow < 1024 {
		return usagef("--context-window: want 0 (no compaction) or at least 1024 tokens, got %d", o.contextWindow)
	}
	if o.compactAt < 0.1 || o.compactAt > 0.95 {
		return usagef("--compact-at: want a share of the window between 0.1 and 0.95, got %g", o.compactAt)
	}
	if err := s.parseApprovals(); err != nil {
		return err
	}
	if o.gateway != "" && o.apiKeyFile == "" {
		return usagef("--gateway needs --api-key-file: the token file the gateway authenticates")
	}
	if s.gw, s.modelHTTP, err = gatewayClients(o); err != nil {
		return usageError{err}
	}
	s.apiKey = s.std.Getenv("OPENAI_API_KEY")
	if s.apiKey == "" && o.apiKeyFile == "" {
		return usagef("set OPENAI_API_KEY (or --api-key-file); use any non-empty value for endpoints without authentication")
	}
	if o.session == "" {
		o.session = newSessionID()
	}
	if o.systemPromptFile != "" {
		b, err := os.ReadFile(o.systemPromptFile)
		if err != nil {
			return usagef("--system-prompt-file: %v", err)
		}
		s.systemPrompt = string(b)
	}
	return nil
}

func (s *session) parseApprovals() error {
	var err error
	if s.bashMode, err = approval.ParseMode(s.o.approvalBash); err != nil {
		return usagef("--approval-bash: %v", err)
	}
	if s.writesMode, err = approval.ParseMode(s.o.approvalWrites); err != nil {
		return usagef("--approval-writes: %v", err)
	}
	if s.onTimeout, err = approval.ParseMode(s.o.approvalOnTimeout); err != nil || s.onTimeout == approval.Ask {
		return usagef("--approval-on-timeout: want Allow or Deny, got %q", s.o.approvalOnTimeout)
	}
	return nil
}

// openWorkspace reuses a checkout (in a pod the init container made it) or clones, opens it
// confined, and reads the instructions and .agentryignore.
func (s *session) openWorkspace(ctx context.Context) error {
	wsDir, baseCommit, temporary, err := prepareWorkspace(ctx, s.o, s.progress)
	if err != nil {
		return err
	}
	s.baseCommit = baseCommit
	if temporary {
		s.progress.note("workspace %s is temporary: it is removed at the end (the patch and transcript are kept)", wsDir)
		s.undo = append(s.undo, func() { _ = os.RemoveAll(wsDir) })
	}
	if s.ws, err = workspace.Open(wsDir); err != nil {
		return err
	}
	s.undo = append(s.undo, func() { _ = s.ws.Close() })
	if r, err := gitrepo.Open(s.ws.Dir()); err == nil {
		s.differ, s.baseCommit = r, r.Base()
	} else {
		s.progress.warn("%v: git_status, git_diff and the result patch are unavailable", err)
	}
	given, err := readInstructions(s.o)
	if err != nil {
		return err
	}
	if s.ignored, err = s.ws.HideAgentryIgnored(); err != nil {
		s.progress.warn("%v: nothing is hidden from the file tools", err)
	}
	s.guide = &instructions.Guide{WS: s.ws, Context: instructions.Load(s.ws, given)}
	return nil
}

// buildTools starts the executor for the workspace tools and lists the MCP tools, which
// run here, on the trusted side: a call is a gateway request with the token.
func (s *session) buildTools(ctx context.Context) error {
	set, stopExecutor, err := toolSet(ctx, s.std, s.o, s.ws.Dir(), s.progress)
	if err != nil {
		return err
	}
	s.undo = append(s.undo, stopExecutor)
	mcpSet, err := mcpTools(ctx, s.o, s.gw, s.progress)
	if err != nil {
		return err
	}
	s.tools = append(set, mcpSet...)
	return nil
}

// buildSinks records the session: always in a local directory, in S3 when asked, and to
// the gateway. The remote sink goes last: the termination summary points at the last
// sink's copies.
func (s *session) buildSinks(ctx context.Context) error {
	o, std := s.o, s.std
	dir := o.transcriptDir
	if dir == "" {
		dir = defaultTranscriptDir(std.Getenv, o.session)
	}
	var err error
	if s.dirSink, err = transcript.NewDir(dir); err != nil {
		return err
	}
	secrets := []string{s.apiKey, std.Getenv("AWS_SECRET_ACCESS_KEY"), std.Getenv("AWS_SESSION_TOKEN"), std.Getenv("AGENTRY_GATEWAY_TOKEN")}
	if o.apiKeyFile != "" {
		if b, err := os.ReadFile(o.apiKeyFile); err == nil {
			secrets = append(secrets, strings.TrimSpace(string(b)))
		}
	}
	s.progress.describe = describer(s.tools)
	sinks := []transcript.Sink{s.progress, s.dirSink}
	if o.s3.Bucket != "" || o.s3.Endpoint != "" {
		o.s3.CredentialsFromEnv(std.Getenv)
		if o.s3.Prefix == "" {
			o.s3.Prefix = "sessions/" + o.session
		}
		s3, err := transcript.NewS3(ctx, o.s3, s.dirSink.Path())
		if err != nil {
			return err
		}
		sinks = append(sinks, s3)
	}
	if s.gw != nil {
		spool := o.gatewaySpool
		if spool == "" {
			spool = filepath.Join(s.dirSink.Path(), "gateway-spool")
		}
		gw, err := transcript.NewGateway(transcript.GatewayConfig{GW: s.gw, SpoolDir: spool})
		if err != nil {
			return err
		}
		sinks = append(sinks, gw)
	}
	s.rec = transcript.NewRecorder(transcript.NewRedactor(secrets...), nil, sinks...)
	return nil
}

// asker is who decides the calls the policy says to ask about.
func (s *session) asker() approval.Asker {
	switch {
	case s.o.yes:
		return approval.Fixed{Decision: contract.DecisionAllow, By: "flag", Reason: "--yes"}
	case s.gw != nil:
		return &approval.Gateway{GW: s.gw, Timeout: s.o.approvalTimeout, OnTimeout: contract.Decision(s.onTimeout)}
	case s.std.IsTerminal():
		return &approval.Terminal{In: s.std.In, Out: s.std.Err}
	}
	if s.bashMode == approval.Ask || s.writesMode == approval.Ask {
		s.progress.warn("stdin is not a terminal: calls needing approval (Ask) will be denied; pass --yes to allow them")
	}
	return approval.Fixed{Decision: contract.DecisionDeny, By: "runner", Reason: "approval needed but stdin is not a terminal; pass --yes, or --approval-bash Allow for commands and --approval-writes Allow for file changes"}
}

// buildLoop puts the model, the tools, the transcript and the approvals together, with the
// history of the session this one continues.
func (s *session) buildLoop(ctx context.Context) error {
	o := s.o
	policy := approval.Policy{Bash: s.bashMode, Writes: s.writesMode, AllowCommands: o.allowCommands, DenyCommands: o.denyCommands}
	asker := s.asker()
	model := llm.NewOpenAI(llm.Config{BaseURL: o.baseURL, APIKey: s.apiKey, APIKeyFile: o.apiKeyFile, Stream: o.stream, HTTPClient: &http.Client{Transport: s.modelHTTP}})
	setupResults, setupErr := loadSetupResult(o.setupResult)
	s.loop = &runner.Loop{
		Model: model, Tools: s.tools, Transcript: s.rec, Policy: policy, Approver: asker, Diff: s.differ,
		Config: runner.Config{
			Session: o.session, Model: o.model, BaseURL: o.baseURL, Temperature: s.temperature, MaxOutputTokens: o.maxOutputTokens,
			MaxTurns: o.maxTurns, MaxTokens: o.maxTokens, Timeout: o.timeout, SystemPrompt: s.systemPrompt,
			Workspace: s.ws.Dir(), Repository: o.repo, Ref: o.ref, BaseCommit: s.baseCommit,
			Parallelism: o.parallelism, RunnerVersion: Version, Ignored: s.ignored,
			ContextWindow: o.contextWindow, CompactAt: o.compactAt,
			Setup: setupResults, SetupError: setupErr,
		},
		Guide: s.guide,
	}
	if o.continuation {
		var err error
		if s.loop.Config.History, s.loop.Config.ContinuedFrom, err = continuationHistory(ctx, s.gw); err != nil {
			return err
		}
	}
	return nil
}

func (s *session) run(ctx context.Context) (runner.Result, error) {
	s.progress.header(s.o, s.ws.Dir(), s.baseCommit, s.task, s.tools)
	if srcs := s.guide.Context.Sources(); srcs != "" {
		s.progress.note("instructions from %s", srcs)
	}
	return s.loop.Run(ctx, s.task)
}

// report prints the result, writes the termination message and returns the exit code: a
// transcript that could not be stored fails a session that otherwise succeeded.
func (s *session) report(res runner.Result) contract.ExitCode {
	code := res.ExitCode()
	s.progress.result(s.std.Out, res, s.dirSink)
	if res.SinkErr != nil {
		s.progress.warn("storing the transcript: %v", res.SinkErr)
	}
	if err := writeTerminationMessage(s.o.terminationPath, res.TerminationSummary(s.o.model, s.baseCommit)); err != nil {
		s.progress.warn("%v", err)
	}
	if res.SinkErr != nil && code == contract.ExitOK {
		code = contract.ExitError
	}
	return code
}

// readInstructions parses --instruction and reads --instructions-file, in that order.
func readInstructions(o *options) ([]contract.Instruction, error) {
	var out []contract.Instruction
	for _, raw := range o.instructions {
		var in contract.Instruction
		dec := json.NewDecoder(strings.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil || in.Source == "" {
			return nil, usagef(`--instruction: want JSON {"source": "...", "text": "..."} with a source, got %.80q`, raw)
		}
		out = append(out, in)
	}
	for _, name := range o.instructionsFiles {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, usagef("--instructions-file: %v", err)
		}
		if t := strings.TrimSpace(string(b)); t != "" {
			out = append(out, contract.Instruction{Source: name, Text: t})
		}
	}
	return out, nil
}

func readTask(o *options, stdin io.Reader) (string, error) {
	if o.task != "" && o.taskFile != "" {
		return "", usagef("give --task or --task-file, not both")
	}
	task := o.task
	if o.taskFile != "" {
		var b []byte
		var err error
		if o.taskFile == "-" {
			b, err = io.ReadAll(stdin)
		} else {
			b, err = os.ReadFile(o.taskFile)
		}
		if err != nil {
			return "", usagef("--task-file: %v", err)
		}
		task = string(b)
	}
	if strings.TrimSpace(task) == "" {
		return "", usagef("a task is required: --task TEXT or --task-file FILE")
	}
	return task, nil
}

// prepareWorkspace returns the directory the session works in; created is
// true for a temporary directory made here, which the caller removes.
func prepareWorkspace(ctx context.Context, o *options, p *progress) (dir, commit string, created bool, err error) {
	dir = o.workspace
	if dir != "" {
		if fi, err := os.Stat(filepath.Join(dir, ".git")); err == nil && fi.IsDir() {
			if o.repo != "" {
				p.note("using the existing checkout in %s (not cloning %s)", dir, o.repo)
			}
			return dir, "", false, nil
		}
		if o.repo == "" {
			if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
				return "", "", false, usagef("--workspace %s: not a directory", dir)
			}
			return dir, "", false, nil
		}
		if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
			return "", "", false, usagef("--workspace %s is not empty and not a git checkout; cannot clone %s into it", dir, o.repo)
		}
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "agentry-workspace-"); err != nil {
			return "", "", false, fmt.Errorf("creating a workspace directory: %w", err)
		}
		created = true
	}
	p.note("cloning %s into %s", o.repo, dir)
	commit, err = gitrepo.Clone(ctx, o.repo, o.ref, dir, nil)
	if err != nil {
		if created {
			_ = os.RemoveAll(dir)
		}
		return "", "", false, err
	}
	return dir, commit, created, nil
}

// defaultTranscriptDir prefers the user's state or cache directory and falls
// back to the temporary directory where those are unset or read-only (a
// container with a read-only root file system).
func defaultTranscriptDir(getenv func(string) string, session string) string {
	var bases []string
	if s := getenv("XDG_STATE_HOME"); s != "" {
		bases = append(bases, s)
	}
	if c, err := os.UserCacheDir(); err == nil {
		bases = append(bases, c)
	}
	for _, b := range bases {
		dir := filepath.Join(b, "agentry", "sessions")
		if os.MkdirAll(dir, 0o755) == nil {
			return filepath.Join(dir, session)
		}
	}
	return filepath.Join(os.TempDir(), "agentry", "sessions", session)
}

func newSessionID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return time.Now().Format("20060102-150405") + "-" + hex.EncodeToString(b)
}

// writeTerminationMessage writes the summary where the kubelet reads it. By
// default it only does so inside a container (when /dev/termination-log exists).
func writeTerminationMessage(path string, s contract.Summary) error {
	if path == "" {
		const def = "/dev/termination-log"
		if _, err := os.Stat(def); err != nil {
			return nil //nolint:nilerr // not in a container: no termination message to write
		}
		path = def
	}
	b, err := s.Encode()
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("writing termination message: %w", err)
	}
	return nil
}

// isTerminal is true for an interactive terminal (not /dev/null, which is
// also a character device).
func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// gatewayClients returns the gateway client (nil without --gateway) and the transport for
// the model endpoint. With --gateway, both URLs must be https:// unless
// --allow-plain-http-gateway; --gateway-ca-file pins the gateway (and a model endpoint on
// the gateway's host) to that bundle.
func gatewayClients(o *options) (*gatewayclient.Client, http.RoundTripper, error) {
	model := http.DefaultTransport
	if o.gateway == "" {
		if o.gatewayCAFile != "" || o.allowPlainHTTPGateway {
			return nil, nil, errors.New("--gateway-ca-file and --allow-plain-http-gateway apply only with --gateway")
		}
		return nil, model, nil
	}
	if err := gatewaytls.CheckURL("--gateway", o.gateway, o.allowPlainHTTPGateway); err != nil {
		return nil, nil, err
	}
	if err := gatewaytls.CheckURL("--base-url", o.baseURL, o.allowPlainHTTPGateway); err != nil {
		return nil, nil, err
	}
	gw, err := gatewayclient.New(o.gateway, o.apiKeyFile, o.gatewayCAFile)
	if err != nil {
		return nil, nil, fmt.Errorf("--gateway-ca-file: %w", err)
	}
	if o.gatewayCAFile == "" {
		return gw, model, nil
	}
	g, _ := url.Parse(o.gateway)
	if m, err := url.Parse(o.baseURL); err == nil && m.Host == g.Host {
		model = gw.Transport()
	}
	return gw, model, nil
}
