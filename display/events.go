package display

import (
	"fmt"
	"strings"

	"github.com/agentry-dev/agentry/contract"
)

// SetupLine is one setup command as a step line: "✓ setup go mod download  1.2s" or
// "✗ setup npm ci  exit 1 · 3.4s". The mark is returned apart so callers can colour it.
func SetupLine(s *contract.Setup) (mark, line string) {
	mark = "✓"
	status := ""
	switch {
	case s.TimedOut:
		mark, status = "✗", "timed out · "
	case s.ExitCode != 0:
		mark, status = "✗", fmt.Sprintf("exit %d · ", s.ExitCode)
	}
	return mark, fmt.Sprintf("setup %s  %s%s", Verbatim(s.Command, 80), status, Millis(s.DurationMS))
}

// SetupTail is the last lines of a failed setup command's output, escaped, for display.
func SetupTail(s *contract.Setup, lines int) []string {
	out := strings.Split(strings.TrimRight(s.Output, "\n"), "\n")
	if len(out) > lines {
		out = out[len(out)-lines:]
	}
	for i, l := range out {
		out[i] = Verbatim(l, 160)
	}
	if len(out) == 1 && out[0] == "" {
		return nil
	}
	return out
}

// CompactionLine says what a compaction did: "compacted 42 messages (31 turns) into a
// summary at 26k of 32k tokens; 9 messages kept".
func CompactionLine(c *contract.Compaction) string {
	turns := ""
	if c.DroppedTurns > 0 {
		turns = fmt.Sprintf(" (%d turns)", c.DroppedTurns)
	}
	return fmt.Sprintf("compacted %d messages%s into a summary at %s of %s tokens; %d messages kept",
		c.DroppedMessages, turns, Tokens(c.PromptTokens), Tokens(c.ContextWindow), c.KeptMessages)
}
