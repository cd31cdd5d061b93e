package cli_test

import (
	"os"
	"testing"

	"github.com/agentry-dev/agentry/runner/cli"
)

func TestMain(m *testing.M) {
	cli.ServeExecutorIfChild()
	os.Exit(m.Run())
}
