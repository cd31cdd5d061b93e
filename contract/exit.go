// Package contract holds what the runner, the controller and the gateway agree on
// without importing each other: the runner's exit codes, the transcript event
// schema and the termination-message summary. Changing a value here is a
// breaking change for every component; add, never renumber.
package contract

import "fmt"

// ExitCode is the runner process's exit status. The controller reads it from the
// terminated container state to decide the session's terminal reason, so the
// numbers are part of the published contract.
type ExitCode int

const (
	// ExitOK: the model finished on its own (answered without tool calls).
	ExitOK ExitCode = 0
	// ExitError: the runner itself failed (workspace, clone, sink, bug).
	ExitError ExitCode = 1
	// ExitUsage: invalid flags or configuration; retrying cannot help.
	ExitUsage ExitCode = 2
	// ExitLimitReached: spec.limits.maxTurns was reached before the model finished.
	ExitLimitReached ExitCode = 3
	// ExitBudgetExceeded: spec.limits.maxTokens was reached, or the gateway refused
	// a model call because a session or namespace token budget is spent.
	ExitBudgetExceeded ExitCode = 4
	// ExitCancelled: the runner received SIGTERM/SIGINT (spec.cancel, pod deletion).
	ExitCancelled ExitCode = 5
	// ExitTimeout: spec.limits.timeout elapsed inside the runner.
	ExitTimeout ExitCode = 6
	// ExitModelError: the model provider rejected a request with a non-retryable
	// error (401, 403, 400, 404...) or retries were exhausted.
	ExitModelError ExitCode = 7
	// ExitSetupFailed: a spec.setup command exited non-zero or setup timed out; the
	// agent did not run.
	ExitSetupFailed ExitCode = 8
)

// ExitContinuationFailed is the checkout's (not the loop's) exit status when a follow-up
// session's earlier patch could not be fetched, verified or applied: the controller reports
// ContinuationUnavailable rather than a clone failure. It is no Outcome of the loop.
const ExitContinuationFailed ExitCode = 9

// Outcome is why a session ended. Each outcome has exactly one exit code; the
// outcome string is what appears in the transcript's finish event and in the
// termination message, so a reader does not need the table below.
type Outcome string

const (
	OutcomeCompleted      Outcome = "Completed"
	OutcomeError          Outcome = "Error"
	OutcomeMaxTurns       Outcome = "MaxTurns"
	OutcomeBudgetExceeded Outcome = "BudgetExceeded"
	OutcomeCancelled      Outcome = "Cancelled"
	OutcomeTimeout        Outcome = "Timeout"
	OutcomeModelError     Outcome = "ModelError"
	OutcomeSetupFailed    Outcome = "SetupFailed"
)

var outcomeExit = map[Outcome]ExitCode{
	OutcomeCompleted:      ExitOK,
	OutcomeError:          ExitError,
	OutcomeMaxTurns:       ExitLimitReached,
	OutcomeBudgetExceeded: ExitBudgetExceeded,
	OutcomeCancelled:      ExitCancelled,
	OutcomeTimeout:        ExitTimeout,
	OutcomeModelError:     ExitModelError,
	OutcomeSetupFailed:    ExitSetupFailed,
}

// ExitCode maps the outcome to the process exit status. Unknown outcomes are
// reported as ExitError rather than success.
func (o Outcome) ExitCode() ExitCode {
	if c, ok := outcomeExit[o]; ok {
		return c
	}
	return ExitError
}

// OutcomeForExitCode is the inverse of Outcome.ExitCode, for the controller,
// which only sees the container's exit status when the termination message is
// missing (for example after an OOM kill).
func OutcomeForExitCode(c ExitCode) (Outcome, bool) {
	for o, e := range outcomeExit {
		if e == c {
			return o, true
		}
	}
	return "", false
}

func (c ExitCode) String() string {
	if o, ok := OutcomeForExitCode(c); ok {
		return fmt.Sprintf("%d (%s)", int(c), o)
	}
	return fmt.Sprintf("%d", int(c))
}

// ErrorCodeBudgetExceeded is the `error.code` the gateway puts in an
// OpenAI-style error body when it refuses a call for budget reasons. The runner
// maps it to OutcomeBudgetExceeded instead of OutcomeModelError.
const ErrorCodeBudgetExceeded = "budget_exceeded"
