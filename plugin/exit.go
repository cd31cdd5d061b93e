package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
)

// Exit statuses of `kubectl agentry run`: a published contract, CI scripts branch on them.
// 3 to 7 are the runner's own exit codes for the same outcomes (contract.ExitCode). Add,
// never renumber.
const (
	ExitSucceeded      = 0
	ExitError          = 1
	ExitUsage          = 2
	ExitLimitReached   = 3
	ExitBudgetExceeded = 4
	ExitCancelled      = 5
	ExitTimeout        = 6
	ExitProviderError  = 7
	ExitFailed         = 8
	ExitDeliveryFailed = 9
	ExitWaitTimeout    = 10
)

// ExitCodes is the table docs/ci.md and README.md print (a test keeps them in sync), in
// order.
var ExitCodes = []struct {
	Code    int
	Meaning string
}{
	{ExitSucceeded, "Succeeded, and its delivery (when `spec.delivery` is set) Delivered or NoChanges; without `--wait`: the session was created"},
	{ExitError, "the command itself failed: an API error, a lost connection, the session deleted while waiting"},
	{ExitUsage, "usage: a flag error, or a manifest the API server refused (its message names the field)"},
	{ExitLimitReached, "Failed, reason LimitReached (`spec.limits.maxTurns`)"},
	{ExitBudgetExceeded, "Failed, reason BudgetExceeded (`spec.limits.maxTokens` or the namespace's token budget)"},
	{ExitCancelled, "Cancelled"},
	{ExitTimeout, "Failed, reason Timeout (`spec.limits.timeout`)"},
	{ExitProviderError, "Failed, reason ProviderError"},
	{ExitFailed, "Failed for any other reason (PodFailed, CheckoutFailed, SetupFailed, RunnerError, InvalidSpec, PolicyViolation, InstructionsNotFound, ContinuationUnavailable, GatewayUntrusted, ...)"},
	{ExitDeliveryFailed, "Succeeded, but delivery failed: Delivered=False with a reason other than NoChanges (Conflict, AuthFailed, ...)"},
	{ExitWaitTimeout, "`--wait-timeout` elapsed first; the session is left running"},
}

// ExitCodeTable renders ExitCodes as the Markdown table the docs carry.
func ExitCodeTable() string {
	var b strings.Builder
	b.WriteString("| exit code | meaning |\n| --- | --- |\n")
	for _, e := range ExitCodes {
		fmt.Fprintf(&b, "| %d | %s |\n", e.Code, e.Meaning)
	}
	return b.String()
}

// failedReasonExit maps the Succeeded condition's reason of a Failed session; any other
// reason is ExitFailed.
var failedReasonExit = map[string]int{
	v1.ReasonLimitReached:   ExitLimitReached,
	v1.ReasonBudgetExceeded: ExitBudgetExceeded,
	v1.ReasonTimeout:        ExitTimeout,
	v1.ReasonProviderError:  ExitProviderError,
	v1.ReasonCancelled:      ExitCancelled,
}

// outcomeExit is the exit status of a session that is done (see finished).
func outcomeExit(s *v1.AgentSession) int {
	switch s.Status.Phase {
	case v1.PhaseSucceeded:
		if s.Spec.Delivery == nil {
			return ExitSucceeded
		}
		c := meta.FindStatusCondition(s.Status.Conditions, v1.ConditionDelivered)
		if c != nil && c.Status == metav1.ConditionFalse && c.Reason != v1.ReasonNoChanges {
			return ExitDeliveryFailed
		}
		return ExitSucceeded
	case v1.PhaseCancelled:
		return ExitCancelled
	}
	reason := ""
	if c := meta.FindStatusCondition(s.Status.Conditions, v1.ConditionSucceeded); c != nil {
		reason = c.Reason
	}
	if code, ok := failedReasonExit[reason]; ok {
		return code
	}
	return ExitFailed
}

// finished reports whether there is nothing more to wait for: the phase is terminal and, when
// the session Succeeded and asked for delivery, the Delivered condition is True or False. A
// session that did not succeed delivers nothing, so its Delivered condition is not awaited.
func finished(s *v1.AgentSession) bool {
	if !s.Status.Phase.IsTerminal() {
		return false
	}
	if s.Status.Phase != v1.PhaseSucceeded || s.Spec.Delivery == nil {
		return true
	}
	c := meta.FindStatusCondition(s.Status.Conditions, v1.ConditionDelivered)
	return c != nil && c.Status != metav1.ConditionUnknown
}

// exitError ends the command with code. A nil err means everything was already said.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

func usageErrorf(format string, a ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, a...)}
}

// exitCode returns the status err asks for and what to print (nil: nothing).
func exitCode(err error) (int, error) {
	if err == nil {
		return ExitSucceeded, nil
	}
	var e *exitError
	if errors.As(err, &e) {
		return e.code, e.err
	}
	return ExitError, err
}

// Main executes the plugin with args, prints what went wrong to stderr and returns the
// process's exit status.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := New(stdout)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	code, err := exitCode(root.ExecuteContext(ctx))
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
	}
	return code
}
