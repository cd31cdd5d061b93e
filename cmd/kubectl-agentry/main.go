// Command kubectl-agentry is the `kubectl agentry` plugin: put it on the PATH. Its exit code
// is the contract documented in docs/ci.md (plugin.Main).
package main

import (
	"context"
	"os"

	"github.com/agentry-dev/agentry/plugin"
)

func main() {
	os.Exit(plugin.Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
