package runner

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/agentry-dev/agentry/contract"
)

// setupSummaryTail bounds the output tail quoted in a failed setup's summary (which also
// becomes the session's status message).
const setupSummaryTail = 1 << 10

// setup records the setup phase's results, one event per command, before any model call.
// It reports false, with the session's result, when setup failed (or its result could not
// be read): the agent then does not run, and only the patch is still produced.
func (s *session) setup() (Result, bool) {
	if s.Config.SetupError != "" {
		s.emit(0, contract.Event{Type: contract.EventError, Error: &contract.ErrorInfo{Source: "setup", Message: s.Config.SetupError}})
		return s.end(contract.OutcomeSetupFailed, "setup failed: "+s.Config.SetupError, nil), false
	}
	for i := range s.Config.Setup {
		r := s.Config.Setup[i]
		s.emit(0, contract.Event{Type: contract.EventSetup, Setup: &r})
	}
	for _, r := range s.Config.Setup {
		if r.ExitCode != 0 || r.TimedOut {
			return s.end(contract.OutcomeSetupFailed, setupFailure(r), nil), false
		}
	}
	return Result{}, true
}

// setupFailure is the summary of a failed setup command: what ran, how it ended and the
// end of its output.
func setupFailure(r contract.Setup) string {
	cmd := r.Command
	if len(cmd) > 200 {
		cmd = strings.ToValidUTF8(cmd[:200], "") + "…"
	}
	how := fmt.Sprintf("exited %d", r.ExitCode)
	if r.TimedOut {
		how = fmt.Sprintf("timed out after %s", (time.Duration(r.DurationMS) * time.Millisecond).Round(time.Second))
	}
	tail := strings.TrimSpace(r.Output)
	if len(tail) > setupSummaryTail {
		tail = tail[len(tail)-setupSummaryTail:]
		for len(tail) > 0 && !utf8.RuneStart(tail[0]) {
			tail = tail[1:]
		}
		tail = "…" + tail
	}
	msg := fmt.Sprintf("setup failed: `%s` %s", cmd, how)
	if tail != "" {
		msg += ": " + tail
	}
	return msg
}
