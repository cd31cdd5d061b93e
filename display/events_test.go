package display

import (
	"strings"
	"testing"

	"github.com/agentry-dev/agentry/contract"
)

// Setup commands and their output come from the session's author and the repository: a
// command or output line carrying terminal escapes must not reach a terminal as escapes.
func TestSetupLinesEscapeHostileText(t *testing.T) {
	s := &contract.Setup{Command: "npm ci\r\x1b[2K✓ setup harmless", ExitCode: 1, DurationMS: 3400,
		Output: "ok\nnpm ERR! \x1b[31mboom\x1b[0m\n"}
	mark, line := SetupLine(s)
	if mark != "✗" || strings.ContainsAny(line, "\r\x1b") || !strings.Contains(line, "exit 1 · 3.4s") {
		t.Errorf("SetupLine = %q %q", mark, line)
	}
	tail := SetupTail(s, 1)
	if len(tail) != 1 || strings.Contains(tail[0], "\x1b") || !strings.Contains(tail[0], "boom") {
		t.Errorf("SetupTail = %q", tail)
	}
	if mark, _ := SetupLine(&contract.Setup{Command: "make deps", TimedOut: true, ExitCode: -1}); mark != "✗" {
		t.Errorf("a timed-out command shows %s", mark)
	}
}

func TestCompactionLine(t *testing.T) {
	got := CompactionLine(&contract.Compaction{PromptTokens: 26100, ContextWindow: 32000, DroppedMessages: 42, DroppedTurns: 31, KeptMessages: 9})
	if got != "compacted 42 messages (31 turns) into a summary at 26k of 32k tokens; 9 messages kept" {
		t.Errorf("got %q", got)
	}
}
