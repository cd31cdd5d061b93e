package contract

// The runner binary's subcommands and the flags the controller passes them in the runner
// pod: the runner defines its flags with these names and the pod builder spells its command
// lines with them (controllers/testdata/runner-pod.golden.yaml shows a whole pod).
const (
	RunnerCmdRun      = "run"
	RunnerCmdCheckout = "checkout"
	RunnerCmdSetup    = "setup"
	RunnerCmdExecutor = "executor"
)

// Flags of more than one subcommand.
const (
	// FlagWorkspace (run, setup, executor) is the workspace directory.
	FlagWorkspace = "workspace"
	// FlagGatewayCAFile (run, checkout) trusts only this CA bundle for the gateway.
	FlagGatewayCAFile = "gateway-ca-file"
	// FlagAllowPlainHTTPGateway (run, checkout) accepts an http:// gateway.
	FlagAllowPlainHTTPGateway = "allow-plain-http-gateway"
	// FlagRef (checkout) is the commit, branch or tag to check out.
	FlagRef = "ref"
	// FlagTimeout (run, setup) bounds the whole run.
	FlagTimeout = "timeout"
)

// Flags of `runner checkout`.
const (
	FlagCheckoutRepo             = "repo"
	FlagCheckoutDir              = "dir"
	FlagCheckoutCredentialsDir   = "credentials-dir"
	FlagCheckoutFromGateway      = "continuation-from-gateway"
	FlagCheckoutGatewayTokenFile = "token-file"
)

// Flags of `runner setup`.
const (
	FlagSetupResult    = "result"
	FlagSetupSecretEnv = "secret-env"
	FlagSetupCheckDir  = "check-dir"
	FlagSetupCommand   = "command"
)

// Flags of `runner executor`.
const (
	FlagExecutorSocket = "socket"
)

// Flags of `runner run`.
const (
	FlagRunExecutor          = "executor"
	FlagRunTask              = "task"
	FlagRunSession           = "session"
	FlagRunTools             = "tools"
	FlagRunApprovalBash      = "approval-bash"
	FlagRunApprovalWrites    = "approval-writes"
	FlagRunApprovalTimeout   = "approval-timeout"
	FlagRunApprovalOnTimeout = "approval-on-timeout"
	FlagRunAllowCommand      = "allow-command"
	FlagRunDenyCommand       = "deny-command"
	FlagRunMaxTurns          = "max-turns"
	FlagRunMaxTokens         = "max-tokens"
	FlagRunModel             = "model"
	FlagRunTemperature       = "temperature"
	FlagRunMaxOutputTokens   = "max-output-tokens"
	FlagRunContextWindow     = "context-window"
	FlagRunBaseURL           = "base-url"
	FlagRunAPIKeyFile        = "api-key-file"
	FlagRunGateway           = "gateway"
	FlagRunGatewaySpoolDir   = "gateway-spool-dir"
	FlagRunInstruction       = "instruction"
	FlagRunContinuation      = "continuation"
	FlagRunMCPServer         = "mcp-server"
	FlagRunSetupResult       = "setup-result"
)
