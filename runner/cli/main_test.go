package cli_test

import (
	"os"
	"testing"

	"github.com/agentry-dev/agentry/runner/cli"
)

// TestMain lets this test binary stand in for the runner binary: the runner starts
// its tool executor by running its own executable with `executor`, and the isolation
// tests run `runner run` as a real process (its secrets re-exec included).
func TestMain(m *testing.M) {
	cli.ServeExecutorIfChild()
	if len(os.Args) > 1 && (os.Args[1] == "run" || os.Args[1] == "setup") {
		os.Exit(cli.Main(os.Args[1:]))
	}
	os.Exit(m.Run())
}
